// A read-only check of a LevelDB directory before LevelDB may open it, and the
// lock probe. As classic-level configures LevelDB (paranoid_checks and
// verify_checksums off), a corrupt write-ahead-log record is silently dropped
// on recovery and table block checksums are never checked; and any successful
// open rewrites the directory (the log becomes a table, a new MANIFEST replaces
// the old). So before LevelDB opens an existing database we check, reading
// only, every file it would recover from: CURRENT, the MANIFEST, the live
// tables' block checksums and the logs' record checksums. A log truncated
// mid-record or ending in zeros is a write cut off by a crash and is accepted
// (LevelDB ignores that tail: it was never acknowledged); any checksum mismatch
// is refused, as etcd's WAL does, because it may hide an acknowledged write.
// The only files LevelDB touches on a refused open are its text logs LOG and
// LOG.old, which it rotates on every open attempt.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import { crc32c } from './crc32c.ts';
import { describe, levelCode, StorageCorruptError, StorageLockedError, StorageOpenError } from './storage-errors.ts';

export function corrupt(path: string, detail: string, cause?: unknown): StorageCorruptError {
  return new StorageCorruptError(path, detail, cause ?? new Error(detail));
}

/** Files an interrupted create can leave without CURRENT: no data yet, so the dir is treated as new. */
const FRESH_LEFTOVER = /^(LOCK|LOG|LOG\.old|MANIFEST-\d+|\d+\.dbtmp)$/;

/** True when `path` is an existing LevelDB; false when absent or empty; throws when it is something else. */
export async function holdsDatabase(path: string): Promise<boolean> {
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

export async function checkBeforeOpen(path: string): Promise<void> {
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

export function openError(path: string, error: unknown): Error {
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


// LevelDB stores its CRCs masked.
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
