// Two rules of the Raft paper checked from outside the core, on the messages
// and disks the simulator sees (the core's own state is not trusted for them):
// - persist before send: a granted vote is on disk when it leaves (Figure 2:
//   votedFor is "updated on stable storage before responding to RPCs");
// - ReadIndex (§6.4): a leader answers a read only after a quorum of voters
//   has answered it in its term since the read reached it;
// - check-quorum: a leader that has heard from no quorum for two election
//   timeouts no longer leads (counted in its own heartbeat rounds, so a
//   paused node or a drifting clock does not fool the count).
import type { Message, NodeId } from '../consensus/types.ts';
import type { HardState } from '../consensus/types.ts';

/** What the rules read of a node's core. */
interface LeaderView {
  readonly id: NodeId;
  readonly role: string;
  readonly term: number;
  readonly config: { readonly checkQuorum: boolean };
  isVoter(id: NodeId): boolean;
  confState(): { readonly voters: readonly NodeId[] };
}

interface Ack {
  atMs: number;
  /** The receiver's heartbeat round when it arrived. */
  round: number;
}

/**
 * Heartbeat rounds a leader may send with no quorum answering before it must
 * have stepped down: check-quorum looks every election timeout (5 rounds of
 * the simulator's 10 ticks / 2) at the timeout before, so two timeouts; one
 * more because a leadership transfer restarts that count; one round of slack
 * for answers in flight.
 */
export const CHECK_QUORUM_ROUNDS_MAX = 16;

export class ProtocolRules {
  /** Per node, per follower and term, the last answer delivered to it (a later term does not hide an earlier one). */
  private readonly acks = new Map<NodeId, Map<NodeId, Map<number, Ack>>>();
  /** Per leader, when each forwarded read request reached it. */
  private readonly readsArrived = new Map<NodeId, Map<string, number>>();
  /** Per node, heartbeat rounds sent as leader, and the term of the last one. */
  private readonly rounds = new Map<NodeId, { term: number; count: number; lastMs: number }>();

  constructor(
    private readonly durableHardState: (node: NodeId) => HardState,
    private readonly violation: (text: string) => void,
  ) {}

  delivered(message: Message, nowMs: number): void {
    if (message.type === 'appendResp' || message.type === 'heartbeatResp' || message.type === 'snapshotChunkResp') {
      let acks = this.acks.get(message.to);
      if (acks === undefined) {
        acks = new Map();
        this.acks.set(message.to, acks);
      }
      let byTerm = acks.get(message.from);
      if (byTerm === undefined) {
        byTerm = new Map();
        acks.set(message.from, byTerm);
      }
      const round = this.rounds.get(message.to)?.count ?? 0;
      const ack = byTerm.get(message.term);
      if (ack === undefined) byTerm.set(message.term, { atMs: nowMs, round });
      else {
        ack.atMs = nowMs;
        ack.round = round;
      }
    } else if (message.type === 'readIndex') {
      let reads = this.readsArrived.get(message.to);
      if (reads === undefined) {
        reads = new Map();
        this.readsArrived.set(message.to, reads);
      }
      if (!reads.has(message.requestId)) reads.set(message.requestId, nowMs);
    }
  }

  sent(message: Message, sender: LeaderView | null, nowMs: number): void {
    if (message.type === 'voteResp' && message.granted) {
      const hardState = this.durableHardState(message.from);
      // A later term on disk also keeps it from voting again in this one.
      if (hardState.term < message.term || (hardState.term === message.term && hardState.vote !== message.to)) {
        this.violation(`persist before send: ${message.from} granted its vote in term ${message.term} to ${message.to} with term ${hardState.term}, vote ${hardState.vote ?? 'none'} on disk`);
      }
    } else if (message.type === 'heartbeat' && message.readContext === null && sender !== null) {
      this.heartbeatSent(sender, message, nowMs);
    } else if (message.type === 'readIndexResp' && message.ok && sender !== null) {
      const arrived = this.readsArrived.get(message.from)?.get(message.requestId);
      this.readsArrived.get(message.from)?.delete(message.requestId);
      if (arrived !== undefined) this.checkConfirmed(sender, message.term, arrived, `read ${message.requestId} of ${message.to}`);
    }
  }

  /** A tick's heartbeat round goes to every follower: count it once, at the first voter it goes to. */
  private heartbeatSent(leader: LeaderView, message: Extract<Message, { type: 'heartbeat' }>, nowMs: number): void {
    if (!leader.config.checkQuorum || leader.role !== 'leader' || leader.term !== message.term) return;
    const voters = leader.confState().voters;
    if (voters.find((id) => id !== leader.id) !== message.to) return;
    let rounds = this.rounds.get(leader.id);
    if (rounds === undefined || rounds.term !== message.term) {
      rounds = { term: message.term, count: 0, lastMs: -1 };
      this.rounds.set(leader.id, rounds);
    }
    // Rounds held back by a slow disk leave together: they count as one.
    if (nowMs === rounds.lastMs) return;
    rounds.lastMs = nowMs;
    rounds.count += 1;
    if (rounds.count <= CHECK_QUORUM_ROUNDS_MAX) return;
    const since = rounds.count - CHECK_QUORUM_ROUNDS_MAX;
    let heard = 1;
    const acks = this.acks.get(leader.id);
    for (const voter of voters) {
      const ack = voter === leader.id ? undefined : acks?.get(voter)?.get(message.term);
      if (ack !== undefined && ack.round >= since) heard += 1;
    }
    if (heard < Math.floor(voters.length / 2) + 1) {
      this.violation(`check-quorum: ${leader.id} still leads term ${message.term} after ${CHECK_QUORUM_ROUNDS_MAX} heartbeat rounds in which ${heard} of ${voters.length} voters answered`);
    }
  }

  /** A read served by a node that led term `term` from the moment it was asked (`startedMs`) to now. */
  localReadServed(leader: LeaderView, term: number, startedMs: number): void {
    this.checkConfirmed(leader, term, startedMs, `its own read`);
  }

  private checkConfirmed(leader: LeaderView, term: number, sinceMs: number, what: string): void {
    const voters = leader.confState().voters;
    const quorum = Math.floor(voters.length / 2) + 1;
    let confirmed = voters.includes(leader.id) ? 1 : 0;
    const acks = this.acks.get(leader.id);
    for (const voter of voters) {
      if (voter === leader.id) continue;
      const ack = acks?.get(voter)?.get(term);
      if (ack !== undefined && ack.atMs >= sinceMs) confirmed += 1;
    }
    if (confirmed < quorum) this.violation(`read index: ${leader.id} answered ${what} in term ${term} having heard from ${confirmed} of ${voters.length} voters since it was asked`);
  }
}
