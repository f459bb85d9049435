// Goal: the process runtime with real processes — health waits, restarts and crash loops, whole-tree stops, death with its node, clean-up after a restart, clear start errors.
import test from 'ava';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { checkHttp, checkTcp, probeFor, waitFor } from './health.ts';
import type { LogStore } from './logs.ts';
import { portIsFree, PortRegistry } from './ports.ts';
import { ProcessRuntime, type ProcessRuntimeOptions } from './runtime-process.ts';
import { RuntimeError, type ProjectRef, type WorkloadStatus } from './runtime.ts';
import { prerequisites } from './testing/prerequisites.ts';
import { eventually, groupMembers, processRuns, realClock } from './testing/real.ts';
import { commandSpec, RuntimeFixture, type OpenedRuntime } from './testing/process-runtime.ts';
import { runtimeCompliance, type Behaviour } from './testing/runtime-compliance.ts';

// A real dev server (python3 -m http.server) for the tests that need a process holding a port.
const pythonTest = (await prerequisites('python3')).guard(test);

const fixture = new RuntimeFixture('debughost-runtime-process-');
const root = fixture.root;
const childPids: number[] = [];
const ports = new PortRegistry({ node: 'n1', rangeStart: 21000, rangeEnd: 21999 });

test.after.always(async () => {
  for (const pid of childPids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await fixture.close();
});

const openRuntime = (options: Partial<ProcessRuntimeOptions> = {}): Promise<OpenedRuntime> => fixture.open(options);
const newLogs = (dir: string): LogStore => fixture.newLogs(dir);
const spec = commandSpec;
let dirCount = 1000;

const waitState = (runtime: ProcessRuntime, project: ProjectRef, states: WorkloadStatus['state'][], timeoutMs = 10_000): Promise<WorkloadStatus> =>
  eventually(`state ${states.join('|')}`, timeoutMs, () => {
    const status = runtime.status(project);
    return status !== null && states.includes(status.state) ? status : null;
  });

pythonTest('python3 http.server on an allocated port passes an HTTP health check, then stops on SIGTERM', async (t) => {
  const { runtime, logs } = await openRuntime();
  const allocated = await ports.allocate('projects/t1/web', ['default']);
  const port = allocated.default as number;
  const project = { tenant: 't1', name: 'web' };
  await runtime.start(spec('web', 'exec python3 -u -m http.server "$PORT" --bind 127.0.0.1', { ports: allocated }));
  const result = await waitFor(probeFor({ kind: 'http', port, path: '/' }, { logs, project }), {
    timeoutMs: 15_000,
    clock: realClock,
    lastLines: () => logs.lastLines(project, 5),
    giveUp: () => (runtime.status(project)?.state === 'running' ? null : 'the workload is not running'),
  });
  t.true(result.ok, JSON.stringify(result));
  const stopped = await runtime.stop(project, 3000);
  t.is(stopped?.state, 'stopped');
  t.is(stopped?.signal, 'SIGTERM');
  t.false((await checkTcp(port)).ok);
  t.true(await portIsFree(port));
  await ports.release('projects/t1/web');
});

test('a crashing command is restarted with growing back-off, then held in crashLoop with its last lines', async (t) => {
  const { runtime } = await openRuntime({ restart: { backoffMsMin: 50, backoffMsMax: 1000, crashLoopExitsMax: 4, crashLoopWindowMs: 60_000, stableRunMs: 10_000 } });
  const project = { tenant: 't1', name: 'crash' };
  const delays: number[] = [];
  runtime.subscribe((event) => {
    if (event.type !== 'status' || event.status.project.name !== 'crash') return;
    const delay = /restarting in (\d+) ms/.exec(event.status.error ?? '')?.[1];
    if (delay !== undefined) delays.push(Number(delay));
  });
  await runtime.start(spec('crash', 'echo "boom at start"; exit 3', { restart: 'on-failure' }));
  const status = await waitState(runtime, project, ['crashLoop']);
  t.deepEqual(delays, [50, 100, 200]);
  t.is(status.restarts, 3);
  t.is(status.exitCode, 3);
  t.regex(status.error ?? '', /crash loop: ended 4 times within 60 s \(last: exited with code 3\).*last lines: boom at start/);
});

test('restart policy never leaves an exited workload alone; always restarts a clean exit', async (t) => {
  const { runtime } = await openRuntime({ restart: { backoffMsMin: 20, backoffMsMax: 100, crashLoopExitsMax: 3, crashLoopWindowMs: 60_000, stableRunMs: 10_000 } });
  await runtime.start(spec('once', 'exit 0', { restart: 'on-failure' }));
  const once = await waitState(runtime, { tenant: 't1', name: 'once' }, ['exited']);
  t.is(once.exitCode, 0);
  t.is(once.restarts, 0);
  t.is(once.error, null);
  await runtime.start(spec('loop', 'exit 0', { restart: 'always' }));
  const loop = await waitState(runtime, { tenant: 't1', name: 'loop' }, ['crashLoop']);
  t.is(loop.restarts, 2);
});

pythonTest('stop kills the whole tree: a shell whose child holds a port', async (t) => {
  const { runtime } = await openRuntime();
  const allocated = await ports.allocate('projects/t1/tree', ['default']);
  const port = allocated.default as number;
  const project = { tenant: 't1', name: 'tree' };
  // The shell does not exec: python3 is its child, so stopping only the shell would leave the port held.
  const started = await runtime.start(spec('tree', 'python3 -m http.server "$PORT" --bind 127.0.0.1 & echo started; wait', { ports: allocated }));
  const pgid = started.pid as number;
  t.true((await waitFor(() => checkTcp(port), { timeoutMs: 15_000, clock: realClock })).ok);
  t.true(groupMembers(pgid).length >= 2);
  await runtime.stop(project, 3000);
  t.deepEqual(groupMembers(pgid), []);
  t.true(await portIsFree(port));
  await ports.release('projects/t1/tree');
});

test('a workload that ignores SIGTERM is killed with SIGKILL after the grace period', async (t) => {
  const { runtime, logs } = await openRuntime();
  const project = { tenant: 't1', name: 'stubborn' };
  await runtime.start(spec('stubborn', 'trap "" TERM; echo ready; while :; do sleep 0.05; done'));
  t.true((await waitFor(probeFor({ kind: 'log', pattern: '^ready$', sinceCursor: 0 }, { logs, project }), { timeoutMs: 5000, clock: realClock })).ok);
  const started = performance.now();
  const stopped = await runtime.stop(project, 300);
  t.is(stopped?.signal, 'SIGKILL');
  t.true(performance.now() - started >= 250);
});

test('start errors are clear: command not found, missing cwd, image on the process runtime', async (t) => {
  const { runtime } = await openRuntime();
  const notFound = await t.throwsAsync(runtime.start(spec('nf', 'no-such-program-xyz --flag')), { instanceOf: RuntimeError });
  t.is(notFound?.name, 'CommandNotFoundError');
  t.regex(notFound?.message ?? '', /^command not found: no-such-program-xyz/);
  const cwd = await t.throwsAsync(runtime.start(spec('cwd', 'true', { cwd: join(root, 'missing-dir') })), { instanceOf: RuntimeError });
  t.is(cwd?.name, 'CwdMissingError');
  const image = await t.throwsAsync(runtime.start(spec('img', 'true', { image: 'busybox' })), { instanceOf: RuntimeError });
  t.is(image?.name, 'InvalidSpecError');
  // Found only by the shell at run time (after &&): exit 127 quickly, reported by name, not restarted.
  const started = performance.now();
  await runtime.start(spec('nf2', 'true && no-such-program-abc', { restart: 'always' }));
  const failed = await waitState(runtime, { tenant: 't1', name: 'nf2' }, ['failed']);
  t.true(performance.now() - started < 3000);
  t.is(failed.exitCode, 127);
  t.is(failed.restarts, 0);
  t.regex(failed.error ?? '', /^command not found: no-such-program-abc/);
});

test('env carries spec env and PORT / PORT_<NAME>; stdout and stderr lines reach the log store and subscribers', async (t) => {
  const { runtime, logs } = await openRuntime();
  const project = { tenant: 't1', name: 'env' };
  const seen: string[] = [];
  runtime.subscribe((event) => {
    if (event.type === 'log' && event.project.name === 'env') seen.push(`${event.stream}:${event.line}`);
  });
  await runtime.start(spec('env', 'echo "greeting=$GREETING port=$PORT admin=$PORT_ADMIN_UI"; echo oops >&2', { env: { GREETING: 'hello' }, ports: { default: 21500, 'admin-ui': 21501 } }));
  await waitState(runtime, project, ['exited']);
  await eventually('two log lines', 5000, () => seen.length >= 2);
  t.deepEqual(seen.sort(), ['stderr:oops', 'stdout:greeting=hello port=21500 admin=21501']);
  t.deepEqual(
    logs.query(project, { stream: 'stderr' }).lines.map((line) => line.line),
    ['oops'],
  );
});

pythonTest('SIGKILL of the node process kills its workloads (the supervisor sees the pipe close)', async (t) => {
  dirCount += 1;
  const dataDir = join(root, `node-${dirCount}`);
  const allocated = await ports.allocate('projects/t/p', ['default']);
  const port = allocated.default as number;
  const node = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'testing', 'runtime-node.ts'), dataDir, 'python3 -m http.server "$PORT" --bind 127.0.0.1 & wait', String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
  childPids.push(node.pid as number);
  let out = '';
  node.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const line = await eventually('the node script to start its workload', 20_000, () => (out.includes('\n') ? out.split('\n')[0] : null));
  const { pgid } = JSON.parse(line as string) as { pgid: number };
  t.true((await waitFor(() => checkTcp(port), { timeoutMs: 15_000, clock: realClock })).ok);
  process.kill(node.pid as number, 'SIGKILL');
  await eventually('the workload group to die', 10_000, () => groupMembers(pgid).length === 0);
  t.false((await checkHttp(port, '/')).ok);
  t.true(await portIsFree(port));
  await ports.release('projects/t/p');
});

test('without cgroups, on open the runtime kills groups a previous run recorded and spares a reused pid', async (t) => {
  dirCount += 1;
  const dataDir = join(root, `node-${dirCount}`);
  const stateDir = join(dataDir, 'runtime', 'process');
  mkdirSync(join(stateDir, 'runs'), { recursive: true });
  // A leftover group, as if its supervisor had failed to stop it.
  const leftover = spawn('/bin/sh', ['-c', 'sleep 300 & wait'], { detached: true, stdio: 'ignore' });
  // A process that merely has a recorded pid but another start time (pid reuse): not ours.
  const stranger = spawn('/bin/sh', ['-c', 'sleep 300'], { detached: true, stdio: 'ignore' });
  childPids.push(leftover.pid as number, stranger.pid as number);
  await eventually('both to start', 5000, () => processRuns(leftover.pid as number) && processRuns(stranger.pid as number));
  const startTicks = (pid: number): string => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] as string;
  };
  writeFileSync(join(stateDir, 'runs', 'a.json'), JSON.stringify({ node: 'n1', project: { tenant: 't', name: 'left' }, pgid: leftover.pid, startTicks: startTicks(leftover.pid as number) }));
  writeFileSync(join(stateDir, 'runs', 'b.json'), JSON.stringify({ node: 'n1', project: { tenant: 't', name: 'reused' }, pgid: stranger.pid, startTicks: '1' }));
  const logs = newLogs(join(dataDir, 'logs'));
  const runtime = await ProcessRuntime.open({ node: 'n1', stateDir, logs, clock: realClock, wallNowMs: () => Date.now(), cgroups: 'off' });
  fixture.adopt(runtime);
  t.deepEqual(runtime.cleanedUp, [{ tenant: 't', name: 'left' }]);
  await eventually('the leftover group to die', 5000, () => groupMembers(leftover.pid as number).length === 0);
  t.true(processRuns(stranger.pid as number));
  process.kill(-(stranger.pid as number), 'SIGKILL');
  t.deepEqual(runtime.list(), []);
});

test('a node that restarts after SIGKILL finds no record to act on and nothing of the old run alive', async (t) => {
  dirCount += 1;
  const dataDir = join(root, `node-${dirCount}`);
  const node = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'testing', 'runtime-node.ts'), dataDir, 'sleep 300'], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  childPids.push(node.pid as number);
  let out = '';
  node.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const line = await eventually('the node script to start', 20_000, () => (out.includes('\n') ? out.split('\n')[0] : null));
  const { pgid } = JSON.parse(line as string) as { pgid: number };
  process.kill(node.pid as number, 'SIGKILL');
  await eventually('the workload group to die', 10_000, () => groupMembers(pgid).length === 0);
  // The restarted node: the record of the dead run is removed, nothing is killed twice or started.
  const reopened = await ProcessRuntime.open({ node: 'n1', stateDir: join(dataDir, 'runtime', 'process'), logs: newLogs(join(dataDir, 'logs')), clock: realClock, wallNowMs: () => Date.now() });
  fixture.adopt(reopened);
  t.deepEqual(reopened.cleanedUp, []);
  t.deepEqual(reopened.list(), []);
  t.deepEqual(readdirSync(join(dataDir, 'runtime', 'process', 'runs')), []);
});

const behaviours: Record<Behaviour, string> = { helloThenRun: 'echo hello; exec sleep 600', exit0: 'exit 0', exit3: 'exit 3' };
runtimeCompliance(test.serial, 'process', async () => {
  const { runtime } = await openRuntime({ restart: { backoffMsMin: 20, backoffMsMax: 200, crashLoopExitsMax: 3, crashLoopWindowMs: 60_000, stableRunMs: 10_000 } });
  return {
    runtime,
    graceMs: 2000,
    spec: (project, behaviour, restart) => ({ project, command: behaviours[behaviour], env: {}, ports: {}, restart, node: 'n1' }),
    eventually: (what, probe) => eventually(what, 15_000, probe),
    close: () => runtime.close(),
  };
});

test('the node environment reaches a workload only through the allowlist: no node secrets', async (t) => {
  process.env.DEBUGHOST_TEST_SECRET = 'do-not-leak';
  try {
    const { runtime, logs } = await openRuntime();
    const project = { tenant: 't1', name: 'secret' };
    await runtime.start(spec('secret', 'echo "secret=${DEBUGHOST_TEST_SECRET:-unset} path=${PATH:+set}"'));
    await waitState(runtime, project, ['exited']);
    await eventually('the line', 5000, () => logs.lastLines(project, 1)[0]);
    t.deepEqual(logs.lastLines(project, 1), ['secret=unset path=set']);
  } finally {
    delete process.env.DEBUGHOST_TEST_SECRET;
  }
});

test('two concurrent starts of one project leave exactly one workload running', async (t) => {
  const { runtime } = await openRuntime();
  const project = { tenant: 't1', name: 'race' };
  const groups = new Set<number>();
  runtime.subscribe((event) => {
    if (event.type === 'status' && event.status.project.name === 'race' && event.status.pid !== null) groups.add(event.status.pid);
  });
  const [first, second] = await Promise.all([runtime.start(spec('race', 'exec sleep 600')), runtime.start(spec('race', 'exec sleep 601'))]);
  t.is(groups.size, 2);
  t.is(runtime.list().filter((status) => status.project.name === 'race').length, 1);
  t.is(runtime.status(project)?.pid, second.pid);
  t.deepEqual(groupMembers(first.pid as number), []);
  t.true(groupMembers(second.pid as number).length >= 1);
  await runtime.remove(project);
  t.deepEqual(groupMembers(second.pid as number), []);
});
