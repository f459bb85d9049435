// Binary encodings of what Raft persists: hard state, snapshot (meta and
// data), log entries and the node's identity. Shared by the WAL and the
// snapshot store; every decode is bounds-checked and fails with a DecodeError.
import assert from 'node:assert/strict';
import type { Entry, EntryType, HardState, LogIndex, NodeId, Snapshot, Term } from './types.ts';

export const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });
const ENTRY_HEADER_BYTES = 17;
const ENTRY_TYPE_CODES: Readonly<Record<EntryType, number>> = { normal: 0, confChange: 1, empty: 2 };
const ENTRY_TYPES: readonly EntryType[] = ['normal', 'confChange', 'empty'];
const UINT32_RANGE = 2 ** 32;
const STRING_BYTES_MAX = 0xffff;

/** A stored value did not decode; becomes a StorageCorruptError naming the key. */
export class DecodeError extends Error {
  override readonly name = 'DecodeError';
}

export function writeUint64(view: DataView, offset: number, value: number): void {
  if (!(Number.isSafeInteger(value) && value >= 0)) assert.fail(`storage: ${value} is not a non-negative safe integer`);
  view.setUint32(offset, Math.floor(value / UINT32_RANGE));
  view.setUint32(offset + 4, value >>> 0);
}

/** Bounds-checked reads; every failure is a DecodeError. */
export class Decoder {
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
export class Encoder {
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

export function decodeEntry(value: Uint8Array): Entry {
  const decoder = new Decoder(value, 'entry');
  const term = decoder.uint64() as Term;
  const index = decoder.uint64() as LogIndex;
  const typeCode = decoder.uint8();
  const type = ENTRY_TYPES[typeCode];
  if (type === undefined) throw new DecodeError(`entry ${index}: unknown type code ${typeCode}`);
  return { term, index, type, data: decoder.bytesCopy(decoder.remaining()) };
}

export function encodeHardState(hardState: HardState): Uint8Array {
  const vote = hardState.vote === null ? null : encodeString(hardState.vote, 'vote');
  const encoder = new Encoder(17 + (vote === null ? 0 : 2 + vote.byteLength));
  encoder.uint64(hardState.term);
  encoder.uint64(hardState.commit);
  encoder.uint8(vote === null ? 0 : 1);
  if (vote !== null) encoder.string(vote);
  return encoder.finish();
}

export function decodeHardState(value: Uint8Array): HardState {
  const decoder = new Decoder(value, 'hard state');
  const term = decoder.uint64() as Term;
  const commit = decoder.uint64() as LogIndex;
  const hasVote = decoder.uint8();
  if (hasVote > 1) throw new DecodeError(`hard state: vote flag ${hasVote}`);
  const vote = hasVote === 1 ? (decoder.string() as NodeId) : null;
  decoder.end();
  return { term, vote, commit };
}

export function encodeSnapshot(snapshot: Snapshot): Uint8Array {
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

export function decodeSnapshot(value: Uint8Array): Snapshot {
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

export function decodeMeta(value: Uint8Array): StorageMeta {
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
