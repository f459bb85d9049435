// Goal: exec runs next to the workload (its cwd, user, cgroup) with the fixed base env plus the given env, never the node's; timeouts and aborts kill all it started; output is capped; per-tenant users keep tenants out of each other's files.
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RuntimeError, type ExecSpec, type ProjectRef } from './runtime.ts';
import { commandSpec, processesWithEnv, RuntimeFixture } from './testing/process-runtime.ts';
import { prerequisites } from './testing/prerequisites.ts';
import { eventually } from './testing/real.ts';
import { WORKLOAD_LANG } from './workload-user.ts';

const fixture = new RuntimeFixture('debughost-runtime-exec-');
const isRoot = process.getuid?.() === 0;
const NODE_SECRET = 'DEBUGHOST_TEST_NODE_SECRET';

test.before(() => {
  // A variable of the node's own environment: no workload or exec may see it.
  process.env[NODE_SECRET] = 'node-only';
});

test.after.always(async () => {
  delete process.env[NODE_SECRET];
  await fixture.close();
});

const execSpec = (command: string, extra: Partial<ExecSpec> = {}): ExecSpec => ({ command, env: {}, timeoutMs: 10_000, outputBytesMax: 64 * 1024, ...extra });
const never = new AbortController().signal;

test.serial("exec runs in the workload's directory, cgroup and user, with the fixed base env plus the given env, never the node's", async (t) => {
  const { runtime } = await fixture.open();
  const project: ProjectRef = { tenant: 't1', name: 'web' };
  await runtime.start(commandSpec('web', 'exec sleep 600', { env: { PROJECT_ONLY: 'p' } }));
  const outcome = await runtime.exec(project, execSpec(`pwd; id -u; grep -c 'p:t1:web/x' /proc/self/cgroup; echo "$PATH|$HOME|$LANG|\${GIVEN}|\${${NODE_SECRET}:-unset}"; env`, { env: { GIVEN: 'yes' } }), never);
  t.is(outcome.exitCode, 0, outcome.stderr);
  const [pwd, uid, cgroupLines, values, ...env] = outcome.stdout.trim().split('\n');
  t.regex(pwd ?? '', /\/work\/t1\/projects\/web$/);
  if (isRoot) t.not(uid, '0', 'a root node runs the exec as the tenant user');
  t.true(Number(cgroupLines) >= (runtime.cgroups === null ? 0 : 1), `cgroup lines: ${cgroupLines}`);
  const [path, home, lang, given, secret] = (values ?? '').split('|');
  t.false((path ?? '').includes('.pyenv') || (path ?? '').includes('.cargo'), `PATH is the fixed one, not the node's: ${path}`);
  t.true((path ?? '').startsWith('/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'));
  t.regex(home ?? '', /\/work\/t1\/home$/);
  t.is(lang, WORKLOAD_LANG);
  t.is(given, 'yes');
  t.is(secret, 'unset');
  const names = env.map((line) => line.split('=')[0] ?? '').sort();
  t.false(names.includes(NODE_SECRET));
  t.false(names.includes('PROJECT_ONLY'), 'exec gets the env it is given (the caller adds the project env), nothing else of the workload');
  t.deepEqual(names.filter((name) => !['PATH', 'HOME', 'LANG', 'GIVEN', 'PWD', 'OLDPWD', 'SHLVL', '_'].includes(name)), []);
  await runtime.remove(project);
});

test.serial('a workload sees the fixed base env, its own env and ports, and nothing of the node', async (t) => {
  const { runtime, logs } = await fixture.open();
  const project: ProjectRef = { tenant: 't1', name: 'envcheck' };
  await runtime.start(commandSpec('envcheck', 'env | sort', { env: { MINE: '1' }, ports: { default: 21900 } }));
  await eventually('its output', 10_000, () => runtime.status(project)?.state === 'exited' && logs.lastLines(project, 50).length >= 4);
  const names = logs.lastLines(project, 50).map((line) => line.split('=')[0] ?? '');
  t.deepEqual(names.filter((name) => !['PWD', 'OLDPWD', 'SHLVL', '_'].includes(name)), ['HOME', 'LANG', 'MINE', 'PATH', 'PORT']);
});

test.serial('exec timeout kills the command and everything it started, also past setsid', async (t) => {
  const { runtime } = await fixture.open();
  const mark = randomUUID();
  const project: ProjectRef = { tenant: 't1', name: 'slow' };
  const begin = performance.now();
  const outcome = await runtime.exec(project, execSpec("setsid sh -c 'exec sleep 600' & echo started; exec sleep 601", { env: { DH_MARK: mark }, timeoutMs: 800 }), never);
  t.true(outcome.timedOut);
  t.is(outcome.signal, 'SIGKILL');
  t.is(outcome.stdout, 'started\n');
  t.true(performance.now() - begin < 8000);
  if (runtime.cgroups !== null) t.deepEqual(processesWithEnv('DH_MARK', mark), []);
  else t.log('no cgroups here: a setsid child outlives the exec (documented)');
});

test.serial('exec output is capped and the cap is reported; an abort ends it', async (t) => {
  const { runtime } = await fixture.open();
  const project: ProjectRef = { tenant: 't1', name: 'loud' };
  const capped = await runtime.exec(project, execSpec("head -c 200000 /dev/zero | tr '\\0' a; echo done >&2", { outputBytesMax: 1000 }), never);
  t.is(capped.stdout.length, 1000);
  t.is(capped.stderr, 'done\n');
  t.true(capped.truncated);
  t.is(capped.exitCode, 0);
  const controller = new AbortController();
  const running = runtime.exec(project, execSpec('exec sleep 600'), controller.signal);
  setTimeout(() => controller.abort(), 300);
  const aborted = await running;
  t.is(aborted.signal, 'SIGKILL');
  t.false(aborted.timedOut);
});

test.serial('exec refuses bad input with a clear error and changes nothing', async (t) => {
  const { runtime } = await fixture.open();
  const project: ProjectRef = { tenant: 't1', name: 'bad' };
  const timeout = await t.throwsAsync(runtime.exec(project, execSpec('true', { timeoutMs: 0 }), never), { instanceOf: RuntimeError });
  t.is(timeout?.name, 'InvalidSpecError');
  const cwd = await t.throwsAsync(runtime.exec(project, execSpec('true', { cwd: '/no/such/dir' }), never), { instanceOf: RuntimeError });
  t.is(cwd?.name, 'CwdMissingError');
  t.deepEqual(runtime.list(), []);
});

const rootTest = (await prerequisites('root')).guard(test.serial);
rootTest(`per-tenant users: tenants run as different users and cannot read each other's project files`, async (t) => {
  const { runtime } = await fixture.open();
  const alice: ProjectRef = { tenant: 'alice', name: 'app' };
  const bob: ProjectRef = { tenant: 'bob', name: 'app' };
  const written = await runtime.exec(alice, execSpec('echo secret > notes.txt; chmod 644 notes.txt; pwd; id -u'), never);
  const [aliceDir, aliceUid] = written.stdout.trim().split('\n');
  const bobId = await runtime.exec(bob, execSpec('id -u'), never);
  t.not(aliceUid, bobId.stdout.trim());
  t.not(aliceUid, '0');
  // Even a world-readable file is out of reach: the tenant's directory is 0700 and its own.
  const peek = await runtime.exec(bob, execSpec(`cat ${aliceDir as string}/notes.txt`), never);
  t.not(peek.exitCode, 0);
  t.regex(peek.stderr, /Permission denied/);
  const list = await runtime.exec(bob, execSpec(`ls ${join(aliceDir as string, '..', '..', '..')}`), never);
  t.regex(list.stderr, /Permission denied/, 'the work root cannot be listed');
  // A cwd the tenant's user may not enter is refused before anything runs.
  const closed = await t.throwsAsync(runtime.exec(bob, execSpec('true', { cwd: aliceDir as string }), never), { instanceOf: RuntimeError });
  t.regex(closed?.message ?? '', /not open to tenant bob's user/);
  // The same user on every start: the allocation is kept in the state dir.
  const again = await runtime.exec(alice, execSpec('id -u'), never);
  t.is(again.stdout.trim(), aliceUid ?? 'unknown');
});

rootTest(`per-tenant users: a workload cannot read the node's state or another tenant's home`, async (t) => {
  const { runtime, dataDir } = await fixture.open();
  const secretFile = join(dataDir, 'runtime', 'process', 'tenant-uids.json');
  writeFileSync(join(dataDir, 'node-secret'), 'x', { mode: 0o600 });
  const outcome = await runtime.exec({ tenant: 'carol', name: 'x' }, execSpec(`cat ${secretFile}; cat ${join(dataDir, 'node-secret')}; ls ${join(dataDir, 'runtime', 'process', 'work', 'alice', 'home')}`), never);
  t.is(outcome.stdout, '');
  t.is(outcome.stderr.match(/Permission denied|No such file/g)?.length, 3, outcome.stderr);
});
