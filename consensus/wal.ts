// The Raft log on disk: an append-only write-ahead log of CRC-framed records
// (wal-records.ts) in preallocated, zero-filled segment files, as etcd's WAL.
// One group of records is written at a time, with O_DSYNC, at the end of the
// current segment; a group never spans two segments. A full segment is sealed
// (a Seal record, synced) only once the next one exists, so every segment but
// the last with data ends in a Seal; the next segment opens with a Segment
// record restating the latest snapshot mark and hard state, so old segments can
// be deleted once a snapshot covers them.
//
// Recovery reads every segment. A record that fails its checksum while one of
// its sectors is still zero is a write a crash cut off: it was never
// acknowledged (its sync never returned), so the log ends there, and the rest
// of the segment is zeroed before anything new is written. A checksum failure
// with every sector written, a missing Seal, or a gap in the log is damage:
// the node refuses to start rather than forget acknowledged entries.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { FileIo, WritableFile } from './file-io.ts';
import { isOutOfSpace, StorageCorruptError, StorageFullError, StorageWriteError } from './storage-errors.ts';
import type { Clock, Entry, HardState, TimerHandle } from './types.ts';
import { dataEnd, FrameWriter, RecordType, scanSegment, SEQ_FRAME_BYTES, SNAPSHOT_FRAME_BYTES, type SnapshotMark, type WalRecord } from './wal-records.ts';

export interface WalOptions {
  /** Bytes of each preallocated segment file. */
  readonly segmentBytes: number;
  /** Sync every write (O_DSYNC). False only for benchmarks and tests that plant a durability bug. */
  readonly durable: boolean;
  readonly io: FileIo;
  readonly clock: Clock;
  /** How often the next segment is tried again while the disk is full. */
  readonly fullRetryMs: number;
  /** Called when the disk fills (with the error) and when space returns (null). */
  readonly onFull?: (error: StorageFullError | null) => void;
}

/** A WAL read and checked, not yet opened for writing. */
export interface WalScan {
  readonly replay: WalReplay;
  /** Repair a torn tail, ready the segments, open the current one. */
  open(): Promise<Wal>;
}

/** What the WAL held at open. */
export interface WalReplay {
  readonly hardState: HardState | null;
  /** The latest snapshot mark: the snapshot store must hold this snapshot. */
  readonly snapshot: SnapshotMark | null;
  /** Entries after the snapshot (from index 1 without one), contiguous. */
  readonly entries: Entry[];
}

interface Segment {
  readonly seq: number;
  readonly path: string;
  readonly size: number;
  /** Where the next frame goes. */
  position: number;
  /** Highest entry index written to it: it may go once a durable snapshot covers this. */
  maxEntryIndex: number;
  file: WritableFile | null;
}

/** Smallest segment: room for a header, a few records and the seal. */
export const SEGMENT_BYTES_MIN = 64 * 1024;
const SEGMENT_NAME = /^([0-9a-f]{16})\.wal$/;
const TEMPORARY_NAME = /\.tmp$/;
/** Segments are created in whole pages. */
const PAGE_BYTES = 4096;

export const segmentName = (seq: number): string => `${seq.toString(16).padStart(16, '0')}.wal`;

export class Wal {
  private readonly frames = new FrameWriter();
  private readonly header = new FrameWriter();
  /** Oldest first; the last one is the one being written. */
  private readonly segments: Segment[];
  /** Prepared (zero-filled, empty) and waiting to become current. */
  private next: Segment | null = null;
  private preparing: Promise<void> | null = null;
  private writing = false;
  private releasing = false;
  private closed = false;
  private failure: StorageWriteError | null = null;
  full: StorageFullError | null = null;
  /** Segments sealed by this instance because they were full (a figure for tests and metrics). */
  rotations = 0;
  private retryTimer: TimerHandle | null = null;
  /** A group waiting for room (the disk is full): retried when the next segment exists, failed if that cannot be. */
  private blocked: { readonly retry: () => void; readonly fail: (error: Error) => void } | null = null;
  private latestHardState: HardState | null;
  private latestMark: SnapshotMark | null;
  /** Of the group being framed. */
  private groupMaxEntryIndex = 0;
  private groupHardState: HardState | null = null;
  private groupMark: SnapshotMark | null = null;

  private constructor(
    private readonly dir: string,
    private readonly options: WalOptions,
    segments: Segment[],
    replay: WalReplay,
  ) {
    this.segments = segments;
    this.latestHardState = replay.hardState;
    this.latestMark = replay.snapshot;
  }

  /**
   * Read and check the WAL in `dir` without changing anything (so that a
   * refused directory is left as it was); `open` on the result then repairs a
   * torn tail and readies the segments for writing.
   */
  static async scan(dir: string, options: WalOptions): Promise<WalScan> {
    assert.ok(Number.isSafeInteger(options.segmentBytes) && options.segmentBytes >= SEGMENT_BYTES_MIN, `wal: segmentBytes must be >= ${SEGMENT_BYTES_MIN}`);
    const io = options.io;
    const names = await io.list(dir);
    const others = names.filter((name) => !SEGMENT_NAME.test(name) && !TEMPORARY_NAME.test(name));
    if (others.length > 0) throw corrupt(dir, `the WAL directory holds ${others.length} file(s) that are not segments, such as ${others.sort()[0]}`);
    const seqs = names.map((name) => SEGMENT_NAME.exec(name)?.[1]).filter((hex): hex is string => hex !== undefined).map((hex) => Number.parseInt(hex, 16)).sort((a, b) => a - b);
    for (let i = 1; i < seqs.length; i++) {
      if (seqs[i] !== (seqs[i - 1] as number) + 1) throw corrupt(dir, `segment ${segmentName((seqs[i - 1] as number) + 1)} is missing between ${segmentName(seqs[i - 1] as number)} and ${segmentName(seqs[i] as number)}`);
    }
    const loaded: { segment: Segment; records: WalRecord[]; end: ReturnType<typeof scanSegment>['end']; bytes: Uint8Array }[] = [];
    for (const seq of seqs) {
      const path = join(dir, segmentName(seq));
      const bytes = await io.read(path);
      const { records, end } = scanSegment(bytes);
      loaded.push({ segment: { seq, path, size: bytes.byteLength, position: end.offset, maxEntryIndex: 0, file: null }, records, end, bytes });
    }
    // Segments with data come first; after them only prepared ones, all zeros.
    // A torn first write counts as data: the segment is where writing stopped.
    // So does one whose first sector never made it but later ones did.
    const holdsData = (each: (typeof loaded)[number]): boolean => each.records.length > 0 || each.end.kind !== 'zeros' || dataEnd(each.bytes, 0) > 0;
    let withData = loaded.length;
    while (withData > 0 && !holdsData(loaded[withData - 1] as (typeof loaded)[number])) withData--;
    const replayer = new Replayer(dir);
    /** [start, end) of the last segment a cut-off write left dirty. */
    let torn: { path: string; start: number; end: number } | null = null;
    for (let i = 0; i < loaded.length; i++) {
      const { segment, records, end, bytes } = loaded[i] as (typeof loaded)[number];
      const name = segmentName(segment.seq);
      if (i >= withData) {
        if (end.kind !== 'zeros' || dataEnd(bytes, 0) !== 0) throw corrupt(dir, `${name} follows the last segment with records but is not empty`);
        continue;
      }
      if (end.kind === 'corrupt') throw corrupt(dir, `${name}: ${end.detail}`);
      const first = records[0];
      const tornAtStart = first === undefined && (end.kind === 'torn' || end.kind === 'zeros');
      if (!tornAtStart && (first?.type !== RecordType.Segment || first.seq !== segment.seq)) throw corrupt(dir, `${name} does not start with its own segment record`);
      const last = i === withData - 1;
      if (!last && end.kind !== 'sealed') throw corrupt(dir, `${name} ends without a seal (${end.kind === 'torn' ? end.detail : 'zeros'}) although later segments hold records`);
      if (end.kind === 'sealed' && dataEnd(bytes, end.offset) !== end.offset) throw corrupt(dir, `${name} has data after its seal`);
      for (const record of records) replayer.record(record, name);
      segment.maxEntryIndex = replayer.maxEntryIndexSeen;
      replayer.maxEntryIndexSeen = 0;
      const stale = dataEnd(bytes, end.offset);
      if (last && end.kind !== 'sealed' && stale > end.offset) torn = { path: segment.path, start: end.offset, end: stale };
    }
    const replay = replayer.finish();
    return {
      replay,
      open: async () => {
        await io.mkdirp(dir);
        for (const name of names.filter((each) => TEMPORARY_NAME.test(each))) await io.remove(join(dir, name));
        // Zero whatever a cut-off write left, so that the next writes start on a clean slate.
        if (torn !== null) await zeroRange(io, torn.path, torn.start, torn.end);
        const segments = loaded.slice(0, withData).map((each) => each.segment);
        const lastWithData = segments[segments.length - 1];
        const sealed = lastWithData !== undefined && loaded[withData - 1]?.end.kind === 'sealed';
        const wal = new Wal(dir, options, segments, replay);
        const spare = loaded.slice(withData).map((each) => each.segment);
        // The current segment: the last with data unless sealed, else a prepared one, else a new one.
        if (lastWithData === undefined || sealed) {
          const current = spare.shift() ?? (await wal.createSegment((lastWithData?.seq ?? 0) + 1, options.segmentBytes));
          segments.push(current);
        }
        // Keep one prepared spare; more (a crash between preparations) are removed.
        wal.next = spare.shift() ?? null;
        for (const extra of spare) await io.remove(extra.path);
        const current = segments[segments.length - 1] as Segment;
        current.file = await io.open(current.path, options.durable);
        return wal;
      },
    };
  }

  // ---- framing a group ------------------------------------------------------

  /** Start framing a group; only when no write is in flight. */
  begin(): void {
    assert.ok(!this.writing, 'wal: begin while a write is in flight');
    this.frames.reset();
    this.groupMaxEntryIndex = 0;
    this.groupHardState = null;
    this.groupMark = null;
  }

  entry(entry: Entry): void {
    this.frames.entry(entry);
    if (entry.index > this.groupMaxEntryIndex) this.groupMaxEntryIndex = entry.index;
  }

  hardState(hardState: HardState): void {
    this.frames.hardState(hardState);
    this.groupHardState = hardState;
  }

  snapshot(mark: SnapshotMark): void {
    this.frames.snapshot(mark);
    this.groupMark = mark;
  }

  get groupBytes(): number {
    return this.frames.length;
  }

  /**
   * Write the framed group; `done(null)` once it is durable. On a full disk
   * the write waits and is retried (the `full` error is set meanwhile); any
   * other failure is final: this and every later write fail.
   */
  commit(done: (error: Error | null) => void): void {
    assert.ok(!this.writing, 'wal: commit while a write is in flight');
    if (this.failure !== null) return queueMicrotask(() => done(this.failure));
    this.writing = true;
    this.place(done);
  }

  private place(done: (error: Error | null) => void): void {
    const current = this.segments[this.segments.length - 1] as Segment;
    const headerBytes = current.position === 0 ? this.frameHeader(current.seq) : 0;
    const need = headerBytes + this.frames.length + SEQ_FRAME_BYTES;
    if (current.position + need <= current.size) {
      this.writeGroup(current, headerBytes, done);
      return;
    }
    this.rotate(headerOnlyBytes(this.latestHardState) + this.frames.length + SEQ_FRAME_BYTES, () => this.place(done), done);
  }

  /** Frames the segment header into `this.header`; returns its size. */
  private frameHeader(seq: number): number {
    this.header.reset();
    this.header.sequence(RecordType.Segment, seq);
    // Restated without dropping: the entries it dropped are gone from what follows.
    if (this.latestMark !== null) this.header.snapshot({ ...this.latestMark, dropEntriesAfter: false });
    if (this.latestHardState !== null) this.header.hardState(this.latestHardState);
    return this.header.length;
  }

  private writeGroup(segment: Segment, headerBytes: number, done: (error: Error | null) => void): void {
    let bytes = this.frames.bytes;
    let length = this.frames.length;
    if (headerBytes > 0) {
      bytes = new Uint8Array(headerBytes + length);
      bytes.set(this.header.bytes.subarray(0, headerBytes));
      bytes.set(this.frames.bytes.subarray(0, length), headerBytes);
      length += headerBytes;
    }
    const file = segment.file;
    assert.ok(file !== null, 'wal: the current segment is not open');
    const position = segment.position;
    this.writeAt(file, bytes, length, position, (error) => {
      if (error !== null) return this.writeFailed(error, () => this.writeGroup(segment, headerBytes, done), done);
      segment.position = position + length;
      if (this.groupMaxEntryIndex > segment.maxEntryIndex) segment.maxEntryIndex = this.groupMaxEntryIndex;
      if (this.groupMark !== null) this.latestMark = this.groupMark;
      if (this.groupHardState !== null) this.latestHardState = this.groupHardState;
      this.writing = false;
      if (this.next === null && segment.position * 2 > segment.size) this.prepareNext();
      done(null);
    });
  }

  /** The planted-bug tests override this to acknowledge before the bytes are durable. */
  protected writeAt(file: WritableFile, bytes: Uint8Array, length: number, position: number, done: (error: Error | null) => void): void {
    file.write(bytes, length, position, done);
  }

  private writeFailed(error: Error, retry: () => void, done: (error: Error | null) => void): void {
    if (this.closed) return done(error);
    if (isOutOfSpace(error)) {
      // Only a write past the preallocated space can hit this (a file system that does not keep it).
      this.setFull(new StorageFullError(this.dir, error));
      this.blocked = { retry, fail: done };
      this.scheduleRetry();
      return;
    }
    this.failure = new StorageWriteError(this.dir, error);
    this.writing = false;
    done(this.failure);
  }

  /** Seal the current segment once the next exists, then continue in it. */
  private rotate(bytesNeeded: number, then: () => void, done: (error: Error | null) => void): void {
    const size = Math.max(this.options.segmentBytes, roundUp(bytesNeeded + SNAPSHOT_FRAME_BYTES + SEQ_FRAME_BYTES, PAGE_BYTES));
    if (this.next !== null && this.next.size < size) {
      // Too small for this group: an oversize segment just for it (the spare is reused later).
      void this.options.io.remove(this.next.path).catch(() => undefined);
      this.next = null;
    }
    if (this.next === null) {
      this.blocked = { retry: () => this.rotate(bytesNeeded, then, done), fail: done };
      this.prepareNext(size);
      return;
    }
    const next = this.next;
    const current = this.segments[this.segments.length - 1] as Segment;
    const file = current.file as WritableFile;
    // An unused segment gets its header before the seal: every segment with records starts with one.
    if (current.position === 0) this.frameHeader(current.seq);
    else this.header.reset();
    this.header.sequence(RecordType.Seal, current.seq);
    const seal = this.header.bytes.slice(0, this.header.length);
    this.writeAt(file, seal, seal.byteLength, current.position, (error) => {
      if (error !== null) return this.writeFailed(error, () => this.rotate(bytesNeeded, then, done), done);
      current.position += seal.byteLength;
      current.file = null;
      this.rotations++;
      void file.close().catch(() => undefined);
      this.next = null;
      this.options.io.open(next.path, this.options.durable).then(
        (opened) => {
          next.file = opened;
          this.segments.push(next);
          then();
        },
        (openError: unknown) => this.writeFailed(openError as Error, () => undefined, done),
      );
    });
  }

  private prepareNext(size = this.options.segmentBytes): void {
    if (this.preparing !== null || this.closed) return;
    const last = this.segments[this.segments.length - 1] as Segment;
    const seq = last.seq + 1;
    this.preparing = this.createSegment(seq, size).then(
      (segment) => {
        this.preparing = null;
        if (this.closed) return;
        this.next = segment;
        if (this.full !== null) this.setFull(null);
        const blocked = this.blocked;
        this.blocked = null;
        blocked?.retry();
      },
      (error: unknown) => {
        this.preparing = null;
        if (this.closed) return;
        if (isOutOfSpace(error)) {
          this.setFull(new StorageFullError(this.dir, error));
          this.scheduleRetry(size);
          return;
        }
        // Any other failure to create a file: the disk or the directory is broken.
        const failure = new StorageWriteError(this.dir, error);
        this.failure = failure;
        const blocked = this.blocked;
        this.blocked = null;
        if (blocked !== null) {
          this.writing = false;
          blocked.fail(failure);
        }
      },
    );
  }

  private scheduleRetry(size = this.options.segmentBytes): void {
    if (this.retryTimer !== null || this.closed) return;
    this.retryTimer = this.options.clock.setTimer(this.options.fullRetryMs, () => {
      this.retryTimer = null;
      if (this.closed) return;
      if (this.next === null) {
        this.prepareNext(size);
        return;
      }
      // The spare exists; a blocked write failed for space on its own: try it again.
      const blocked = this.blocked;
      this.blocked = null;
      this.setFull(null);
      blocked?.retry();
    });
  }

  private setFull(error: StorageFullError | null): void {
    this.full = error;
    this.options.onFull?.(error);
  }

  private async createSegment(seq: number, size: number): Promise<Segment> {
    const path = join(this.dir, segmentName(seq));
    await this.options.io.createZeroed(path, size);
    return { seq, path, size, position: 0, maxEntryIndex: 0, file: null };
  }

  // ---- cleanup ----------------------------------------------------------------

  /**
   * Delete the oldest segments whose entries are all at or before a durable
   * snapshot. Only whole sealed segments before the current one go; the
   * current one restates the snapshot mark, so it survives in what remains.
   */
  release(snapshotIndex: number): void {
    if (this.releasing || this.closed) return;
    const doomed: Segment[] = [];
    for (let i = 0; i < this.segments.length - 1; i++) {
      const segment = this.segments[i] as Segment;
      if (segment.maxEntryIndex > snapshotIndex) break;
      doomed.push(segment);
    }
    // The latest mark must lie in what remains: it is in the current segment's header or after it.
    if (doomed.length === 0 || this.latestMark === null || this.latestMark.index < snapshotIndex) return;
    this.releasing = true;
    void (async () => {
      try {
        for (const segment of doomed) {
          await this.options.io.remove(segment.path);
          this.segments.splice(this.segments.indexOf(segment), 1);
        }
        await this.options.io.syncDir(this.dir);
      } catch {
        // Left for the next release: a leftover old segment is harmless.
      } finally {
        this.releasing = false;
      }
    })();
  }

  /** Fail a write that waits for space (the storage is closing). */
  failBlocked(error: Error): void {
    const blocked = this.blocked;
    this.blocked = null;
    if (blocked === null) return;
    this.writing = false;
    blocked.fail(error);
  }

  /** Segment files held, oldest first (for tests and metrics). */
  segmentCount(): number {
    return this.segments.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer !== null) this.options.clock.clearTimer(this.retryTimer);
    await this.preparing?.catch(() => undefined);
    const current = this.segments[this.segments.length - 1];
    if (current?.file !== null && current?.file !== undefined) {
      const file = current.file;
      current.file = null;
      await file.close();
    }
  }
}

const roundUp = (value: number, unit: number): number => Math.ceil(value / unit) * unit;
/** A new segment's header: segment record, snapshot mark, hard state (vote ids are short). */
const headerOnlyBytes = (hardState: HardState | null): number => SEQ_FRAME_BYTES + SNAPSHOT_FRAME_BYTES + (hardState === null ? 0 : 64 + (hardState.vote?.length ?? 0) * 3);

function corrupt(dir: string, detail: string): StorageCorruptError {
  return new StorageCorruptError(dir, detail, new Error(detail));
}

async function zeroRange(io: FileIo, path: string, start: number, end: number): Promise<void> {
  const file = await io.open(path, true);
  try {
    await new Promise<void>((resolveWrite, reject) => file.write(new Uint8Array(end - start), end - start, start, (error) => (error === null ? resolveWrite() : reject(error))));
  } finally {
    await file.close();
  }
}

/**
 * Replays records into the log they describe. An entry at or below the last
 * index replaces the suffix from there (a conflict truncation); a snapshot mark
 * drops the entries it covers (and with dropEntriesAfter, every entry).
 */
class Replayer {
  private hardState: HardState | null = null;
  private mark: SnapshotMark | null = null;
  private entries: Entry[] = [];
  /** Index of entries[0]. */
  private base = 0;
  /** Where entries were missing, until a later snapshot mark covers the gap. */
  private gap: string | null = null;
  maxEntryIndexSeen = 0;

  constructor(private readonly dir: string) {}

  private get lastIndex(): number {
    return this.entries.length === 0 ? (this.mark?.index ?? 0) : this.base + this.entries.length - 1;
  }

  record(record: WalRecord, where: string): void {
    switch (record.type) {
      case RecordType.Segment:
      case RecordType.Seal:
        return;
      case RecordType.HardState:
        this.hardState = record.hardState;
        return;
      case RecordType.Snapshot:
        this.snapshot(record.mark, where);
        return;
      case RecordType.Entry:
        this.entry(record.entry, where);
        return;
      default: {
        const never: never = record;
        return never;
      }
    }
  }

  private snapshot(mark: SnapshotMark, where: string): void {
    if (this.mark !== null && mark.index < this.mark.index) throw corrupt(this.dir, `${where}: snapshot ${mark.index} follows snapshot ${this.mark.index}`);
    this.mark = mark;
    if (!mark.dropEntriesAfter && this.entries.length > 0 && this.base > mark.index + 1) {
      // Entries between the mark and the log are missing: fine if a later mark covers them (a
      // segment header restates an older mark after the segments that held them were deleted).
      this.gap ??= `${where}: entries ${mark.index + 1}..${this.base - 1} are missing after snapshot ${mark.index}`;
      return;
    }
    this.gap = null;
    this.entries = mark.dropEntriesAfter ? [] : this.entries.slice(Math.min(this.entries.length, mark.index + 1 - this.base));
    this.base = mark.index + 1;
  }

  private entry(entry: Entry, where: string): void {
    const index: number = entry.index;
    if (index > this.maxEntryIndexSeen) this.maxEntryIndexSeen = index;
    if (this.mark !== null && index <= this.mark.index) throw corrupt(this.dir, `${where}: entry ${index} follows snapshot ${this.mark.index}`);
    if (this.entries.length === 0 && this.mark === null) {
      // The first entry seen (older segments may have been deleted): the log starts here.
      this.base = index;
    } else if (index > this.lastIndex + 1) {
      // Entries in deleted segments, below a segment header's restated (older) snapshot mark:
      // harmless only if a later mark covers them, which finish() checks.
      this.gap ??= `${where}: entry ${index} follows entry ${this.lastIndex}: entries are missing`;
      this.entries = [];
      this.base = index;
    } else if (index < this.base) {
      // A truncation below the oldest entry kept (older ones were in deleted segments).
      this.entries = [];
      this.base = index;
    }
    this.entries.length = index - this.base;
    const previous = this.entries[this.entries.length - 1];
    if (previous !== undefined && entry.term < previous.term) throw corrupt(this.dir, `${where}: the term goes down from ${previous.term} to ${entry.term} at entry ${index}`);
    this.entries.push(entry);
  }

  finish(): WalReplay {
    if (this.gap !== null) throw corrupt(this.dir, `${this.gap}, and no later snapshot covers them`);
    if (this.mark === null && this.entries.length > 0 && this.base !== 1) {
      throw corrupt(this.dir, `the log starts at entry ${this.base} without a snapshot before it: entries are missing`);
    }
    return { hardState: this.hardState, snapshot: this.mark, entries: this.entries };
  }
}
