// Goal: the driver answers a write that cannot be applied exactly once, as `unknown`, at the first tick after its deadline; a read is answered only by the answer to its own request.
import test from 'ava';
import { RaftNode, type ReadOutcome, type StateMachine, type WriteOutcome } from './raft-node.ts';
import { defaultRaftConfig, Raft } from './raft.ts';
import { bootstrapState, type PersistBatch, type RaftStorage } from './storage.ts';
import { counterRandom } from './testing/network.ts';
import type { Clock, Entry, LogIndex, Message, NodeId, Term, TimerHandle } from './types.ts';

/** Timers fire only when the test advances time. */
class ManualClock implements Clock {
  private now = 0;
  private nextId = 0;
  private readonly timers = new Map<number, { atMs: number; callback: () => void }>();
  nowMs(): number {
    return this.now;
  }
  setTimer(delayMs: number, callback: () => void): TimerHandle {
    this.nextId += 1;
    this.timers.set(this.nextId, { atMs: this.now + delayMs, callback });
    return this.nextId as unknown as TimerHandle;
  }
  clearTimer(handle: TimerHandle): void {
    this.timers.delete(handle as unknown as number);
  }
  get pendingTimers(): number {
    return this.timers.size;
  }
  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      let next: [number, { atMs: number; callback: () => void }] | null = null;
      for (const timer of this.timers) if (timer[1].atMs <= until && (next === null || timer[1].atMs < next[1].atMs)) next = timer;
      if (next === null) break;
      this.timers.delete(next[0]);
      this.now = next[1].atMs;
      next[1].callback();
    }
    this.now = until;
  }
}

/** Completes writes at once until `hold` is set; then keeps them pending forever (a stuck disk). */
class HoldingStorage implements RaftStorage {
  hold = false;
  held = 0;
  persist(_batch: PersistBatch, done: (error: Error | null) => void): void {
    if (this.hold) this.held += 1;
    else done(null);
  }
}

class CountingMachine implements StateMachine<number> {
  appliedIndex = 0 as LogIndex;
  applyEntry(entry: Entry): number {
    this.appliedIndex = entry.index;
    return entry.index;
  }
  snapshot(): Uint8Array {
    return new Uint8Array();
  }
}

const TICK_MS = 10;
const REQUEST_TIMEOUT_MS = 1_000;

function singleVoter(): { node: RaftNode<number, CountingMachine>; clock: ManualClock; storage: HoldingStorage } {
  const clock = new ManualClock();
  const storage = new HoldingStorage();
  const id = 'n1' as NodeId;
  const node = new RaftNode<number, CountingMachine>(
    { clock, random: counterRandom(), storage, transport: { send: () => undefined } },
    { raft: defaultRaftConfig(id), tickMs: TICK_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS, pendingRequestsMax: 100 },
    { empty: () => new CountingMachine(), restore: () => new CountingMachine() },
    bootstrapState([id]),
  );
  node.start();
  return { node, clock, storage };
}

test('a write stuck behind the disk is answered unknown once, at the first tick after its timeout, and no timer is left per write', (t) => {
  const { node, clock, storage } = singleVoter();
  clock.advance(100 * TICK_MS);
  t.is(node.raft.role, 'leader');
  storage.hold = true;
  const outcomes: WriteOutcome<number>[] = [];
  const timersBefore = clock.pendingTimers;
  node.propose(new Uint8Array([1]), (outcome) => outcomes.push(outcome));
  node.propose(new Uint8Array([2]), (outcome) => outcomes.push(outcome));
  t.is(clock.pendingTimers, timersBefore, 'pending writes hold deadlines, not timers');
  t.true(storage.held >= 1, 'the entries went to the disk');
  clock.advance(REQUEST_TIMEOUT_MS - TICK_MS);
  t.deepEqual(outcomes, [], 'not answered before the deadline');
  clock.advance(2 * TICK_MS);
  t.is(outcomes.length, 2);
  for (const outcome of outcomes) t.like(outcome, { ok: false, reason: 'unknown' });
  clock.advance(10 * REQUEST_TIMEOUT_MS);
  t.is(outcomes.length, 2, 'each write is answered once');
  node.stop();
});

test('stop answers every pending write unknown, once', (t) => {
  const { node, clock, storage } = singleVoter();
  clock.advance(100 * TICK_MS);
  storage.hold = true;
  const outcomes: WriteOutcome<number>[] = [];
  node.propose(new Uint8Array([1]), (outcome) => outcomes.push(outcome));
  node.stop();
  clock.advance(10 * REQUEST_TIMEOUT_MS);
  t.is(outcomes.length, 1);
  t.like(outcomes[0], { ok: false, reason: 'unknown' });
});

test('a write whose index is proposed again (leadership lost and regained before it applied) is answered rejected, not dropped', (t) => {
  // The core is asked twice and answers the same index with a newer term, as after a truncation by another leader.
  const clock = new ManualClock();
  const id = 'n1' as NodeId;
  let term = 1;
  const node = new RaftNode<number, CountingMachine>(
    {
      clock,
      random: counterRandom(),
      storage: new HoldingStorage(),
      transport: { send: () => undefined },
      createRaft: (config, random, persisted) => {
        const raft = new Raft(config, random, persisted);
        raft.propose = () => ({ ok: true, index: 99 as LogIndex, term: term++ as Term });
        return raft;
      },
    },
    { raft: defaultRaftConfig(id), tickMs: TICK_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS, pendingRequestsMax: 100 },
    { empty: () => new CountingMachine(), restore: () => new CountingMachine() },
    bootstrapState([id]),
  );
  const first: WriteOutcome<number>[] = [];
  node.propose(new Uint8Array([1]), (outcome) => first.push(outcome));
  t.is(first.length, 0);
  node.propose(new Uint8Array([2]), () => undefined);
  t.is(first.length, 1, 'the displaced caller is answered once');
  t.like(first[0], { ok: false, reason: 'rejected' });
  node.stop();
});

test('a read of a restarted node is not answered by the answer to a read its earlier process sent (a stale read index)', (t) => {
  // Seed 67 of `debughost sim --nodes 3`: n2 sent a read index request, was killed, came back and asked again
  // with the same request id; the leader's answer to the old request, with an older read index, completed
  // the new read, which returned a value overwritten before it started.
  const follower = 'n2' as NodeId;
  const leader = 'n1' as NodeId;
  const clock = new ManualClock();
  const boot = (seed: number): { node: RaftNode<number, CountingMachine>; sent: Message[] } => {
    const sent: Message[] = [];
    const node = new RaftNode<number, CountingMachine>(
      { clock, random: counterRandom(seed), storage: new HoldingStorage(), transport: { send: (message) => sent.push(message) } },
      { raft: defaultRaftConfig(follower), tickMs: TICK_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS, pendingRequestsMax: 100 },
      { empty: () => new CountingMachine(), restore: () => new CountingMachine() },
      bootstrapState([leader, follower, 'n3' as NodeId]),
    );
    node.start();
    node.receive({ type: 'heartbeat', from: leader, to: follower, term: 2 as Term, commit: 3 as LogIndex, readContext: null });
    return { node, sent };
  };
  const requestIdOf = (sent: Message[]): string => {
    const request = sent.find((message) => message.type === 'readIndex');
    return request?.type === 'readIndex' ? request.requestId : 'none sent';
  };

  const earlier = boot(1);
  earlier.node.read(() => undefined);
  const oldRequestId = requestIdOf(earlier.sent);
  earlier.node.stop();

  const later = boot(2);
  const outcomes: ReadOutcome<CountingMachine>[] = [];
  later.node.read((outcome) => outcomes.push(outcome));
  const newRequestId = requestIdOf(later.sent);
  t.not(newRequestId, oldRequestId);
  later.node.receive({ type: 'readIndexResp', from: leader, to: follower, term: 2 as Term, requestId: oldRequestId, index: 2 as LogIndex, ok: true });
  t.deepEqual(outcomes, [], 'the answer to the earlier process is not taken');
  later.node.receive({ type: 'readIndexResp', from: leader, to: follower, term: 2 as Term, requestId: newRequestId, index: 3 as LogIndex, ok: true });
  t.is(outcomes.length, 1);
  t.like(outcomes[0], { ok: true, index: 3 });
  later.node.stop();
});

test('a hard state whose only change is the commit index is not written on its own: it rides along with the next entries', (t) => {
  // One sync per write instead of two (issue 14): the commit index that covers a write's entries is not
  // synced by itself; a restarted node relearns it from a leader. A term or vote change is always written.
  const clock = new ManualClock();
  const batches: PersistBatch[] = [];
  const id = 'n1' as NodeId;
  const node = new RaftNode<number, CountingMachine>(
    { clock, random: counterRandom(), storage: { persist: (batch, done) => (batches.push(batch), done(null)) }, transport: { send: () => undefined } },
    { raft: defaultRaftConfig(id), tickMs: TICK_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS, pendingRequestsMax: 100 },
    { empty: () => new CountingMachine(), restore: () => new CountingMachine() },
    bootstrapState([id]),
  );
  node.start();
  clock.advance(100 * TICK_MS);
  t.is(node.raft.role, 'leader');
  t.true(batches.some((batch) => batch.hardState !== null && batch.hardState.term === node.raft.term && batch.hardState.vote === id), 'the campaign wrote its term and vote');
  const outcomes: WriteOutcome<number>[] = [];
  const before = batches.length;
  for (let i = 0; i < 3; i += 1) node.propose(new Uint8Array([i]), (outcome) => outcomes.push(outcome));
  t.is(outcomes.length, 3);
  for (const outcome of outcomes) t.like(outcome, { ok: true });
  const written = batches.slice(before);
  t.is(written.length, 3, 'one write per proposal, none for the commit index alone');
  for (const batch of written) t.is(batch.entries.length, 1);
  const first = outcomes[0] as { index: LogIndex };
  const second = outcomes[1] as { index: LogIndex };
  t.is(written[1]?.hardState?.commit, first.index, "the second write carries the first one's commit index");
  t.is(written[2]?.hardState?.commit, second.index);
  t.is(node.raft.log.committed, (outcomes[2] as { index: LogIndex }).index, 'the last commit is known in memory, not yet on disk');
  node.stop();
});
