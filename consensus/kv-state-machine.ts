// The one state machine the Raft cluster replicates: a versioned key-value
// store in the manner of etcd's MVCC store, keeping only the latest version of
// each key. Pure and deterministic: the same entries applied in the same order
// give the same state, results and snapshot bytes on every replica.
import { Buffer } from 'node:buffer';
import type { LogIndex } from './types.ts';

// ---------------------------------------------------------------------------
// Types

export interface KeyValue {
  readonly key: string;
  readonly value: string;
  /** Modifications since creation: 1 on create, +1 per put; the key is gone after a delete. */
  readonly version: number;
  /** Store revision of the put that created the key. */
  readonly createRevision: number;
  /** Store revision of the last put to the key. */
  readonly modRevision: number;
}

export type CompareTarget = 'version' | 'value' | 'modRevision' | 'createRevision';
export type CompareOp = '==' | '!=' | '<' | '>';

/** `operand` is a string for target 'value' (compared in UTF-8 byte order), a safe integer otherwise. */
export type Compare = { key: string; target: CompareTarget; op: CompareOp; operand: number | string };

export type KvOp =
  | { type: 'put'; key: string; value: string }
  | { type: 'delete'; key: string }
  /** Keys in [start, end); end '' means to the last key. */
  | { type: 'deleteRange'; start: string; end: string }
  | { type: 'get'; key: string }
  /** Keys in [start, end); end '' means to the last key; limit 0 or absent means no limit. */
  | { type: 'range'; start: string; end: string; limit?: number };

export type KvCommand =
  | { type: 'put'; key: string; value: string }
  | { type: 'delete'; key: string }
  | { type: 'txn'; compare: Compare[]; success: KvOp[]; failure: KvOp[] };

export type OpResult =
  | { readonly type: 'put'; readonly prev: KeyValue | null }
  | { readonly type: 'delete'; readonly deleted: number; readonly prev: KeyValue | null }
  | { readonly type: 'deleteRange'; readonly deleted: number }
  | { readonly type: 'get'; readonly kv: KeyValue | null }
  /** `count` is every key in the range, `more` says the limit cut some off (as etcd's RangeResponse). */
  | { readonly type: 'range'; readonly kvs: readonly KeyValue[]; readonly count: number; readonly more: boolean };

export type KvErrorName = 'MalformedCommandError' | 'InvalidCommandError' | 'NoSpaceError';
export interface KvError {
  readonly name: KvErrorName;
  readonly message: string;
}

/**
 * `revision` is the store revision after the command. put: `prev`. delete:
 * `prev` and `deleted`. txn: `succeeded` and one entry of `results` per op of
 * the branch that ran.
 */
export type KvResult =
  | {
      readonly ok: true;
      readonly revision: number;
      readonly prev?: KeyValue | null;
      readonly deleted?: number;
      readonly succeeded?: boolean;
      readonly results?: readonly OpResult[];
    }
  | { readonly ok: false; readonly error: KvError };

/** Every replica must use the same limits: they decide which entries are rejected at apply. */
export interface KvLimits {
  /** Most UTF-8 bytes in a key. */
  readonly keyBytesMax: number;
  /** Most UTF-8 bytes in a value (and in a 'value' compare operand). */
  readonly valueBytesMax: number;
  /** Most entries in each of a txn's compare, success and failure lists (etcd's --max-txn-ops). */
  readonly txnOpsMax: number;
  /** Most UTF-8 bytes of all keys, values, range bounds and operands of one command together. */
  readonly commandBytesMax: number;
}

export const kvLimitsDefault: KvLimits = Object.freeze({
  keyBytesMax: 1024,
  valueBytesMax: 1024 * 1024,
  txnOpsMax: 128,
  commandBytesMax: 1536 * 1024, // etcd's default --max-request-bytes
});

/** Range bounds may exceed keyBytesMax by one code point's growth so that prefixEnd(key) of any valid key is a valid bound. */
const boundBytesSlack = 4;

export type ValidateResult = { readonly ok: true; readonly command: KvCommand } | { readonly ok: false; readonly message: string };

// ---------------------------------------------------------------------------
// Errors (programmer or storage errors; expected outcomes are KvResult values)

/** apply() was called out of order: a driver bug, never an operating condition. */
export class ApplyOrderError extends Error {
  override readonly name = 'ApplyOrderError';
}

/** Snapshot bytes that fail their checksum or do not parse into a valid state. */
export class CorruptSnapshotError extends Error {
  override readonly name = 'CorruptSnapshotError';
}

/** KvLimits or options that are not positive safe integers. */
export class InvalidKvLimitsError extends Error {
  override readonly name = 'InvalidKvLimitsError';
}

/** An internal invariant broke: the process should stop. */
export class KvAssertionError extends Error {
  override readonly name = 'KvAssertionError';
}

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new KvAssertionError(message);
}

function at<T>(array: readonly T[], index: number): T {
  const item = array[index];
  assert(item !== undefined, `index ${index} outside array of ${array.length}`);
  return item;
}

function assertNever(value: never): never {
  throw new KvAssertionError(`unexpected variant ${JSON.stringify(value)}`);
}

// ---------------------------------------------------------------------------
// Key order and strings
//
// Keys are ordered by their UTF-8 bytes, as etcd orders its byte keys, so that
// every client (and prefixEnd in any language) agrees on what a range holds.
// For well-formed strings UTF-8 byte order is code point order, which differs
// from JavaScript's UTF-16 code unit order (`<`) only between an astral
// character (a surrogate pair, units 0xD800-0xDFFF) and a BMP character in
// 0xE000-0xFFFF: '\uFFFF' < '😀' in bytes but not in `<`. Strings with lone
// surrogates have no UTF-8 form, so validateCommand rejects them everywhere.

/** Compare two well-formed strings in UTF-8 byte order. */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const unitA = a.charCodeAt(i);
    const unitB = b.charCodeAt(i);
    if (unitA !== unitB) return codePointOrderUnit(unitA) - codePointOrderUnit(unitB);
  }
  return a.length - b.length;
}

/** Move surrogates above 0xE000-0xFFFF so that code unit comparison gives code point order. */
function codePointOrderUnit(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}

const isLowSurrogate = (unit: number): boolean => unit >= 0xdc00 && unit < 0xe000;
const loneSurrogate = /\p{Cs}/u;

export function isWellFormed(text: string): boolean {
  return !loneSurrogate.test(text);
}

/**
 * Bytes of `text` in UTF-8 (a lone surrogate counts as the 3 bytes of U+FFFD, as TextEncoder writes it).
 * Native: a loop over char codes in JS was ≈6× slower on 256-byte values, and every write
 * measures its key and value several times (validation, encoding, the state's byte count, watch events).
 */
export function utf8ByteLength(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/**
 * The range end that covers exactly the keys starting with `prefix`, as
 * etcd's clientv3.GetPrefixRangeEnd but on code points rather than bytes
 * (adding one to a UTF-8 byte would give invalid UTF-8): the last code point
 * below U+10FFFF is incremented (skipping the surrogate gap) and the rest
 * dropped. '' (to the end) when there is no such code point, e.g. prefix ''.
 */
export function prefixEnd(prefix: string): string {
  if (!isWellFormed(prefix)) throw new RangeError('prefixEnd: prefix has a lone surrogate; keys must be well-formed Unicode');
  let head = prefix;
  while (head.length > 0) {
    const last = head.codePointAt(head.length >= 2 && isLowSurrogate(head.charCodeAt(head.length - 1)) ? head.length - 2 : head.length - 1);
    assert(last !== undefined, 'prefixEnd: no last code point');
    head = head.slice(0, head.length - (last > 0xffff ? 2 : 1));
    if (last < 0x10ffff) return head + String.fromCodePoint(last === 0xd7ff ? 0xe000 : last + 1);
  }
  return '';
}

// ---------------------------------------------------------------------------
// Limits

export function kvLimits(overrides: Partial<KvLimits> = {}): KvLimits {
  const limits: KvLimits = { ...kvLimitsDefault, ...overrides };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || (value as number) < 1) {
      throw new InvalidKvLimitsError(`KvLimits.${name} is ${String(value)}; give a positive integer`);
    }
  }
  return Object.freeze(limits);
}

// ---------------------------------------------------------------------------
// Validation: untrusted input -> canonical KvCommand, or one line saying what to fix

class Invalid {
  constructor(readonly message: string) {}
}

function invalid(message: string): never {
  throw new Invalid(message);
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return typeof value === 'number' || typeof value === 'boolean' ? String(value) : typeof value;
}

const compareTargets: readonly CompareTarget[] = ['version', 'value', 'modRevision', 'createRevision'];
const compareOps: readonly CompareOp[] = ['==', '!=', '<', '>'];

/** Reads one command, summing its bytes against commandBytesMax. */
class CommandReader {
  bytes = 0;
  constructor(readonly limits: KvLimits) {}

  object(input: unknown, path: string, fields: readonly string[]): Record<string, unknown> {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) invalid(`${path} must be an object, got ${describe(input)}`);
    const record = input as Record<string, unknown>;
    for (const field of Object.keys(record)) {
      if (!fields.includes(field)) invalid(`${path} has unknown field ${JSON.stringify(field)}; allowed: ${fields.join(', ')}`);
    }
    return record;
  }

  text(input: unknown, path: string, bytesMax: number, limitName: string): string {
    if (typeof input !== 'string') invalid(`${path} must be a string, got ${describe(input)}`);
    if (!isWellFormed(input)) invalid(`${path} has a lone surrogate; keys and values must be well-formed Unicode`);
    const bytes = utf8ByteLength(input);
    if (bytes > bytesMax) invalid(`${path} is ${bytes} bytes; the most is ${bytesMax} (${limitName})`);
    this.bytes += bytes;
    return input;
  }

  key(input: unknown, path: string): string {
    const key = this.text(input, path, this.limits.keyBytesMax, 'keyBytesMax');
    if (key === '') invalid(`${path} is empty; give a non-empty key`);
    return key;
  }

  bound(input: unknown, path: string): string {
    return this.text(input, path, this.limits.keyBytesMax + boundBytesSlack, 'keyBytesMax + 4');
  }

  value(input: unknown, path: string): string {
    return this.text(input, path, this.limits.valueBytesMax, 'valueBytesMax');
  }

  list<T>(input: unknown, path: string, read: (item: unknown, itemPath: string) => T): T[] {
    if (!Array.isArray(input)) invalid(`${path} must be an array, got ${describe(input)}`);
    if (input.length > this.limits.txnOpsMax) invalid(`${path} has ${input.length} entries; the most is ${this.limits.txnOpsMax} (txnOpsMax)`);
    return input.map((item, index) => read(item, `${path}[${index}]`));
  }

  command(input: unknown): KvCommand {
    const type = this.object(input, 'command', ['type', 'key', 'value', 'compare', 'success', 'failure']).type;
    switch (type) {
      case 'put': {
        const put = this.object(input, 'put', ['type', 'key', 'value']);
        return { type: 'put', key: this.key(put.key, 'put.key'), value: this.value(put.value, 'put.value') };
      }
      case 'delete': {
        const del = this.object(input, 'delete', ['type', 'key']);
        return { type: 'delete', key: this.key(del.key, 'delete.key') };
      }
      case 'txn': {
        const txn = this.object(input, 'txn', ['type', 'compare', 'success', 'failure']);
        return {
          type: 'txn',
          compare: this.list(txn.compare, 'txn.compare', (item, path) => this.compare(item, path)),
          success: this.list(txn.success, 'txn.success', (item, path) => this.op(item, path)),
          failure: this.list(txn.failure, 'txn.failure', (item, path) => this.op(item, path)),
        };
      }
      default:
        return invalid(`command.type is ${describe(type)}; use 'put', 'delete' or 'txn'`);
    }
  }

  compare(input: unknown, path: string): Compare {
    const compare = this.object(input, path, ['key', 'target', 'op', 'operand']);
    const key = this.key(compare.key, `${path}.key`);
    const target = compareTargets.find((candidate) => candidate === compare.target);
    if (target === undefined) invalid(`${path}.target is ${describe(compare.target)}; use one of ${compareTargets.join(', ')}`);
    const op = compareOps.find((candidate) => candidate === compare.op);
    if (op === undefined) invalid(`${path}.op is ${describe(compare.op)}; use one of ${compareOps.join(' ')}`);
    if (target === 'value') return { key, target, op, operand: this.value(compare.operand, `${path}.operand`) };
    if (typeof compare.operand !== 'number' || !Number.isSafeInteger(compare.operand)) {
      invalid(`${path}.operand is ${describe(compare.operand)}; target '${target}' needs an integer`);
    }
    return { key, target, op, operand: compare.operand };
  }

  op(input: unknown, path: string): KvOp {
    const type = this.object(input, path, ['type', 'key', 'value', 'start', 'end', 'limit']).type;
    switch (type) {
      case 'put': {
        const put = this.object(input, path, ['type', 'key', 'value']);
        return { type: 'put', key: this.key(put.key, `${path}.key`), value: this.value(put.value, `${path}.value`) };
      }
      case 'delete':
      case 'get': {
        const single = this.object(input, path, ['type', 'key']);
        return { type, key: this.key(single.key, `${path}.key`) };
      }
      case 'deleteRange': {
        const range = this.object(input, path, ['type', 'start', 'end']);
        return { type, start: this.bound(range.start, `${path}.start`), end: this.bound(range.end, `${path}.end`) };
      }
      case 'range': {
        const range = this.object(input, path, ['type', 'start', 'end', 'limit']);
        const start = this.bound(range.start, `${path}.start`);
        const end = this.bound(range.end, `${path}.end`);
        if (range.limit === undefined) return { type, start, end };
        if (typeof range.limit !== 'number' || !Number.isSafeInteger(range.limit) || range.limit < 0) {
          invalid(`${path}.limit is ${describe(range.limit)}; give a non-negative integer (0 = no limit) or leave it out`);
        }
        return { type, start, end, limit: range.limit };
      }
      default:
        return invalid(`${path}.type is ${describe(type)}; use 'put', 'delete', 'deleteRange', 'get' or 'range'`);
    }
  }
}

/** Check untrusted input and return a fresh canonical command, or one line saying what to fix. Never throws. */
export function validateCommand(input: unknown, limits: KvLimits = kvLimitsDefault): ValidateResult {
  const reader = new CommandReader(limits);
  try {
    const command = reader.command(input);
    if (reader.bytes > limits.commandBytesMax) {
      invalid(`command carries ${reader.bytes} bytes of keys, values and operands; the most is ${limits.commandBytesMax} (commandBytesMax)`);
    }
    return { ok: true, command };
  } catch (error) {
    if (error instanceof Invalid) return { ok: false, message: error.message };
    throw error;
  }
}

// ---------------------------------------------------------------------------
// Command bytes: canonical JSON (fixed field order, optional fields only when set)

const textEncoder = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF instead of silently stripping it: a key may start with one.
const textDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// Binary command bytes, version 1. Every string is u32 byte length + UTF-8; numbers are f64.
//   u8 1 (version), u8 type: 1 put (key, value) | 2 delete (key) | 3 txn:
//     u16 count, compares (key, u8 target, u8 op, u8 operand kind 0 number | 1 string, operand),
//     u16 count, success ops; u16 count, failure ops;
//   op: u8 1 put (key, value) | 2 delete (key) | 3 deleteRange (start, end) | 4 get (key) | 5 range (start, end, u8 has limit, f64 limit)
// A log written before it holds canonical JSON, which starts with '{' and still decodes.
const BINARY_VERSION = 1;
const COMMAND_CODES = { put: 1, delete: 2, txn: 3 } as const;
const OP_CODES = { put: 1, delete: 2, deleteRange: 3, get: 4, range: 5 } as const;
const TARGET_CODES: Readonly<Record<CompareTarget, number>> = { version: 1, value: 2, modRevision: 3, createRevision: 4 };
const TARGETS_BY_CODE: readonly (CompareTarget | undefined)[] = [undefined, 'version', 'value', 'modRevision', 'createRevision'];
const OPS_BY_CODE: readonly (CompareOp | undefined)[] = [undefined, '==', '!=', '<', '>'];
const COMPARE_OP_CODES: Readonly<Record<CompareOp, number>> = { '==': 1, '!=': 2, '<': 3, '>': 4 };
const LIST_COUNT_MAX = 0xffff;

/** Writes a command into a buffer sized exactly up front. */
class CommandWriter {
  readonly bytes: Uint8Array;
  readonly #view: DataView;
  offset = 0;
  constructor(length: number) {
    this.bytes = new Uint8Array(length);
    this.#view = new DataView(this.bytes.buffer);
  }
  u8(value: number): void {
    this.bytes[this.offset++] = value;
  }
  u16(value: number): void {
    assert(value <= LIST_COUNT_MAX, `command list of ${value} entries`);
    this.#view.setUint16(this.offset, value);
    this.offset += 2;
  }
  f64(value: number): void {
    this.#view.setFloat64(this.offset, value);
    this.offset += 8;
  }
  text(value: string): void {
    const { written } = textEncoder.encodeInto(value, this.bytes.subarray(this.offset + 4));
    this.#view.setUint32(this.offset, written);
    this.offset += 4 + written;
  }
}

const textBytes = (value: string): number => 4 + utf8ByteLength(value);

function opBytes(op: KvOp): number {
  switch (op.type) {
    case 'put':
      return 1 + textBytes(op.key) + textBytes(op.value);
    case 'delete':
    case 'get':
      return 1 + textBytes(op.key);
    case 'deleteRange':
      return 1 + textBytes(op.start) + textBytes(op.end);
    case 'range':
      return 1 + textBytes(op.start) + textBytes(op.end) + 1 + 8;
    default:
      return assertNever(op);
  }
}

function writeOp(writer: CommandWriter, op: KvOp): void {
  writer.u8(OP_CODES[op.type]);
  switch (op.type) {
    case 'put':
      writer.text(op.key);
      writer.text(op.value);
      return;
    case 'delete':
    case 'get':
      writer.text(op.key);
      return;
    case 'deleteRange':
      writer.text(op.start);
      writer.text(op.end);
      return;
    case 'range':
      writer.text(op.start);
      writer.text(op.end);
      writer.u8(op.limit === undefined ? 0 : 1);
      writer.f64(op.limit ?? 0);
      return;
    default:
      assertNever(op);
  }
}

/**
 * Deterministic bytes for a command: equal commands give equal bytes whatever
 * their field order. Binary, so that applying it takes no JSON parse and no
 * second validation walk. Validate first.
 */
export function encodeCommand(command: KvCommand): Uint8Array {
  let length = 2;
  switch (command.type) {
    case 'put':
      length += textBytes(command.key) + textBytes(command.value);
      break;
    case 'delete':
      length += textBytes(command.key);
      break;
    case 'txn':
      length += 6;
      for (const compare of command.compare) length += textBytes(compare.key) + 3 + (typeof compare.operand === 'string' ? textBytes(compare.operand) : 8);
      for (const op of command.success) length += opBytes(op);
      for (const op of command.failure) length += opBytes(op);
      break;
    default:
      return assertNever(command);
  }
  const writer = new CommandWriter(length);
  writer.u8(BINARY_VERSION);
  writer.u8(COMMAND_CODES[command.type]);
  switch (command.type) {
    case 'put':
      writer.text(command.key);
      writer.text(command.value);
      break;
    case 'delete':
      writer.text(command.key);
      break;
    case 'txn':
      writer.u16(command.compare.length);
      for (const compare of command.compare) {
        writer.text(compare.key);
        writer.u8(TARGET_CODES[compare.target]);
        writer.u8(COMPARE_OP_CODES[compare.op]);
        if (typeof compare.operand === 'string') {
          writer.u8(1);
          writer.text(compare.operand);
        } else {
          writer.u8(0);
          writer.f64(compare.operand);
        }
      }
      writer.u16(command.success.length);
      for (const op of command.success) writeOp(writer, op);
      writer.u16(command.failure.length);
      for (const op of command.failure) writeOp(writer, op);
      break;
    default:
      return assertNever(command);
  }
  // Lone surrogates would encode shorter than counted: validateCommand refuses them first.
  assert(writer.offset === length, `command encoded to ${writer.offset} bytes, sized for ${length}`);
  return writer.bytes;
}

/** Reads binary command bytes, checking the same limits as validateCommand. */
class CommandBytesReader {
  offset = 2;
  textBytes = 0;
  readonly #view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    readonly limits: KvLimits,
  ) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  #need(count: number, what: string): number {
    const at = this.offset;
    if (at + count > this.bytes.byteLength) invalid(`${what} runs past the end of the command bytes`);
    this.offset += count;
    return at;
  }
  u8(what: string): number {
    return this.bytes[this.#need(1, what)] as number;
  }
  u16(what: string): number {
    return this.#view.getUint16(this.#need(2, what));
  }
  f64(what: string): number {
    return this.#view.getFloat64(this.#need(8, what));
  }
  text(what: string, bytesMax: number, limitName: string): string {
    const length = this.#view.getUint32(this.#need(4, what));
    if (length > bytesMax) invalid(`${what} is ${length} bytes; the most is ${bytesMax} (${limitName})`);
    const at = this.#need(length, what);
    this.textBytes += length;
    try {
      // Valid UTF-8 holds no surrogates, so a decoded string is always well-formed.
      return textDecoder.decode(this.bytes.subarray(at, at + length));
    } catch {
      return invalid(`${what} is not valid UTF-8`);
    }
  }
  key(what: string): string {
    const key = this.text(what, this.limits.keyBytesMax, 'keyBytesMax');
    if (key === '') invalid(`${what} is empty; give a non-empty key`);
    return key;
  }
  bound(what: string): string {
    return this.text(what, this.limits.keyBytesMax + boundBytesSlack, 'keyBytesMax + 4');
  }
  value(what: string): string {
    return this.text(what, this.limits.valueBytesMax, 'valueBytesMax');
  }
  count(what: string): number {
    const count = this.u16(`${what} count`);
    if (count > this.limits.txnOpsMax) invalid(`${what} has ${count} entries; the most is ${this.limits.txnOpsMax} (txnOpsMax)`);
    return count;
  }
  integer(what: string): number {
    const value = this.f64(what);
    if (!Number.isSafeInteger(value)) invalid(`${what} is ${value}; it needs an integer`);
    return value;
  }
  op(path: string): KvOp {
    const code = this.u8(`${path}.type`);
    switch (code) {
      case OP_CODES.put:
        return { type: 'put', key: this.key(`${path}.key`), value: this.value(`${path}.value`) };
      case OP_CODES.delete:
        return { type: 'delete', key: this.key(`${path}.key`) };
      case OP_CODES.get:
        return { type: 'get', key: this.key(`${path}.key`) };
      case OP_CODES.deleteRange:
        return { type: 'deleteRange', start: this.bound(`${path}.start`), end: this.bound(`${path}.end`) };
      case OP_CODES.range: {
        const start = this.bound(`${path}.start`);
        const end = this.bound(`${path}.end`);
        const hasLimit = this.u8(`${path}.limit flag`);
        const limit = this.integer(`${path}.limit`);
        if (hasLimit > 1 || limit < 0) invalid(`${path}.limit is malformed`);
        return hasLimit === 1 ? { type: 'range', start, end, limit } : { type: 'range', start, end };
      }
      default:
        return invalid(`${path}.type code ${code} is unknown`);
    }
  }
  ops(path: string): KvOp[] {
    const count = this.count(path);
    const ops: KvOp[] = [];
    for (let i = 0; i < count; i++) ops.push(this.op(`${path}[${i}]`));
    return ops;
  }
  command(): KvCommand {
    const code = this.bytes[1];
    switch (code) {
      case COMMAND_CODES.put:
        return { type: 'put', key: this.key('put.key'), value: this.value('put.value') };
      case COMMAND_CODES.delete:
        return { type: 'delete', key: this.key('delete.key') };
      case COMMAND_CODES.txn: {
        const compareCount = this.count('txn.compare');
        const compare: Compare[] = [];
        for (let i = 0; i < compareCount; i++) {
          const path = `txn.compare[${i}]`;
          const key = this.key(`${path}.key`);
          const target = TARGETS_BY_CODE[this.u8(`${path}.target`)];
          const op = OPS_BY_CODE[this.u8(`${path}.op`)];
          if (target === undefined || op === undefined) invalid(`${path} has an unknown target or op`);
          const kind = this.u8(`${path}.operand kind`);
          if (kind !== (target === 'value' ? 1 : 0)) invalid(`${path}.operand does not fit target '${target}'`);
          compare.push({ key, target, op, operand: kind === 1 ? this.value(`${path}.operand`) : this.integer(`${path}.operand`) });
        }
        const success = this.ops('txn.success');
        const failure = this.ops('txn.failure');
        return { type: 'txn', compare, success, failure };
      }
      default:
        return invalid(`command type code ${String(code)} is unknown`);
    }
  }
}

function decodeBinary(bytes: Uint8Array, limits: KvLimits): ParseResult {
  const reader = new CommandBytesReader(bytes, limits);
  try {
    const command = reader.command();
    if (reader.offset !== bytes.byteLength) invalid(`${bytes.byteLength - reader.offset} bytes follow the command`);
    if (reader.textBytes > limits.commandBytesMax) {
      invalid(`command carries ${reader.textBytes} bytes of keys, values and operands; the most is ${limits.commandBytesMax} (commandBytesMax)`);
    }
    return { ok: true, command };
  } catch (error) {
    if (error instanceof Invalid) return { ok: false, error: { name: 'InvalidCommandError', message: error.message } };
    throw error;
  }
}

type ParseResult = { readonly ok: true; readonly command: KvCommand } | { readonly ok: false; readonly error: KvError };

function parseCommand(bytes: Uint8Array, limits: KvLimits): ParseResult {
  if (bytes.byteLength >= 2 && bytes[0] === BINARY_VERSION) return decodeBinary(bytes, limits);
  let input: unknown;
  try {
    input = JSON.parse(textDecoder.decode(bytes));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { ok: false, error: { name: 'MalformedCommandError', message: `command bytes are not UTF-8 JSON: ${reason}` } };
  }
  const checked = validateCommand(input, limits);
  if (!checked.ok) return { ok: false, error: { name: 'InvalidCommandError', message: checked.message } };
  return checked;
}

const sameLimits = (a: KvLimits, b: KvLimits): boolean =>
  a === b || (a.keyBytesMax === b.keyBytesMax && a.valueBytesMax === b.valueBytesMax && a.txnOpsMax === b.txnOpsMax && a.commandBytesMax === b.commandBytesMax);

/**
 * Decoded commands by the identity of their bytes, for replicas that share one
 * process and one entry object (the simulator runs five and hands each the same
 * entry): each command is decoded once instead of once per replica. A result is
 * reused only under equal limits. The bytes must not change once applied. Real
 * nodes, one replica per process, have no use for it.
 */
export class CommandDecodeCache {
  readonly #parsed = new WeakMap<Uint8Array, { readonly limits: KvLimits; readonly result: ParseResult }>();

  /** @internal for KvStateMachine.apply */
  parse(bytes: Uint8Array, limits: KvLimits): ParseResult {
    const known = this.#parsed.get(bytes);
    if (known !== undefined && sameLimits(known.limits, limits)) return known.result;
    const result = parseCommand(bytes, limits);
    this.#parsed.set(bytes, { limits, result });
    return result;
  }
}

/** The command in `bytes`, or null when they are not a valid command. Never throws. */
export function decodeCommand(bytes: Uint8Array, limits: KvLimits = kvLimitsDefault): KvCommand | null {
  const parsed = parseCommand(bytes, limits);
  return parsed.ok ? parsed.command : null;
}

// ---------------------------------------------------------------------------
// Sorted key index

/** Default keys per leaf: small enough that an insert moves little, large enough that leaves stay few. */
const indexLeafKeysMaxDefault = 512;

/**
 * Keys in byte order, kept in leaves of at most `leafKeysMax` keys. A flat
 * sorted array moves half its keys on every insert (~50µs each at 100k keys);
 * leaves bound that to one leaf. Finding a key or a range start is a binary
 * search over leaves then within one; a range walk costs O(log n + keys read).
 */
class SortedKeys {
  #leaves: string[][] = [];
  #size = 0;

  constructor(readonly leafKeysMax: number) {
    assert(Number.isSafeInteger(leafKeysMax) && leafKeysMax >= 2, `leafKeysMax ${leafKeysMax} must be an integer >= 2`);
  }

  static fromSorted(keys: readonly string[], leafKeysMax: number): SortedKeys {
    const index = new SortedKeys(leafKeysMax);
    const fill = Math.max(1, leafKeysMax >>> 1); // half full: room to grow before the first splits
    for (let start = 0; start < keys.length; start += fill) index.#leaves.push(keys.slice(start, start + fill));
    index.#size = keys.length;
    return index;
  }

  get size(): number {
    return this.#size;
  }

  /** The first leaf whose last key is >= key; #leaves.length when every key is smaller. */
  #leafFor(key: string): number {
    let low = 0;
    let high = this.#leaves.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const leaf = at(this.#leaves, middle);
      if (compareKeys(at(leaf, leaf.length - 1), key) < 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** Position of the first key >= key; { leaf: #leaves.length, offset: 0 } when none. */
  #lowerBound(key: string): Cursor {
    const leafIndex = this.#leafFor(key);
    if (leafIndex === this.#leaves.length) return { leaf: leafIndex, offset: 0 };
    return { leaf: leafIndex, offset: lowerBoundIn(at(this.#leaves, leafIndex), key) };
  }

  insert(key: string): void {
    if (this.#leaves.length === 0) {
      this.#leaves.push([key]);
      this.#size = 1;
      return;
    }
    // A key above every other goes at the end of the last leaf.
    const leafIndex = Math.min(this.#leafFor(key), this.#leaves.length - 1);
    const leaf = at(this.#leaves, leafIndex);
    const offset = lowerBoundIn(leaf, key);
    assert(leaf[offset] !== key, `index insert of present key ${JSON.stringify(key)}`);
    leaf.splice(offset, 0, key);
    this.#size++;
    if (leaf.length > this.leafKeysMax) this.#leaves.splice(leafIndex + 1, 0, leaf.splice(leaf.length >>> 1));
  }

  remove(key: string): boolean {
    const { leaf: leafIndex, offset } = this.#lowerBound(key);
    const leaf = this.#leaves[leafIndex];
    if (leaf === undefined || leaf[offset] !== key) return false;
    leaf.splice(offset, 1);
    this.#size--;
    this.#rebalance(leafIndex);
    return true;
  }

  /** Drop an empty leaf; merge a leaf under a quarter full into a neighbour that has room. */
  #rebalance(leafIndex: number): void {
    const leaf = at(this.#leaves, leafIndex);
    if (leaf.length === 0) {
      this.#leaves.splice(leafIndex, 1);
      return;
    }
    if (leaf.length * 4 >= this.leafKeysMax) return;
    const next = this.#leaves[leafIndex + 1];
    if (next !== undefined && leaf.length + next.length <= this.leafKeysMax) {
      leaf.push(...next);
      this.#leaves.splice(leafIndex + 1, 1);
      return;
    }
    const previous = this.#leaves[leafIndex - 1];
    if (previous !== undefined && previous.length + leaf.length <= this.leafKeysMax) {
      previous.push(...leaf);
      this.#leaves.splice(leafIndex, 1);
    }
  }

  /** Keys in [start, end) ('' end: to the last key), at most `limit` of them (0: all), and how many the range holds. */
  range(start: string, end: string, limit: number): { keys: string[]; count: number } {
    const from = this.#lowerBound(start);
    const to = end === '' ? { leaf: this.#leaves.length, offset: 0 } : this.#lowerBound(end);
    const count = this.#distance(from, to);
    const take = limit > 0 ? Math.min(limit, count) : count;
    const keys: string[] = [];
    let { leaf: leafIndex, offset } = from;
    while (keys.length < take) {
      const leaf = at(this.#leaves, leafIndex);
      const stop = Math.min(leaf.length, offset + take - keys.length);
      for (let i = offset; i < stop; i++) keys.push(at(leaf, i));
      leafIndex++;
      offset = 0;
    }
    return { keys, count };
  }

  /** Keys from `from` up to `to`; 0 when `to` is not after `from`. O(leaves between). */
  #distance(from: Cursor, to: Cursor): number {
    if (to.leaf < from.leaf || (to.leaf === from.leaf && to.offset <= from.offset)) return 0;
    if (to.leaf === from.leaf) return to.offset - from.offset;
    let count = at(this.#leaves, from.leaf).length - from.offset;
    for (let i = from.leaf + 1; i < to.leaf; i++) count += at(this.#leaves, i).length;
    return count + to.offset;
  }

  forEach(visit: (key: string) => void): void {
    for (const leaf of this.#leaves) for (const key of leaf) visit(key);
  }
}

interface Cursor {
  readonly leaf: number;
  readonly offset: number;
}

/** The first offset in sorted `keys` whose key is >= key. */
function lowerBoundIn(keys: readonly string[], key: string): number {
  let low = 0;
  let high = keys.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareKeys(at(keys, middle), key) < 0) low = middle + 1;
    else high = middle;
  }
  return low;
}

// ---------------------------------------------------------------------------
// FNV-1a 64, in two unsigned 32-bit halves (no BigInt in the per-byte loop)

const twoTo32 = 0x1_0000_0000;

/** FNV-1a 64 of `bytes` as 16 hex digits. A corruption check, not a cryptographic hash. */
export function fnv1a64Hex(bytes: Uint8Array): string {
  let high = 0xcbf29ce4;
  let low = 0x84222325;
  for (let i = 0; i < bytes.length; i++) {
    low = (low ^ (bytes[i] as number)) >>> 0;
    // Multiply by the prime 2^40 + 0x1b3, modulo 2^64: low * 0x1b3 < 2^53 stays exact.
    const lowProduct = low * 0x1b3;
    high = (Math.imul(high, 0x1b3) + Math.floor(lowProduct / twoTo32) + (low << 8)) >>> 0;
    low = lowProduct >>> 0;
  }
  return high.toString(16).padStart(8, '0') + low.toString(16).padStart(8, '0');
}

// ---------------------------------------------------------------------------
// Snapshot format, big-endian:
//   "DHKV" | format u32 = 1 | appliedIndex u64 | revision u64 | count u32 |
//   count × (keyBytes u32, key, valueBytes u32, value, version u64, createRevision u64, modRevision u64) |
//   FNV-1a 64 of everything before it (8 bytes)
// Entries are in key byte order, so the same state always gives the same bytes.

const snapshotMagic = 'DHKV';
const snapshotFormat = 1;
const snapshotHeaderBytes = 4 + 4 + 8 + 8 + 4;
const snapshotEntryFixedBytes = 4 + 4 + 8 * 3;
const snapshotChecksumBytes = 8;

function writeUint53(view: DataView, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `snapshot number ${value} is not a non-negative safe integer`);
  view.setUint32(offset, Math.floor(value / twoTo32));
  view.setUint32(offset + 4, value >>> 0);
}

class SnapshotWriter {
  readonly bytes: Uint8Array;
  readonly #view: DataView;
  offset = 0;

  constructor(totalBytes: number) {
    this.bytes = new Uint8Array(totalBytes);
    this.#view = new DataView(this.bytes.buffer);
  }

  uint32(value: number): void {
    this.#view.setUint32(this.offset, value);
    this.offset += 4;
  }

  uint53(value: number): void {
    writeUint53(this.#view, this.offset, value);
    this.offset += 8;
  }

  text(value: string, bytes: number): void {
    this.uint32(bytes);
    const { written } = textEncoder.encodeInto(value, this.bytes.subarray(this.offset, this.offset + bytes));
    assert(written === bytes, `snapshot text encoded to ${written} bytes, sized for ${bytes}`);
    this.offset += bytes;
  }
}

class SnapshotReader {
  readonly #view: DataView;
  offset = 0;

  constructor(
    readonly bytes: Uint8Array,
    readonly end: number,
  ) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  #need(count: number, what: string): void {
    if (this.offset + count > this.end) corrupt(`${what} at byte ${this.offset} runs past the end (${this.end})`);
  }

  uint32(what: string): number {
    this.#need(4, what);
    const value = this.#view.getUint32(this.offset);
    this.offset += 4;
    return value;
  }

  uint53(what: string): number {
    this.#need(8, what);
    const high = this.#view.getUint32(this.offset);
    const low = this.#view.getUint32(this.offset + 4);
    if (high >= 0x20_0000) corrupt(`${what} at byte ${this.offset} exceeds 2^53`);
    this.offset += 8;
    return high * twoTo32 + low;
  }

  text(what: string): string {
    const bytes = this.uint32(`${what} length`);
    this.#need(bytes, what);
    let value: string;
    try {
      value = textDecoder.decode(this.bytes.subarray(this.offset, this.offset + bytes));
    } catch (error) {
      corrupt(`${what} at byte ${this.offset} is not valid UTF-8`, error);
    }
    this.offset += bytes;
    return value;
  }
}

function corrupt(message: string, cause?: unknown): never {
  throw new CorruptSnapshotError(`snapshot is corrupt: ${message}`, cause === undefined ? undefined : { cause });
}

// ---------------------------------------------------------------------------
// The state machine

export interface KvStateMachineOptions {
  /** Must be equal on every replica (see KvLimits). */
  readonly limits?: Partial<KvLimits>;
  /**
   * Why `value` may not be written under `key` (null: it may). A command with
   * any such write is refused whole, as a recorded rejection that changes
   * nothing. It must be a pure function, the same on every replica: the
   * composition root gives the schemas of the layers above, which this
   * module knows nothing of.
   */
  readonly valueCheck?: (key: string, value: string) => string | null;
  /**
   * Key prefixes only configuration entries write (apply with origin
   * 'configuration'): a command entry that puts or deletes a key under one is
   * refused whole, as a recorded rejection. Must be equal on every replica.
   */
  readonly configurationPrefixes?: readonly string[];
  /** Tuning only, no effect on results: keys per leaf of the sorted index. */
  readonly indexLeafKeysMax?: number;
  /** Tuning only, no effect on results: share decoded commands among replicas in one process (CommandDecodeCache). */
  readonly decodeCache?: CommandDecodeCache;
}

/**
 * The NOSPACE alarm, as etcd's: while this key exists, a command that puts any
 * other key is refused (deletes and reads go on, so space can be freed). It is
 * ordinary replicated state, so every replica refuses the same commands; the
 * leader raises and clears it (node/quota-alarm.ts) by putting and deleting it.
 */
export const NOSPACE_ALARM_KEY = 'cluster/alarms/nospace';
/** What a key costs in `stateBytes` beyond its key and value bytes (the map entry, the index slot, three revisions). */
export const KEY_OVERHEAD_BYTES = 64;

/** What a log entry applied to the KV store is: a command, or the KV side of a configuration change. */
export type ApplyOrigin = 'command' | 'configuration';

export class KvStateMachine {
  readonly limits: KvLimits;
  readonly #valueCheck: ((key: string, value: string) => string | null) | null;
  readonly #configurationPrefixes: readonly string[];
  #appliedIndex = 0;
  // Starts at 0 so that the first write is revision 1 and 0 can mean "never written"
  // (etcd starts its store at 1, so its first write is revision 2).
  #revision = 0;
  readonly #kvs = new Map<string, KeyValue>();
  /** Sum over keys of key bytes + value bytes + KEY_OVERHEAD_BYTES: what the quota counts. */
  #stateBytes = 0;
  #index: SortedKeys;
  readonly #decodeCache: CommandDecodeCache | null;

  constructor(options: KvStateMachineOptions = {}) {
    this.limits = kvLimits(options.limits);
    this.#valueCheck = options.valueCheck ?? null;
    this.#configurationPrefixes = options.configurationPrefixes ?? [];
    this.#decodeCache = options.decodeCache ?? null;
    const leafKeysMax = options.indexLeafKeysMax ?? indexLeafKeysMaxDefault;
    if (!Number.isSafeInteger(leafKeysMax) || leafKeysMax < 2) {
      throw new InvalidKvLimitsError(`indexLeafKeysMax is ${leafKeysMax}; give an integer >= 2`);
    }
    this.#index = new SortedKeys(leafKeysMax);
  }

  /** Index of the last log entry applied (or skipped); 0 before any. */
  get appliedIndex(): LogIndex {
    return this.#appliedIndex as LogIndex;
  }

  /** Store revision: bumped once by every command that changes something. */
  get revision(): number {
    return this.#revision;
  }

  /** Number of keys. */
  get size(): number {
    return this.#kvs.size;
  }

  /**
   * Apply the command in log entry `index`. Bytes that are not a valid command
   * give an ok:false result and change nothing but appliedIndex, identically
   * on every replica. Throws ApplyOrderError unless index is appliedIndex + 1.
   * `origin` says whether the entry is a command or the KV side of a
   * configuration change (which alone may write the configuration prefixes).
   */
  apply(index: LogIndex, data: Uint8Array, origin: ApplyOrigin = 'command'): KvResult {
    this.#advance(index, 'apply');
    const parsed = this.#decodeCache === null ? parseCommand(data, this.limits) : this.#decodeCache.parse(data, this.limits);
    if (!parsed.ok) return { ok: false, error: parsed.error };
    const refused = (origin === 'command' ? this.#configurationWrite(parsed.command) : null) ?? this.#refusedWrite(parsed.command);
    if (refused !== null) return { ok: false, error: { name: 'InvalidCommandError', message: refused } };
    if (this.#kvs.has(NOSPACE_ALARM_KEY) && putsOtherThan(parsed.command, NOSPACE_ALARM_KEY)) {
      return { ok: false, error: { name: 'NoSpaceError', message: NO_SPACE_MESSAGE } };
    }
    return this.#execute(parsed.command);
  }

  /** Bytes of state the quota counts (keys, values and a fixed overhead per key); the same on every replica. */
  get stateBytes(): number {
    return this.#stateBytes;
  }

  /** The first write of a command entry under a configuration prefix, as one line; null when there is none. */
  #configurationWrite(command: KvCommand): string | null {
    if (this.#configurationPrefixes.length === 0) return null;
    const ops = command.type === 'txn' ? [...command.success, ...command.failure] : [command];
    for (const op of ops) {
      for (const prefix of this.#configurationPrefixes) {
        const touches =
          op.type === 'put' || op.type === 'delete'
            ? op.key.startsWith(prefix)
            : op.type === 'deleteRange' && compareKeys(op.start, prefixEnd(prefix)) < 0 && (op.end === '' || compareKeys(op.end, prefix) > 0);
        if (touches) return `keys under '${prefix}' change only with the cluster's configuration (member add and remove), never by a command`;
      }
    }
    return null;
  }

  /** The first write of `command` that the value check refuses, as one line; null when all pass. */
  #refusedWrite(command: KvCommand): string | null {
    const check = this.#valueCheck;
    if (check === null) return null;
    const puts = command.type === 'put' ? [command] : command.type === 'txn' ? [...command.success, ...command.failure] : [];
    for (const op of puts) {
      if (op.type !== 'put') continue;
      const why = check(op.key, op.value);
      if (why !== null) return why;
    }
    return null;
  }

  /** Advance appliedIndex over a log entry that carries no command (an empty or configuration entry). */
  skip(index: LogIndex): void {
    this.#advance(index, 'skip');
  }

  get(key: string): KeyValue | null {
    return this.#kvs.get(key) ?? null;
  }

  /** Keys in [start, end) in UTF-8 byte order; end '' means to the last key; limit 0 or absent means all. */
  range(start: string, end: string, limit = 0): KeyValue[] {
    if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`range limit ${limit} must be a non-negative integer (0 = no limit)`);
    return this.#range(start, end, limit).kvs;
  }

  /** Deterministic bytes of the whole state (appliedIndex, revision, every key): same state, same bytes. */
  snapshot(): Uint8Array {
    let totalBytes = snapshotHeaderBytes + snapshotChecksumBytes;
    const sizes: number[] = [];
    this.#index.forEach((key) => {
      const kv = this.#mustGet(key);
      const keyBytes = utf8ByteLength(kv.key);
      const valueBytes = utf8ByteLength(kv.value);
      sizes.push(keyBytes, valueBytes);
      totalBytes += snapshotEntryFixedBytes + keyBytes + valueBytes;
    });
    const writer = new SnapshotWriter(totalBytes);
    for (let i = 0; i < snapshotMagic.length; i++) writer.bytes[i] = snapshotMagic.charCodeAt(i);
    writer.offset = snapshotMagic.length;
    writer.uint32(snapshotFormat);
    writer.uint53(this.#appliedIndex);
    writer.uint53(this.#revision);
    writer.uint32(this.#index.size);
    let entry = 0;
    this.#index.forEach((key) => {
      const kv = this.#mustGet(key);
      writer.text(kv.key, at(sizes, entry * 2));
      writer.text(kv.value, at(sizes, entry * 2 + 1));
      writer.uint53(kv.version);
      writer.uint53(kv.createRevision);
      writer.uint53(kv.modRevision);
      entry++;
    });
    assert(writer.offset === totalBytes - snapshotChecksumBytes, `snapshot wrote ${writer.offset} bytes, sized ${totalBytes - snapshotChecksumBytes}`);
    const checksum = fnv1a64Hex(writer.bytes.subarray(0, writer.offset));
    writer.uint32(Number.parseInt(checksum.slice(0, 8), 16));
    writer.uint32(Number.parseInt(checksum.slice(8), 16));
    return writer.bytes;
  }

  /** Rebuild a state machine from snapshot() bytes; throws CorruptSnapshotError when they are not one. */
  static restore(data: Uint8Array, options: KvStateMachineOptions = {}): KvStateMachine {
    if (data.byteLength < snapshotHeaderBytes + snapshotChecksumBytes) corrupt(`${data.byteLength} bytes is shorter than the header`);
    const end = data.byteLength - snapshotChecksumBytes;
    const expected = fnv1a64Hex(data.subarray(0, end));
    const stored = Array.from(data.subarray(end), (byte) => byte.toString(16).padStart(2, '0')).join('');
    if (stored !== expected) corrupt(`checksum ${stored} does not match contents (${expected})`);

    const reader = new SnapshotReader(data, end);
    for (let i = 0; i < snapshotMagic.length; i++) {
      if (data[i] !== snapshotMagic.charCodeAt(i)) corrupt(`does not start with ${snapshotMagic}`);
    }
    reader.offset = snapshotMagic.length;
    const format = reader.uint32('format');
    if (format !== snapshotFormat) corrupt(`format ${format} is not ${snapshotFormat}`);
    const machine = new KvStateMachine(options);
    machine.#appliedIndex = reader.uint53('appliedIndex');
    machine.#revision = reader.uint53('revision');
    const count = reader.uint32('count');
    const keys: string[] = [];
    for (let entry = 0; entry < count; entry++) {
      const kv = readSnapshotEntry(reader, entry, machine.#revision);
      const previous = keys[keys.length - 1];
      if (previous !== undefined && compareKeys(previous, kv.key) >= 0) corrupt(`key ${entry} is not after key ${entry - 1} in byte order`);
      keys.push(kv.key);
      machine.#kvs.set(kv.key, kv);
      machine.#stateBytes += keyValueBytes(kv.key, kv.value);
    }
    if (reader.offset !== end) corrupt(`${end - reader.offset} bytes follow the last entry`);
    machine.#index = SortedKeys.fromSorted(keys, machine.#index.leafKeysMax);
    return machine;
  }

  /** Short stable hash of the whole state including appliedIndex: the snapshot's FNV-1a 64 checksum. */
  digest(): string {
    const bytes = this.snapshot();
    return Array.from(bytes.subarray(bytes.byteLength - snapshotChecksumBytes), (byte) => byte.toString(16).padStart(2, '0')).join('');
  }

  #advance(index: LogIndex, what: string): void {
    if (index !== this.#appliedIndex + 1) {
      throw new ApplyOrderError(
        `${what}(${index}) but the state machine has applied up to ${this.#appliedIndex}; entries must be applied in order, each once (expected ${this.#appliedIndex + 1})`,
      );
    }
    this.#appliedIndex = index;
  }

  #execute(command: KvCommand): KvResult {
    // Every write of one command carries the same revision; it is taken only if something changed.
    const revision = this.#revision + 1;
    assert(Number.isSafeInteger(revision), 'revision overflow');
    switch (command.type) {
      case 'put': {
        const prev = this.#put(command.key, command.value, revision);
        this.#revision = revision;
        return { ok: true, revision, prev };
      }
      case 'delete': {
        const prev = this.#delete(command.key);
        if (prev !== null) this.#revision = revision;
        return { ok: true, revision: this.#revision, prev, deleted: prev === null ? 0 : 1 };
      }
      case 'txn': {
        const succeeded = command.compare.every((compare) => this.#compare(compare));
        let changed = false;
        const results = (succeeded ? command.success : command.failure).map((op) => {
          const outcome = this.#executeOp(op, revision);
          changed ||= outcome.changed;
          return outcome.result;
        });
        if (changed) this.#revision = revision;
        return { ok: true, revision: this.#revision, succeeded, results };
      }
      default:
        return assertNever(command);
    }
  }

  /** Ops run in order and see each other's writes (unlike etcd, a txn may write one key twice). */
  #executeOp(op: KvOp, revision: number): { result: OpResult; changed: boolean } {
    switch (op.type) {
      case 'put':
        return { result: { type: 'put', prev: this.#put(op.key, op.value, revision) }, changed: true };
      case 'delete': {
        const prev = this.#delete(op.key);
        return { result: { type: 'delete', deleted: prev === null ? 0 : 1, prev }, changed: prev !== null };
      }
      case 'deleteRange': {
        const deleted = this.#deleteRange(op.start, op.end);
        return { result: { type: 'deleteRange', deleted }, changed: deleted > 0 };
      }
      case 'get':
        return { result: { type: 'get', kv: this.get(op.key) }, changed: false };
      case 'range':
        return { result: { type: 'range', ...this.#range(op.start, op.end, op.limit ?? 0) }, changed: false };
      default:
        return assertNever(op);
    }
  }

  /**
   * A missing key compares as version, createRevision and modRevision 0, so
   * `createRevision == 0` means "absent". A 'value' compare on a missing key is
   * always false, whatever the op (even '!='): etcd does the same
   * (server/etcdserver/txn applyCompare), because there it cannot tell a
   * missing value from an empty one. Test absence with version instead.
   */
  #compare(compare: Compare): boolean {
    const kv = this.#kvs.get(compare.key);
    let order: number;
    if (compare.target === 'value') {
      if (kv === undefined) return false;
      assert(typeof compare.operand === 'string', 'value compare with a non-string operand');
      order = compareKeys(kv.value, compare.operand);
    } else {
      assert(typeof compare.operand === 'number', `${compare.target} compare with a non-number operand`);
      const actual = kv === undefined ? 0 : kv[compare.target];
      order = actual < compare.operand ? -1 : actual > compare.operand ? 1 : 0;
    }
    switch (compare.op) {
      case '==':
        return order === 0;
      case '!=':
        return order !== 0;
      case '<':
        return order < 0;
      case '>':
        return order > 0;
      default:
        return assertNever(compare.op);
    }
  }

  #put(key: string, value: string, revision: number): KeyValue | null {
    const prev = this.#kvs.get(key) ?? null;
    const next: KeyValue = Object.freeze({
      key,
      value,
      version: prev === null ? 1 : prev.version + 1,
      createRevision: prev === null ? revision : prev.createRevision,
      modRevision: revision,
    });
    this.#kvs.set(key, next);
    this.#stateBytes += keyValueBytes(key, value) - (prev === null ? 0 : keyValueBytes(key, prev.value));
    if (prev === null) this.#index.insert(key);
    return prev;
  }

  #delete(key: string): KeyValue | null {
    const prev = this.#kvs.get(key);
    if (prev === undefined) return null;
    this.#kvs.delete(key);
    this.#stateBytes -= keyValueBytes(key, prev.value);
    assert(this.#index.remove(key), `key ${JSON.stringify(key)} in the map but not the index`);
    return prev;
  }

  #deleteRange(start: string, end: string): number {
    const { keys } = this.#index.range(start, end, 0);
    for (const key of keys) assert(this.#delete(key) !== null, `indexed key ${JSON.stringify(key)} missing from the map`);
    return keys.length;
  }

  #range(start: string, end: string, limit: number): { kvs: KeyValue[]; count: number; more: boolean } {
    assert(Number.isSafeInteger(limit) && limit >= 0, `range limit ${limit} must be a non-negative integer`);
    const { keys, count } = this.#index.range(start, end, limit);
    return { kvs: keys.map((key) => this.#mustGet(key)), count, more: keys.length < count };
  }

  #mustGet(key: string): KeyValue {
    const kv = this.#kvs.get(key);
    assert(kv !== undefined, `indexed key ${JSON.stringify(key)} missing from the map`);
    return kv;
  }
}

const NO_SPACE_MESSAGE = 'the cluster is out of space: its state is over the quota (--quota-bytes), so writes that put are refused; delete keys or projects to free space (the alarm clears by itself below 90 % of the quota)';

const keyValueBytes = (key: string, value: string): number => utf8ByteLength(key) + utf8ByteLength(value) + KEY_OVERHEAD_BYTES;

/** Whether the command puts a key other than `key`, in either branch (as etcd's capped applier: a put anywhere costs space). */
function putsOtherThan(command: KvCommand, key: string): boolean {
  switch (command.type) {
    case 'put':
      return command.key !== key;
    case 'delete':
      return false;
    case 'txn':
      return command.success.some((op) => op.type === 'put' && op.key !== key) || command.failure.some((op) => op.type === 'put' && op.key !== key);
    default:
      return assertNever(command);
  }
}

/** One snapshot entry, checked against the invariants apply() keeps. */
function readSnapshotEntry(reader: SnapshotReader, entry: number, revision: number): KeyValue {
  const key = reader.text(`key ${entry}`);
  const value = reader.text(`value ${entry}`);
  const version = reader.uint53(`version ${entry}`);
  const createRevision = reader.uint53(`createRevision ${entry}`);
  const modRevision = reader.uint53(`modRevision ${entry}`);
  if (key === '') corrupt(`key ${entry} is empty`);
  if (version < 1) corrupt(`key ${entry} has version ${version}`);
  if (createRevision < 1 || createRevision > modRevision || modRevision > revision) {
    corrupt(`key ${entry} has revisions create ${createRevision} mod ${modRevision} outside 1 <= create <= mod <= ${revision}`);
  }
  return Object.freeze({ key, value, version, createRevision, modRevision });
}
