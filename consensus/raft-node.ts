// The driver around the pure Raft core, shared by the simulator and real nodes:
// ticks from the injected clock, persist-before-send through the injected
// storage, then apply to the state machine and answer waiting callers. It uses
// callbacks, not promises, so that the simulator can run it synchronously.
import { Raft, type RaftStatus } from './raft.ts';
import type { PersistBatch, PersistedState, RaftStorage } from './storage.ts';
import type { Clock, ConfChange, Entry, HardState, LogIndex, Message, NodeId, RaftConfig, Random, Ready, Snapshot, TimerHandle } from './types.ts';

/** The replicated state machine, as the driver sees it. */
export interface StateMachine<Result> {
  readonly appliedIndex: LogIndex;
  /** Apply one committed entry (empty and configuration entries too, so the index advances). */
  applyEntry(entry: Entry): Result;
  snapshot(): Uint8Array;
}

export interface StateMachineFactory<Result, Machine extends StateMachine<Result>> {
  empty(): Machine;
  restore(snapshot: Snapshot): Machine;
}

export interface RaftTransport {
  send(message: Message): void;
}

/** Optional hooks that let the simulator watch what the node does. */
export interface RaftNodeObserver {
  persisted?(node: NodeId, batch: PersistBatch): void;
  applied?(node: NodeId, entry: Entry): void;
  snapshotApplied?(node: NodeId, snapshot: Snapshot): void;
  fatal?(node: NodeId, error: Error): void;
}

export interface RaftNodeComponents {
  readonly clock: Clock;
  readonly random: Random;
  readonly storage: RaftStorage;
  readonly transport: RaftTransport;
  readonly observer?: RaftNodeObserver;
  /**
   * Runs a callback after the work at hand (a real node passes setImmediate),
   * so that every proposal made in one turn of the event loop goes into one
   * ready and one disk write. Without it, proposals are processed at once.
   */
  readonly defer?: (callback: () => void) => void;
  /** Builds the core; the simulator swaps in deliberately broken cores to prove its checks can fail. */
  readonly createRaft?: (config: RaftConfig, random: Random, persisted: PersistedState) => Raft;
}

export interface RaftNodeOptions {
  readonly raft: RaftConfig;
  /** Milliseconds per Raft tick; the election timeout is electionTicks..2×electionTicks of them. */
  readonly tickMs: number;
  /**
   * A request not answered in this time is answered `unknown` (writes) or
   * `timeout` (reads), at the first tick after it runs out.
   */
  readonly requestTimeoutMs: number;
  /** Most requests waiting for an answer at once; more are refused as overloaded. */
  readonly pendingRequestsMax: number;
}

export type WriteOutcome<Result> =
  | { readonly ok: true; readonly index: LogIndex; readonly result: Result }
  | { readonly ok: false; readonly reason: 'notLeader'; readonly leaderHint: NodeId | null }
  /** Definitely not applied. */
  | { readonly ok: false; readonly reason: 'rejected'; readonly detail: string }
  /** May or may not have been applied. */
  | { readonly ok: false; readonly reason: 'unknown'; readonly detail: string };

export type ReadOutcome<Machine> =
  | { readonly ok: true; readonly index: LogIndex; readonly machine: Machine }
  | { readonly ok: false; readonly reason: 'notLeader' | 'dropped' | 'timeout' | 'overloaded'; readonly leaderHint: NodeId | null };

// Pending requests carry a deadline checked at each tick rather than a timer
// each: one timer per write cost more CPU than the rest of the driver under load.
interface PendingWrite<Result> {
  readonly term: number;
  readonly callback: (outcome: WriteOutcome<Result>) => void;
  readonly deadlineMs: number;
}

interface PendingRead<Machine> {
  readonly callback: (outcome: ReadOutcome<Machine>) => void;
  readonly deadlineMs: number;
  index: LogIndex | null;
}

export class RaftNode<Result, Machine extends StateMachine<Result>> {
  readonly raft: Raft;
  machine: Machine;
  private readonly components: RaftNodeComponents;
  private readonly options: RaftNodeOptions;
  private readonly factory: StateMachineFactory<Result, Machine>;
  private persisting = false;
  /** The hard state last handed to storage: a commit-only change is not written (see hardStateToWrite). */
  private storedHardState: HardState;
  private processDeferred = false;
  private stopped = false;
  private tickTimer: TimerHandle | null = null;
  private readonly writes = new Map<number, PendingWrite<Result>>();
  private readonly reads = new Map<string, PendingRead<Machine>>();
  private readSequence = 0;
  /** Makes this process's read ids its own (see read()). */
  private readonly readIdPrefix: string;

  constructor(
    components: RaftNodeComponents,
    options: RaftNodeOptions,
    factory: StateMachineFactory<Result, Machine>,
    persisted: PersistedState,
  ) {
    this.components = components;
    this.options = options;
    this.factory = factory;
    this.raft = (components.createRaft ?? ((config, random, state) => new Raft(config, random, state)))(options.raft, components.random, persisted);
    this.readIdPrefix = `${this.raft.id}/${bootNonce(components.random)}/`;
    this.machine = persisted.snapshot === null ? factory.empty() : factory.restore(persisted.snapshot);
    this.storedHardState = persisted.hardState;
  }

  get id(): NodeId {
    return this.raft.id;
  }

  start(): void {
    this.scheduleTick();
    this.process();
  }

  /** Stop ticking and answer every waiting caller; nothing more is persisted or sent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.tickTimer !== null) this.components.clock.clearTimer(this.tickTimer);
    const writes = [...this.writes];
    const reads = [...this.reads.values()];
    this.writes.clear();
    this.reads.clear();
    for (const [index, write] of writes) write.callback({ ok: false, reason: 'unknown', detail: `node ${this.id} stopped before index ${index} was applied` });
    for (const read of reads) read.callback({ ok: false, reason: 'dropped', leaderHint: null });
  }

  receive(message: Message): void {
    if (this.stopped) return;
    this.raft.step(message);
    this.process();
  }

  status(): RaftStatus {
    return this.raft.status();
  }

  /** Propose a command; the callback gets the state machine's result once applied here. */
  propose(data: Uint8Array, callback: (outcome: WriteOutcome<Result>) => void): void {
    this.proposeWith(() => this.raft.propose(data), callback);
  }

  proposeConfChange(change: ConfChange, callback: (outcome: WriteOutcome<Result>) => void): void {
    this.proposeWith(() => this.raft.proposeConfChange(change), callback);
  }

  /** A linearizable read: the callback runs once this node has applied the confirmed read index. */
  read(callback: (outcome: ReadOutcome<Machine>) => void): void {
    if (this.stopped) return callback({ ok: false, reason: 'dropped', leaderHint: null });
    if (this.reads.size >= this.options.pendingRequestsMax) return callback({ ok: false, reason: 'overloaded', leaderHint: null });
    this.readSequence += 1;
    // Request ids are unique across the cluster and across this node's restarts: the leader keys
    // its heartbeat rounds by them, and its answer to a read that an earlier process of this node
    // sent (still in flight when it died) must not complete a new read with an older read index
    // (a stale read: simulator seed 67, 3 nodes). Hence the nonce drawn at construction.
    const requestId = `${this.readIdPrefix}${this.readSequence}`;
    const started = this.raft.readIndex(requestId);
    if (!started.ok) return callback({ ok: false, reason: 'notLeader', leaderHint: this.raft.leader });
    this.reads.set(requestId, { callback, deadlineMs: this.components.clock.nowMs() + this.options.requestTimeoutMs, index: null });
    this.process();
  }

  transferLeadership(to: NodeId): ReturnType<Raft['transferLeadership']> {
    const result = this.raft.transferLeadership(to);
    this.process();
    return result;
  }

  private proposeWith(
    propose: () => ReturnType<Raft['propose']>,
    callback: (outcome: WriteOutcome<Result>) => void,
  ): void {
    if (this.stopped) return callback({ ok: false, reason: 'rejected', detail: `node ${this.id} is stopped` });
    if (this.writes.size >= this.options.pendingRequestsMax) {
      return callback({ ok: false, reason: 'rejected', detail: `${this.writes.size} requests are waiting on node ${this.id}; retry later` });
    }
    const result = propose();
    if (!result.ok) {
      if (result.reason === 'notLeader') return callback({ ok: false, reason: 'notLeader', leaderHint: result.leaderHint });
      return callback({ ok: false, reason: 'rejected', detail: result.detail });
    }
    // The same index proposed again: this node lost and regained leadership before applying
    // it, so its earlier entry there was overwritten and can never commit. Answer that caller
    // (deleting also keeps the map in deadline order).
    const displaced = this.writes.get(result.index);
    this.writes.delete(result.index);
    if (displaced !== undefined) {
      displaced.callback({ ok: false, reason: 'rejected', detail: `index ${result.index} of term ${displaced.term} was replaced by an entry of term ${result.term}` });
    }
    this.writes.set(result.index, { term: result.term, callback, deadlineMs: this.components.clock.nowMs() + this.options.requestTimeoutMs });
    this.processSoon();
  }

  private processSoon(): void {
    const defer = this.components.defer;
    if (defer === undefined) return this.process();
    if (this.processDeferred) return;
    this.processDeferred = true;
    defer(() => {
      this.processDeferred = false;
      this.process();
    });
  }

  private scheduleTick(): void {
    if (this.stopped) return;
    this.tickTimer = this.components.clock.setTimer(this.options.tickMs, () => {
      this.raft.tick();
      this.process();
      this.expireRequests(this.components.clock.nowMs());
      this.scheduleTick();
    });
  }

  /**
   * Answer requests whose deadline has passed. Maps iterate in insertion order
   * and every deadline is now + the same timeout, so the expired ones come first.
   */
  private expireRequests(nowMs: number): void {
    for (const [index, write] of this.writes) {
      if (write.deadlineMs > nowMs) break;
      this.writes.delete(index);
      write.callback({ ok: false, reason: 'unknown', detail: `index ${index} not applied within ${this.options.requestTimeoutMs} ms` });
    }
    for (const [requestId, read] of this.reads) {
      if (read.deadlineMs > nowMs) break;
      this.finishRead(requestId, { ok: false, reason: 'timeout', leaderHint: this.raft.leader });
    }
  }

  /** Drive the core: one ready at a time, persisted before anything in it is sent. */
  private process(): void {
    if (this.stopped || this.persisting || !this.raft.hasReady()) return;
    const ready = this.raft.ready();
    const hardState = this.hardStateToWrite(ready);
    const batch: PersistBatch = {
      hardState,
      snapshot: ready.snapshot,
      dropEntriesAfterSnapshot: ready.snapshot !== null,
      entries: ready.entries,
    };
    const needsWrite = batch.hardState !== null || batch.snapshot !== null || batch.entries.length > 0;
    if (hardState !== null) this.storedHardState = hardState;
    if (!needsWrite) {
      this.afterPersist(ready);
      return;
    }
    // A leader's replication messages go out while its own disk write runs (as in
    // etcd): they depend only on its term, durable since it campaigned, and the
    // leader counts itself towards a quorum only once its entries are on disk.
    // Everything else (votes, acknowledgements) waits for the sync.
    const early = this.messagesBeforePersist(ready.messages);
    for (const message of early) this.components.transport.send(message);
    this.persisting = true;
    this.applyDurableCommitted(ready, batch);
    if (this.stopped) return;
    this.components.storage.persist(batch, (error) => {
      if (this.stopped) return;
      if (error !== null) return this.fail(error);
      this.components.observer?.persisted?.(this.id, batch);
      this.persisting = false;
      this.afterPersist(ready, early);
    });
  }

  /**
   * The hard state this ready must write, or null. A change of term or vote is written (and
   * synced) before anything that depends on it goes out. A change of the commit index alone is
   * not written on its own, as etcd does not sync one: it would cost every write a second sync on
   * every node (after the entries, the commit index that covers them), and while that sync runs
   * the driver holds the next ready. Nothing depends on it being durable: the entries it covers
   * are durable on a quorum, and a restarted node learns the commit index again from a leader
   * (which commits an entry of its own term before it answers anything), so a node's commit index
   * may go back across a restart but never within one. The newest commit index rides along with
   * the next write that happens anyway (entries, a snapshot, a vote), so the stored one trails by
   * little and a restart replays most of what was applied.
   */
  private hardStateToWrite(ready: Ready): HardState | null {
    const stored = this.storedHardState;
    const current = ready.hardState ?? this.raft.hardState();
    const changed = current.term !== stored.term || current.vote !== stored.vote || current.commit !== stored.commit;
    if (!changed) return null;
    const commitOnly = current.term === stored.term && current.vote === stored.vote;
    if (commitOnly && ready.snapshot === null && ready.entries.length === 0) return null;
    return current;
  }

  /**
   * The messages of a ready that may go out before its write is synced, in
   * order: only a leader's replication messages (see process()). Protected so
   * that the simulator can plant a driver that sends too early (simulator/mutations.ts).
   */
  protected messagesBeforePersist(messages: readonly Message[]): readonly Message[] {
    return this.raft.role === 'leader' ? messages.filter(sendableBeforePersist) : NONE;
  }

  /**
   * Apply the committed entries that are already on this disk (and answer their
   * callers) without waiting for the batch being written, as etcd does. That
   * batch only adds the new commit index and later entries; the entries
   * applied are committed, so durable on a quorum, and a restarted node learns
   * the commit index again from a leader that has committed in its term. This
   * takes one sync off every write's path on the leader. Entries that arrive in
   * the batch itself wait for it.
   */
  private applyDurableCommitted(ready: Ready, batch: PersistBatch): void {
    const firstNew = batch.entries[0];
    const durableThrough = firstNew === undefined ? Number.POSITIVE_INFINITY : firstNew.index - 1;
    for (const entry of ready.committedEntries) {
      if (entry.index > durableThrough || this.stopped) return;
      this.applyEntry(entry);
    }
  }

  /** `early`: the messages of `ready` already sent, in order (a subsequence of ready.messages). */
  private afterPersist(ready: Ready, early: readonly Message[] = []): void {
    let sentEarly = 0;
    for (const message of ready.messages) {
      if (early[sentEarly] === message) sentEarly += 1;
      else this.components.transport.send(message);
    }
    if (ready.snapshot !== null) this.applySnapshot(ready.snapshot);
    for (const entry of ready.committedEntries) this.applyEntry(entry);
    for (const state of ready.readStates) {
      const read = this.reads.get(state.requestId);
      if (read !== undefined) read.index = state.index;
    }
    for (const requestId of ready.droppedReads) this.finishRead(requestId, { ok: false, reason: 'dropped', leaderHint: this.raft.leader });
    this.serveReads();
    const compact = this.raft.advance(ready);
    if (compact) {
      this.compact();
      return;
    }
    this.process();
  }

  private compact(): void {
    const snapshot = this.raft.compact(this.machine.snapshot());
    this.persisting = true;
    const batch: PersistBatch = { hardState: null, snapshot, dropEntriesAfterSnapshot: false, entries: [] };
    this.components.storage.persist(batch, (error) => {
      if (this.stopped) return;
      if (error !== null) return this.fail(error);
      this.components.observer?.persisted?.(this.id, batch);
      this.persisting = false;
      this.process();
    });
  }

  private applySnapshot(snapshot: Snapshot): void {
    this.machine = this.factory.restore(snapshot);
    this.components.observer?.snapshotApplied?.(this.id, snapshot);
    // Writes covered by the snapshot may or may not be in it: we cannot tell which.
    for (const [index, write] of this.writes) {
      if (index > snapshot.meta.index) continue;
      this.writes.delete(index);
      write.callback({ ok: false, reason: 'unknown', detail: `index ${index} was covered by a snapshot` });
    }
  }

  private applyEntry(entry: Entry): void {
    if (entry.index <= this.machine.appliedIndex) return;
    const result = this.machine.applyEntry(entry);
    this.components.observer?.applied?.(this.id, entry);
    const write = this.writes.get(entry.index);
    if (write === undefined) return;
    this.writes.delete(entry.index);
    if (entry.term === write.term) write.callback({ ok: true, index: entry.index, result });
    // Another leader's entry took this index: ours can never commit.
    else write.callback({ ok: false, reason: 'rejected', detail: `index ${entry.index} was taken by term ${entry.term}` });
  }

  private serveReads(): void {
    for (const [requestId, read] of this.reads) {
      if (read.index !== null && read.index <= this.machine.appliedIndex) {
        this.finishRead(requestId, { ok: true, index: read.index, machine: this.machine });
      }
    }
  }

  private finishRead(requestId: string, outcome: ReadOutcome<Machine>): void {
    const read = this.reads.get(requestId);
    if (read === undefined) return;
    this.reads.delete(requestId);
    read.callback(outcome);
  }

  private fail(error: Error): void {
    this.components.observer?.fatal?.(this.id, error);
    this.stop();
  }
}

const NONE: readonly Message[] = [];

/** 64 random bits in base 36: tells this process's requests from those of the node's earlier processes. */
function bootNonce(random: Random): string {
  const word = (): string => random.int(2 ** 32).toString(36);
  return `${word()}${word()}`;
}

function sendableBeforePersist(message: Message): boolean {
  return message.type === 'append' || message.type === 'heartbeat' || message.type === 'snapshotChunk';
}
