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

test('every system record kind has its schema; other keys are free', (t) => {
  t.regex(systemValueError('status/a/b', '{"state":"running"}') ?? '', /status\/a\/b/);
  t.regex(systemValueError('tenants/a/quota', '{"projects":-1,"ports":1,"memoryBytes":1}') ?? '', /projects/);
  t.regex(systemValueError('events/a/b', '{"events":[{"seq":1}]}') ?? '', /events/);
  t.regex(systemValueError('tenants/a/usage', '[]') ?? '', /usage/);
  t.is(systemValueError('greeting', 'hello'), null);
  t.is(systemValueError('projects/only-two-parts', 'anything'), null);
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
