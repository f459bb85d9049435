// Coverage of protocol situations: how often a run reached each moment where
// Raft is easy to get wrong. A fault mix that reaches none of them tested
// little, however long it ran; the counts are printed per run and in --json.
import type { Message, NodeId, Term } from '../consensus/types.ts';
import type { Role } from '../consensus/raft.ts';

export const SITUATIONS = {
  contestedElections: 'terms in which two or more candidates asked for votes',
  leadersWithEarlierTermEntries: 'leaders elected holding uncommitted entries of earlier terms (the Figure 8 setup)',
  appendsRejectedForTerm: "appends a follower refused because its entry at prevLogIndex had another term",
  logsTruncated: 'followers that overwrote uncommitted entries with a newer leader\'s',
  leadersDeposedByCheckQuorum: 'leaders that stepped down in their own term (check-quorum found no quorum)',
  snapshotsInstalled: 'snapshots installed by followers',
  snapshotsDuringWrites: 'snapshots installed while client writes were in flight',
  snapshotsOverlappingLog: 'snapshots reaching a follower that already held their last entry and more',
  readsByDeposedLeader: 'reads answered by a node while a leader of a newer term existed',
  crashesLosingWrites: 'crashes that lost writes not yet synced',
  crashesRightAfterAnswer: 'crashes within 5 ms of the node acknowledging an append or granting a vote',
} as const;

export type Situation = keyof typeof SITUATIONS;

/** Situations of the actor layer, counted in runs with --actors (besides the Raft ones). */
export const ACTOR_SITUATIONS = {
  callsWhileOwnerMoved: "client calls during which the project's owner changed",
  handOffs: 'reconciles and releases queued because the ring moved or the runtime differed',
  ownerLeasesLapsed: 'times a node lost its owner lease and stopped what it ran',
  callsRetried: 'calls retried by a host after notOwner, a lost answer or no lease',
  launchesBesideOldCopy: "copies launched while an old owner marked down, still holding its lease, had not stopped its copy yet (the one-way link overlap the design allows)",
  launchesWaitingForRelease: 'launches a new owner held back until the old owner recorded its release or was marked down (counted on the hosts alive at the end)',
  releasesRecorded: 'release records committed: an old owner saying it runs no copy of a project it gave up',
  watchdogFreezes: "times a runtime's watchdog froze a node's workloads (its lease heartbeats stopped)",
  watchdogKills: 'workloads the watchdog killed because their node stayed silent',
} as const;

export type ActorSituation = keyof typeof ACTOR_SITUATIONS;
export type ActorCoverageCounts = Record<ActorSituation, number>;

/** "name=count ..." then "never: ..." for any counts keyed by situation name. */
export function describeCounts(counts: Readonly<Record<string, number>>): string {
  const names = Object.keys(counts);
  const reached = names.filter((name) => (counts[name] ?? 0) > 0).map((name) => `${name}=${counts[name] ?? 0}`);
  const missed = names.filter((name) => (counts[name] ?? 0) === 0);
  return [reached.join(' '), missed.length > 0 ? `never: ${missed.join(',')}` : ''].filter((part) => part !== '').join('; ');
}
export type CoverageCounts = Record<Situation, number>;

export const emptyCoverage = (): CoverageCounts => {
  const counts = {} as CoverageCounts;
  for (const name of Object.keys(SITUATIONS) as Situation[]) counts[name] = 0;
  return counts;
};

export function addCoverage(total: CoverageCounts, run: Readonly<CoverageCounts>): void {
  for (const name of Object.keys(SITUATIONS) as Situation[]) total[name] += run[name];
}

/** "name=count ..." for the situations reached, then "never: ..." for those never reached. */
export function describeCoverage(counts: Readonly<CoverageCounts>): string {
  return describeCounts(counts);
}

/** What coverage reads of a node (a RaftNode's core). */
interface RaftView {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: Term;
  readonly log: {
    readonly committed: number;
    lastIndex(): number;
    term(index: number): Term | undefined;
  };
}

/** Window after an answer within which a crash counts as "right after" it. */
const ANSWER_CRASH_WINDOW_MS = 5;

export class Coverage {
  readonly counts = emptyCoverage();
  /** term -> the first node that asked for votes in it; -1 marks a term already counted as contested. */
  private readonly candidates = new Map<number, NodeId | null>();
  private readonly lastAnswerMs = new Map<NodeId, number>();

  /** A message handed to the network. */
  sent(message: Message, nowMs: number): void {
    switch (message.type) {
      case 'vote': {
        const first = this.candidates.get(message.term);
        if (first === undefined) this.candidates.set(message.term, message.from);
        else if (first !== null && first !== message.from) {
          this.counts.contestedElections += 1;
          this.candidates.set(message.term, null);
        }
        return;
      }
      case 'appendResp':
        if (message.success) this.lastAnswerMs.set(message.from, nowMs);
        return;
      case 'voteResp':
        if (message.granted) this.lastAnswerMs.set(message.from, nowMs);
        return;
      default:
        return;
    }
  }

  /** A message about to be stepped by `receiver`. */
  delivering(message: Message, receiver: RaftView): void {
    if (message.term < receiver.term) return;
    if (message.type === 'append') {
      const ours = receiver.log.term(message.prevLogIndex);
      if (ours !== undefined && ours !== message.prevLogTerm && message.prevLogIndex >= receiver.log.committed) this.counts.appendsRejectedForTerm += 1;
    } else if (message.type === 'snapshotChunk' && message.offset === 0 && message.meta.index > receiver.log.committed) {
      // Only a snapshot that the follower's log already runs past tests that the rest is kept.
      if (receiver.log.term(message.meta.index) === message.meta.term && receiver.log.lastIndex() > message.meta.index) this.counts.snapshotsOverlappingLog += 1;
    }
  }

  /** `node` is leader now and was not after the previous event. */
  elected(node: RaftView): void {
    const { log } = node;
    // Its own empty entry is last; anything between commit and it came from earlier terms.
    if (log.lastIndex() - 1 > log.committed) this.counts.leadersWithEarlierTermEntries += 1;
  }

  /** `node` was leader after the previous event and is not now. */
  deposed(node: RaftView, termBefore: Term): void {
    if (node.term === termBefore) this.counts.leadersDeposedByCheckQuorum += 1;
  }

  truncated(): void {
    this.counts.logsTruncated += 1;
  }

  snapshotInstalled(writesInFlight: boolean): void {
    this.counts.snapshotsInstalled += 1;
    if (writesInFlight) this.counts.snapshotsDuringWrites += 1;
  }

  readAnswered(node: RaftView, newestLeaderTerm: number): void {
    if (newestLeaderTerm > node.term) this.counts.readsByDeposedLeader += 1;
  }

  crashed(node: NodeId, lostWrites: number, nowMs: number): void {
    if (lostWrites > 0) this.counts.crashesLosingWrites += 1;
    const answered = this.lastAnswerMs.get(node);
    if (answered !== undefined && nowMs - answered <= ANSWER_CRASH_WINDOW_MS) this.counts.crashesRightAfterAnswer += 1;
  }
}
