// The WAL's record framing, writer and reader, without I/O. A frame is
//   u32le length of the payload, u32le CRC-32C of the payload, payload, zeros to a multiple of 8
// and the payload starts with a record type byte. Frames are 8-byte aligned, so
// a frame header never straddles a 512-byte sector: a header is either written
// whole or still zero. Zero where a header should be ends the data of a segment.
import assert from 'node:assert/strict';
import { crc32c } from './crc32c.ts';
import type { Entry, EntryType, HardState, LogIndex, NodeId, Term } from './types.ts';

export const FRAME_HEADER_BYTES = 8;
const FRAME_ALIGN_BYTES = 8;
/** The unit a disk writes atomically; a torn write leaves whole sectors zero. */
export const SECTOR_BYTES = 512;
/** A record longer than this is garbage, not a record (an append is at most 1 MiB; a hard state a few bytes). */
export const RECORD_BYTES_MAX = 64 * 1024 * 1024;

export const RecordType = { Segment: 1, Entry: 2, HardState: 3, Snapshot: 4, Seal: 5 } as const;
type RecordTypeCode = (typeof RecordType)[keyof typeof RecordType];

const ENTRY_TYPE_CODES: Readonly<Record<EntryType, number>> = { normal: 0, confChange: 1, empty: 2 };
const ENTRY_TYPES: readonly EntryType[] = ['normal', 'confChange', 'empty'];
const UINT32_RANGE = 2 ** 32;
/** type u8, term u64, index u64, entry type u8. */
const ENTRY_FIXED_BYTES = 18;
const VOTE_BYTES_MAX = 0xffff;
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

const pad = (bytes: number): number => (bytes + FRAME_ALIGN_BYTES - 1) & ~(FRAME_ALIGN_BYTES - 1);
/** Bytes a record of `payloadBytes` takes in the file. */
export const frameBytes = (payloadBytes: number): number => FRAME_HEADER_BYTES + pad(payloadBytes);
export const entryFrameBytes = (entry: Entry): number => frameBytes(ENTRY_FIXED_BYTES + entry.data.byteLength);
/** A seal or segment header: type u8, seq u64. */
export const SEQ_FRAME_BYTES = frameBytes(9);
/** type u8, index u64, term u64, drop-after flag u8. */
const SNAPSHOT_PAYLOAD_BYTES = 18;
export const SNAPSHOT_FRAME_BYTES = frameBytes(SNAPSHOT_PAYLOAD_BYTES);

/** A snapshot as the WAL knows it: where it is, and whether it replaced the log after it. */
export interface SnapshotMark {
  readonly index: LogIndex;
  readonly term: Term;
  readonly dropEntriesAfter: boolean;
}

/**
 * Frames appended into one growing buffer, reused for every group (only one
 * group is written at a time). Each writer method frames one record.
 */
export class FrameWriter {
  private buffer = new Uint8Array(64 * 1024);
  private view = new DataView(this.buffer.buffer);
  length = 0;

  reset(): void {
    this.length = 0;
  }

  get bytes(): Uint8Array {
    return this.buffer;
  }

  private reserve(payloadBytes: number): number {
    const total = frameBytes(payloadBytes);
    if (this.length + total > this.buffer.byteLength) {
      let capacity = this.buffer.byteLength * 2;
      while (capacity < this.length + total) capacity *= 2;
      const grown = new Uint8Array(capacity);
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
      this.view = new DataView(grown.buffer);
    }
    const at = this.length;
    // Padding must be zero: the buffer is reused.
    this.buffer.fill(0, at + FRAME_HEADER_BYTES + payloadBytes, at + total);
    this.length += total;
    return at;
  }

  private seal(at: number, payloadBytes: number): void {
    const start = at + FRAME_HEADER_BYTES;
    this.view.setUint32(at, payloadBytes, true);
    this.view.setUint32(at + 4, crc32c(this.buffer, start, start + payloadBytes), true);
  }

  private uint64(offset: number, value: number): void {
    if (!(Number.isSafeInteger(value) && value >= 0)) assert.fail(`wal: ${value} is not a non-negative safe integer`);
    this.view.setUint32(offset, value >>> 0, true);
    this.view.setUint32(offset + 4, Math.floor(value / UINT32_RANGE), true);
  }

  entry(entry: Entry): void {
    const payloadBytes = ENTRY_FIXED_BYTES + entry.data.byteLength;
    const at = this.reserve(payloadBytes);
    const start = at + FRAME_HEADER_BYTES;
    this.buffer[start] = RecordType.Entry;
    this.uint64(start + 1, entry.term);
    this.uint64(start + 9, entry.index);
    this.buffer[start + 17] = ENTRY_TYPE_CODES[entry.type];
    this.buffer.set(entry.data, start + ENTRY_FIXED_BYTES);
    this.seal(at, payloadBytes);
  }

  hardState(hardState: HardState): void {
    const vote = hardState.vote === null ? null : textEncoder.encode(hardState.vote);
    if (vote !== null && vote.byteLength > VOTE_BYTES_MAX) assert.fail(`wal: vote of ${vote.byteLength} bytes`);
    const payloadBytes = 1 + 8 + 8 + 1 + (vote === null ? 0 : 2 + vote.byteLength);
    const at = this.reserve(payloadBytes);
    const start = at + FRAME_HEADER_BYTES;
    this.buffer[start] = RecordType.HardState;
    this.uint64(start + 1, hardState.term);
    this.uint64(start + 9, hardState.commit);
    this.buffer[start + 17] = vote === null ? 0 : 1;
    if (vote !== null) {
      this.view.setUint16(start + 18, vote.byteLength, true);
      this.buffer.set(vote, start + 20);
    }
    this.seal(at, payloadBytes);
  }

  snapshot(mark: SnapshotMark): void {
    const at = this.reserve(SNAPSHOT_PAYLOAD_BYTES);
    const start = at + FRAME_HEADER_BYTES;
    this.buffer[start] = RecordType.Snapshot;
    this.uint64(start + 1, mark.index);
    this.uint64(start + 9, mark.term);
    this.buffer[start + 17] = mark.dropEntriesAfter ? 1 : 0;
    this.seal(at, SNAPSHOT_PAYLOAD_BYTES);
  }

  /** The first record of a segment (type Segment) or its last (Seal): the segment's sequence number. */
  sequence(type: typeof RecordType.Segment | typeof RecordType.Seal, seq: number): void {
    const at = this.reserve(9);
    this.buffer[at + FRAME_HEADER_BYTES] = type;
    this.uint64(at + FRAME_HEADER_BYTES + 1, seq);
    this.seal(at, 9);
  }
}

export type WalRecord =
  | { readonly type: typeof RecordType.Segment | typeof RecordType.Seal; readonly seq: number }
  | { readonly type: typeof RecordType.Entry; readonly entry: Entry }
  | { readonly type: typeof RecordType.HardState; readonly hardState: HardState }
  | { readonly type: typeof RecordType.Snapshot; readonly mark: SnapshotMark };

/** How the records of a segment end. */
export type SegmentEnd =
  /** A Seal record: the segment is complete. */
  | { readonly kind: 'sealed'; readonly offset: number }
  /** Zeros where the next header would be (or the file's end): the data ends here. */
  | { readonly kind: 'zeros'; readonly offset: number }
  /** A frame with a sector still zero: a write cut off by a crash, never acknowledged. */
  | { readonly kind: 'torn'; readonly offset: number; readonly detail: string }
  /** A frame that fails its checksum with every sector written: damage, not a crash. */
  | { readonly kind: 'corrupt'; readonly offset: number; readonly detail: string };

export interface ScannedSegment {
  readonly records: WalRecord[];
  readonly end: SegmentEnd;
}

/** Bounds-checked little-endian reads of one payload; a failure is a malformed record. */
class PayloadReader {
  constructor(
    private readonly bytes: Uint8Array,
    private readonly view: DataView,
    private offset: number,
    private readonly end: number,
  ) {}
  private need(length: number): number {
    const at = this.offset;
    if (at + length > this.end) throw new MalformedRecord(`${length} bytes needed at ${at - this.end} from the payload's end`);
    this.offset += length;
    return at;
  }
  uint8(): number {
    return this.bytes[this.need(1)] as number;
  }
  uint16(): number {
    return this.view.getUint16(this.need(2), true);
  }
  uint64(): number {
    const at = this.need(8);
    const high = this.view.getUint32(at + 4, true);
    if (high > 0x1fffff) throw new MalformedRecord('a 64-bit field exceeds 2^53');
    return high * UINT32_RANGE + this.view.getUint32(at, true);
  }
  rest(): Uint8Array {
    const at = this.offset;
    this.offset = this.end;
    return this.bytes.slice(at, this.end);
  }
  string(length: number): string {
    const at = this.need(length);
    try {
      return textDecoder.decode(this.bytes.subarray(at, at + length));
    } catch {
      throw new MalformedRecord('invalid UTF-8');
    }
  }
  done(): void {
    if (this.offset !== this.end) throw new MalformedRecord(`${this.end - this.offset} unexpected trailing bytes`);
  }
}

class MalformedRecord extends Error {
  override readonly name = 'MalformedRecord';
}

function decodeRecord(bytes: Uint8Array, view: DataView, start: number, end: number): WalRecord {
  const reader = new PayloadReader(bytes, view, start, end);
  const type = reader.uint8() as RecordTypeCode;
  switch (type) {
    case RecordType.Segment:
    case RecordType.Seal: {
      const seq = reader.uint64();
      reader.done();
      return { type, seq };
    }
    case RecordType.Entry: {
      const term = reader.uint64() as Term;
      const index = reader.uint64() as LogIndex;
      const code = reader.uint8();
      const entryType = ENTRY_TYPES[code];
      if (entryType === undefined) throw new MalformedRecord(`entry ${index} has unknown type code ${code}`);
      return { type, entry: { term, index, type: entryType, data: reader.rest() } };
    }
    case RecordType.HardState: {
      const term = reader.uint64() as Term;
      const commit = reader.uint64() as LogIndex;
      const hasVote = reader.uint8();
      if (hasVote > 1) throw new MalformedRecord(`vote flag ${hasVote}`);
      const vote = hasVote === 1 ? (reader.string(reader.uint16()) as NodeId) : null;
      reader.done();
      return { type, hardState: { term, vote, commit } };
    }
    case RecordType.Snapshot: {
      const index = reader.uint64() as LogIndex;
      const term = reader.uint64() as Term;
      const drop = reader.uint8();
      if (drop > 1) throw new MalformedRecord(`drop flag ${drop}`);
      reader.done();
      return { type, mark: { index, term, dropEntriesAfter: drop === 1 } };
    }
    default:
      throw new MalformedRecord(`unknown record type ${String(type)}`);
  }
}

/** True when some sector-aligned piece of [start, end) is all zeros: the write never reached it. */
export function hasZeroSector(bytes: Uint8Array, start: number, end: number): boolean {
  let pieceStart = start;
  while (pieceStart < end) {
    const pieceEnd = Math.min(end, (Math.floor(pieceStart / SECTOR_BYTES) + 1) * SECTOR_BYTES);
    let zero = true;
    for (let i = pieceStart; i < pieceEnd; i++) {
      if (bytes[i] !== 0) {
        zero = false;
        break;
      }
    }
    if (zero) return true;
    pieceStart = pieceEnd;
  }
  return false;
}

/** Every record of a segment's bytes, and how they end. */
export function scanSegment(bytes: Uint8Array): ScannedSegment {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: WalRecord[] = [];
  let offset = 0;
  for (;;) {
    if (offset + FRAME_HEADER_BYTES > bytes.byteLength) return { records, end: { kind: 'zeros', offset } };
    const length = view.getUint32(offset, true);
    const crc = view.getUint32(offset + 4, true);
    if (length === 0 && crc === 0) return { records, end: { kind: 'zeros', offset } };
    const start = offset + FRAME_HEADER_BYTES;
    const next = offset + frameBytes(length);
    // A header is written whole, so its length is the one the writer gave: past the file is damage.
    if (length === 0 || length > RECORD_BYTES_MAX || next > bytes.byteLength) {
      return { records, end: { kind: 'corrupt', offset, detail: `a record header at offset ${offset} gives length ${length}, past the end of the segment` } };
    }
    if (crc32c(bytes, start, start + length) !== crc) {
      const torn = hasZeroSector(bytes, start, start + length);
      const detail = `the record at offset ${offset} fails its checksum`;
      return { records, end: torn ? { kind: 'torn', offset, detail } : { kind: 'corrupt', offset, detail } };
    }
    let record: WalRecord;
    try {
      record = decodeRecord(bytes, view, start, start + length);
    } catch (error) {
      if (!(error instanceof MalformedRecord)) throw error;
      return { records, end: { kind: 'corrupt', offset, detail: `the record at offset ${offset} passes its checksum but is malformed: ${error.message}` } };
    }
    records.push(record);
    offset = next;
    if (record.type === RecordType.Seal) return { records, end: { kind: 'sealed', offset } };
  }
}

/** Offset just past the last non-zero byte of `bytes` at or after `from`; `from` when all zero. */
export function dataEnd(bytes: Uint8Array, from: number): number {
  for (let i = bytes.byteLength - 1; i >= from; i--) if (bytes[i] !== 0) return i + 1;
  return from;
}
