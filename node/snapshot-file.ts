// The backup file `debughost snapshot save` writes and `snapshot restore`
// reads: a small JSON header saying where and when it was taken, the KV state
// machine's own snapshot bytes (themselves checksummed), and a SHA-256 of
// everything before it, so that a torn or altered file is refused before a
// byte of it reaches a data dir.
//
//   8 bytes   magic "DHSNAP01"
//   u32 BE    header length
//   header    UTF-8 JSON (SnapshotFileHeader)
//   kvBytes   KvStateMachine.snapshot() bytes
//   32 bytes  SHA-256 of all the bytes above
import { createHash } from 'node:crypto';
import { CorruptSnapshotError, KvStateMachine } from '../consensus/kv-state-machine.ts';

const MAGIC = 'DHSNAP01';
const MAGIC_BYTES = MAGIC.length;
const LENGTH_BYTES = 4;
export const SNAPSHOT_DIGEST_BYTES = 32;
/** A header is a few hundred bytes; more is not a header of ours, and not worth allocating for. */
const HEADER_BYTES_MAX = 64 * 1024;
export const SNAPSHOT_FILE_FORMAT = 1;

/** What a snapshot file says about itself (`debughost snapshot status` prints it). */
export interface SnapshotFileHeader {
  readonly format: number;
  /** The cluster it was taken from. */
  readonly clusterId: string;
  /** The node that served it. */
  readonly takenBy: string;
  /** The applied index it holds: at or after the index a quorum confirmed when the save began. */
  readonly appliedIndex: number;
  readonly revision: number;
  readonly keys: number;
  readonly createdAt: string;
  /** Members of the cluster when it was taken (for the operator; a restore names its own). */
  readonly members: readonly { readonly id: string; readonly address: string }[];
  readonly kvBytes: number;
}

/** The file is not a snapshot of ours, or it was cut short or changed after it was written. */
export class SnapshotFileCorruptError extends Error {
  override readonly name = 'SnapshotFileCorruptError';
  constructor(
    readonly file: string,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${file} is not a debughost snapshot or is corrupt (${detail}); use another backup, or take a new one with 'debughost snapshot save FILE'`, options);
  }
}

export function encodeSnapshotFile(header: Omit<SnapshotFileHeader, 'format' | 'kvBytes'>, kv: Uint8Array): Uint8Array {
  const headerBytes = new TextEncoder().encode(JSON.stringify({ format: SNAPSHOT_FILE_FORMAT, ...header, kvBytes: kv.byteLength } satisfies SnapshotFileHeader));
  const out = new Uint8Array(MAGIC_BYTES + LENGTH_BYTES + headerBytes.byteLength + kv.byteLength + SNAPSHOT_DIGEST_BYTES);
  for (let i = 0; i < MAGIC_BYTES; i++) out[i] = MAGIC.charCodeAt(i);
  new DataView(out.buffer).setUint32(MAGIC_BYTES, headerBytes.byteLength);
  out.set(headerBytes, MAGIC_BYTES + LENGTH_BYTES);
  out.set(kv, MAGIC_BYTES + LENGTH_BYTES + headerBytes.byteLength);
  const bodyEnd = out.byteLength - SNAPSHOT_DIGEST_BYTES;
  out.set(createHash('sha256').update(out.subarray(0, bodyEnd)).digest(), bodyEnd);
  return out;
}

export interface DecodedSnapshotFile {
  readonly header: SnapshotFileHeader;
  /** The KV snapshot bytes, checked: KvStateMachine.restore accepts them. */
  readonly kv: Uint8Array;
  /** The state they hold. */
  readonly machine: KvStateMachine;
  /** Hex SHA-256 of the file's body (its last 32 bytes). */
  readonly digest: string;
}

/** Check every byte of a snapshot file and decode it; throws SnapshotFileCorruptError naming what is wrong. */
export function decodeSnapshotFile(file: string, bytes: Uint8Array): DecodedSnapshotFile {
  const corrupt = (detail: string, cause?: unknown): never => {
    throw new SnapshotFileCorruptError(file, detail, cause === undefined ? undefined : { cause });
  };
  if (bytes.byteLength < MAGIC_BYTES + LENGTH_BYTES + SNAPSHOT_DIGEST_BYTES) corrupt(`${bytes.byteLength} bytes is too short`);
  for (let i = 0; i < MAGIC_BYTES; i++) if (bytes[i] !== MAGIC.charCodeAt(i)) corrupt(`it does not start with ${MAGIC}`);
  const bodyEnd = bytes.byteLength - SNAPSHOT_DIGEST_BYTES;
  const digest = createHash('sha256').update(bytes.subarray(0, bodyEnd)).digest();
  if (!digest.equals(bytes.subarray(bodyEnd))) corrupt('SHA-256 mismatch: the file was cut short or changed');
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(MAGIC_BYTES);
  const headerStart = MAGIC_BYTES + LENGTH_BYTES;
  if (headerLength > HEADER_BYTES_MAX || headerStart + headerLength > bodyEnd) corrupt(`header length ${headerLength} does not fit`);
  let header: SnapshotFileHeader;
  try {
    header = parseHeader(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(headerStart, headerStart + headerLength))));
  } catch (error) {
    return corrupt(`unreadable header: ${(error as Error).message}`, error);
  }
  if (header.format !== SNAPSHOT_FILE_FORMAT) corrupt(`format ${header.format}; this debughost reads format ${SNAPSHOT_FILE_FORMAT}`);
  const kv = bytes.subarray(headerStart + headerLength, bodyEnd);
  if (kv.byteLength !== header.kvBytes) corrupt(`the header says ${header.kvBytes} bytes of state, the file holds ${kv.byteLength}`);
  let machine: KvStateMachine;
  try {
    machine = KvStateMachine.restore(kv);
  } catch (error) {
    if (error instanceof CorruptSnapshotError) return corrupt(error.message, error);
    throw error;
  }
  // Pair check: the header was written from the same state.
  if (machine.appliedIndex !== header.appliedIndex || machine.revision !== header.revision) {
    corrupt(`the header says index ${header.appliedIndex} revision ${header.revision}, the state is at index ${machine.appliedIndex} revision ${machine.revision}`);
  }
  return { header, kv, machine, digest: digest.toString('hex') };
}

function parseHeader(value: unknown): SnapshotFileHeader {
  const record = value as Record<string, unknown> | null;
  const text = (name: string): string => {
    const field = record?.[name];
    if (typeof field !== 'string') throw new Error(`field ${name} is not text`);
    return field;
  };
  const count = (name: string): number => {
    const field = record?.[name];
    if (typeof field !== 'number' || !Number.isSafeInteger(field) || field < 0) throw new Error(`field ${name} is not a count`);
    return field;
  };
  const members = record?.members;
  if (!Array.isArray(members)) throw new Error('field members is not a list');
  return {
    format: count('format'),
    clusterId: text('clusterId'),
    takenBy: text('takenBy'),
    appliedIndex: count('appliedIndex'),
    revision: count('revision'),
    keys: count('keys'),
    createdAt: text('createdAt'),
    members: members.map((member: unknown) => {
      const m = member as { id?: unknown; address?: unknown } | null;
      if (typeof m?.id !== 'string' || typeof m.address !== 'string') throw new Error('a member lacks id or address');
      return { id: m.id, address: m.address };
    }),
    kvBytes: count('kvBytes'),
  };
}
