// The production RaftStorage: the log and hard state in a write-ahead log
// (wal.ts), snapshots and the node's identity in LevelDB (snapshot-store.ts).
// PersistBatch semantics as simulator/disk.ts. Batches persisted while a write
// is in flight are merged into the next one (group commit): one O_DSYNC write,
// one thread-pool hop, per group. Within a batch the records go snapshot mark,
// entries, hard state, so a write cut short by a crash leaves a prefix that is
// itself a valid state (never a commit index past the entries it names).
//
// What `done(null)` promises: every record of the batch and of all earlier
// batches is on the device (O_DSYNC write returned; a snapshot's LevelDB put
// was synced before its mark was written). A crash (process or power) loses at
// most batches whose `done` has not run, and of those keeps a prefix in order.
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { nodeFileIo, type FileIo } from './file-io.ts';
import { SnapshotStore } from './snapshot-store.ts';
import type { StorageMeta } from './storage-codec.ts';
import { emptyPersistedState, type PersistBatch, type PersistedState, type RaftStorage } from './storage.ts';
import { isOutOfSpace, StorageClosedError, StorageCorruptError, StorageFullError, StorageWriteError } from './storage-errors.ts';
import type { Clock, Entry, TimerHandle } from './types.ts';
import { Wal } from './wal.ts';

export interface WalStorageOptions {
  /**
   * Sync every write (default true). `false` exists only so a benchmark can
   * show what syncing costs and so the chaos suite can plant a durability bug:
   * acknowledged writes then survive a process kill (they are in the page
   * cache) but not a power loss. Never in production.
   */
  readonly fsync?: boolean;
  /** Called after each group write with its latency and the number of entries it carried. */
  readonly onSync?: (ms: number, entries: number) => void;
  /** Called when the disk fills (with the error) and when writes can go on again (null). */
  readonly onFull?: (error: StorageFullError | null) => void;
  /** Bytes of each preallocated WAL segment (default WAL_SEGMENT_BYTES_DEFAULT). */
  readonly segmentBytes?: number;
  readonly clock: Clock;
  /** The file system; tests give one that can lose unsynced writes. */
  readonly io?: FileIo;
}

/**
 * 16 MiB: about 55,000 entries of 256-byte values between rotations, and a
 * zero-fill of a new segment short enough (tens of ms) to hide behind writes.
 * etcd uses 64 MB; smaller keeps a test node's footprint small.
 */
export const WAL_SEGMENT_BYTES_DEFAULT = 16 * 1024 * 1024;
/** How often a write held up by a full disk is tried again. */
export const FULL_RETRY_MS = 1_000;
/** A merged write stops growing at this size (a single larger batch still goes alone). */
const WRITE_BYTES_MAX = 4 * 1024 * 1024;
/** The driver keeps one persist in flight; thousands queued means a caller bug. */
const QUEUED_WRITES_MAX = 4096;
/** Room a snapshot needs on the disk beyond its own bytes (LevelDB writes it twice: log, then table). */
const SNAPSHOT_ROOM_FACTOR = 3;

interface QueuedWrite {
  readonly batch: PersistBatch;
  readonly done: (error: Error | null) => void;
}

export class WalStorage implements RaftStorage {
  readonly dir: string;
  private snapshots: SnapshotStore;
  private readonly wal: Wal;
  private readonly options: WalStorageOptions;
  private readonly state: PersistedState;
  private readonly io: FileIo;
  /** The log as persisted so far, including batches not yet durable (to check batches). */
  private pendingSnapshotIndex: number;
  private pendingLastIndex: number;
  private queue: QueuedWrite[] = [];
  private writing = false;
  private closing = false;
  private closed: Promise<void> | null = null;
  private failure: StorageWriteError | null = null;
  private idleWaiters: (() => void)[] = [];
  private walFull: StorageFullError | null = null;
  private snapshotFull: StorageFullError | null = null;
  private retryTimer: TimerHandle | null = null;
  private cleaning = false;

  private constructor(dir: string, snapshots: SnapshotStore, wal: Wal, state: PersistedState, options: WalStorageOptions, io: FileIo) {
    this.dir = dir;
    this.snapshots = snapshots;
    this.wal = wal;
    this.state = state;
    this.options = options;
    this.io = io;
    const snapshotIndex = state.snapshot?.meta.index ?? 0;
    this.pendingSnapshotIndex = snapshotIndex;
    this.pendingLastIndex = snapshotIndex + state.entries.length;
  }

  /**
   * Open the storage of a node's data dir: LevelDB in `dir`/raft, the WAL in
   * `dir`/wal. Throws StorageCorruptError (the files are left as they were,
   * except a torn WAL tail, which is zeroed), StorageLockedError,
   * StorageOpenError or StorageFullError.
   */
  static async open(dir: string, options: WalStorageOptions): Promise<WalStorage> {
    const path = resolve(dir);
    const io = options.io ?? nodeFileIo;
    const raftDir = join(path, 'raft');
    const walDir = join(path, 'wal');
    // Everything is read and checked before anything is written, so a refused directory stays as it was.
    await SnapshotStore.verify(raftDir);
    let onFull: (error: StorageFullError | null) => void = () => undefined;
    const walOptions = {
      segmentBytes: options.segmentBytes ?? WAL_SEGMENT_BYTES_DEFAULT,
      durable: options.fsync ?? true,
      io,
      clock: options.clock,
      fullRetryMs: FULL_RETRY_MS,
      onFull: (error: StorageFullError | null) => onFull(error),
    };
    let scan = await Wal.scan(walDir, walOptions);
    const snapshots = await SnapshotStore.open(raftDir);
    try {
      const legacy = snapshots.legacy ? await snapshots.legacyState() : null;
      if (legacy !== null) {
        // A migration a crash interrupted starts over: format 1 still holds everything.
        for (const name of await io.list(walDir)) await io.remove(join(walDir, name));
        scan = await Wal.scan(walDir, walOptions);
      }
      const replay = scan.replay;
      let state: PersistedState;
      if (legacy !== null) {
        state = legacy;
      } else {
        const mark = replay.snapshot;
        const snapshot = mark === null ? null : await snapshots.get(mark.index);
        if (mark !== null && (snapshot === null || snapshot.meta.term !== mark.term)) {
          throw new StorageCorruptError(path, `the WAL names snapshot ${mark.index} of term ${mark.term}, which ${join(path, 'raft')} does not hold`, new Error('snapshot missing'));
        }
        state = { hardState: replay.hardState ?? emptyPersistedState().hardState, snapshot, entries: replay.entries };
      }
      const wal = await scan.open();
      const storage = new WalStorage(path, snapshots, wal, state, options, io);
      onFull = (error) => storage.walFullChanged(error);
      if (legacy !== null) await storage.migrate(legacy);
      else if (state.snapshot !== null) void storage.snapshots.deleteExcept(state.snapshot.meta.index).catch(() => undefined);
      return storage;
    } catch (error) {
      await snapshots.close().catch(() => undefined);
      throw error;
    }
  }

  /** Write format 1's state into the WAL, then retire format 1. */
  private async migrate(legacy: PersistedState): Promise<void> {
    const persisted = new Promise<void>((resolveWrite, reject) =>
      this.persistUnchecked({ hardState: legacy.hardState, snapshot: legacy.snapshot, dropEntriesAfterSnapshot: legacy.snapshot !== null, entries: legacy.entries }, (error) =>
        error === null ? resolveWrite() : reject(error),
      ),
    );
    await persisted;
    await this.snapshots.finishMigration();
  }

  /** Everything that was durable when the storage was opened. */
  load(): PersistedState {
    return this.state;
  }

  readMeta(): StorageMeta | null {
    return this.snapshots.readMeta();
  }

  /** Record which cluster and node this dir belongs to; synced before it resolves. */
  writeMeta(meta: StorageMeta): Promise<void> {
    if (this.closing) return Promise.reject(new StorageClosedError(this.dir));
    return this.snapshots.writeMeta(meta);
  }

  /** Set while the disk has no room for the next WAL segment or snapshot; writes wait meanwhile. */
  /** WAL segments this storage sealed because they were full, since it opened. */
  get walRotations(): number {
    return this.wal.rotations;
  }

  get full(): StorageFullError | null {
    return this.walFull ?? this.snapshotFull;
  }

  persist(batch: PersistBatch, done: (error: Error | null) => void): void {
    if (this.closing) return deferDone(done, new StorageClosedError(this.dir));
    if (this.failure !== null) return deferDone(done, this.failure);
    this.check(batch);
    this.persistUnchecked(batch, done);
  }

  private persistUnchecked(batch: PersistBatch, done: (error: Error | null) => void): void {
    if (this.queue.length >= QUEUED_WRITES_MAX) assert.fail(`storage ${this.dir}: ${this.queue.length} batches queued; the driver keeps one in flight`);
    this.queue.push({ batch, done });
    this.pump();
  }

  /** Wait for queued writes, then close the WAL and LevelDB. Idempotent. */
  close(): Promise<void> {
    if (this.closed === null) {
      this.closing = true;
      if (this.retryTimer !== null) this.options.clock.clearTimer(this.retryTimer);
      // Writes waiting for space would wait forever: fail them.
      if (this.full !== null) {
        const error = new StorageClosedError(this.dir);
        this.wal.failBlocked(error);
        if (this.retryTimer !== null) this.writing = false;
        this.failQueued(error);
      }
      this.closed = this.whenIdle().then(async () => {
        await this.wal.close();
        await this.snapshots.close();
      });
    }
    return this.closed;
  }

  /** Checks the batch against the log as persisted so far and moves that view: a malformed batch is a driver bug. */
  private check(batch: PersistBatch): void {
    const snapshot = batch.snapshot;
    if (snapshot !== null) {
      const index: number = snapshot.meta.index;
      if (!(index >= this.pendingSnapshotIndex)) assert.fail(`storage ${this.dir}: snapshot ${index} is behind snapshot ${this.pendingSnapshotIndex}`);
      this.pendingLastIndex = batch.dropEntriesAfterSnapshot ? index : Math.max(this.pendingLastIndex, index);
      this.pendingSnapshotIndex = index;
    } else {
      assert.ok(!batch.dropEntriesAfterSnapshot, `storage ${this.dir}: dropEntriesAfterSnapshot without a snapshot`);
    }
    const entries = batch.entries;
    if (entries.length === 0) return;
    const first: number = (entries[0] as Entry).index;
    if (!(first > this.pendingSnapshotIndex && first <= this.pendingLastIndex + 1)) {
      assert.fail(`storage ${this.dir}: entries from ${first} leave a gap or overwrite the snapshot (snapshot ${this.pendingSnapshotIndex}, last ${this.pendingLastIndex})`);
    }
    for (let i = 1; i < entries.length; i++) {
      if ((entries[i] as Entry).index !== first + i) assert.fail(`storage ${this.dir}: entry ${i} of a batch has index ${(entries[i] as Entry).index}, expected ${first + i}`);
    }
    this.pendingLastIndex = first + entries.length - 1;
  }

  /** Start the next write if none is in flight: queued batches, up to WRITE_BYTES_MAX, in one WAL write. */
  private pump(): void {
    if (this.writing || this.queue.length === 0 || (this.closing && this.full !== null)) return;
    this.writing = true;
    const head = this.queue[0] as QueuedWrite;
    if (head.batch.snapshot !== null) {
      this.putSnapshot(head.batch.snapshot.data.byteLength, head);
      return;
    }
    this.writeGroup();
  }

  /** A snapshot goes to LevelDB (synced) before the WAL records its mark. */
  private putSnapshot(bytes: number, head: QueuedWrite): void {
    const snapshot = head.batch.snapshot;
    assert.ok(snapshot !== null);
    void (async () => {
      // LevelDB refuses every write after one fails until it is reopened: avoid the failure when we can see it coming.
      const free = await this.io.freeBytes(this.dir);
      if (free !== null && free < bytes * SNAPSHOT_ROOM_FACTOR) throw Object.assign(new Error(`${free} bytes free, a snapshot of ${bytes} needs ${bytes * SNAPSHOT_ROOM_FACTOR}`), { code: 'ENOSPC' });
      await this.snapshots.put(snapshot);
    })().then(
      () => {
        if (this.snapshotFull !== null) this.setSnapshotFull(null);
        this.writeGroup();
      },
      (error: unknown) => {
        if (!isOutOfSpace(error)) return this.writeFailed(new StorageWriteError(this.dir, error));
        this.setSnapshotFull(new StorageFullError(this.dir, error));
        this.writing = false;
        this.retryTimer = this.options.clock.setTimer(FULL_RETRY_MS, () => {
          this.retryTimer = null;
          void this.snapshots.reopen().then(
            (reopened) => {
              this.snapshots = reopened;
              this.pump();
            },
            (reopenError: unknown) => this.writeFailed(new StorageWriteError(this.dir, reopenError)),
          );
        });
      },
    );
  }

  private writeGroup(): void {
    let count = 0;
    let entries = 0;
    let snapshotIndex: number | null = null;
    this.wal.begin();
    for (const { batch } of this.queue) {
      // A later snapshot needs its own LevelDB put first; the group stops before it.
      if (batch.snapshot !== null && count > 0) break;
      if (count > 0 && this.wal.groupBytes >= WRITE_BYTES_MAX) break;
      if (batch.snapshot !== null) {
        this.wal.snapshot({ index: batch.snapshot.meta.index, term: batch.snapshot.meta.term, dropEntriesAfter: batch.dropEntriesAfterSnapshot });
        snapshotIndex = batch.snapshot.meta.index;
      }
      for (const entry of batch.entries) this.wal.entry(entry);
      if (batch.hardState !== null) this.wal.hardState(batch.hardState);
      entries += batch.entries.length;
      count++;
    }
    const group = this.queue.splice(0, count);
    const startedMs = performance.now();
    this.wal.commit((error) => {
      if (error !== null) return this.writeFailed(error instanceof StorageWriteError ? error : new StorageWriteError(this.dir, error), group);
      this.writing = false;
      this.options.onSync?.(performance.now() - startedMs, entries);
      for (const write of group) write.done(null);
      if (snapshotIndex !== null) this.cleanUp(snapshotIndex);
      this.pump();
      this.settleIfIdle();
    });
  }

  /** Once a snapshot's mark is durable, older segments and snapshots can go. */
  private cleanUp(snapshotIndex: number): void {
    this.wal.release(snapshotIndex);
    if (this.cleaning) return;
    this.cleaning = true;
    void this.snapshots
      .deleteExcept(snapshotIndex)
      .catch(() => undefined)
      .finally(() => {
        this.cleaning = false;
        this.settleIfIdle();
      });
  }

  private writeFailed(failure: StorageWriteError, group: readonly QueuedWrite[] = []): void {
    this.writing = false;
    this.failure = failure;
    this.failQueued(failure, group);
  }

  private failQueued(error: Error, group: readonly QueuedWrite[] = []): void {
    const failed = [...group, ...this.queue];
    this.queue = [];
    for (const write of failed) write.done(error);
    this.settleIfIdle();
  }

  private walFullChanged(error: StorageFullError | null): void {
    const before = this.full;
    this.walFull = error;
    if ((before === null) !== (this.full === null)) this.options.onFull?.(this.full);
  }

  private setSnapshotFull(error: StorageFullError | null): void {
    const before = this.full;
    this.snapshotFull = error;
    if ((before === null) !== (this.full === null)) this.options.onFull?.(this.full);
  }

  private whenIdle(): Promise<void> {
    return new Promise((resolveIdle) => {
      this.idleWaiters.push(resolveIdle);
      this.settleIfIdle();
    });
  }

  private settleIfIdle(): void {
    if (this.writing || this.cleaning || this.queue.length > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const waiter of waiters) waiter();
  }
}

/** `done` is never called synchronously from `persist`, errors included. */
function deferDone(done: (error: Error | null) => void, error: Error): void {
  queueMicrotask(() => done(error));
}
