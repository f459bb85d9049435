// Records read back from the replicated state fit their schemas or are refused: the poison record of issue 11 among them.
import test from 'ava';
import type { KeyValue } from '../consensus/kv-state-machine.ts';
import { RecordReader, systemValueError } from './records.ts';

const kv = (key: string, value: string, modRevision = 1): KeyValue => ({ key, value, version: 1, createRevision: 1, modRevision });

const goodProject = JSON.stringify({
  spec: { command: 'npm run dev', image: null, cwd: null, env: { A: '1' }, ports: ['default'], restart: 'on-failure', healthCheck: { type: 'http', path: '/', port: 'default' }, memoryBytes: 0 },
  desired: 'running',
  generation: 1,
  requests: ['r1'],
});

test('a project record without a spec (the write that killed two nodes) is refused, with the field named', (t) => {
  const why = systemValueError('projects/evil/p', '{"desired":"running","generation":1}');
  t.regex(why ?? '', /^value of projects\/evil\/p does not fit its schema: spec: /);
  t.is(systemValueError('projects/evil/p', 'not json'), 'value of projects/evil/p is not JSON');
  t.is(systemValueError('projects/good/p', goodProject), null);
});

test('every system record kind has its schema; keys outside the system prefixes are free', (t) => {
  t.regex(systemValueError('status/a/b', '{"state":"running"}') ?? '', /status\/a\/b/);
  t.regex(systemValueError('tenants/a/quota', '{"projects":-1,"ports":1,"memoryBytes":1}') ?? '', /projects/);
  t.regex(systemValueError('events/a/b', '{"events":[{"seq":1}]}') ?? '', /events/);
  t.regex(systemValueError('tenants/a/usage', '[]') ?? '', /usage/);
  t.is(systemValueError('greeting', 'hello'), null);
  t.regex(systemValueError('projects/only-two-parts', 'anything') ?? '', /names no record/);
  // A spec must say what to run.
  const neither = JSON.parse(goodProject) as { spec: { command: string | null } };
  neither.spec.command = null;
  t.regex(systemValueError('projects/a/b', JSON.stringify(neither)) ?? '', /command or an image/);
  // Bounds hold at rest too: an env past its limit is refused.
  const huge = JSON.parse(goodProject) as { spec: { env: Record<string, string> } };
  huge.spec.env = { BIG: 'x'.repeat(70_000) };
  t.truthy(systemValueError('projects/a/b', JSON.stringify(huge)));
});

test('the reader hands out a record that fits, null for one that does not, and reports each bad key once', (t) => {
  const reported: string[] = [];
  const reader = new RecordReader((key, detail) => reported.push(`${key}: ${detail}`));
  t.is(reader.project(kv('projects/a/b', goodProject))?.spec.command, 'npm run dev');
  t.is(reader.project(kv('projects/evil/p', '{"desired":"running","generation":1}')), null);
  t.is(reader.project(kv('projects/evil/p', '{"desired":"running","generation":1}', 2)), null);
  t.is(reader.errors.invalid, 2);
  t.is(reported.length, 1, 'logged once per key');
  t.regex(reported[0] ?? '', /^projects\/evil\/p: /);
  // Old records without the request ids read as having none.
  const old = JSON.parse(goodProject) as Record<string, unknown>;
  delete old.requests;
  t.deepEqual(reader.project(kv('projects/a/old', JSON.stringify(old)))?.requests, []);
});

test('parsed records are cached by modRevision: a new revision is parsed again', (t) => {
  const reader = new RecordReader();
  const first = reader.project(kv('projects/a/b', goodProject, 5));
  t.is(reader.project(kv('projects/a/b', goodProject, 5)), first, 'same object for the same revision');
  const changed = JSON.parse(goodProject) as { desired: string };
  changed.desired = 'stopped';
  t.is(reader.project(kv('projects/a/b', JSON.stringify(changed), 6))?.desired, 'stopped');
});

// Issue 11 fuzz, seed 2: a member's proposal put garbage under every system prefix and most of it was stored (members/evil
// joined the ring). Each prefix now has a rule: the key shapes the cluster writes, and the value each must hold.
const token = JSON.stringify({ v: 1, id: 'abcdef0123', name: 'dev', hash: 'a'.repeat(64), createdAtMs: 1, expiresAtMs: null, revokedAtMs: null, createdBy: 'x', kind: 'client', tenant: 't', role: 'developer' });
const auditRecord = { v: 1, node: 'n1', seq: 3, prev: '0'.repeat(64), hash: 'b'.repeat(64), timeMs: 1, actor: { node: 'n1' }, action: 'kv put', tenant: null, target: 'k', argsDigest: 'c'.repeat(64), outcome: 'ok', detail: null };

test('issue 11 fuzz seed 2: every system prefix has a value rule; what the cluster writes passes, garbage and stray keys do not', (t) => {
  const fits: [string, string][] = [
    ['members/n2', '127.0.0.1:2602'],
    ['ring/epoch', 'liveness down=n2 up='],
    ['liveness/n1', 'down'],
    ['liveness/n1', 'draining'],
    ['ports/n1/40100', 'projects/a/b'],
    ['tokens/abcdef0123', token],
    ['audit/n1/head', JSON.stringify({ seq: 3, hash: 'b'.repeat(64) })],
    ['audit/n1/checkpoint', JSON.stringify({ seq: 0, hash: '0'.repeat(64) })],
    ['audit/n1/r/000000000003', JSON.stringify(auditRecord)],
    ['cluster/alarms/nospace', JSON.stringify({ stateBytes: 10, quotaBytes: 5, raisedBy: 'n1' })],
  ];
  for (const [key, value] of fits) t.is(systemValueError(key, value), null, key);
  const refused: [string, string, RegExp][] = [
    ['members/a/b', '127.0.0.1:1', /names no record/],
    ['members/n2', 'has spaces', /member address/],
    ['ring/other', 'x', /names no record/],
    ['ring/epoch', 'x'.repeat(5000), /more than/],
    ['liveness/n1', 'uL*8vkN', /not a liveness mark/],
    ['liveness/', 'down', /names no record/],
    ['ports/n1/40100', '0', /does not name a project/],
    ['ports/n3/99999', 'projects/a/b', /names no record/],
    ['ports/n2/x', 'projects/a/b', /names no record/],
    ['tokens/abcdef0123', '{}', /not a token record/],
    ['tokens/0123456789', token, /not of '0123456789'/],
    ['tokens/', 'null', /names no record/],
    ['audit/n2/checkpoint', 'down', /not JSON/],
    ['audit/n1/head', JSON.stringify({ seq: 1, hash: 'x' }), /hash/],
    ['audit/n1/r/000000000004', JSON.stringify(auditRecord), /not the one its key names/],
    ['cluster/alarms/nospace', '__define', /not JSON/],
    ['cluster/other', 'down', /names no record/],
    ['tenants/evil', '{}', /names no record/],
    ['tenants/fuzz/quota', JSON.stringify({ seq: 1, hash: 'x' }), /schema/],
    ['events/x', '{"events":0}', /names no record/],
    ['status/evil/p', '{~Vtez', /not JSON/],
  ];
  for (const [key, value, why] of refused) t.regex(systemValueError(key, value) ?? 'accepted', why, key);
});
