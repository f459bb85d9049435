// Simulated disk for one node: batches are queued at once and become durable
// in order after an fsync latency drawn from the PRNG; a crash keeps what was
// synced plus, as the real WAL may (consensus/wal.ts), a prefix of the records
// of the unsynced batches (a write cut short), and never calls their `done`.
import assert from 'node:assert/strict';
import type { Entry, HardState, NodeId, Snapshot } from '../consensus/types.ts';
import { emptyPersistedState, type PersistBatch, type PersistedState, type RaftStorage } from '../consensus/storage.ts';
import type { Prng } from './prng.ts';
import type { EventHandle, Scheduler } from './scheduler.ts';

/** fsync latency: base + uniform jitter, plus occasionally a slow outlier. */
export interface DiskLatency {
  readonly syncMsBase: number;
  readonly syncMsJitter: number;
  /** Probability that one sync is a slow outlier. */
  readonly slowSyncProbability: number;
  /** A slow outlier adds a uniform extra in [0, slowSyncMsMax), ms. */
  readonly slowSyncMsMax: number;
}

export const DISK_LATENCY_DEFAULT: DiskLatency = {
  syncMsBase: 0.5,
  syncMsJitter: 0.5,
  slowSyncProbability: 0,
  slowSyncMsMax: 0,
};

export interface SimDiskOptions {
  readonly node: NodeId;
  readonly scheduler: Scheduler;
  /** The disk's own stream, e.g. `root.fork('disk:n1')`. */
  readonly prng: Prng;
  readonly latency?: DiskLatency;
  /** Durable contents at start (e.g. a bootstrap snapshot); default empty. */
  readonly initial?: PersistedState;
}

/** Rough on-disk overhead of one entry's framing (term, index, type, length, checksum). */
const ENTRY_OVERHEAD_BYTES = 32;
const HARD_STATE_BYTES = 32;
const SNAPSHOT_META_OVERHEAD_BYTES = 64;

const entryBytes = (entry: Entry): number => ENTRY_OVERHEAD_BYTES + entry.data.byteLength;
const snapshotBytes = (snapshot: Snapshot | null): number =>
  snapshot === null ? 0 : SNAPSHOT_META_OVERHEAD_BYTES + snapshot.data.byteLength + 16 * (snapshot.meta.conf.voters.length + snapshot.meta.conf.learners.length);

/**
 * The stored log: hard state, snapshot, and the entries after it in an array
 * with a moving head, so appends, suffix truncation and prefix drops cost
 * O(entries touched) amortised. Invariant: live entries are contiguous and the
 * first one has index snapshotIndex + 1.
 */
class StoredLog {
  hardState: HardState;
  snapshot: Snapshot | null;
  private entries: Entry[] = [];
  private head = 0;
  private entryBytesTotal = 0;

  constructor(initial: PersistedState) {
    this.hardState = initial.hardState;
    this.snapshot = initial.snapshot;
    this.append(initial.entries, 'initial');
  }

  get snapshotIndex(): number {
    return this.snapshot?.meta.index ?? 0;
  }

  get lastIndex(): number {
    return this.snapshotIndex + (this.entries.length - this.head);
  }

  bytes(): number {
    return HARD_STATE_BYTES + (this.hardState.vote?.length ?? 0) + snapshotBytes(this.snapshot) + this.entryBytesTotal;
  }

  /** Apply one batch: hard state, then snapshot, then entries (PersistBatch semantics). */
  apply(batch: PersistBatch, where: string): void {
    if (batch.hardState !== null) this.hardState = batch.hardState;
    if (batch.snapshot !== null) this.installSnapshot(batch.snapshot, batch.dropEntriesAfterSnapshot, where);
    if (batch.entries.length > 0) this.append(batch.entries, where);
  }

  toPersisted(): PersistedState {
    const entries = this.entries.slice(this.head);
    checkContiguous(entries, this.snapshotIndex + 1, 'load');
    return { hardState: this.hardState, snapshot: this.snapshot, entries };
  }

  clone(): StoredLog {
    return new StoredLog(this.toPersisted());
  }

  private installSnapshot(snapshot: Snapshot, dropEntriesAfter: boolean, where: string): void {
    const index = snapshot.meta.index;
    const previousIndex = this.snapshotIndex;
    if (!(index >= previousIndex)) assert.fail(`disk ${where}: snapshot index ${index} is behind the stored snapshot ${previousIndex}`);
    const live = this.entries.length - this.head;
    const drop = dropEntriesAfter ? live : Math.min(index - previousIndex, live);
    for (let i = this.head; i < this.head + drop; i++) this.entryBytesTotal -= entryBytes(this.entries[i] as Entry);
    this.head += drop;
    this.snapshot = snapshot;
    if (this.head === this.entries.length) {
      this.entries = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.entries.length) {
      // Reclaim the dropped prefix; amortised O(1) per entry.
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    // Entries left must now start right after the snapshot; a compaction past the end leaves none.
    const first = this.entries[this.head];
    if (first !== undefined && first.index !== index + 1) assert.fail(`disk ${where}: after snapshot ${index} the log starts at ${first.index}`);
  }

  private append(entries: readonly Entry[], where: string): void {
    if (entries.length === 0) return;
    const first = (entries[0] as Entry).index;
    checkContiguous(entries, first, where);
    if (!(first >= this.snapshotIndex + 1 && first <= this.lastIndex + 1)) {
      assert.fail(`disk ${where}: entries from ${first} do not fit after snapshot ${this.snapshotIndex} and last index ${this.lastIndex}`);
    }
    const keep = this.head + (first - this.snapshotIndex - 1);
    for (let i = keep; i < this.entries.length; i++) this.entryBytesTotal -= entryBytes(this.entries[i] as Entry);
    this.entries.length = keep;
    for (const entry of entries) {
      this.entries.push(entry);
      this.entryBytesTotal += entryBytes(entry);
    }
  }
}

/** Records a batch is written as: a snapshot mark, one per entry, a hard state. */
const recordCount = (batch: PersistBatch): number => (batch.snapshot === null ? 0 : 1) + batch.entries.length + (batch.hardState === null ? 0 : 1);

/** The first `count` records of a batch, as a batch. */
function prefixOf(batch: PersistBatch, count: number): PersistBatch {
  const hasSnapshot = batch.snapshot !== null;
  const entries = batch.entries.slice(0, Math.max(0, count - (hasSnapshot ? 1 : 0)));
  const whole = count >= recordCount(batch);
  return { hardState: whole ? batch.hardState : null, snapshot: batch.snapshot, dropEntriesAfterSnapshot: batch.dropEntriesAfterSnapshot, entries };
}

function checkContiguous(entries: readonly Entry[], firstIndex: number, where: string): void {
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i] as Entry;
    if (entry.index !== firstIndex + i) assert.fail(`disk ${where}: entry ${i} has index ${entry.index}, expected ${firstIndex + i}`);
    if (i > 0 && entry.term < (entries[i - 1] as Entry).term) assert.fail(`disk ${where}: term goes down at index ${entry.index}`);
  }
}

class PendingWrite {
  synced = false;
  handle: EventHandle | null = null;
  constructor(
    readonly batch: PersistBatch,
    readonly done: (error: Error | null) => void,
  ) {}
}

/**
 * `persist` checks the batch and queues it; at its sync time it becomes
 * durable and `done(null)` is called. Completions happen in persist order. If
 * the node is paused when a sync completes, the data is durable but `done`
 * waits until it resumes. The disk keeps references to the batch's entries:
 * they must not be mutated (they are readonly).
 */
export class SimDisk implements RaftStorage {
  readonly node: NodeId;
  private readonly scheduler: Scheduler;
  private readonly prng: Prng;
  private latency: DiskLatency;
  private durable: StoredLog;
  /** Writes not yet acknowledged; [ackHead, syncHead) are durable and await `done`. */
  private queue: PendingWrite[] = [];
  private ackHead = 0;
  private syncHead = 0;
  private lastCompletionMs = -Infinity;
  /** Pending view bounds, to check each batch when it is persisted. */
  private pendingSnapshotIndex: number;
  private pendingLastIndex: number;
  private readonly syncCompletedBound: (write: PendingWrite) => void;
  private readonly acknowledgeBound: (write: PendingWrite) => void;
  /** Batches persisted, synced and lost to crashes since construction; `torn`: crashes that kept part of an unsynced batch. */
  readonly counts = { persisted: 0, synced: 0, lost: 0, torn: 0 };
  /** Its own stream, so that drawing torn prefixes leaves every other draw of a seed as it was. */
  private readonly tornPrng: Prng;

  constructor(options: SimDiskOptions) {
    this.node = options.node;
    this.scheduler = options.scheduler;
    this.prng = options.prng;
    this.latency = DISK_LATENCY_DEFAULT;
    this.setLatency(options.latency ?? DISK_LATENCY_DEFAULT);
    this.durable = new StoredLog(options.initial ?? emptyPersistedState());
    this.pendingSnapshotIndex = this.durable.snapshotIndex;
    this.pendingLastIndex = this.durable.lastIndex;
    this.tornPrng = options.prng.fork('torn');
    this.syncCompletedBound = (write) => this.syncCompleted(write);
    this.acknowledgeBound = (write) => this.acknowledge(write);
  }

  setLatency(latency: DiskLatency): void {
    assert.ok(latency.syncMsBase >= 0 && latency.syncMsJitter >= 0 && latency.slowSyncMsMax >= 0, 'disk: latencies must be >= 0');
    assert.ok(latency.slowSyncProbability >= 0 && latency.slowSyncProbability <= 1, 'disk: slowSyncProbability must be in [0, 1]');
    this.latency = { ...latency };
  }

  /** The fsync latency new syncs are drawn from. */
  syncLatency(): DiskLatency {
    return { ...this.latency };
  }

  persist(batch: PersistBatch, done: (error: Error | null) => void): void {
    this.checkAgainstPending(batch);
    const write = new PendingWrite(batch, done);
    // Completions stay in order: a batch is durable no earlier than the one before it.
    const completionMs = Math.max(this.lastCompletionMs, this.scheduler.nowMs() + this.drawSyncMs());
    this.lastCompletionMs = completionMs;
    write.handle = this.scheduler.scheduleCall(completionMs, null, this.syncCompletedBound, write, 'disk.sync');
    this.queue.push(write);
    this.counts.persisted++;
  }

  /**
   * The process died: unsynced batches never get their `done`. What reached
   * the disk of them is a prefix of their records in write order (per batch:
   * snapshot mark, entries, hard state), as with the real WAL, whose torn tail
   * ends at the first record a crash cut. Returns how many batches were not
   * kept whole.
   */
  crash(): number {
    const unsynced: PendingWrite[] = [];
    for (let i = this.ackHead; i < this.queue.length; i++) {
      const write = this.queue[i] as PendingWrite;
      if (write.handle !== null) this.scheduler.cancel(write.handle);
      if (!write.synced) unsynced.push(write);
    }
    const records = unsynced.reduce((sum, write) => sum + recordCount(write.batch), 0);
    let keep = records === 0 ? 0 : this.tornPrng.int(records + 1);
    let lost = 0;
    for (const write of unsynced) {
      const count = recordCount(write.batch);
      const kept = Math.min(keep, count);
      keep -= kept;
      if (kept > 0) this.durable.apply(prefixOf(write.batch, kept), `${this.node} torn`);
      if (kept < count) lost++;
      if (kept > 0 && kept < count) this.counts.torn++;
    }
    this.queue = [];
    this.ackHead = 0;
    this.syncHead = 0;
    this.lastCompletionMs = -Infinity;
    this.pendingSnapshotIndex = this.durable.snapshotIndex;
    this.pendingLastIndex = this.durable.lastIndex;
    this.counts.lost += lost;
    return lost;
  }

  /** Exactly the durable state, as a restarting node reads it. */
  load(): PersistedState {
    return this.durable.toPersisted();
  }

  /** What a read through the page cache would see now: durable state plus unsynced batches. O(log); for tests. */
  loadPending(): PersistedState {
    const view = this.durable.clone();
    for (let i = this.syncHead; i < this.queue.length; i++) view.apply((this.queue[i] as PendingWrite).batch, 'pending view');
    return view.toPersisted();
  }

  /** Approximate size of the durable state, bytes. */
  durableBytes(): number {
    return this.durable.bytes();
  }

  /** Batches persisted whose `done` has not been called yet. */
  pendingWrites(): number {
    return this.queue.length - this.ackHead;
  }

  /** Every batch persisted so far is durable (none waiting for its sync). */
  isSynced(): boolean {
    return this.syncHead === this.queue.length;
  }

  private drawSyncMs(): number {
    const latency = this.latency;
    let ms = latency.syncMsBase;
    if (latency.syncMsJitter > 0) ms += latency.syncMsJitter * this.prng.float();
    if (this.prng.chance(latency.slowSyncProbability)) ms += latency.slowSyncMsMax * this.prng.float();
    return ms;
  }

  /** Checks the batch against the pending view's bounds, then moves them (the durable apply checks again). */
  private checkAgainstPending(batch: PersistBatch): void {
    const snapshot = batch.snapshot;
    let snapshotIndex = this.pendingSnapshotIndex;
    let lastIndex = this.pendingLastIndex;
    if (snapshot !== null) {
      const index = snapshot.meta.index;
      if (!(index >= snapshotIndex)) assert.fail(`disk ${this.node}: snapshot ${index} is behind snapshot ${snapshotIndex}`);
      lastIndex = batch.dropEntriesAfterSnapshot ? index : Math.max(lastIndex, index);
      snapshotIndex = index;
    } else {
      // Built only on failure: a template in assert.ok's argument is built for every batch.
      if (batch.dropEntriesAfterSnapshot) assert.fail(`disk ${this.node}: dropEntriesAfterSnapshot without a snapshot`);
    }
    const entries = batch.entries;
    if (entries.length > 0) {
      const first: number = (entries[0] as Entry).index;
      if (!(first > snapshotIndex && first <= lastIndex + 1)) {
        assert.fail(`disk ${this.node}: entries from ${first} leave a gap or overwrite the snapshot (snapshot ${snapshotIndex}, last ${lastIndex})`);
      }
      checkContiguous(entries, first, this.node);
      lastIndex = (entries[entries.length - 1] as Entry).index;
    }
    this.pendingSnapshotIndex = snapshotIndex;
    this.pendingLastIndex = lastIndex;
  }

  private syncCompleted(write: PendingWrite): void {
    if (this.queue[this.syncHead] !== write) assert.fail(`disk ${this.node}: sync completed out of order`);
    const ackWaiting = this.ackHead < this.syncHead;
    this.syncHead++;
    this.durable.apply(write.batch, this.node);
    write.synced = true;
    this.counts.synced++;
    if (this.scheduler.isPaused(this.node) || ackWaiting) {
      // The data is durable; the process learns it when it runs, after earlier acks.
      write.handle = this.scheduler.scheduleCall(this.scheduler.nowMs(), this.node, this.acknowledgeBound, write, 'disk.ack');
    } else {
      write.handle = null;
      this.acknowledge(write);
    }
  }

  private acknowledge(write: PendingWrite): void {
    if (this.queue[this.ackHead] !== write) assert.fail(`disk ${this.node}: acknowledgement out of order`);
    write.handle = null;
    this.ackHead++;
    if (this.ackHead === this.queue.length) {
      this.queue = [];
      this.ackHead = 0;
      this.syncHead = 0;
    } else if (this.ackHead > 1024 && this.ackHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.ackHead);
      this.syncHead -= this.ackHead;
      this.ackHead = 0;
    }
    write.done(null);
  }
}
