// Goal: the runtimes' pure helpers — which word of a command is looked up on PATH, port variables, shell exit statuses, container names and spec hashes.
import test from 'ava';
import { containerName, specHash } from './runtime-docker.ts';
import { leadingProgram, portEnv } from './runtime-process.ts';
import type { WorkloadSpec } from './runtime.ts';
import { decodeShellStatus } from './supervisor.ts';

test('leadingProgram names a plain first word and leaves shell syntax and builtins alone', (t) => {
  t.is(leadingProgram('npm run dev'), 'npm');
  t.is(leadingProgram('  ./serve.sh --port 3000'), './serve.sh');
  t.is(leadingProgram('python3'), 'python3');
  t.is(leadingProgram('cd app && npm start'), null);
  t.is(leadingProgram('exec node server.js'), null);
  t.is(leadingProgram('FOO=1 node x.js'), null);
  t.is(leadingProgram('$HOME/bin/tool'), null);
  t.is(leadingProgram('(cd x; make)'), null);
  t.is(leadingProgram('"quoted prog" arg'), null);
});

test('ports become PORT and PORT_<NAME>', (t) => {
  t.deepEqual(portEnv({ default: 20000, 'admin-ui': 20001, debug: 20002 }), { PORT: '20000', PORT_ADMIN_UI: '20001', PORT_DEBUG: '20002' });
});

test('a shell status above 128 is a signal', (t) => {
  t.deepEqual(decodeShellStatus(0), { exitCode: 0, signal: null });
  t.deepEqual(decodeShellStatus(3), { exitCode: 3, signal: null });
  t.deepEqual(decodeShellStatus(137), { exitCode: null, signal: 'SIGKILL' });
  t.deepEqual(decodeShellStatus(143), { exitCode: null, signal: 'SIGTERM' });
  t.deepEqual(decodeShellStatus(255), { exitCode: 255, signal: null });
});

test('container names are valid for Docker and distinct per node and project; the spec hash ignores key order and restart policy', (t) => {
  const name = containerName('node 1', { tenant: 'acme/x', name: 'web app' });
  t.regex(name, /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/);
  t.not(name, containerName('node 1', { tenant: 'acme_x', name: 'web app' }));
  t.not(name, containerName('node 2', { tenant: 'acme/x', name: 'web app' }));
  const base: WorkloadSpec = { project: { tenant: 't', name: 'p' }, image: 'img', env: { A: '1', B: '2' }, ports: { default: 1 }, restart: 'never', node: 'n' };
  t.is(specHash(base), specHash({ ...base, env: { B: '2', A: '1' }, restart: 'always' }));
  t.not(specHash(base), specHash({ ...base, env: { A: '1', B: '3' } }));
  t.not(specHash(base), specHash({ ...base, limits: { memoryBytes: 64 * 1024 * 1024 } }));
});
