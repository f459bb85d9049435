// Checks the replicated KV state machine: etcd semantics, canonical command and snapshot bytes, and agreement with a naive reference model over random command sequences.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import {
  ApplyOrderError,
  KEY_OVERHEAD_BYTES,
  NOSPACE_ALARM_KEY,
  CorruptSnapshotError,
  CommandDecodeCache,
  KvStateMachine,
  compareKeys,
  decodeCommand,
  encodeCommand,
  fnv1a64Hex,
  kvLimits,
  prefixEnd,
  utf8ByteLength,
  validateCommand,
} from './kv-state-machine.ts';
import type { Compare, CompareOp, CompareTarget, KeyValue, KvCommand, KvErrorName, KvOp, KvResult, KvStateMachineOptions, OpResult } from './kv-state-machine.ts';
import { logIndex } from './types.ts';

// ---------------------------------------------------------------------------
// Builders

const put = (key: string, value: string): KvCommand => ({ type: 'put', key, value });
const del = (key: string): KvCommand => ({ type: 'delete', key });
const txn = (compare: Compare[], success: KvOp[], failure: KvOp[] = []): KvCommand => ({ type: 'txn', compare, success, failure });
const cmp = (key: string, target: CompareTarget, op: CompareOp, operand: number | string): Compare => ({ key, target, op, operand });

function applyNext(machine: KvStateMachine, command: KvCommand | Uint8Array): KvResult {
  const data = command instanceof Uint8Array ? command : encodeCommand(command);
  return machine.apply(logIndex(machine.appliedIndex + 1), data);
}

type Ok = Extract<KvResult, { ok: true }>;
function expectOk(result: KvResult): Ok {
  if (!result.ok) throw new Error(`expected ok, got ${result.error.name}: ${result.error.message}`);
  return result;
}

function machineWith(commands: readonly KvCommand[], options?: KvStateMachineOptions): KvStateMachine {
  const machine = new KvStateMachine(options);
  for (const command of commands) expectOk(applyNext(machine, command));
  return machine;
}

const keysOf = (kvs: readonly KeyValue[]): string[] => kvs.map((kv) => kv.key);

// ---------------------------------------------------------------------------
// Versions and revisions

test('put creates at version 1, each put adds one, delete forgets the key', (t) => {
  const machine = new KvStateMachine();
  t.deepEqual(expectOk(applyNext(machine, put('k', 'a'))), { ok: true, revision: 1, prev: null });
  t.deepEqual(machine.get('k'), { key: 'k', value: 'a', version: 1, createRevision: 1, modRevision: 1 });

  const second = expectOk(applyNext(machine, put('k', 'b')));
  t.deepEqual(second.prev, { key: 'k', value: 'a', version: 1, createRevision: 1, modRevision: 1 });
  t.deepEqual(machine.get('k'), { key: 'k', value: 'b', version: 2, createRevision: 1, modRevision: 2 });

  const removed = expectOk(applyNext(machine, del('k')));
  t.is(removed.deleted, 1);
  t.is(removed.prev?.value, 'b');
  t.is(machine.get('k'), null);

  // Recreated: version restarts at 1 and createRevision is the new write's.
  expectOk(applyNext(machine, put('k', 'c')));
  t.deepEqual(machine.get('k'), { key: 'k', value: 'c', version: 1, createRevision: 4, modRevision: 4 });
});

test('the store revision moves once per command that changes something', (t) => {
  const machine = new KvStateMachine();
  t.is(machine.revision, 0);
  expectOk(applyNext(machine, put('a', '1')));
  t.is(machine.revision, 1);

  const missingDelete = expectOk(applyNext(machine, del('missing')));
  t.deepEqual(missingDelete, { ok: true, revision: 1, prev: null, deleted: 0 });

  // Putting the same value still writes (etcd too).
  expectOk(applyNext(machine, put('a', '1')));
  t.is(machine.revision, 2);

  const twoWrites = expectOk(applyNext(machine, txn([], [{ type: 'put', key: 'b', value: '2' }, { type: 'put', key: 'c', value: '3' }])));
  t.is(twoWrites.revision, 3);
  t.is(machine.get('b')?.modRevision, 3);
  t.is(machine.get('c')?.modRevision, 3);

  const readOnly = expectOk(applyNext(machine, txn([], [{ type: 'get', key: 'a' }, { type: 'range', start: '', end: '' }])));
  t.is(readOnly.revision, 3);

  const failedNoWrites = expectOk(applyNext(machine, txn([cmp('a', 'version', '==', 99)], [{ type: 'put', key: 'a', value: 'x' }], [])));
  t.false(failedNoWrites.succeeded);
  t.is(failedNoWrites.revision, 3);

  const deleteNothing = expectOk(applyNext(machine, txn([], [{ type: 'delete', key: 'zz' }, { type: 'deleteRange', start: 'x', end: 'y' }])));
  t.is(deleteNothing.revision, 3);
  t.is(machine.revision, 3);
  t.is(machine.appliedIndex, logIndex(7));
});

// ---------------------------------------------------------------------------
// Transactions

test('txn compare: every target and operator, on present and missing keys', (t) => {
  // k: value 'n', version 2, createRevision 1, modRevision 2; store revision 3.
  const machine = machineWith([put('k', 'm'), put('k', 'n'), put('other', 'o')]);
  const cases: Array<[Compare, boolean]> = [
    [cmp('k', 'version', '==', 2), true],
    [cmp('k', 'version', '==', 1), false],
    [cmp('k', 'version', '!=', 1), true],
    [cmp('k', 'version', '!=', 2), false],
    [cmp('k', 'version', '<', 3), true],
    [cmp('k', 'version', '<', 2), false],
    [cmp('k', 'version', '>', 1), true],
    [cmp('k', 'version', '>', 2), false],
    [cmp('k', 'createRevision', '==', 1), true],
    [cmp('k', 'createRevision', '!=', 1), false],
    [cmp('k', 'createRevision', '<', 2), true],
    [cmp('k', 'createRevision', '>', 1), false],
    [cmp('k', 'modRevision', '==', 2), true],
    [cmp('k', 'modRevision', '!=', 2), false],
    [cmp('k', 'modRevision', '<', 2), false],
    [cmp('k', 'modRevision', '>', 1), true],
    [cmp('k', 'value', '==', 'n'), true],
    [cmp('k', 'value', '==', 'm'), false],
    [cmp('k', 'value', '!=', 'm'), true],
    [cmp('k', 'value', '!=', 'n'), false],
    [cmp('k', 'value', '<', 'o'), true],
    [cmp('k', 'value', '<', 'n'), false],
    [cmp('k', 'value', '>', 'm'), true],
    [cmp('k', 'value', '>', 'n'), false],
    [cmp('k', 'value', '>', ''), true],
    // Missing key: version and both revisions are 0...
    [cmp('gone', 'version', '==', 0), true],
    [cmp('gone', 'version', '>', 0), false],
    [cmp('gone', 'createRevision', '==', 0), true],
    [cmp('gone', 'createRevision', '!=', 0), false],
    [cmp('gone', 'modRevision', '<', 1), true],
    [cmp('gone', 'modRevision', '>', -1), true],
    // ...and any value compare fails, even '!=' and == '' (etcd's applyCompare does the same).
    [cmp('gone', 'value', '==', ''), false],
    [cmp('gone', 'value', '!=', 'x'), false],
    [cmp('gone', 'value', '<', 'z'), false],
    [cmp('gone', 'value', '>', ''), false],
  ];
  for (const [compare, expected] of cases) {
    const result = expectOk(applyNext(machine, txn([compare], [{ type: 'get', key: 'k' }])));
    t.is(result.succeeded, expected, JSON.stringify(compare));
    t.is(result.results?.length, expected ? 1 : 0);
  }
  t.is(machine.revision, 3, 'read-only txns never bump the revision');
});

test('txn value compares use UTF-8 byte order', (t) => {
  // '\uffff' < '😀' in UTF-8 bytes (EF BF BF < F0 9F 98 80) though not in UTF-16 code units.
  const machine = machineWith([put('k', '\uffff')]);
  t.true(expectOk(applyNext(machine, txn([cmp('k', 'value', '<', '😀')], []))).succeeded);
  t.false(expectOk(applyNext(machine, txn([cmp('k', 'value', '>', '😀')], []))).succeeded);
});

test('a txn is all-of its compares; a failed one runs the failure branch', (t) => {
  const machine = machineWith([put('lock', 'owner-1')]);
  const result = expectOk(
    applyNext(
      machine,
      txn(
        [cmp('lock', 'version', '>', 0), cmp('lock', 'value', '==', 'owner-2')],
        [{ type: 'put', key: 'lock', value: 'owner-2' }],
        [{ type: 'get', key: 'lock' }, { type: 'put', key: 'contended', value: 'yes' }],
      ),
    ),
  );
  t.false(result.succeeded);
  t.is(result.revision, 2);
  t.deepEqual(result.results, [
    { type: 'get', kv: { key: 'lock', value: 'owner-1', version: 1, createRevision: 1, modRevision: 1 } },
    { type: 'put', prev: null },
  ]);
  t.is(machine.get('lock')?.value, 'owner-1');
  t.is(machine.get('contended')?.value, 'yes');
});

test('txn ops run in order and see each other\'s writes', (t) => {
  const machine = machineWith([put('a', '0')]);
  const result = expectOk(
    applyNext(
      machine,
      txn(
        [],
        [
          { type: 'put', key: 'a', value: '1' },
          { type: 'get', key: 'a' },
          { type: 'put', key: 'a', value: '2' },
          { type: 'delete', key: 'a' },
          { type: 'get', key: 'a' },
          { type: 'put', key: 'a', value: '3' },
          { type: 'range', start: '', end: '' },
        ],
      ),
    ),
  );
  const fresh = { key: 'a', value: '3', version: 1, createRevision: 2, modRevision: 2 };
  t.deepEqual(result.results, [
    { type: 'put', prev: { key: 'a', value: '0', version: 1, createRevision: 1, modRevision: 1 } },
    { type: 'get', kv: { key: 'a', value: '1', version: 2, createRevision: 1, modRevision: 2 } },
    { type: 'put', prev: { key: 'a', value: '1', version: 2, createRevision: 1, modRevision: 2 } },
    { type: 'delete', deleted: 1, prev: { key: 'a', value: '2', version: 3, createRevision: 1, modRevision: 2 } },
    { type: 'get', kv: null },
    { type: 'put', prev: null },
    { type: 'range', kvs: [fresh], count: 1, more: false },
  ]);
  t.is(result.revision, 2);
  t.deepEqual(machine.get('a'), fresh);
});

// ---------------------------------------------------------------------------
// Ranges

test('range returns [start, end) sorted in UTF-8 byte order, with limit, count and more', (t) => {
  const keys = ['b', 'a', '😀', '\uffff', 'ab', 'a/2', 'a/1', '\ue000', 'é', 'c'];
  const machine = machineWith(keys.map((key) => put(key, key)));
  const all = ['a', 'a/1', 'a/2', 'ab', 'b', 'c', 'é', '\ue000', '\uffff', '😀'];
  t.deepEqual(keysOf(machine.range('', '')), all);
  t.deepEqual(keysOf(machine.range('a/', 'b')), ['a/1', 'a/2', 'ab']);
  t.deepEqual(keysOf(machine.range('a/', 'b', 2)), ['a/1', 'a/2']);
  t.deepEqual(keysOf(machine.range('ab', 'ab')), []);
  t.deepEqual(keysOf(machine.range('c', 'a')), [], 'end before start is empty');
  t.deepEqual(keysOf(machine.range('\uffff', '')), ['\uffff', '😀']);
  t.deepEqual(keysOf(machine.range('\u{10ffff}', '')), []);

  const op = expectOk(applyNext(machine, txn([], [{ type: 'range', start: 'a', end: 'c', limit: 2 }])));
  const [rangeResult] = op.results ?? [];
  t.like(rangeResult, { type: 'range', count: 5, more: true });
  t.throws(() => machine.range('', '', -1), { instanceOf: RangeError });
});

test('compareKeys agrees with UTF-8 byte comparison', (t) => {
  const samples = ['', 'a', 'ab', 'b', '\u007f', '\u0080', '\u07ff', '\u0800', '\ud7ff', '\ue000', '\uffff', '😀', '\u{10ffff}', 'a😀', 'a\uffff'];
  for (const a of samples) {
    for (const b of samples) {
      t.is(Math.sign(compareKeys(a, b)), Buffer.compare(Buffer.from(a), Buffer.from(b)), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    }
  }
});

test('utf8ByteLength counts the bytes TextEncoder writes, lone surrogates as U+FFFD', (t) => {
  const encoder = new TextEncoder();
  const samples = ['', 'a', 'é', '€', '😀', 'a😀b', '\ud800', '\udc00', '\ud800x', 'x\udbff', '\udc00\ud800', '\u07ff\u0800\uffff', 'k'.repeat(256)];
  for (const text of samples) t.is(utf8ByteLength(text), encoder.encode(text).length, JSON.stringify(text));
  // Random strings over every UTF-16 code unit, surrogates (paired or not) included.
  let seed = 1;
  const next = (bound: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % bound;
  };
  for (let i = 0; i < 500; i++) {
    const units = Array.from({ length: next(40) }, () => (next(4) === 0 ? 0xd800 + next(0x800) : next(0x10000)));
    const text = String.fromCharCode(...units);
    t.is(utf8ByteLength(text), encoder.encode(text).length, JSON.stringify(text));
  }
});

test('prefixEnd bounds exactly the keys with the prefix', (t) => {
  t.is(prefixEnd('a'), 'b');
  t.is(prefixEnd('a/'), 'a0');
  t.is(prefixEnd(''), '', 'empty prefix: the whole keyspace');
  t.is(prefixEnd('\ud7ff'), '\ue000', 'skips the surrogate gap');
  t.is(prefixEnd('\uffff'), '\u{10000}');
  t.is(prefixEnd('a\u{10ffff}'), 'b', 'a maximal last code point is dropped');
  t.is(prefixEnd('\u{10ffff}\u{10ffff}'), '');
  t.throws(() => prefixEnd('\ud800'), { instanceOf: RangeError });

  const keys = ['app', 'app/1', 'app/2', 'app\uffff', 'app😀', 'apq', 'ap', 'b'];
  const machine = machineWith(keys.map((key) => put(key, '')));
  t.deepEqual(keysOf(machine.range('app', prefixEnd('app'))), ['app', 'app/1', 'app/2', 'app\uffff', 'app😀']);
  t.deepEqual(keysOf(machine.range('app/', prefixEnd('app/'))), ['app/1', 'app/2']);
});

test('deleteRange removes [start, end) and bumps the revision only when it removed something', (t) => {
  const machine = machineWith(['a', 'b/1', 'b/2', 'b/3', 'c'].map((key) => put(key, key)));
  const result = expectOk(applyNext(machine, txn([], [{ type: 'deleteRange', start: 'b/', end: prefixEnd('b/') }])));
  t.deepEqual(result.results, [{ type: 'deleteRange', deleted: 3 }]);
  t.is(result.revision, 6);
  t.deepEqual(keysOf(machine.range('', '')), ['a', 'c']);

  const none = expectOk(applyNext(machine, txn([], [{ type: 'deleteRange', start: 'b/', end: prefixEnd('b/') }])));
  t.deepEqual(none.results, [{ type: 'deleteRange', deleted: 0 }]);
  t.is(none.revision, 6);

  expectOk(applyNext(machine, txn([], [{ type: 'deleteRange', start: 'b', end: '' }])));
  t.deepEqual(keysOf(machine.range('', '')), ['a']);
  t.is(machine.size, 1);
});

test('a 100k-key store keeps order and answers small ranges', (t) => {
  const random = new Prng(7);
  const machine = new KvStateMachine();
  const keys = new Set<string>();
  // Bulk load through txns of 100 puts: the index sees keys in random order.
  while (keys.size < 100_000) {
    const ops: KvOp[] = [];
    for (let i = 0; i < 100; i++) {
      const key = `/actors/${random.next().toString(36)}`;
      keys.add(key);
      ops.push({ type: 'put', key, value: 'v' });
    }
    expectOk(applyNext(machine, txn([], ops)));
  }
  const sorted = [...keys].sort(compareKeys);
  t.is(machine.size, sorted.length);
  for (let probe = 0; probe < 200; probe++) {
    const from = random.int(sorted.length);
    const start = sorted[from] ?? '';
    t.deepEqual(keysOf(machine.range(start, '', 5)), sorted.slice(from, from + 5));
  }
  t.deepEqual(keysOf(machine.range('', '')), sorted);
});

// ---------------------------------------------------------------------------
// Bytes in: malformed and invalid commands

test('malformed command bytes give a deterministic error and change only appliedIndex', (t) => {
  const machine = machineWith([put('a', '1')]);
  const before = keysOf(machine.range('', ''));
  const inputs: Array<[Uint8Array, KvErrorName]> = [
    [new Uint8Array([]), 'MalformedCommandError'],
    [new Uint8Array([0xff, 0xfe, 0x00]), 'MalformedCommandError'],
    [new TextEncoder().encode('{"type":"put","key":"a"'), 'MalformedCommandError'],
    [new TextEncoder().encode('\ufeff{"type":"delete","key":"a"}'), 'MalformedCommandError'],
    [new TextEncoder().encode('42'), 'InvalidCommandError'],
    [new TextEncoder().encode('{"type":"put","key":"","value":"x"}'), 'InvalidCommandError'],
    [new TextEncoder().encode('{"type":"delete","key":"a","extra":1}'), 'InvalidCommandError'],
  ];
  for (const [bytes, name] of inputs) {
    const twin = KvStateMachine.restore(machine.snapshot());
    const result = applyNext(machine, bytes);
    t.false(result.ok);
    if (!result.ok) t.is(result.error.name, name);
    t.deepEqual(applyNext(twin, bytes), result, 'same bytes, same result on another replica');
    t.is(decodeCommand(bytes), null);
  }
  t.is(machine.appliedIndex, logIndex(1 + inputs.length));
  t.is(machine.revision, 1);
  t.deepEqual(keysOf(machine.range('', '')), before);
});

test('apply out of order is a programmer error; skip advances over non-command entries', (t) => {
  const machine = new KvStateMachine();
  t.throws(() => machine.apply(logIndex(2), encodeCommand(put('a', '1'))), { instanceOf: ApplyOrderError, name: 'ApplyOrderError', message: /expected 1/ });
  expectOk(machine.apply(logIndex(1), encodeCommand(put('a', '1'))));
  t.throws(() => machine.apply(logIndex(1), encodeCommand(put('a', '1'))), { name: 'ApplyOrderError' });
  machine.skip(logIndex(2));
  t.is(machine.appliedIndex, logIndex(2));
  t.is(machine.revision, 1);
  t.throws(() => machine.skip(logIndex(4)), { name: 'ApplyOrderError' });
});

test('validateCommand says in one line what to fix', (t) => {
  const small = kvLimits({ valueBytesMax: 10, txnOpsMax: 3, commandBytesMax: 40 });
  const ops = (count: number): KvOp[] => Array.from({ length: count }, () => ({ type: 'get', key: 'k' }));
  const cases: Array<[unknown, RegExp, typeof small?]> = [
    [null, /command must be an object/],
    [{ type: 'nope' }, /command\.type is "nope"; use 'put', 'delete' or 'txn'/],
    [{ type: 'put', key: '', value: 'x' }, /put\.key is empty/],
    [{ type: 'put', key: 7, value: 'x' }, /put\.key must be a string, got 7/],
    [{ type: 'put', key: 'k' }, /put\.value must be a string, got undefined/],
    [{ type: 'put', key: 'x'.repeat(1025), value: '' }, /put\.key is 1025 bytes; the most is 1024 \(keyBytesMax\)/],
    // 342 astral characters: 684 UTF-16 units but 1368 bytes.
    [{ type: 'put', key: '😀'.repeat(342), value: '' }, /put\.key is 1368 bytes/],
    [{ type: 'put', key: 'k', value: 'é'.repeat(6) }, /put\.value is 12 bytes; the most is 10 \(valueBytesMax\)/, small],
    [{ type: 'put', key: '\ud800', value: '' }, /put\.key has a lone surrogate/],
    [{ type: 'delete', key: 'a', value: 'x' }, /delete has unknown field "value"/],
    [txn([], ops(4)), /txn\.success has 4 entries; the most is 3 \(txnOpsMax\)/, small],
    [{ type: 'txn', compare: [], success: [] }, /txn\.failure must be an array, got undefined/],
    [txn([{ key: 'k', target: 'value', op: '>=' as CompareOp, operand: 'x' }], []), /txn\.compare\[0\]\.op is ">="; use one of == != < >/],
    [txn([{ key: 'k', target: 'lease' as CompareTarget, op: '==', operand: 1 }], []), /txn\.compare\[0\]\.target is "lease"/],
    [txn([cmp('k', 'version', '==', '1')], []), /txn\.compare\[0\]\.operand is "1"; target 'version' needs an integer/],
    [txn([cmp('k', 'value', '==', 1)], []), /txn\.compare\[0\]\.operand must be a string, got 1/],
    [txn([cmp('k', 'modRevision', '==', 1.5)], []), /needs an integer/],
    [txn([], [{ type: 'range', start: 'a', end: 'b', limit: -1 }]), /txn\.success\[0\]\.limit is -1; give a non-negative integer/],
    [txn([], [], [{ type: 'scan' } as unknown as KvOp]), /txn\.failure\[0\]\.type is "scan"/],
    [txn([], [{ type: 'get', key: '' }]), /txn\.success\[0\]\.key is empty/],
    [txn([], [{ type: 'put', key: 'a'.repeat(20), value: 'b'.repeat(10) }, { type: 'put', key: 'c'.repeat(20), value: '' }]), /command carries 50 bytes.*commandBytesMax/, small],
  ];
  for (const [input, message, limits] of cases) {
    const result = validateCommand(input, limits);
    t.false(result.ok, JSON.stringify(input).slice(0, 80));
    if (!result.ok) {
      t.regex(result.message, message);
      t.false(result.message.includes('\n'));
    }
  }
  t.throws(() => kvLimits({ keyBytesMax: 0 }), { name: 'InvalidKvLimitsError' });
});

test('validateCommand accepts valid commands and returns a canonical copy', (t) => {
  const input = { failure: [], success: [{ limit: 2, end: '', start: 'a', type: 'range' }], compare: [{ operand: 0, op: '==', target: 'version', key: 'k' }], type: 'txn' };
  const result = validateCommand(input);
  t.true(result.ok);
  if (result.ok) {
    t.deepEqual(result.command, txn([cmp('k', 'version', '==', 0)], [{ type: 'range', start: 'a', end: '', limit: 2 }]));
    t.not(result.command as unknown, input);
  }
  t.true(validateCommand({ type: 'put', key: 'k', value: '' }).ok, 'empty values are allowed');
  t.true(validateCommand(txn([], [{ type: 'deleteRange', start: '', end: '' }])).ok, 'empty range bounds are allowed');
  t.true(validateCommand(txn([], [{ type: 'range', start: 'x'.repeat(1024), end: prefixEnd('x'.repeat(1023) + '\u007f') }])).ok, 'prefixEnd of a maximal key is a valid bound');
});

test('encodeCommand is canonical and decodeCommand round-trips it', (t) => {
  const command = txn([cmp('k', 'value', '!=', 'é😀')], [{ type: 'range', start: 'a', end: 'b' }], [{ type: 'put', key: '\ufeffk', value: '' }]);
  const reordered = JSON.parse('{"failure":[{"value":"","key":"\\ufeffk","type":"put"}],"success":[{"end":"b","start":"a","type":"range"}],"compare":[{"operand":"é😀","op":"!=","target":"value","key":"k"}],"type":"txn"}') as KvCommand;
  t.deepEqual(encodeCommand(reordered), encodeCommand(command));
  t.deepEqual(decodeCommand(encodeCommand(command)), command);
  t.deepEqual(decodeCommand(encodeCommand(put('k', 'v'))), put('k', 'v'));
  t.deepEqual(decodeCommand(encodeCommand(del('k'))), del('k'));
});

// ---------------------------------------------------------------------------
// Snapshots

const sampleCommands: KvCommand[] = [
  put('a', '1'),
  put('\ufeffbom', 'kept'),
  put('😀', 'astral'),
  put('\uffff', 'bmp'),
  put('a', '2'),
  del('a'),
  put('big', 'x'.repeat(5000)),
  txn([], [{ type: 'put', key: 'b', value: '' }, { type: 'put', key: 'é', value: 'é' }]),
];

test('snapshot -> restore round-trips bytes, digest and behaviour', (t) => {
  const machine = machineWith(sampleCommands);
  machine.skip(logIndex(machine.appliedIndex + 1));
  const bytes = machine.snapshot();
  const restored = KvStateMachine.restore(bytes);
  t.deepEqual(restored.snapshot(), bytes);
  t.is(restored.digest(), machine.digest());
  t.regex(machine.digest(), /^[0-9a-f]{16}$/);
  t.is(restored.appliedIndex, machine.appliedIndex);
  t.is(restored.revision, machine.revision);
  t.deepEqual(restored.range('', ''), machine.range('', ''));
  t.deepEqual(restored.get('\ufeffbom'), machine.get('\ufeffbom'));

  const next = txn([cmp('b', 'version', '==', 1)], [{ type: 'put', key: 'b', value: 'again' }, { type: 'range', start: '', end: '', limit: 3 }]);
  t.deepEqual(applyNext(restored, next), applyNext(machine, next));
  t.is(restored.digest(), machine.digest());

  const empty = new KvStateMachine();
  t.deepEqual(KvStateMachine.restore(empty.snapshot()).snapshot(), empty.snapshot());
});

test('snapshot bytes depend on the state, not on the order keys were inserted', (t) => {
  const keys = ['k/3', 'k/1', '😀', 'a', '\uffff', 'k/2', 'é'];
  const opsFor = (order: readonly string[]): KvOp[] => order.map((key) => ({ type: 'put', key, value: `v${key}` }));
  const forward = machineWith([txn([], opsFor(keys))], { indexLeafKeysMax: 2 });
  const backward = machineWith([txn([], opsFor([...keys].reverse()))], { indexLeafKeysMax: 3 });
  const sorted = machineWith([txn([], opsFor([...keys].sort()))]);
  t.deepEqual(forward.snapshot(), backward.snapshot());
  t.deepEqual(forward.snapshot(), sorted.snapshot());
  t.is(forward.digest(), sorted.digest());

  // The same keys reached through deletes and re-puts in one txn: same state, same bytes.
  const churned = machineWith([txn([], [...opsFor(['zz', 'k/1']), { type: 'deleteRange', start: '', end: '' }, ...opsFor(keys)])]);
  t.deepEqual(churned.get('k/1'), forward.get('k/1'));
  t.deepEqual(churned.snapshot(), forward.snapshot());
  t.notDeepEqual(machineWith([put('a', 'va')]).digest(), forward.digest());
});

test('restore of corrupt bytes throws CorruptSnapshotError', (t) => {
  const bytes = machineWith(sampleCommands).snapshot();
  const flipped = bytes.slice();
  flipped[40] = (flipped[40] ?? 0) ^ 0x01;
  const corruptInputs: Uint8Array[] = [new Uint8Array(), new Uint8Array(100), bytes.subarray(0, bytes.length - 1), flipped, new TextEncoder().encode('{"not":"a snapshot"}')];
  for (const input of corruptInputs) {
    t.throws(() => KvStateMachine.restore(input), { instanceOf: CorruptSnapshotError, name: 'CorruptSnapshotError', message: /snapshot is corrupt/ });
  }
  // A structurally wrong body under a valid checksum is still caught.
  const body = bytes.slice(0, bytes.length - 8);
  body[7] = 9; // format 9
  t.throws(() => KvStateMachine.restore(withChecksum(body)), { name: 'CorruptSnapshotError', message: /format 9/ });
  const trailing = new Uint8Array(body.length + 1);
  trailing.set(bytes.subarray(0, bytes.length - 8));
  t.throws(() => KvStateMachine.restore(withChecksum(trailing)), { name: 'CorruptSnapshotError', message: /1 bytes follow/ });
});

function withChecksum(body: Uint8Array): Uint8Array {
  const hex = fnv1a64Hex(body);
  const out = new Uint8Array(body.length + 8);
  out.set(body);
  for (let i = 0; i < 8; i++) out[body.length + i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

test('fnv1a64Hex matches the published FNV-1a 64 test vectors', (t) => {
  const encode = (text: string): Uint8Array => new TextEncoder().encode(text);
  t.is(fnv1a64Hex(encode('')), 'cbf29ce484222325');
  t.is(fnv1a64Hex(encode('a')), 'af63dc4c8601ec8c');
  t.is(fnv1a64Hex(encode('foobar')), '85944171f73967e8');
});

// ---------------------------------------------------------------------------
// Property test: the state machine against a dumb reference model

/** mulberry32: a small seeded PRNG, so a failing seed reproduces. */
class Prng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let z = this.#state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (z ^ (z >>> 14)) >>> 0;
  }
  int(maxExclusive: number): number {
    return this.next() % maxExclusive;
  }
  chance(probability: number): boolean {
    return this.next() / 0x1_0000_0000 < probability;
  }
  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }
}

/** Everything recomputed naively: a plain Map, full scans, Buffer.compare for order. */
class ReferenceKv {
  revision = 0;
  readonly kvs = new Map<string, KeyValue>();

  static byteOrder(a: string, b: string): number {
    return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
  }

  range(start: string, end: string, limit: number): { kvs: KeyValue[]; count: number; more: boolean } {
    const inRange = [...this.kvs.values()]
      .filter((kv) => ReferenceKv.byteOrder(kv.key, start) >= 0 && (end === '' || ReferenceKv.byteOrder(kv.key, end) < 0))
      .sort((a, b) => ReferenceKv.byteOrder(a.key, b.key));
    const kvs = limit > 0 ? inRange.slice(0, limit) : inRange;
    return { kvs, count: inRange.length, more: kvs.length < inRange.length };
  }

  apply(command: KvCommand): KvResult {
    const pending = this.revision + 1;
    if (command.type === 'put') {
      const result = this.#run({ type: 'put', key: command.key, value: command.value }, pending);
      this.revision = pending;
      return { ok: true, revision: this.revision, prev: (result as { prev: KeyValue | null }).prev };
    }
    if (command.type === 'delete') {
      const prev = this.kvs.get(command.key) ?? null;
      this.kvs.delete(command.key);
      if (prev) this.revision = pending;
      return { ok: true, revision: this.revision, prev, deleted: prev ? 1 : 0 };
    }
    const succeeded = command.compare.every((c) => this.#holds(c));
    const before = JSON.stringify([...this.kvs.entries()].sort());
    const wrote = (succeeded ? command.success : command.failure).some((op) => op.type === 'put');
    const results = (succeeded ? command.success : command.failure).map((op) => this.#run(op, pending));
    if (wrote || JSON.stringify([...this.kvs.entries()].sort()) !== before) this.revision = pending;
    return { ok: true, revision: this.revision, succeeded, results };
  }

  #holds(c: Compare): boolean {
    const kv = this.kvs.get(c.key);
    if (c.target === 'value' && !kv) return false;
    const actual = kv ? kv[c.target] : 0;
    const order = typeof actual === 'string' ? ReferenceKv.byteOrder(actual, c.operand as string) : Math.sign(actual - (c.operand as number));
    return c.op === '==' ? order === 0 : c.op === '!=' ? order !== 0 : c.op === '<' ? order < 0 : order > 0;
  }

  #run(op: KvOp, revision: number): OpResult {
    switch (op.type) {
      case 'put': {
        const prev = this.kvs.get(op.key) ?? null;
        this.kvs.set(op.key, {
          key: op.key,
          value: op.value,
          version: prev ? prev.version + 1 : 1,
          createRevision: prev ? prev.createRevision : revision,
          modRevision: revision,
        });
        return { type: 'put', prev };
      }
      case 'delete': {
        const prev = this.kvs.get(op.key) ?? null;
        this.kvs.delete(op.key);
        return { type: 'delete', deleted: prev ? 1 : 0, prev };
      }
      case 'deleteRange': {
        const doomed = this.range(op.start, op.end, 0).kvs;
        for (const kv of doomed) this.kvs.delete(kv.key);
        return { type: 'deleteRange', deleted: doomed.length };
      }
      case 'get':
        return { type: 'get', kv: this.kvs.get(op.key) ?? null };
      case 'range':
        return { type: 'range', ...this.range(op.start, op.end, op.limit ?? 0) };
    }
  }
}

const keyAlphabet = ['a', 'b', '/', 'é', '\ue000', '\uffff', '😀', '\ufeff'];
const values = ['', 'x', 'y', 'é', '😀', 'long-long-long'];

function randomKey(random: Prng): string {
  let key = '';
  const length = 1 + random.int(3);
  for (let i = 0; i < length; i++) key += random.pick(keyAlphabet);
  return key;
}

function randomBound(random: Prng): string {
  const choice = random.int(4);
  if (choice === 0) return '';
  const key = randomKey(random);
  return choice === 1 ? prefixEnd(key) : key;
}

function randomCompare(random: Prng, revision: number): Compare {
  const target = random.pick<CompareTarget>(['version', 'value', 'modRevision', 'createRevision']);
  const operand = target === 'value' ? random.pick(values) : target === 'version' ? random.int(4) : random.int(revision + 2);
  return { key: randomKey(random), target, op: random.pick<CompareOp>(['==', '!=', '<', '>']), operand };
}

function randomOp(random: Prng): KvOp {
  switch (random.int(6)) {
    case 0:
    case 1:
      return { type: 'put', key: randomKey(random), value: random.pick(values) };
    case 2:
      return { type: 'delete', key: randomKey(random) };
    case 3:
      return random.chance(0.3) ? { type: 'deleteRange', start: randomBound(random), end: randomBound(random) } : { type: 'get', key: randomKey(random) };
    default: {
      const start = randomBound(random);
      const end = randomBound(random);
      return random.chance(0.5) ? { type: 'range', start, end } : { type: 'range', start, end, limit: random.int(5) };
    }
  }
}

/** A command, or bytes that must be rejected. */
function randomEntry(random: Prng, revision: number): KvCommand | Uint8Array {
  const roll = random.int(100);
  if (roll < 30) return put(randomKey(random), random.pick(values));
  if (roll < 42) return del(randomKey(random));
  if (roll < 94) {
    const list = <T>(make: () => T, most: number): T[] => Array.from({ length: random.int(most + 1) }, make);
    return txn(
      list(() => randomCompare(random, revision), 3),
      list(() => randomOp(random), 4),
      list(() => randomOp(random), 4),
    );
  }
  if (roll < 97) return Uint8Array.from({ length: random.int(12) }, () => random.int(256));
  return encodeCommand(put('', 'empty keys are invalid'));
}

/** Key-sorted JSON, so results compare by content whatever the field order. */
function stable(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) =>
    inner !== null && typeof inner === 'object' && !Array.isArray(inner) ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => (a < b ? -1 : 1))) : inner,
  );
}

function agree(t: ExecutionContext, actual: unknown, expected: unknown, context: string): boolean {
  if (stable(actual) === stable(expected)) return true;
  t.deepEqual(actual, expected, context);
  return false;
}

function runProperty(t: ExecutionContext, seed: number, steps: number, options: KvStateMachineOptions): boolean {
  const random = new Prng(seed);
  const model = new ReferenceKv();
  let machine = new KvStateMachine(options);
  for (let step = 1; step <= steps; step++) {
    const entry = randomEntry(random, model.revision);
    const where = `seed ${seed} step ${step}: ${entry instanceof Uint8Array ? `bytes [${entry.join(',')}]` : JSON.stringify(entry)}`;
    const result = applyNext(machine, entry);
    if (entry instanceof Uint8Array) {
      if (!agree(t, result.ok, false, where)) return false;
    } else if (!agree(t, result, model.apply(entry), `result, ${where}`)) return false;

    if (!agree(t, machine.revision, model.revision, `revision, ${where}`)) return false;
    if (!agree(t, machine.range('', ''), model.range('', '', 0).kvs, `full range, ${where}`)) return false;
    const start = randomBound(random);
    const end = randomBound(random);
    const limit = random.int(4);
    if (!agree(t, machine.range(start, end, limit), model.range(start, end, limit).kvs, `range(${JSON.stringify(start)}, ${JSON.stringify(end)}, ${limit}), ${where}`)) return false;
    const key = randomKey(random);
    if (!agree(t, machine.get(key), model.kvs.get(key) ?? null, `get(${JSON.stringify(key)}), ${where}`)) return false;

    if (step % 37 === 0) {
      const bytes = machine.snapshot();
      const restored = KvStateMachine.restore(bytes, options);
      if (!agree(t, [...restored.snapshot()], [...bytes], `snapshot round trip, ${where}`)) return false;
      if (!agree(t, restored.digest(), machine.digest(), `digest, ${where}`)) return false;
      machine = restored;
    }
  }
  return true;
}

test('property: random command sequences agree with a naive reference model after every step', (t) => {
  for (let seed = 1; seed <= 32; seed++) {
    // Tiny leaves exercise the index's splits and merges; a few seeds use the default.
    const options: KvStateMachineOptions = seed % 8 === 0 ? {} : { indexLeafKeysMax: 2 + (seed % 4) };
    if (!runProperty(t, seed, 300, options)) return;
  }
  t.pass();
});

test('a value check refuses a whole command with a bad write, as a recorded rejection that changes nothing', (t) => {
  const valueCheck = (key: string, value: string): string | null => (key.startsWith('records/') && !value.startsWith('{') ? `value of ${key} is not a record` : null);
  const machine = machineWith([{ type: 'put', key: 'records/a', value: '{"ok":1}' }], { valueCheck });
  const revision = machine.revision;
  const applied = machine.appliedIndex;
  const refused = applyNext(machine, {
    type: 'txn',
    compare: [],
    success: [
      { type: 'put', key: 'other', value: 'fine' },
      { type: 'put', key: 'records/b', value: 'not json' },
    ],
    failure: [],
  });
  t.false(refused.ok);
  t.is(refused.ok ? '' : refused.error.message, 'value of records/b is not a record');
  t.is(machine.revision, revision, 'no revision taken');
  t.is(machine.get('other'), null, 'the good write of the same command did not happen either');
  t.is(machine.appliedIndex, logIndex(applied + 1), 'only the applied index moved');
  // The failure branch is checked too: a refused write cannot hide behind a compare.
  const hidden = applyNext(machine, { type: 'txn', compare: [{ key: 'x', target: 'version', op: '==', operand: 99 }], success: [], failure: [{ type: 'put', key: 'records/c', value: 'bad' }] });
  t.false(hidden.ok);
  expectOk(applyNext(machine, { type: 'put', key: 'records/d', value: '{"ok":2}' }));
  t.is(machine.get('records/d')?.value, '{"ok":2}');
});

test('NOSPACE alarm: while its key exists, commands that put are refused on apply; deletes, reads and the alarm key itself go on; stateBytes survives a snapshot', (t) => {
  const machine = new KvStateMachine();
  expectOk(applyNext(machine, { type: 'put', key: 'a', value: 'xyz' }));
  t.is(machine.stateBytes, 1 + 3 + KEY_OVERHEAD_BYTES);
  expectOk(applyNext(machine, { type: 'put', key: NOSPACE_ALARM_KEY, value: '{}' }));
  const refused = applyNext(machine, { type: 'put', key: 'b', value: 'v' });
  t.false(refused.ok);
  t.is(refused.ok ? '' : refused.error.name, 'NoSpaceError');
  t.regex(refused.ok ? '' : refused.error.message, /out of space.*delete keys/);
  // A put in either branch of a txn costs space: refused whatever the compare says.
  t.false(applyNext(machine, { type: 'txn', compare: [], success: [{ type: 'get', key: 'a' }], failure: [{ type: 'put', key: 'c', value: 'v' }] }).ok);
  expectOk(applyNext(machine, { type: 'txn', compare: [], success: [{ type: 'get', key: 'a' }, { type: 'delete', key: 'a' }], failure: [] }));
  t.is(machine.get('b'), null);
  const restored = KvStateMachine.restore(machine.snapshot());
  t.is(restored.stateBytes, machine.stateBytes, 'recomputed from the snapshot');
  expectOk(applyNext(machine, { type: 'delete', key: NOSPACE_ALARM_KEY }));
  t.is(machine.stateBytes, 0);
  expectOk(applyNext(machine, { type: 'put', key: 'b', value: 'v' }));
});

// Issue 11 fuzz, seed 2: a member's proposal that put `members/evil` added a node to the actor ring that the Raft
// configuration does not have. Configuration prefixes are written by configuration entries alone.
test('a command entry that puts, deletes or range-deletes under a configuration prefix is refused whole; a configuration entry may write it', (t) => {
  const machine = new KvStateMachine({ configurationPrefixes: ['members/'] });
  const member = { type: 'put', key: 'members/n1', value: '127.0.0.1:1' } as const;
  t.true(machine.apply(logIndex(1), encodeCommand(member), 'configuration').ok, 'a configuration entry writes members/');
  const revision = machine.revision;
  for (const command of [
    { type: 'put', key: 'members/evil', value: '127.0.0.1:2' },
    { type: 'delete', key: 'members/n1' },
    { type: 'txn', compare: [], success: [{ type: 'put', key: 'ok', value: '1' }], failure: [{ type: 'deleteRange', start: 'm', end: 'n' }] },
    { type: 'txn', compare: [], success: [{ type: 'deleteRange', start: '', end: '' }], failure: [] },
  ] satisfies KvCommand[]) {
    const result = applyNext(machine, command);
    t.false(result.ok, JSON.stringify(command));
    t.regex(result.ok ? '' : result.error.message, /only with the cluster's configuration/);
  }
  t.is(machine.revision, revision, 'nothing changed');
  t.is(machine.get('members/n1')?.value, '127.0.0.1:1');
  expectOk(applyNext(machine, { type: 'txn', compare: [], success: [{ type: 'deleteRange', start: 'n', end: '' }, { type: 'put', key: 'membersx', value: '1' }], failure: [] }));
});

test('a shared decode cache decodes each command once and changes no result, snapshot or digest; other limits decode again', (t) => {
  const cache = new CommandDecodeCache();
  const commands: Uint8Array[] = [
    encodeCommand(put('a', '1')),
    encodeCommand(txn([cmp('a', 'value', '==', '1')], [{ type: 'put', key: 'b', value: '2' }], [{ type: 'get', key: 'a' }])),
    encodeCommand(del('a')),
    new TextEncoder().encode('{"type":"put","key":"c","value":"3"}'),
    Uint8Array.of(1, 9, 9),
  ];
  const plain = new KvStateMachine();
  const cachedReplicas = [new KvStateMachine({ decodeCache: cache }), new KvStateMachine({ decodeCache: cache })];
  commands.forEach((bytes, i) => {
    const expected = plain.apply(logIndex(i + 1), bytes);
    const results = cachedReplicas.map((replica) => replica.apply(logIndex(i + 1), bytes));
    for (const result of results) t.deepEqual(result, expected);
    // Decoded once: the second replica got the first one's decoding (the refusal of bad bytes is the same object).
    if (!expected.ok) t.is((results[0] as Extract<KvResult, { ok: false }>).error, (results[1] as Extract<KvResult, { ok: false }>).error);
  });
  for (const replica of cachedReplicas) {
    t.deepEqual(replica.snapshot(), plain.snapshot());
    t.is(replica.digest(), plain.digest());
  }
  // A replica with a smaller value limit must not take the first decoding of a command its limit refuses.
  const strict = new KvStateMachine({ decodeCache: cache, limits: { valueBytesMax: 1 } });
  const long = encodeCommand(put('k', 'long value'));
  t.true(cachedReplicas[0]?.apply(logIndex(commands.length + 1), long).ok);
  t.false(strict.apply(logIndex(1), long).ok);
});
