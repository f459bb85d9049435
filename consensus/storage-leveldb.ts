// Raft's durable storage on LevelDB: the production RaftStorage, with the same
// PersistBatch semantics as simulator/disk.ts. Each persist is one synced
// LevelDB write (batches queued behind a write in flight are merged into the
// next one), and the directory is checked read-only before LevelDB may rewrite it.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Level } from 'level';
import { emptyPersistedState, type PersistBatch, type PersistedState, type RaftStorage } from './storage.ts';
import type { Entry, EntryType, HardState, LogIndex, NodeId, Snapshot, Term } from './types.ts';

// ---------------------------------------------------------------------------
// Errors: one class per condition, stable names, messages that say what to do.

const RECOVERY_ADVICE = 'restore the directory from a backup, or move it away and rejoin this node as a new member';

/** The data dir is not a LevelDB database, or its files or records do not check out. */
export class StorageCorruptError extends Error {
  override readonly name = 'StorageCorruptError';
  constructor(
    readonly dir: string,
    readonly detail: string,
    cause: unknown,
  ) {
    super(`data dir ${dir} is corrupt or is not a debughost data dir (${oneLine(detail)}); ${RECOVERY_ADVICE}`, { cause });
  }
}

/** Another process (or another LevelStorage in this one) holds the LevelDB LOCK. */
export class StorageLockedError extends Error {
  override readonly name = 'StorageLockedError';
  constructor(
    readonly dir: string,
    cause: unknown,
  ) {
    super(`data dir ${dir} is in use by another debughost process (LOCK held); stop that process or use another --data-dir`, { cause });
  }
}

/** Opening failed for an operating reason other than corruption or the lock (permissions, I/O). */
export class StorageOpenError extends Error {
  override readonly name = 'StorageOpenError';
  constructor(
    readonly dir: string,
    cause: unknown,
  ) {
    super(`could not open data dir ${dir} (${oneLine(describe(cause))}); check that it is readable and writable and that the disk is healthy`, { cause });
  }
}

/** A write failed: what is durable is unknown, so every later persist fails too and the node must stop. */
export class StorageWriteError extends Error {
  override readonly name = 'StorageWriteError';
  constructor(
    readonly dir: string,
    cause: unknown,
  ) {
    super(`writing to data dir ${dir} failed (${oneLine(describe(cause))}); stop this node, check the disk, then restart it`, { cause });
  }
}

/** persist or writeMeta after close(). */
export class StorageClosedError extends Error {
  override readonly name = 'StorageClosedError';
  constructor(readonly dir: string) {
    super(`storage of data dir ${dir} is closed`);
  }
}

const describe = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: unknown }).cause;
  return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message;
};
const oneLine = (text: string): string => text.replace(/\s+/g, ' ').trim();

/** The LevelDB error code under abstract-level's "Database failed to open" wrapper. */
function levelCode(error: unknown): string | null {
  for (let current = error, depth = 0; current instanceof Error && depth < 4; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'LEVEL_DATABASE_NOT_OPEN') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return null;
}

// ---------------------------------------------------------------------------
// Layout. Keys are bytes; every value is binary except meta/identity (JSON).
//   e + u64be index            one log entry: term u64, index u64, type u8, data
//   hardstate                  term u64, commit u64, vote (u8 flag, u16 length, utf8)
//   meta/format                u8 FORMAT_VERSION
//   meta/identity              JSON { clusterId, nodeId }
//   snapshot                   index u64, term u64, voters, learners (u32 count, then u16 length + utf8 each), u32 length + data
// Entries at or before the snapshot index may linger after a compaction (they
// are deleted after the snapshot is durable, not atomically with it); the
// loader ignores them. Entries after it must be contiguous.

const FORMAT_VERSION = 1;
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });
const KEY_HARD_STATE = textEncoder.encode('hardstate');
const KEY_SNAPSHOT = textEncoder.encode('snapshot');
const KEY_META_FORMAT = textEncoder.encode('meta/format');
const KEY_META_IDENTITY = textEncoder.encode('meta/identity');
const ENTRY_KEY_PREFIX = 0x65; // 'e'
const ENTRY_KEY_BYTES = 9;
/** Sorts after every entry key. */
const ENTRY_KEY_END = Uint8Array.of(ENTRY_KEY_PREFIX + 1);
const ENTRY_HEADER_BYTES = 17;
const ENTRY_TYPE_CODES: Readonly<Record<EntryType, number>> = { normal: 0, confChange: 1, empty: 2 };
const ENTRY_TYPES: readonly EntryType[] = ['normal', 'confChange', 'empty'];
const UINT32_RANGE = 2 ** 32;
const STRING_BYTES_MAX = 0xffff;

/** A stored value did not decode; becomes a StorageCorruptError naming the key. */
class DecodeError extends Error {
  override readonly name = 'DecodeError';
}

function writeUint64(view: DataView, offset: number, value: number): void {
  if (!(Number.isSafeInteger(value) && value >= 0)) assert.fail(`storage: ${value} is not a non-negative safe integer`);
  view.setUint32(offset, Math.floor(value / UINT32_RANGE));
  view.setUint32(offset + 4, value >>> 0);
}

export function entryKey(index: number): Uint8Array {
  const key = new Uint8Array(ENTRY_KEY_BYTES);
  key[0] = ENTRY_KEY_PREFIX;
  writeUint64(new DataView(key.buffer), 1, index);
  return key;
}

function decodeEntryKey(key: Uint8Array): number {
  if (key.byteLength !== ENTRY_KEY_BYTES || key[0] !== ENTRY_KEY_PREFIX) throw new DecodeError(`entry key of ${key.byteLength} bytes is malformed`);
  return new Decoder(key.subarray(1), 'entry key').uint64();
}

/** Bounds-checked reads; every failure is a DecodeError. */
class Decoder {
  private offset = 0;
  private readonly view: DataView;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly what: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(length: number): number {
    const at = this.offset;
    if (at + length > this.bytes.byteLength) throw new DecodeError(`${this.what}: ${length} bytes needed at offset ${at} of ${this.bytes.byteLength}`);
    this.offset += length;
    return at;
  }

  uint8(): number {
    return this.view.getUint8(this.need(1));
  }
  uint16(): number {
    return this.view.getUint16(this.need(2));
  }
  uint32(): number {
    return this.view.getUint32(this.need(4));
  }
  uint64(): number {
    const at = this.need(8);
    const high = this.view.getUint32(at);
    if (high > 0x1fffff) throw new DecodeError(`${this.what}: a 64-bit field at offset ${at} exceeds 2^53`);
    return high * UINT32_RANGE + this.view.getUint32(at + 4);
  }
  /** A copy, so the result does not pin LevelDB's buffer and is a plain Uint8Array. */
  bytesCopy(length: number): Uint8Array {
    const at = this.need(length);
    const copy = new Uint8Array(length);
    copy.set(this.bytes.subarray(at, at + length));
    return copy;
  }
  string(): string {
    const length = this.uint16();
    const at = this.need(length);
    try {
      return textDecoder.decode(this.bytes.subarray(at, at + length));
    } catch (error) {
      throw new DecodeError(`${this.what}: invalid UTF-8 at offset ${at}`, { cause: error });
    }
  }
  remaining(): number {
    return this.bytes.byteLength - this.offset;
  }
  end(): void {
    if (this.offset !== this.bytes.byteLength) throw new DecodeError(`${this.what}: ${this.bytes.byteLength - this.offset} unexpected trailing bytes`);
  }
}

/** Writes into a buffer sized up front; `finish` asserts the size was exact. */
class Encoder {
  private offset = 0;
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  constructor(length: number) {
    this.bytes = new Uint8Array(length);
    this.view = new DataView(this.bytes.buffer);
  }
  uint8(value: number): void {
    this.view.setUint8(this.offset, value);
    this.offset += 1;
  }
  uint32(value: number): void {
    this.view.setUint32(this.offset, value);
    this.offset += 4;
  }
  uint64(value: number): void {
    writeUint64(this.view, this.offset, value);
    this.offset += 8;
  }
  raw(bytes: Uint8Array): void {
    this.bytes.set(bytes, this.offset);
    this.offset += bytes.byteLength;
  }
  /** u16 length then the bytes of an already encoded string. */
  string(utf8: Uint8Array): void {
    this.view.setUint16(this.offset, utf8.byteLength);
    this.offset += 2;
    this.raw(utf8);
  }
  finish(): Uint8Array {
    assert.equal(this.offset, this.bytes.byteLength, 'storage: encoder size mismatch');
    return this.bytes;
  }
}

function encodeString(value: string, what: string): Uint8Array {
  const utf8 = textEncoder.encode(value);
  if (utf8.byteLength > STRING_BYTES_MAX) assert.fail(`storage: ${what} is ${utf8.byteLength} bytes, more than ${STRING_BYTES_MAX}`);
  return utf8;
}

export function encodeEntry(entry: Entry): Uint8Array {
  const encoder = new Encoder(ENTRY_HEADER_BYTES + entry.data.byteLength);
  encoder.uint64(entry.term);
  encoder.uint64(entry.index);
  encoder.uint8(ENTRY_TYPE_CODES[entry.type]);
  encoder.raw(entry.data);
  return encoder.finish();
}

function decodeEntry(value: Uint8Array): Entry {
  const decoder = new Decoder(value, 'entry');
  const term = decoder.uint64() as Term;
  const index = decoder.uint64() as LogIndex;
  const typeCode = decoder.uint8();
  const type = ENTRY_TYPES[typeCode];
  if (type === undefined) throw new DecodeError(`entry ${index}: unknown type code ${typeCode}`);
  return { term, index, type, data: decoder.bytesCopy(decoder.remaining()) };
}

function encodeHardState(hardState: HardState): Uint8Array {
  const vote = hardState.vote === null ? null : encodeString(hardState.vote, 'vote');
  const encoder = new Encoder(17 + (vote === null ? 0 : 2 + vote.byteLength));
  encoder.uint64(hardState.term);
  encoder.uint64(hardState.commit);
  encoder.uint8(vote === null ? 0 : 1);
  if (vote !== null) encoder.string(vote);
  return encoder.finish();
}

function decodeHardState(value: Uint8Array): HardState {
  const decoder = new Decoder(value, 'hard state');
  const term = decoder.uint64() as Term;
  const commit = decoder.uint64() as LogIndex;
  const hasVote = decoder.uint8();
  if (hasVote > 1) throw new DecodeError(`hard state: vote flag ${hasVote}`);
  const vote = hasVote === 1 ? (decoder.string() as NodeId) : null;
  decoder.end();
  return { term, vote, commit };
}

function encodeSnapshot(snapshot: Snapshot): Uint8Array {
  const { meta, data } = snapshot;
  const voters = meta.conf.voters.map((id) => encodeString(id, 'voter id'));
  const learners = meta.conf.learners.map((id) => encodeString(id, 'learner id'));
  const idBytes = [...voters, ...learners].reduce((sum, id) => sum + 2 + id.byteLength, 0);
  if (data.byteLength >= UINT32_RANGE) assert.fail(`storage: snapshot data of ${data.byteLength} bytes does not fit a u32 length`);
  const encoder = new Encoder(16 + 4 + 4 + idBytes + 4 + data.byteLength);
  encoder.uint64(meta.index);
  encoder.uint64(meta.term);
  encoder.uint32(voters.length);
  for (const id of voters) encoder.string(id);
  encoder.uint32(learners.length);
  for (const id of learners) encoder.string(id);
  encoder.uint32(data.byteLength);
  encoder.raw(data);
  return encoder.finish();
}

function decodeSnapshot(value: Uint8Array): Snapshot {
  const decoder = new Decoder(value, 'snapshot');
  const index = decoder.uint64() as LogIndex;
  const term = decoder.uint64() as Term;
  const readIds = (): NodeId[] => {
    const count = decoder.uint32();
    // Each id takes at least its 2-byte length: a count beyond that is garbage, not a reason to allocate.
    if (count * 2 > decoder.remaining()) throw new DecodeError(`snapshot: ${count} node ids cannot fit in ${decoder.remaining()} bytes`);
    return Array.from({ length: count }, () => decoder.string() as NodeId);
  };
  const voters = readIds();
  const learners = readIds();
  const data = decoder.bytesCopy(decoder.uint32());
  decoder.end();
  return { meta: { index, term, conf: { voters, learners } }, data };
}

/** Which cluster and node a data dir belongs to; the node refuses a dir of another cluster. */
export interface StorageMeta {
  readonly clusterId: string;
  readonly nodeId: string;
}

function decodeMeta(value: Uint8Array): StorageMeta {
  let parsed: unknown;
  try {
    parsed = JSON.parse(textDecoder.decode(value));
  } catch (error) {
    throw new DecodeError('meta/identity is not JSON', { cause: error });
  }
  const record = parsed as { clusterId?: unknown; nodeId?: unknown } | null;
  if (typeof record?.clusterId !== 'string' || typeof record.nodeId !== 'string') throw new DecodeError('meta/identity lacks clusterId or nodeId');
  return { clusterId: record.clusterId, nodeId: record.nodeId };
}

// ---------------------------------------------------------------------------
// The storage.

export interface LevelStorageOptions {
  /**
   * Sync every write to the device (default true). `false` exists only so a
   * benchmark can show what fsync costs and so the chaos suite can plant a
   * durability bug: acknowledged writes then survive a process kill (they are
   * in the page cache) but not a power loss or kernel crash. Never in production.
   */
  readonly fsync?: boolean;
  /**
   * Called after each LevelDB write with its latency and the number of entries
   * it carried: one call per group commit (for a latency histogram). With
   * `fsync: false` it times an unsynced write.
   */
  readonly onSync?: (ms: number, entries: number) => void;
}

type WriteOp = { readonly type: 'put'; readonly key: Uint8Array; readonly value: Uint8Array } | { readonly type: 'del'; readonly key: Uint8Array };

interface QueuedWrite {
  readonly ops: readonly WriteOp[];
  readonly bytes: number;
  readonly entries: number;
  /** The snapshot index once this batch is durable: stored entries at or before it are stale from then on. */
  readonly snapshotIndex: number;
  readonly done: (error: Error | null) => void;
}

/** A merged write stops growing at this size (a single larger batch still goes alone). */
const WRITE_BYTES_MAX = 16 * 1024 * 1024;
/** The driver keeps one persist in flight; thousands queued means a caller bug. */
const QUEUED_WRITES_MAX = 4096;
/** Entries read per LevelDB iterator call while loading. */
const LOAD_PAGE_ENTRIES = 1024;
/** Rough LevelDB batch framing per operation, for the merge limit only. */
const OP_OVERHEAD_BYTES = 16;

type Database = Level<Uint8Array, Uint8Array>;

/**
 * `open` checks and loads the directory; `load()` is then the state read at
 * open (later persists do not change it: reopen to read them back).
 * `persist` follows PersistBatch exactly: a snapshot drops the entries at or
 * before its index (and, with dropEntriesAfterSnapshot, after it); entries
 * replace stored ones from entries[0].index on, deleting any stored beyond the
 * new last index. One batch is one LevelDB write with one sync; batches
 * persisted while a write is in flight are merged into the next write, and
 * every `done` is called in persist order. A failed write fails that batch
 * and every later one (StorageWriteError): the node must stop.
 */
export class LevelStorage implements RaftStorage {
  readonly dir: string;
  private readonly db: Database;
  private readonly fsync: boolean;
  private readonly onSync: ((ms: number, entries: number) => void) | null;
  private readonly state: PersistedState;
  private identity: StorageMeta | null;
  /** The log as persisted so far, including batches not yet durable (to check batches and compute deletes). */
  private pendingSnapshotIndex: number;
  private pendingLastIndex: number;
  /** Snapshot index of the last durable write. */
  private durableSnapshotIndex: number;
  /** No entry key below this index is stored; [staleFirstIndex, durableSnapshotIndex] may still be. */
  private staleFirstIndex: number;
  private queue: QueuedWrite[] = [];
  private writing = false;
  private clearing = false;
  private metaWrites = 0;
  private closing = false;
  private closed: Promise<void> | null = null;
  private failure: StorageWriteError | null = null;
  private idleWaiters: (() => void)[] = [];

  private constructor(db: Database, dir: string, options: LevelStorageOptions, loaded: LoadedDatabase) {
    this.db = db;
    this.dir = dir;
    this.fsync = options.fsync ?? true;
    this.onSync = options.onSync ?? null;
    this.state = loaded.state;
    this.identity = loaded.identity;
    const snapshotIndex = loaded.state.snapshot?.meta.index ?? 0;
    this.pendingSnapshotIndex = snapshotIndex;
    this.pendingLastIndex = snapshotIndex + loaded.state.entries.length;
    this.durableSnapshotIndex = snapshotIndex;
    this.staleFirstIndex = snapshotIndex + 1;
  }

  /**
   * Open (creating if absent or empty) the LevelDB at `dir` and read it all.
   * Throws StorageCorruptError (not LevelDB, failed checksums, undecodable or
   * non-contiguous records; the files are left as they were),
   * StorageLockedError, or StorageOpenError.
   */
  static async open(dir: string, options: LevelStorageOptions = {}): Promise<LevelStorage> {
    const path = resolve(dir);
    if (await holdsDatabase(path)) await checkBeforeOpen(path);
    const db: Database = new Level<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' });
    try {
      await db.open({ createIfMissing: true });
    } catch (error) {
      throw openError(path, error);
    }
    try {
      const loaded = await loadDatabase(db, path);
      const storage = new LevelStorage(db, path, options, loaded);
      // Entries a crash left behind a snapshot: harmless, but not worth keeping.
      if (loaded.staleFirstIndex !== null) await db.clear({ gte: entryKey(loaded.staleFirstIndex), lt: entryKey(storage.durableSnapshotIndex + 1) });
      return storage;
    } catch (error) {
      await db.close().catch(() => undefined);
      if (error instanceof StorageCorruptError) throw error;
      if (error instanceof DecodeError) throw new StorageCorruptError(path, error.message, error);
      throw openError(path, error);
    }
  }

  /** Everything that was durable when the storage was opened. */
  load(): PersistedState {
    return this.state;
  }

  readMeta(): StorageMeta | null {
    return this.identity;
  }

  /** Record which cluster and node this dir belongs to; synced before it resolves. */
  async writeMeta(meta: StorageMeta): Promise<void> {
    assert.ok(meta.clusterId.length > 0 && meta.nodeId.length > 0, 'storage: clusterId and nodeId must not be empty');
    if (this.closing) throw new StorageClosedError(this.dir);
    if (this.failure !== null) throw this.failure;
    const identity: StorageMeta = { clusterId: meta.clusterId, nodeId: meta.nodeId };
    this.metaWrites++;
    try {
      await this.db.put(KEY_META_IDENTITY, textEncoder.encode(JSON.stringify(identity)), { sync: true });
      this.identity = identity;
    } catch (error) {
      throw new StorageWriteError(this.dir, error);
    } finally {
      this.metaWrites--;
      this.settleIfIdle();
    }
  }

  persist(batch: PersistBatch, done: (error: Error | null) => void): void {
    if (this.closing) return deferDone(done, new StorageClosedError(this.dir));
    if (this.failure !== null) return deferDone(done, this.failure);
    if (this.queue.length >= QUEUED_WRITES_MAX) assert.fail(`storage ${this.dir}: ${this.queue.length} batches queued; the driver keeps one in flight`);
    this.queue.push(this.prepare(batch, done));
    this.pump();
  }

  /** Wait for queued writes and cleanup, then close LevelDB. Idempotent. */
  close(): Promise<void> {
    if (this.closed === null) {
      this.closing = true;
      this.closed = this.whenIdle().then(() => this.db.close());
    }
    return this.closed;
  }

  /** Checks the batch against the log as persisted so far, moves that view, and builds its LevelDB operations. */
  private prepare(batch: PersistBatch, done: (error: Error | null) => void): QueuedWrite {
    const ops: WriteOp[] = [];
    let bytes = 0;
    const put = (key: Uint8Array, value: Uint8Array): void => {
      ops.push({ type: 'put', key, value });
      bytes += OP_OVERHEAD_BYTES + key.byteLength + value.byteLength;
    };
    const deleteEntries = (fromIndex: number, toIndex: number): void => {
      for (let index = fromIndex; index <= toIndex; index++) ops.push({ type: 'del', key: entryKey(index) });
      bytes += Math.max(0, toIndex - fromIndex + 1) * (OP_OVERHEAD_BYTES + ENTRY_KEY_BYTES);
    };
    if (batch.hardState !== null) put(KEY_HARD_STATE, encodeHardState(batch.hardState));
    const snapshot = batch.snapshot;
    if (snapshot !== null) {
      const index: number = snapshot.meta.index;
      if (!(index >= this.pendingSnapshotIndex)) assert.fail(`storage ${this.dir}: snapshot ${index} is behind snapshot ${this.pendingSnapshotIndex}`);
      put(KEY_SNAPSHOT, encodeSnapshot(snapshot));
      // Entries at or before the index go after the snapshot is durable (clearStale); later ones now, atomically.
      if (batch.dropEntriesAfterSnapshot) {
        deleteEntries(index + 1, this.pendingLastIndex);
        this.pendingLastIndex = index;
      } else {
        this.pendingLastIndex = Math.max(this.pendingLastIndex, index);
      }
      this.pendingSnapshotIndex = index;
    } else {
      assert.ok(!batch.dropEntriesAfterSnapshot, `storage ${this.dir}: dropEntriesAfterSnapshot without a snapshot`);
    }
    const entries = batch.entries;
    if (entries.length > 0) {
      const first: number = (entries[0] as Entry).index;
      if (!(first > this.pendingSnapshotIndex && first <= this.pendingLastIndex + 1)) {
        assert.fail(`storage ${this.dir}: entries from ${first} leave a gap or overwrite the snapshot (snapshot ${this.pendingSnapshotIndex}, last ${this.pendingLastIndex})`);
      }
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i] as Entry;
        if (entry.index !== first + i) assert.fail(`storage ${this.dir}: entry ${i} of a batch has index ${entry.index}, expected ${first + i}`);
        put(entryKey(entry.index), encodeEntry(entry));
      }
      const last = first + entries.length - 1;
      // A shorter replacement (conflict truncation) must not leave the old tail behind.
      deleteEntries(last + 1, this.pendingLastIndex);
      this.pendingLastIndex = last;
    }
    return { ops, bytes, entries: entries.length, snapshotIndex: this.pendingSnapshotIndex, done };
  }

  /** Start the next write if none is in flight: every queued batch, up to WRITE_BYTES_MAX, in one synced LevelDB batch. */
  private pump(): void {
    if (this.writing || this.queue.length === 0) return;
    let count = 1;
    let bytes = (this.queue[0] as QueuedWrite).bytes;
    while (count < this.queue.length && bytes + (this.queue[count] as QueuedWrite).bytes <= WRITE_BYTES_MAX) {
      bytes += (this.queue[count] as QueuedWrite).bytes;
      count++;
    }
    const group = this.queue.splice(0, count);
    const ops: WriteOp[] = [];
    let entries = 0;
    for (const write of group) {
      for (const op of write.ops) ops.push(op);
      entries += write.entries;
    }
    this.writing = true;
    const startedMs = performance.now();
    // A chained batch, not db.batch(array): abstract-level copies and re-checks
    // each operation of an array, which cost about a third of the CPU of a
    // group commit of ten entries (measured in docs/performance.md).
    const batch = this.db.batch();
    try {
      for (const op of ops) {
        if (op.type === 'put') batch.put(op.key, op.value);
        else batch.del(op.key);
      }
    } catch (error) {
      void batch.close();
      queueMicrotask(() => this.writeFailed(group, error));
      return;
    }
    // A `done` that throws is a caller bug: it surfaces as an unhandled rejection.
    void batch.write({ sync: this.fsync }).then(
      () => this.written(group, entries, performance.now() - startedMs),
      (error: unknown) => this.writeFailed(group, error),
    );
  }

  private written(group: readonly QueuedWrite[], entries: number, ms: number): void {
    this.writing = false;
    this.durableSnapshotIndex = (group[group.length - 1] as QueuedWrite).snapshotIndex;
    this.onSync?.(ms, entries);
    for (const write of group) write.done(null);
    this.clearStale();
    this.pump();
    this.settleIfIdle();
  }

  private writeFailed(group: readonly QueuedWrite[], cause: unknown): void {
    this.writing = false;
    const failure = new StorageWriteError(this.dir, cause);
    this.failure = failure;
    const failed = [...group, ...this.queue];
    this.queue = [];
    for (const write of failed) write.done(failure);
    this.settleIfIdle();
  }

  /**
   * Delete entries at or before the durable snapshot, in the background. Only
   * after the snapshot is durable: deleting first and crashing would leave the
   * old snapshot followed by a gap.
   */
  private clearStale(): void {
    if (this.clearing || this.failure !== null || this.durableSnapshotIndex < this.staleFirstIndex) return;
    const through = this.durableSnapshotIndex;
    this.clearing = true;
    void this.db.clear({ gte: entryKey(this.staleFirstIndex), lt: entryKey(through + 1) }).then(
      () => {
        this.clearing = false;
        this.staleFirstIndex = through + 1;
        if (!this.closing) this.clearStale();
        this.settleIfIdle();
      },
      () => {
        // Stale entries are ignored by the loader; the next durable write or open retries.
        this.clearing = false;
        this.settleIfIdle();
      },
    );
  }

  private whenIdle(): Promise<void> {
    return new Promise((resolveIdle) => {
      this.idleWaiters.push(resolveIdle);
      this.settleIfIdle();
    });
  }

  private settleIfIdle(): void {
    if (this.writing || this.clearing || this.metaWrites > 0 || this.queue.length > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const waiter of waiters) waiter();
  }
}

/** `done` is never called synchronously from `persist`, errors included. */
function deferDone(done: (error: Error | null) => void, error: Error): void {
  queueMicrotask(() => done(error));
}

// ---------------------------------------------------------------------------
// Loading.

interface LoadedDatabase {
  readonly state: PersistedState;
  readonly identity: StorageMeta | null;
  /** First stored entry index when it is at or before the snapshot (left by a crash), else null. */
  readonly staleFirstIndex: number | null;
}

function corrupt(path: string, detail: string, cause?: unknown): StorageCorruptError {
  return new StorageCorruptError(path, detail, cause ?? new Error(detail));
}

async function loadDatabase(db: Database, path: string): Promise<LoadedDatabase> {
  const format = await db.get(KEY_META_FORMAT);
  if (format === undefined) {
    const anyKey = await db.keys({ limit: 1 }).all();
    if (anyKey.length > 0) throw corrupt(path, 'LevelDB database without a meta/format key: written by another program');
    await db.put(KEY_META_FORMAT, Uint8Array.of(FORMAT_VERSION), { sync: true });
  } else if (format.byteLength !== 1 || format[0] !== FORMAT_VERSION) {
    throw corrupt(path, `stored format ${Array.from(format).join('.')}, while this build reads format ${FORMAT_VERSION}`);
  }
  const hardValue = await db.get(KEY_HARD_STATE);
  const snapshotValue = await db.get(KEY_SNAPSHOT);
  const identityValue = await db.get(KEY_META_IDENTITY);
  const hardState = hardValue === undefined ? emptyPersistedState().hardState : decodeHardState(hardValue);
  const snapshot = snapshotValue === undefined ? null : decodeSnapshot(snapshotValue);
  const identity = identityValue === undefined ? null : decodeMeta(identityValue);
  const snapshotIndex = snapshot?.meta.index ?? 0;

  const firstKey = (await db.keys({ gte: entryKey(0), lt: ENTRY_KEY_END, limit: 1 }).all())[0];
  const firstIndex = firstKey === undefined ? null : decodeEntryKey(firstKey);
  const staleFirstIndex = firstIndex !== null && firstIndex <= snapshotIndex ? firstIndex : null;

  const entries = await loadEntries(db, path, snapshotIndex);
  return { state: { hardState, snapshot, entries }, identity, staleFirstIndex };
}

/** The entries after the snapshot: contiguous from snapshotIndex + 1, keys matching values, terms never going down. */
async function loadEntries(db: Database, path: string, snapshotIndex: number): Promise<Entry[]> {
  const entries: Entry[] = [];
  const iterator = db.iterator({ gt: entryKey(snapshotIndex), lt: ENTRY_KEY_END });
  try {
    for (;;) {
      const page = await iterator.nextv(LOAD_PAGE_ENTRIES);
      if (page.length === 0) break;
      for (const [key, value] of page) {
        const expected = snapshotIndex + 1 + entries.length;
        const keyIndex = decodeEntryKey(key);
        if (keyIndex !== expected) throw corrupt(path, `entry ${expected} is missing but entry ${keyIndex} is stored: a gap in the log after snapshot ${snapshotIndex}`);
        const entry = decodeEntry(value);
        if (entry.index !== keyIndex) throw corrupt(path, `the entry stored under index ${keyIndex} says index ${entry.index}`);
        const previous = entries[entries.length - 1];
        if (previous !== undefined && entry.term < previous.term) throw corrupt(path, `term goes down from ${previous.term} to ${entry.term} at entry ${keyIndex}`);
        entries.push(entry);
      }
    }
  } finally {
    await iterator.close();
  }
  return entries;
}

// ---------------------------------------------------------------------------
// Opening: the lock, and a read-only check of LevelDB's files.
//
// As classic-level configures LevelDB (paranoid_checks and verify_checksums
// off), a corrupt write-ahead-log record is silently dropped on recovery and
// table block checksums are never checked; and any successful open rewrites
// the directory (the log becomes a table, a new MANIFEST replaces the old).
// So before LevelDB opens an existing database we check, reading only, every
// file it would recover from: CURRENT, the MANIFEST, the live tables' block
// checksums and the logs' record checksums. A log truncated mid-record or
// ending in zeros is a write cut off by a crash and is accepted (LevelDB
// ignores that tail: it was never acknowledged); any checksum mismatch is
// refused, as etcd's WAL does, because it may hide an acknowledged write.
// The only files LevelDB touches on a refused open are its text logs LOG and
// LOG.old, which it rotates on every open attempt.

/** Files an interrupted create can leave without CURRENT: no data yet, so the dir is treated as new. */
const FRESH_LEFTOVER = /^(LOCK|LOG|LOG\.old|MANIFEST-\d+|\d+\.dbtmp)$/;

/** True when `path` is an existing LevelDB; false when absent or empty; throws when it is something else. */
async function holdsDatabase(path: string): Promise<boolean> {
  let names: string[];
  try {
    names = await readdir(path);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ENOENT') return false;
    if (code === 'ENOTDIR') throw corrupt(path, 'it is a file, not a directory', error);
    throw new StorageOpenError(path, error);
  }
  if (names.includes('CURRENT')) return true;
  const others = names.filter((name) => !FRESH_LEFTOVER.test(name));
  if (others.length === 0) return false;
  throw corrupt(path, `no CURRENT file, so not a LevelDB database, yet it holds ${others.length} other file(s) such as ${others.sort()[0]}`);
}

async function checkBeforeOpen(path: string): Promise<void> {
  await probeLock(path);
  let problem: string | null;
  try {
    problem = await verifyDatabaseFiles(path);
  } catch (error) {
    // A process that took the lock since the probe may have moved files under us.
    await probeLock(path);
    throw new StorageOpenError(path, error);
  }
  if (problem === null) return;
  await probeLock(path);
  throw corrupt(path, problem);
}

/**
 * Is the LOCK free? LevelDB takes the lock before it checks error_if_exists,
 * so this open fails either way and reads nothing beyond the lock.
 */
async function probeLock(path: string): Promise<void> {
  const probe = new Level(path, { createIfMissing: false, errorIfExists: true });
  try {
    await probe.open();
  } catch (error) {
    if (levelCode(error) === 'LEVEL_LOCKED') throw new StorageLockedError(path, error);
    return;
  }
  await probe.close();
  assert.fail(`storage: the lock probe of ${path} opened the database despite errorIfExists`);
}

function openError(path: string, error: unknown): Error {
  switch (levelCode(error)) {
    case 'LEVEL_LOCKED':
      return new StorageLockedError(path, error);
    case 'LEVEL_CORRUPTION':
      return corrupt(path, `LevelDB: ${describe(error)}`, error);
    default:
      return new StorageOpenError(path, error);
  }
}

/** A problem that makes LevelDB's files unusable, or null when they check out. */
async function verifyDatabaseFiles(path: string): Promise<string | null> {
  const current = (await readFile(join(path, 'CURRENT'))).toString('latin1');
  const match = /^(MANIFEST-\d+)\n$/.exec(current);
  if (match === null) return `CURRENT does not name a manifest (${JSON.stringify(current.slice(0, 40))})`;
  const manifestName = match[1] as string;
  const names = new Set(await readdir(path));
  if (!names.has(manifestName)) return `CURRENT names ${manifestName}, which does not exist`;
  const manifest = readLogRecords(await readFile(join(path, manifestName)));
  if (typeof manifest === 'string') return `${manifestName}: ${manifest}`;
  const version = replayManifest(manifest);
  if (typeof version === 'string') return `${manifestName}: ${version}`;
  for (const table of version.tables.values()) {
    const name = tableFileName(table.number, 'ldb');
    const found = names.has(name) ? name : names.has(tableFileName(table.number, 'sst')) ? tableFileName(table.number, 'sst') : null;
    if (found === null) return `table ${name}, listed in ${manifestName}, is missing`;
    const bytes = await readFile(join(path, found));
    if (bytes.byteLength !== table.size) return `${found} has ${bytes.byteLength} bytes where ${manifestName} says ${table.size}`;
    const problem = verifyTable(bytes);
    if (problem !== null) return `${found}: ${problem}`;
  }
  for (const name of [...names].sort()) {
    const logMatch = /^(\d+)\.log$/.exec(name);
    if (logMatch === null) continue;
    const number = Number(logMatch[1]);
    // The logs LevelDB replays (db_impl.cc Recover); older ones are obsolete.
    if (number < version.logNumber && number !== version.prevLogNumber) continue;
    const records = readLogRecords(await readFile(join(path, name)));
    if (typeof records === 'string') return `${name}: ${records}`;
    const short = records.find((record) => record.byteLength < WRITE_BATCH_HEADER_BYTES);
    if (short !== undefined) return `${name}: a write batch of ${short.byteLength} bytes, shorter than its header`;
  }
  return null;
}

const tableFileName = (number: number, extension: string): string => `${String(number).padStart(6, '0')}.${extension}`;
const WRITE_BATCH_HEADER_BYTES = 12;

// CRC-32C (Castagnoli), as LevelDB stores it: masked. Slicing by 8.
const CRC32C_TABLES: readonly Uint32Array[] = (() => {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256));
  const first = tables[0] as Uint32Array;
  for (let n = 0; n < 256; n++) {
    let crc = n;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
    first[n] = crc >>> 0;
  }
  for (let t = 1; t < 8; t++) {
    const previous = tables[t - 1] as Uint32Array;
    const table = tables[t] as Uint32Array;
    for (let n = 0; n < 256; n++) {
      const value = previous[n] as number;
      table[n] = ((value >>> 8) ^ (first[value & 0xff] as number)) >>> 0;
    }
  }
  return tables;
})();

export function crc32c(bytes: Uint8Array, start = 0, end = bytes.byteLength): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC32C_TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let crc = 0xffffffff;
  let i = start;
  for (; end - i >= 8; i += 8) {
    const low = crc ^ ((bytes[i] as number) | ((bytes[i + 1] as number) << 8) | ((bytes[i + 2] as number) << 16) | ((bytes[i + 3] as number) << 24));
    crc =
      (t7[low & 0xff] as number) ^
      (t6[(low >>> 8) & 0xff] as number) ^
      (t5[(low >>> 16) & 0xff] as number) ^
      (t4[low >>> 24] as number) ^
      (t3[bytes[i + 4] as number] as number) ^
      (t2[bytes[i + 5] as number] as number) ^
      (t1[bytes[i + 6] as number] as number) ^
      (t0[bytes[i + 7] as number] as number);
  }
  for (; i < end; i++) crc = (t0[(crc ^ (bytes[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const CRC_MASK_DELTA = 0xa282ead8;
const unmaskCrc = (masked: number): number => {
  const rotated = (masked - CRC_MASK_DELTA) >>> 0;
  return ((rotated >>> 17) | (rotated << 15)) >>> 0;
};

const readUint32LE = (bytes: Uint8Array, at: number): number =>
  ((bytes[at] as number) | ((bytes[at + 1] as number) << 8) | ((bytes[at + 2] as number) << 16) | ((bytes[at + 3] as number) << 24)) >>> 0;

/** Varints and length-prefixed slices of LevelDB's encodings; null on a malformed or truncated field. */
class VarintReader {
  constructor(
    private readonly bytes: Uint8Array,
    public offset = 0,
    private readonly end = bytes.byteLength,
  ) {}
  get done(): boolean {
    return this.offset >= this.end;
  }
  varint(): number | null {
    let result = 0;
    let multiplier = 1;
    for (let i = 0; i < 10 && this.offset < this.end; i++) {
      const byte = this.bytes[this.offset++] as number;
      result += (byte & 0x7f) * multiplier;
      if (byte < 0x80) return Number.isSafeInteger(result) ? result : null;
      multiplier *= 128;
    }
    return null;
  }
  skip(length: number): boolean {
    if (this.offset + length > this.end) return false;
    this.offset += length;
    return true;
  }
  lengthPrefixed(): boolean {
    const length = this.varint();
    return length !== null && this.skip(length);
  }
}

const LOG_BLOCK_BYTES = 32768;
const LOG_HEADER_BYTES = 7;
/** Physical record types (log_format.h). */
const LogRecordType = { Zero: 0, Full: 1, First: 2, Middle: 3, Last: 4 } as const;

const allZero = (bytes: Uint8Array, from: number): boolean => {
  for (let i = from; i < bytes.byteLength; i++) if (bytes[i] !== 0) return false;
  return true;
};

/**
 * The records of a LevelDB log file (write-ahead log or MANIFEST), or what is
 * wrong with it. Mirrors log_reader.cc, except that it refuses what LevelDB
 * would drop without paranoid_checks.
 */
function readLogRecords(bytes: Uint8Array): Uint8Array[] | string {
  const records: Uint8Array[] = [];
  let fragments: Uint8Array[] | null = null;
  for (let blockStart = 0; blockStart < bytes.byteLength; blockStart += LOG_BLOCK_BYTES) {
    const blockEnd = Math.min(blockStart + LOG_BLOCK_BYTES, bytes.byteLength);
    const lastBlock = blockEnd === bytes.byteLength;
    let offset = blockStart;
    // Fewer than a header's bytes left: the block's zero trailer, or a header cut off at the end of the file.
    while (blockEnd - offset >= LOG_HEADER_BYTES) {
      const length = (bytes[offset + 4] as number) | ((bytes[offset + 5] as number) << 8);
      const type = bytes[offset + 6] as number;
      const recordEnd = offset + LOG_HEADER_BYTES + length;
      if (recordEnd > blockEnd) {
        if (lastBlock) return records; // the writer died mid-record
        return `bad record length ${length} at offset ${offset}`;
      }
      if (type === LogRecordType.Zero && length === 0) {
        // Zeros a crash left at the end of the file; elsewhere LevelDB skips the rest of the block.
        if (allZero(bytes, offset)) return records;
        if (fragments !== null) return `zero record inside a fragmented record at offset ${offset}`;
        break;
      }
      const expected = unmaskCrc(readUint32LE(bytes, offset));
      if (crc32c(bytes, offset + 6, recordEnd) !== expected) return `checksum mismatch in the record at offset ${offset}`;
      const payload = bytes.subarray(offset + LOG_HEADER_BYTES, recordEnd);
      switch (type) {
        case LogRecordType.Full:
        case LogRecordType.First:
          // An empty First at the end of a block before a new record is an old writer's quirk LevelDB accepts.
          if (fragments !== null && fragments.some((fragment) => fragment.byteLength > 0)) return `record at offset ${offset} starts inside an unfinished one`;
          if (type === LogRecordType.Full) {
            records.push(payload);
            fragments = null;
          } else {
            fragments = [payload];
          }
          break;
        case LogRecordType.Middle:
        case LogRecordType.Last:
          if (fragments === null) return `fragment at offset ${offset} has no start`;
          fragments.push(payload);
          if (type === LogRecordType.Last) {
            records.push(concat(fragments));
            fragments = null;
          }
          break;
        default:
          return `unknown record type ${type} at offset ${offset}`;
      }
      offset = recordEnd;
    }
  }
  // A record whose later fragments never made it to disk: an unacknowledged write.
  return records;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

interface ManifestVersion {
  readonly logNumber: number;
  readonly prevLogNumber: number;
  /** Live tables, keyed `level/number`. */
  readonly tables: Map<string, { readonly number: number; readonly size: number }>;
}

const LEVELS = 7;

/** Replays the version edits of a MANIFEST (version_edit.cc tags) into the live files. */
function replayManifest(records: readonly Uint8Array[]): ManifestVersion | string {
  let logNumber: number | null = null;
  let prevLogNumber = 0;
  let hasNextFile = false;
  let hasLastSequence = false;
  const tables = new Map<string, { number: number; size: number }>();
  for (const [editIndex, record] of records.entries()) {
    const reader = new VarintReader(record);
    const bad = (what: string): string => `version edit ${editIndex}: malformed ${what}`;
    while (!reader.done) {
      const tag = reader.varint();
      switch (tag) {
        case 1: // comparator
          if (!reader.lengthPrefixed()) return bad('comparator');
          break;
        case 2: // log number
          logNumber = reader.varint();
          if (logNumber === null) return bad('log number');
          break;
        case 3: // next file number
          if (reader.varint() === null) return bad('next file number');
          hasNextFile = true;
          break;
        case 4: // last sequence
          if (reader.varint() === null) return bad('last sequence');
          hasLastSequence = true;
          break;
        case 5: {
          // compaction pointer
          const level = reader.varint();
          if (level === null || level >= LEVELS || !reader.lengthPrefixed()) return bad('compaction pointer');
          break;
        }
        case 6: {
          // deleted file
          const level = reader.varint();
          const number = reader.varint();
          if (level === null || level >= LEVELS || number === null) return bad('deleted file');
          tables.delete(`${level}/${number}`);
          break;
        }
        case 7: {
          // new file
          const level = reader.varint();
          const number = reader.varint();
          const size = reader.varint();
          if (level === null || level >= LEVELS || number === null || size === null || !reader.lengthPrefixed() || !reader.lengthPrefixed()) return bad('new file');
          tables.set(`${level}/${number}`, { number, size });
          break;
        }
        case 9: {
          // previous log number
          const number = reader.varint();
          if (number === null) return bad('previous log number');
          prevLogNumber = number;
          break;
        }
        default:
          return `version edit ${editIndex}: unknown tag ${tag}`;
      }
    }
  }
  if (logNumber === null || !hasNextFile || !hasLastSequence) return 'no log number, next file number or last sequence: not a complete manifest';
  return { logNumber, prevLogNumber, tables };
}

const TABLE_FOOTER_BYTES = 48;
const TABLE_MAGIC_LOW = 0x8b80fb57;
const TABLE_MAGIC_HIGH = 0xdb477524;
const BLOCK_TRAILER_BYTES = 5;
const BLOCK_UNCOMPRESSED = 0;
const BLOCK_SNAPPY = 1;

interface BlockHandle {
  readonly offset: number;
  readonly size: number;
}

/** Checks a table's footer and every block's checksum (table/format.cc); null when it checks out. */
function verifyTable(bytes: Uint8Array): string | null {
  if (bytes.byteLength < TABLE_FOOTER_BYTES) return `${bytes.byteLength} bytes, too short for a table footer`;
  const footer = bytes.byteLength - TABLE_FOOTER_BYTES;
  if (readUint32LE(bytes, footer + 40) !== TABLE_MAGIC_LOW || readUint32LE(bytes, footer + 44) !== TABLE_MAGIC_HIGH) return 'bad table magic number';
  const reader = new VarintReader(bytes, footer, bytes.byteLength);
  const metaindex = readHandle(reader);
  const index = readHandle(reader);
  if (metaindex === null || index === null) return 'malformed footer';
  for (const [what, handle] of [['metaindex', metaindex] as const, ['index', index] as const]) {
    const contents = readBlock(bytes, handle, footer);
    if (typeof contents === 'string') return `${what} block: ${contents}`;
    const children = blockValues(contents);
    if (typeof children === 'string') return `${what} block: ${children}`;
    for (const value of children) {
      const child = readHandle(new VarintReader(value));
      if (child === null) return `${what} block: malformed block handle`;
      const problem = readBlock(bytes, child, footer);
      if (typeof problem === 'string') return `block at offset ${child.offset}: ${problem}`;
    }
  }
  return null;
}

function readHandle(reader: VarintReader): BlockHandle | null {
  const offset = reader.varint();
  const size = reader.varint();
  return offset === null || size === null ? null : { offset, size };
}

/** A block's contents (decompressed) after its checksum checks out, or the problem. */
function readBlock(bytes: Uint8Array, handle: BlockHandle, limit: number): Uint8Array | string {
  const end = handle.offset + handle.size;
  if (end + BLOCK_TRAILER_BYTES > limit) return `extends past the end of the data (${end + BLOCK_TRAILER_BYTES} > ${limit})`;
  const expected = unmaskCrc(readUint32LE(bytes, end + 1));
  if (crc32c(bytes, handle.offset, end + 1) !== expected) return 'block checksum mismatch';
  const contents = bytes.subarray(handle.offset, end);
  switch (bytes[end]) {
    case BLOCK_UNCOMPRESSED:
      return contents;
    case BLOCK_SNAPPY:
      return snappyDecompress(contents) ?? 'corrupt snappy-compressed contents';
    default:
      return `bad block type ${bytes[end]}`;
  }
}

/** The values of a block's entries (table/block.cc); keys are skipped. */
function blockValues(block: Uint8Array): Uint8Array[] | string {
  if (block.byteLength < 4) return 'too short for a restart count';
  const restarts = readUint32LE(block, block.byteLength - 4);
  const dataEnd = block.byteLength - 4 * (restarts + 1);
  if (restarts === 0 || dataEnd < 0) return `bad restart count ${restarts}`;
  const values: Uint8Array[] = [];
  const reader = new VarintReader(block, 0, dataEnd);
  while (!reader.done) {
    const shared = reader.varint();
    const unshared = reader.varint();
    const valueLength = reader.varint();
    if (shared === null || unshared === null || valueLength === null || !reader.skip(unshared)) return 'malformed entry';
    const start = reader.offset;
    if (!reader.skip(valueLength)) return 'entry value past the end of the block';
    values.push(block.subarray(start, start + valueLength));
  }
  return values;
}

/** Raw snappy (the format LevelDB compresses blocks with); null when malformed. */
export function snappyDecompress(input: Uint8Array): Uint8Array | null {
  const header = new VarintReader(input);
  const length = header.varint();
  if (length === null || length > 64 * 1024 * 1024) return null;
  const out = new Uint8Array(length);
  let at = header.offset;
  let written = 0;
  while (at < input.byteLength) {
    const tag = input[at++] as number;
    let copyLength: number;
    let distance: number;
    switch (tag & 3) {
      case 0: {
        let literal = tag >>> 2;
        if (literal >= 60) {
          const lengthBytes = literal - 59;
          if (at + lengthBytes > input.byteLength) return null;
          literal = 0;
          for (let i = 0; i < lengthBytes; i++) literal += (input[at + i] as number) * 2 ** (8 * i);
          at += lengthBytes;
        }
        literal += 1;
        if (at + literal > input.byteLength || written + literal > length) return null;
        out.set(input.subarray(at, at + literal), written);
        at += literal;
        written += literal;
        continue;
      }
      case 1:
        if (at + 1 > input.byteLength) return null;
        copyLength = ((tag >>> 2) & 7) + 4;
        distance = ((tag >>> 5) << 8) | (input[at] as number);
        at += 1;
        break;
      case 2:
        if (at + 2 > input.byteLength) return null;
        copyLength = (tag >>> 2) + 1;
        distance = (input[at] as number) | ((input[at + 1] as number) << 8);
        at += 2;
        break;
      default:
        if (at + 4 > input.byteLength) return null;
        copyLength = (tag >>> 2) + 1;
        distance = readUint32LE(input, at);
        at += 4;
    }
    if (distance === 0 || distance > written || written + copyLength > length) return null;
    // Byte by byte: a copy may overlap what it is producing.
    for (let i = 0; i < copyLength; i++) out[written + i] = out[written - distance + i] as number;
    written += copyLength;
  }
  return written === length ? out : null;
}
