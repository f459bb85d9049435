// Audit chains: records chain by hash; verify names the first broken link for an edited record, a re-hashed one, a removed one and a cut tail, and passes from a checkpoint; digests hide secrets; queries filter and paginate.
import test from 'ava';
import { KvStateMachine, encodeCommand, type KvCommand } from '../consensus/kv-state-machine.ts';
import type { LogIndex } from '../consensus/types.ts';
import {
  argsDigest,
  auditCheckpointKey,
  canonicalJson,
  auditHeadKey,
  auditRecordKey,
  chainRecords,
  GENESIS_HASH,
  queryAudit,
  recordHash,
  verifyAllChains,
  verifyChain,
  type AuditEntry,
  type AuditRecord,
} from './audit.ts';

function store(): { kv: KvStateMachine; apply: (command: KvCommand) => void } {
  const kv = new KvStateMachine();
  let index = 0;
  return { kv, apply: (command) => void kv.apply(++index as LogIndex, encodeCommand(command)) };
}

const entry = (i: number, tenant: string | null = 'alice', action = 'project_start'): AuditEntry => ({
  timeMs: 1_000 + i,
  actor: { tokenId: `t${i % 2}`, tokenName: `token-${i % 2}`, tenant: tenant ?? 'default', role: 'developer' },
  action,
  tenant,
  target: `web${i}`,
  argsDigest: argsDigest({ name: `web${i}` }),
  outcome: 'ok',
  detail: null,
});

/** Write a chain of `count` records for `node` the way the writer does (records, then the head). */
function writeChain(apply: (command: KvCommand) => void, node: string, count: number, from = { seq: 0, hash: GENESIS_HASH }): AuditRecord[] {
  const records = chainRecords(node, from, Array.from({ length: count }, (_, i) => entry(from.seq + i)));
  for (const r of records) apply({ type: 'put', key: auditRecordKey(node, r.seq), value: JSON.stringify(r) });
  const last = records[records.length - 1] as AuditRecord;
  apply({ type: 'put', key: auditHeadKey(node), value: JSON.stringify({ seq: last.seq, hash: last.hash }) });
  return records;
}

test('an intact chain verifies; each record holds the hash of the one before', (t) => {
  const { kv, apply } = store();
  const records = writeChain(apply, 'n1', 5);
  writeChain(apply, 'n2', 3);
  t.is(records[0]?.prev, GENESIS_HASH);
  for (let i = 1; i < records.length; i += 1) t.is(records[i]?.prev, records[i - 1]?.hash);
  const verdicts = verifyAllChains(kv);
  t.deepEqual(
    verdicts.map((v) => [v.node, v.ok, v.ok ? v.records : -1]),
    [
      ['n1', true, 5],
      ['n2', true, 3],
    ],
  );
});

test('verify names the first broken link: an edited record, an edit with its hash recomputed, a removed record, a cut tail', (t) => {
  const cases: { what: string; tamper: (apply: (c: KvCommand) => void, records: AuditRecord[]) => void; key: string; reason: RegExp }[] = [
    {
      what: 'edited outcome',
      tamper: (apply, records) => apply({ type: 'put', key: auditRecordKey('n1', 3), value: JSON.stringify({ ...records[2], outcome: 'denied' }) }),
      key: auditRecordKey('n1', 3),
      reason: /does not match its hash/,
    },
    {
      what: 'edited and re-hashed',
      tamper: (apply, records) => {
        const { hash: _hash, ...body } = { ...(records[2] as AuditRecord), target: 'innocent' };
        apply({ type: 'put', key: auditRecordKey('n1', 3), value: JSON.stringify({ ...body, hash: recordHash(body) }) });
      },
      key: auditRecordKey('n1', 4),
      reason: /prev hash does not match the hash of record 3/,
    },
    { what: 'removed', tamper: (apply) => apply({ type: 'delete', key: auditRecordKey('n1', 2) }), key: auditRecordKey('n1', 3), reason: /expected record 2 next/ },
    { what: 'tail cut', tamper: (apply) => apply({ type: 'delete', key: auditRecordKey('n1', 5) }), key: auditHeadKey('n1'), reason: /head names record 5 but the chain ends at 4/ },
    { what: 'not JSON', tamper: (apply) => apply({ type: 'put', key: auditRecordKey('n1', 1), value: '{' }), key: auditRecordKey('n1', 1), reason: /not JSON/ },
  ];
  for (const c of cases) {
    const { kv, apply } = store();
    const records = writeChain(apply, 'n1', 5);
    c.tamper(apply, records);
    const verdict = verifyChain(kv, 'n1');
    t.false(verdict.ok, c.what);
    if (verdict.ok) continue;
    t.is(verdict.key, c.key, c.what);
    t.regex(verdict.reason, c.reason, c.what);
  }
});

test('after compaction the chain verifies from its checkpoint, and a checkpoint that lies is caught', (t) => {
  const { kv, apply } = store();
  const records = writeChain(apply, 'n1', 6);
  // Drop records 1..3 behind a checkpoint naming record 3, as the writer's compaction does.
  apply({ type: 'txn', compare: [], success: [{ type: 'deleteRange', start: auditRecordKey('n1', 1), end: auditRecordKey('n1', 4) }, { type: 'put', key: auditCheckpointKey('n1'), value: JSON.stringify({ seq: 3, hash: records[2]?.hash }) }], failure: [] });
  const verdict = verifyChain(kv, 'n1');
  t.true(verdict.ok);
  if (verdict.ok) t.deepEqual([verdict.from.seq, verdict.records, verdict.head.seq], [3, 3, 6]);
  apply({ type: 'put', key: auditCheckpointKey('n1'), value: JSON.stringify({ seq: 3, hash: GENESIS_HASH }) });
  const lying = verifyChain(kv, 'n1');
  t.false(lying.ok);
  if (!lying.ok) t.is(lying.key, auditRecordKey('n1', 4));
});

test('the argument digest leaves out secrets and env values: it does not change with them, and does with anything else', (t) => {
  const base = { name: 'web', command: 'npm start', env: { API_KEY: 'one', PORT: '3000' }, headers: { Authorization: 'Bearer abc' }, token: 'x' };
  const sameSecretsChanged = { ...base, env: { API_KEY: 'two', PORT: '4000' }, headers: { Authorization: 'Bearer other' }, token: 'y' };
  t.is(argsDigest(base), argsDigest(sameSecretsChanged));
  t.not(argsDigest(base), argsDigest({ ...base, command: 'rm -rf /' }));
  t.not(argsDigest(base), argsDigest({ ...base, env: { API_KEY: 'one', PORT: '3000', EXTRA: '' } }), 'env names still count');
  t.is(argsDigest({ b: 1, a: 2 }), argsDigest({ a: 2, b: 1 }), 'key order does not matter');
});

test('hashes are those of the records already written: a record and an argument digest hashed before the loop rewrite of canonicalJson verify the same', (t) => {
  // Both values were computed with the Object.entries/sort/map/join canonicalJson and createHash: chains written then must still verify.
  const record = { v: 1 as const, node: 'n1', seq: 7, prev: 'ab'.repeat(32), timeMs: 1765000000000, actor: { tokenId: '0123456789abcdef', tokenName: 'admin', tenant: 'acme', role: 'admin' as const }, action: 'kv put', tenant: null, target: 'app/ü/😀', argsDigest: 'cd'.repeat(32), outcome: 'error' as const, detail: 'UNAVAILABLE: "no leader"' };
  t.is(recordHash(record), 'fe64f6d3f3e2a893ee3aa9684667d4b00c990b3b7b4d5c684e4064a8b8516c59');
  const args = { key: 'app/x', env: { A: '1' }, list: [1, 'two', null, { z: 1, a: [true] }], token: 'dht.x', nested: { b: 2, a: undefined, é: 3, Z: 4 } };
  t.is(argsDigest(args), '6dcb816f6dcf89c86c9236e5cdf95b0e363ff3c0642adc4b9c5a4cd077f4b6ef');
});

/** The first canonicalJson, kept as the reference the faster one must agree with. */
function canonicalJsonReference(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJsonReference).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJsonReference(v)}`).join(',')}}`;
}

test('canonicalJson gives the reference bytes over random nested values', (t) => {
  let seed = 7;
  const next = (bound: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % bound;
  };
  const keyChars = ['a', 'b', 'Z', 'é', '😀', '"', '\\', '0', '_'];
  const text = (): string => Array.from({ length: next(4) }, () => keyChars[next(keyChars.length)]).join('');
  const value = (depth: number): unknown => {
    switch (depth > 3 ? next(5) : next(8)) {
      case 0: return null;
      case 1: return next(1000) - 500;
      case 2: return text();
      case 3: return next(2) === 0;
      case 4: return undefined;
      case 5: return Array.from({ length: next(4) }, () => value(depth + 1));
      default: return Object.fromEntries(Array.from({ length: next(5) }, () => [text(), value(depth + 1)]));
    }
  };
  for (let i = 0; i < 1000; i++) {
    const sample = value(0);
    t.is(canonicalJson(sample), canonicalJsonReference(sample));
  }
  const sparse = [1, , 3];
  t.is(canonicalJson(sparse), canonicalJsonReference(sparse), 'a hole stays empty');
});

test('queries filter by tenant, identity, action and time, oldest first across nodes, and paginate', (t) => {
  const { kv, apply } = store();
  writeChain(apply, 'n1', 6);
  writeChain(apply, 'n2', 4);
  const all = queryAudit(kv, {});
  t.is(all.records.length, 10);
  t.deepEqual(
    all.records.map((r) => r.timeMs),
    [...all.records.map((r) => r.timeMs)].sort((a, b) => a - b),
  );
  t.is(queryAudit(kv, { identity: 't1' }).records.length, 5);
  t.is(queryAudit(kv, { identity: 'token-0' }).records.length, 5);
  t.is(queryAudit(kv, { tenant: 'bob' }).records.length, 0);
  t.is(queryAudit(kv, { action: 'kv put' }).records.length, 0);
  t.is(queryAudit(kv, { fromMs: 1_002, toMs: 1_004 }).records.length, 4, 'seq 3 and 4 of both nodes');
  const pages: number[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = queryAudit(kv, { limit: 3, ...(cursor === undefined ? {} : { cursor }) });
    pages.push(page.records.length);
    if (page.next === null) break;
    cursor = page.next;
  }
  t.deepEqual(pages, [3, 3, 3, 1]);
});
