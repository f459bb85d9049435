// System prefixes: every key the cluster writes for itself is under one; client writes that would touch one, directly, by range or in either txn branch, are found; reads and user keys are not.
import test from 'ava';
import { memberKey, RING_EPOCH_KEY } from '../consensus/kv-machine.ts';
import { auditCheckpointKey, auditHeadKey, auditRecordKey } from './audit.ts';
import { livenessKey, portKey, projectActorKey, quotaKey, statusKey, tenantActorKey, usageKey } from './messages.ts';
import { commandWritesSystemKey, isSystemKey, rangeTouchesSystemKeys } from './system-keys.ts';
import { tokenKey } from './tokens.ts';

test('every key the cluster writes for itself is a system key', (t) => {
  const keys = [
    memberKey('n1'),
    RING_EPOCH_KEY,
    livenessKey('n1'),
    projectActorKey('alice', 'web'),
    statusKey('alice', 'web'),
    portKey('n1', 20_000),
    tenantActorKey('alice'),
    quotaKey('alice'),
    usageKey('alice'),
    tokenKey('0123456789abcdef'),
    auditRecordKey('n1', 1),
    auditHeadKey('n1'),
    auditCheckpointKey('n1'),
  ];
  for (const key of keys) t.true(isSystemKey(key), key);
  for (const key of ['greeting', 'app/a', 'w0-000001', 'project/x', 'tokensx', '']) t.false(isSystemKey(key), key);
});

test('writes that touch a system prefix are found; reads and user keys pass', (t) => {
  t.is(commandWritesSystemKey({ type: 'put', key: 'projects/evil/x', value: '{}' }), 'projects/');
  t.is(commandWritesSystemKey({ type: 'delete', key: 'members/n1' }), 'members/');
  t.is(commandWritesSystemKey({ type: 'put', key: 'app/a', value: '1' }), null);
  // The failure branch counts: a txn that writes projects/ when its compare fails.
  t.is(
    commandWritesSystemKey({ type: 'txn', compare: [{ key: 'x', target: 'version', op: '==', operand: 99 }], success: [{ type: 'put', key: 'a', value: '1' }], failure: [{ type: 'put', key: 'tokens/abc', value: '{}' }] }),
    'tokens/',
  );
  // Reads of system keys are allowed, in a txn too.
  t.is(commandWritesSystemKey({ type: 'txn', compare: [], success: [{ type: 'get', key: 'projects/a/b' }, { type: 'range', start: 'audit/', end: 'audit0' }], failure: [] }), null);
  // Delete ranges: everything, a span across a prefix, one inside it; and ranges that miss them all.
  t.is(commandWritesSystemKey({ type: 'txn', compare: [], success: [{ type: 'deleteRange', start: '', end: '' }], failure: [] }), 'members/');
  t.is(rangeTouchesSystemKeys('p', 'q'), 'projects/');
  t.is(rangeTouchesSystemKeys('status/a', 'status/b'), 'status/');
  t.is(rangeTouchesSystemKeys('app/', 'app0'), null);
  t.is(rangeTouchesSystemKeys('projects0', 'r'), null, 'starts after projects/ ends, ends before ring/');
  t.is(rangeTouchesSystemKeys('a', 'audit/'), null, 'ends exactly where audit/ starts');
  t.is(rangeTouchesSystemKeys('zz', ''), null, 'from zz to the end holds no system key');
  t.is(rangeTouchesSystemKeys('u', ''), null);
  t.is(rangeTouchesSystemKeys('t', ''), 'tenants/');
});
