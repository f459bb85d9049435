// Goal: the Docker runtime against a real engine — start/stop, ports, limits, hardening, labels, logs, crash loop, lifecycle events (OOM, kill by hand, reconnect after the engine went away), usage, exec, adoption after a restart, orphans, missing image, no engine.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CAPABILITIES_KEPT } from './docker-container-spec.ts';
import { DOCKER_LIMITS_DEFAULT } from './docker-config.ts';
import { checkHttp, probeFor, waitFor } from './health.ts';
import { LogStore } from './logs.ts';
import { PortRegistry } from './ports.ts';
import { DockerRuntime, LABELS, type DockerRuntimeOptions } from './runtime-docker.ts';
import { RuntimeError, type LifecycleEvent, type ProjectRef, type Runtime, type RuntimeEvent, type WorkloadSpec, type WorkloadStatus } from './runtime.ts';
import { testDocker } from './testing/dockerd.ts';
import { prerequisites } from './testing/prerequisites.ts';
import { eventually, realClock, sleep } from './testing/real.ts';
import { runtimeCompliance, type Behaviour, type RuntimeHarness } from './testing/runtime-compliance.ts';
import { ContractError, optionalChecks, optionalCompliance } from './testing/runtime-compliance-optional.ts';
import { SocketProxy } from './testing/socket-proxy.ts';

const root = mkdtempSync(join(tmpdir(), 'debughost-runtime-docker-'));
// A node name and an image of its own: this file sees, and removes, only what it made.
const node = `dtest${process.pid}x${Math.floor(Math.random() * 1e6)}`;
const image = `debughost-test-${node}/busybox:1`;
const ports = new PortRegistry({ node, rangeStart: 22000, rangeEnd: 22999 });
const runtimes: DockerRuntime[] = [];
const logStores: LogStore[] = [];
const dockerPrerequisites = await prerequisites('docker', 'busybox-static');
const engine = dockerPrerequisites.met ? await testDocker(image) : null;

/** A serial test, or a skipped one that names what to install (a failure under CI=true). */
const dockerTest = dockerPrerequisites.guard(test.serial);

const ownContainers = async () => (engine === null ? [] : engine.docker.listContainers({ all: true, filters: { label: [`${LABELS.node}=${node}`] } }));

test.after.always(async () => {
  for (const runtime of runtimes) runtime.detach();
  if (engine !== null) {
    for (const info of await ownContainers()) await engine.docker.getContainer(info.Id).remove({ force: true }).catch(() => undefined);
    await engine.cleanUp();
  }
  // Stores flush on the next turn: close them before removing their directories.
  for (const store of logStores) await store.close();
  rmSync(root, { recursive: true, force: true });
});

let dirs = 0;
const newDir = (what: string): string => {
  dirs += 1;
  return join(root, `${what}-${dirs}`);
};
function newLogs(dir?: string): LogStore {
  const store = new LogStore({ dir: dir ?? newDir('logs'), wallNowMs: () => Date.now() });
  logStores.push(store);
  return store;
}

async function openRuntime(logs: LogStore, options: Partial<DockerRuntimeOptions> = {}): Promise<DockerRuntime> {
  const runtime = await DockerRuntime.open({ node, stateDir: newDir('state'), logs, clock: realClock, wallNowMs: () => Date.now(), ...options, limits: { stopGraceMs: 2000, ...options.limits } });
  runtimes.push(runtime);
  return runtime;
}

/** After each test, however it ended, none of this file's containers is left for the next one to meet. */
test.afterEach.always(async () => {
  for (const info of await ownContainers()) await engine?.docker.getContainer(info.Id).remove({ force: true }).catch(() => undefined);
});

const spec = (name: string, command: string, extra: Partial<WorkloadSpec> = {}): WorkloadSpec => ({
  project: { tenant: 'td', name },
  image,
  command,
  env: {},
  ports: {},
  restart: 'never',
  node,
  ...extra,
});

const waitState = (runtime: DockerRuntime, project: ProjectRef, states: WorkloadStatus['state'][], timeoutMs = 20_000): Promise<WorkloadStatus> =>
  eventually(`state ${states.join('|')}`, timeoutMs, () => {
    const status = runtime.status(project);
    return status !== null && states.includes(status.state) ? status : null;
  });

const lifecycleOf = (events: readonly RuntimeEvent[], name: string): LifecycleEvent[] =>
  events.flatMap((event) => (event.type === 'lifecycle' && event.project.name === name ? [event] : []));

const record = (runtime: DockerRuntime): RuntimeEvent[] => {
  const events: RuntimeEvent[] = [];
  runtime.subscribe((event) => events.push(event));
  return events;
};

/** Share of one core (0-1) a busy loop in a child process gets over `ms`. */
function hostBusyShare(ms: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const code = `const end = Date.now() + ${ms}; while (Date.now() < end); const u = process.cpuUsage(); process.stdout.write(String((u.user + u.system) / 1000 / ${ms}));`;
    execFile(process.execPath, ['-e', code], (error, stdout) => (error === null ? resolve(Number(stdout)) : reject(error)));
  });
}

const HTTPD = 'mkdir -p /www && echo hello > /www/index.html && echo "serving on $PORT" && echo "a warning" >&2 && exec httpd -f -p "$PORT" -h /www';
const NEVER = new AbortController().signal;
const exec = (runtime: DockerRuntime, project: ProjectRef, command: string, extra: { timeoutMs?: number } = {}) =>
  runtime.exec(project, { command, env: {}, timeoutMs: extra.timeoutMs ?? 10_000, outputBytesMax: 64 * 1024 }, NEVER);

/** The capability bits of CAPABILITIES_KEPT, as /proc/<pid>/status shows them (CapEff). */
function capabilityMask(names: readonly string[]): bigint {
  const numbers: Record<string, number> = { CHOWN: 0, DAC_OVERRIDE: 1, FOWNER: 3, KILL: 5, SETGID: 6, SETUID: 7, NET_BIND_SERVICE: 10 };
  return names.reduce((mask, name) => mask | (1n << BigInt(numbers[name] ?? 63)), 0n);
}

dockerTest('a container serves HTTP on its allocated port, with limits, demuxed logs and labels that name only its project and node', async (t) => {
  if (engine === null) return;
  const logs = newLogs();
  const runtime = await openRuntime(logs);
  const events = record(runtime);
  const project = { tenant: 'td', name: 'web' };
  const allocated = await ports.allocate('projects/td/web', ['default']);
  const port = allocated.default as number;
  const started = await runtime.start(spec('web', HTTPD, { ports: allocated, limits: { memoryBytes: 64 * 1024 * 1024, cpus: 0.5, pids: 64 }, env: { GREETING: 'hi', API_TOKEN: 'secret-value-42' } }));
  t.truthy(started.containerId);
  const healthy = await waitFor(probeFor({ kind: 'http', port, path: '/' }, { logs, project }), { timeoutMs: 20_000, clock: realClock, lastLines: () => logs.lastLines(project, 5) });
  t.true(healthy.ok, JSON.stringify(healthy));
  const info = await engine.docker.getContainer(started.containerId as string).inspect();
  t.deepEqual(info.Config.Labels, { [LABELS.project]: 'projects/td/web', [LABELS.tenant]: 'td', [LABELS.name]: 'web', [LABELS.node]: node });
  t.false(JSON.stringify(info.Config.Labels).includes('secret-value-42'));
  t.is(info.HostConfig.Memory, 64 * 1024 * 1024);
  t.is(info.HostConfig.NanoCpus, 500_000_000);
  t.is(info.HostConfig.PidsLimit, 64);
  t.true(info.Config.Env.includes(`PORT=${port}`));
  t.true(info.Config.Env.includes('GREETING=hi'));
  await eventually('both log lines', 10_000, () => logs.query(project, {}).lines.length >= 2);
  t.deepEqual(logs.query(project, { stream: 'stdout' }).lines.map((line) => line.line), [`serving on ${port}`]);
  t.deepEqual(logs.query(project, { stream: 'stderr' }).lines.map((line) => line.line), ['a warning']);
  const stopped = await runtime.stop(project, 1000);
  t.is(stopped?.state, 'stopped');
  t.deepEqual(
    lifecycleOf(events, 'web').map((event) => event.kind),
    ['started', 'stopped'],
  );
  t.false((await engine.docker.getContainer(started.containerId as string).inspect()).State.Running);
  t.false((await checkHttp(port, '/')).ok);
  await runtime.remove(project);
  await ports.release('projects/td/web');
  await t.throwsAsync(engine.docker.getContainer(started.containerId as string).inspect());
});

dockerTest('hardening: pids limit by default, no-new-privileges, all capabilities dropped but the kept few, as the kernel sees them', async (t) => {
  if (engine === null) return;
  const runtime = await openRuntime(newLogs());
  const project = { tenant: 'td', name: 'hard' };
  const started = await runtime.start(spec('hard', 'exec sleep 600'));
  await waitState(runtime, project, ['running']);
  const host = (await engine.docker.getContainer(started.containerId as string).inspect()).HostConfig;
  t.is(host.PidsLimit, DOCKER_LIMITS_DEFAULT.pidsDefault);
  t.deepEqual(host.SecurityOpt, ['no-new-privileges']);
  t.deepEqual(host.CapDrop, ['ALL']);
  t.deepEqual(host.CapAdd, [...CAPABILITIES_KEPT]);
  t.deepEqual(host.RestartPolicy, { Name: 'no', MaximumRetryCount: 0 });
  // What the process inside really has: NoNewPrivs set, and exactly the kept capabilities in its effective set.
  const proc = await exec(runtime, project, 'grep -E "^(NoNewPrivs|CapEff|CapBnd)" /proc/1/status');
  t.regex(proc.stdout, /NoNewPrivs:\s+1/);
  const effective = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(proc.stdout)?.[1] ?? 'ffff'}`);
  const bounding = BigInt(`0x${/CapBnd:\s+([0-9a-f]+)/.exec(proc.stdout)?.[1] ?? 'ffff'}`);
  t.is(effective, capabilityMask(CAPABILITIES_KEPT));
  t.is(bounding, capabilityMask(CAPABILITIES_KEPT));
  // A fork bomb ends at the pids limit instead of the host's pid table: the shell's fork fails and it gives up.
  const bomb = { tenant: 'td', name: 'bomb' };
  await runtime.start(spec('bomb', 'i=0; while [ $i -lt 300 ]; do sleep 60 & i=$((i+1)); done; echo spawned all; wait', { limits: { pids: 50 } }));
  const ended = await waitState(runtime, bomb, ['exited']);
  t.regex(ended.error ?? '', /can't fork/);
  t.false((ended.error ?? '').includes('spawned all'));
  await runtime.remove(bomb);
  await runtime.remove(project);
});

dockerTest('a crashing container is restarted by policy with back-off, then held in crashLoop; each step is a lifecycle event', async (t) => {
  if (engine === null) return;
  const logs = newLogs();
  const runtime = await openRuntime(logs, { restart: { backoffMsMin: 50, backoffMsMax: 500, crashLoopExitsMax: 3, crashLoopWindowMs: 60_000, stableRunMs: 10_000 } });
  const events = record(runtime);
  const project = { tenant: 'td', name: 'crash' };
  await runtime.start(spec('crash', 'echo "bad config"; exit 2', { restart: 'on-failure' }));
  const status = await waitState(runtime, project, ['crashLoop'], 60_000);
  t.is(status.restarts, 2);
  t.is(status.exitCode, 2);
  t.regex(status.error ?? '', /crash loop: ended 3 times.*bad config/);
  const life = lifecycleOf(events, 'crash');
  t.deepEqual(
    life.map((event) => event.kind),
    ['started', 'exited', 'restarted', 'exited', 'restarted', 'exited', 'crashLoop'],
  );
  t.deepEqual(
    life.filter((event) => event.kind === 'restarted').map((event) => event.detail),
    ['restart 1 by policy on-failure', 'restart 2 by policy on-failure'],
  );
  t.true(life.filter((event) => event.kind === 'exited').every((event) => event.exitCode === 2 && event.detail === 'exited with code 2'));
  await runtime.remove(project);
});

dockerTest('the memory limit is enforced: a container that needs more is OOM-killed, the status says so and an oomKilled event is emitted', async (t) => {
  if (engine === null) return;
  const runtime = await openRuntime(newLogs());
  const events = record(runtime);
  const project = { tenant: 'td', name: 'oom' };
  // dd allocates its 64 MiB block and fills it: far above the 16 MiB limit (no swap beyond it).
  await runtime.start(spec('oom', 'dd if=/dev/zero of=/dev/null bs=64M count=1', { limits: { memoryBytes: 16 * 1024 * 1024 } }));
  const ended = await waitState(runtime, project, ['exited', 'failed']);
  t.is(ended.signal, 'SIGKILL');
  t.regex(ended.error ?? '', /^killed: out of memory \(limit 16777216 bytes\)/);
  const life = lifecycleOf(events, 'oom');
  t.deepEqual(
    life.map((event) => event.kind),
    ['started', 'oomKilled'],
  );
  t.is(life[1]?.signal, 'SIGKILL');
  t.is(life[1]?.detail, 'killed: out of memory (limit 16777216 bytes)');
  await runtime.remove(project);
});

dockerTest('a container killed by hand yields one exited event, pushed by the events stream within a second or so', async (t) => {
  if (engine === null) return;
  const runtime = await openRuntime(newLogs());
  const events = record(runtime);
  const project = { tenant: 'td', name: 'killed' };
  const started = await runtime.start(spec('killed', 'exec sleep 600'));
  await waitState(runtime, project, ['running']);
  const killedAt = performance.now();
  await engine.docker.getContainer(started.containerId as string).kill({ signal: 'SIGKILL' });
  const exited = await eventually('the exited event', 10_000, () => lifecycleOf(events, 'killed').find((event) => event.kind === 'exited'));
  const latencyMs = performance.now() - killedAt;
  t.log(`kill to exited event: ${latencyMs.toFixed(0)} ms`);
  // The goal is 1 s; the margin is for a machine shared with other test runs.
  t.true(latencyMs < 5000, `${latencyMs} ms`);
  t.is(exited.signal, 'SIGKILL');
  t.is(runtime.status(project)?.state, 'exited');
  await sleep(300);
  t.is(lifecycleOf(events, 'killed').filter((event) => event.kind === 'exited').length, 1);
  await runtime.remove(project);
});

dockerTest('the events stream reconnects after the engine went away: an exit meanwhile is found by re-inspection, reported once, and logs follow again', async (t) => {
  if (engine === null) return;
  const proxy = new SocketProxy(join(root, 'engine-proxy.sock'), engine.socketPath);
  await proxy.open();
  const logs = newLogs();
  const runtime = await openRuntime(logs, { socketPath: proxy.path, limits: { eventsReconnectMsMin: 50, eventsReconnectMsMax: 200 } });
  const events = record(runtime);
  const victim = spec('victim', 'exec sleep 600');
  const ticker = spec('ticker', 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.2; done');
  const victimId = (await runtime.start(victim)).containerId as string;
  await runtime.start(ticker);
  await eventually('ticks', 10_000, () => logs.query(ticker.project, {}).lines.length >= 2);
  t.is(runtime.eventStreamConnections, 1);
  // The engine "goes away" (all connections cut, new ones refused); the victim dies meanwhile.
  await proxy.cut();
  await engine.docker.getContainer(victimId).kill({ signal: 'SIGKILL' });
  await sleep(500);
  t.is(runtime.status(victim.project)?.state, 'running', 'nothing can be known while the engine is away');
  await proxy.open();
  await eventually('a reconnect', 10_000, () => runtime.eventStreamConnections >= 2);
  const exited = await eventually('the exit found by re-inspection', 10_000, () => lifecycleOf(events, 'victim').find((event) => event.kind === 'exited'));
  t.is(exited.signal, 'SIGKILL');
  t.is(runtime.status(ticker.project)?.state, 'running');
  // The ticker's logs follow again, without a line twice.
  const before = logs.cursor(ticker.project);
  await eventually('new ticks after the reconnect', 10_000, () => logs.cursor(ticker.project) >= before + 3);
  const ticks = logs.query(ticker.project, {}).lines.map((line) => Number(line.line.split(' ')[1]));
  t.deepEqual(ticks, [...new Set(ticks)].sort((a, b) => a - b));
  await sleep(300);
  t.is(lifecycleOf(events, 'victim').filter((event) => event.kind === 'exited').length, 1);
  await runtime.remove(victim.project);
  await runtime.remove(ticker.project);
  await proxy.cut();
});

dockerTest('usage from the Docker stats API: a container burning a core shows > 50 % CPU within 5 s, one holding 200 MB shows it', async (t) => {
  if (engine === null) return;
  // The default sampling interval (2 s): the 5 s goal is met as a node runs.
  const runtime = await openRuntime(newLogs());
  const burner = spec('burner', 'exec yes > /dev/null');
  const hog = spec('hog', 'dd if=/dev/zero bs=220M count=1 | sleep 600');
  const idle = spec('idle', 'exec sleep 600');
  await runtime.start(hog);
  await runtime.start(idle);
  const began = performance.now();
  await runtime.start(burner);
  // What the machine gives a busy process right now (it is shared): the burner should get as much.
  const hostShare = hostBusyShare(3000);
  const cpu = await eventually('a CPU sample', 15_000, () => runtime.status(burner.project)?.usage);
  const cpuAfterMs = performance.now() - began;
  const share = await hostShare;
  const best = await eventually('a few more samples', 15_000, () => {
    const usage = runtime.status(burner.project)?.usage;
    return usage !== undefined && usage.sampledAtMs > cpu.sampledAtMs + 2000 ? usage : null;
  });
  const cpuPercent = Math.max(cpu.cpuPercent, best.cpuPercent);
  t.log(`burner: first sample ${cpu.cpuPercent} % after ${cpuAfterMs.toFixed(0)} ms, then ${best.cpuPercent} %; a busy host process got ${(share * 100).toFixed(0)} % meanwhile (load ${loadavg()[0]?.toFixed(1)})`);
  // The first figure arrives within one sampling interval of the start (5 s goal; margin for a loaded machine).
  t.true(cpuAfterMs < 10_000, `first sample after ${cpuAfterMs} ms`);
  // > 50 % of a core on a machine that has one to give; on a loaded one, at least half of what a host process gets.
  t.true(cpuPercent > Math.min(50, share * 100 * 0.5), `burner ${cpuPercent} %, host share ${share}`);
  t.is(cpu.source, 'docker-stats');
  t.true(Math.abs(cpu.sampledAtMs - Date.now()) < 10_000);
  const memory = await eventually('a memory sample above 200 MB', 20_000, () => {
    const usage = runtime.status(hog.project)?.usage;
    return usage !== undefined && usage.memoryBytes > 200e6 ? usage : null;
  });
  t.log(`hog: ${(memory.memoryBytes / 1e6).toFixed(0)} MB`);
  const quiet = await eventually('an idle sample', 10_000, () => runtime.status(idle.project)?.usage);
  t.true(quiet.cpuPercent < 20, `idle: ${quiet.cpuPercent} %`);
  t.true(quiet.memoryBytes < 50e6, `idle: ${quiet.memoryBytes} bytes`);
  // A stopped workload has no current run, hence no usage.
  await runtime.stop(burner.project, 1000);
  t.is(runtime.status(burner.project)?.usage, undefined);
  for (const each of [burner, hog, idle]) await runtime.remove(each.project);
});

dockerTest('exec goes through the exec API: cwd, a killed timeout leaves nothing running, abort, and clear errors', async (t) => {
  if (engine === null) return;
  const runtime = await openRuntime(newLogs());
  const project = { tenant: 'td', name: 'exec' };
  await runtime.start(spec('exec', 'exec sleep 600', { env: { FROM_SPEC: 'spec' } }));
  await waitState(runtime, project, ['running']);
  const here = await runtime.exec(project, { command: 'pwd; echo "$FROM_SPEC $EXTRA"', env: { EXTRA: 'extra' }, cwd: '/tmp', timeoutMs: 10_000, outputBytesMax: 1024 }, NEVER);
  t.is(here.stdout, '/tmp\nspec extra\n');
  // Sockets that keep the process alive: a timed-out or aborted exec must not leave one behind.
  const pipes = (): number => process.getActiveResourcesInfo().filter((name) => name === 'PipeWrap').length;
  const pipesBefore = pipes();
  // A timed-out command and the children it started are killed (its process group).
  const slow = await exec(runtime, project, 'sleep 301 & sleep 302; echo late', { timeoutMs: 500 });
  t.true(slow.timedOut);
  t.is(slow.signal, 'SIGKILL');
  const left = await exec(runtime, project, 'ps -o args');
  t.false(/sleep 30[12]/.test(left.stdout), left.stdout);
  // An abort kills as well, and rejects with the abort's reason.
  const controller = new AbortController();
  const aborted = runtime.exec(project, { command: 'sleep 303', env: {}, timeoutMs: 60_000, outputBytesMax: 1024 }, controller.signal);
  await sleep(300);
  controller.abort(new Error('caller went away'));
  await t.throwsAsync(aborted, { message: 'caller went away' });
  await eventually('the aborted command gone', 10_000, async () => !/sleep 303/.test((await exec(runtime, project, 'ps -o args')).stdout));
  await eventually('no socket left open by the killed execs', 10_000, () => pipes() <= pipesBefore);
  const bad = await t.throwsAsync(exec(runtime, project, '   '), { instanceOf: RuntimeError });
  t.is(bad?.name, 'InvalidSpecError');
  await runtime.stop(project, 1000);
  const stopped = await t.throwsAsync(exec(runtime, project, 'true'), { instanceOf: RuntimeError });
  t.is(stopped?.name, 'NotRunningError');
  t.is(stopped?.message, 'project projects/td/exec has no running container to exec in (it is stopped); start it first (project_start)');
  const unknown = await t.throwsAsync(exec(runtime, { tenant: 'td', name: 'nope' }, 'true'), { instanceOf: RuntimeError });
  t.is(unknown?.name, 'NotFoundError');
  await runtime.remove(project);
});

dockerTest('a missing image and a missing engine give errors that say what to do', async (t) => {
  if (engine === null) return;
  const runtime = await openRuntime(newLogs());
  const missing = await t.throwsAsync(runtime.start(spec('ghost', 'true', { image: 'debughost-test/not-here:0' })), { instanceOf: RuntimeError });
  t.is(missing?.name, 'ImageMissingError');
  t.is(missing?.message, "image debughost-test/not-here:0 is not present on this node's Docker engine; build or load it (docker load / docker import)");
  const noEngine = await t.throwsAsync(DockerRuntime.open({ node, stateDir: newDir('state'), logs: newLogs(), clock: realClock, wallNowMs: () => Date.now(), socketPath: join(root, 'no-engine.sock') }), {
    instanceOf: RuntimeError,
  });
  t.is(noEngine?.name, 'RuntimeUnavailableError');
  t.regex(noEngine?.message ?? '', /^no Docker engine answers at .*no-engine\.sock .*start dockerd/);
  // An engine too slow to answer is said to be slow, not gone.
  const proxy = new SocketProxy(join(root, 'slow-engine.sock'), engine.socketPath);
  await proxy.open();
  const slow = await openRuntime(newLogs(), { socketPath: proxy.path, limits: { requestMsMax: 1000 } });
  proxy.stall();
  const late = await t.throwsAsync(slow.start(spec('late', 'true')), { instanceOf: RuntimeError });
  t.is(late?.name, 'RuntimeUnavailableError');
  t.regex(late?.message ?? '', /^the Docker engine at .*slow-engine\.sock did not finish "inspect image .*" within 1000 ms \(overloaded or wedged\); retry, and check dockerd if it persists$/);
  slow.detach();
  await proxy.cut();
  const badConfig = await t.throwsAsync(openRuntime(newLogs(), { limits: { usageIntervalMs: 0 } }));
  t.is(badConfig?.message, 'docker runtime config: usageIntervalMs must be a positive whole number, got 0');
});

dockerTest('after a node restart the runtime adopts its running container from its state dir (not started twice) and removes orphans', async (t) => {
  if (engine === null) return;
  const logDir = newDir('logs-adopt');
  const stateDir = newDir('state-adopt');
  const logs = newLogs(logDir);
  const first = await openRuntime(logs, { stateDir });
  const kept = spec('kept', 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.2; done', { restart: 'always', env: { SECRET: 'only-in-the-state-dir' } });
  const orphan = spec('orphan', 'sleep 600');
  const keptStatus = await first.start(kept);
  await first.start(orphan);
  await eventually('a few ticks', 10_000, () => logs.query(kept.project, {}).lines.length >= 3);
  // The node crashes: the runtime lets go without stopping anything; the log store is reopened from disk.
  first.detach();
  await logs.close();
  const reopened = newLogs(logDir);
  const linesBefore = reopened.cursor(kept.project);
  t.true(linesBefore >= 3);
  const second = await openRuntime(reopened, { stateDir });
  const events = record(second);
  t.deepEqual(second.adopted().map((status) => status.project.name).sort(), ['kept', 'orphan']);
  const again = await second.start(kept);
  t.is(again.containerId, keptStatus.containerId);
  t.is(again.restarts, 0);
  t.deepEqual(await second.removeOrphans([kept.project]), [orphan.project]);
  const own = await ownContainers();
  t.deepEqual(own.map((info) => info.Id), [keptStatus.containerId]);
  // Logs keep flowing into the reopened store, without duplicating lines it already had.
  await eventually('new ticks after adoption', 10_000, () => reopened.cursor(kept.project) >= linesBefore + 3);
  const ticks = reopened.query(kept.project, {}).lines.map((line) => Number(line.line.split(' ')[1]));
  t.deepEqual(ticks, ticks.map((_, index) => (ticks[0] ?? 0) + index));
  // The adopted container is still under its restart policy ('always'), known from the state dir alone.
  await engine.docker.getContainer(keptStatus.containerId as string).kill({ signal: 'SIGKILL' });
  await eventually('the restart by policy', 15_000, () => lifecycleOf(events, 'kept').find((event) => event.kind === 'restarted'));
  t.is((await waitState(second, kept.project, ['running'])).restarts, 1);
  await second.remove(kept.project);
  t.deepEqual(await ownContainers(), []);
});

const behaviours: Record<Behaviour, string> = { helloThenRun: 'echo hello; exec sleep 600', exit0: 'exit 0', exit3: 'exit 3' };
const restartFast = { backoffMsMin: 20, backoffMsMax: 200, crashLoopExitsMax: 3, crashLoopWindowMs: 60_000, stableRunMs: 10_000 };
async function harness(wrap: (runtime: DockerRuntime) => Runtime = (runtime) => runtime): Promise<RuntimeHarness> {
  const runtime = await openRuntime(newLogs(), { restart: restartFast });
  return {
    runtime: wrap(runtime),
    // sleep as PID 1 has no SIGTERM handler: Docker kills it after the grace.
    graceMs: 1000,
    spec: (project, behaviour, restart) => spec(project.name, behaviours[behaviour], { project, restart }),
    eventually: (what, probe) => eventually(what, 30_000, probe),
    close: async () => {
      for (const status of runtime.list()) await runtime.remove(status.project);
      await runtime.close();
    },
  };
}
runtimeCompliance(dockerTest, 'docker', () => harness());
optionalCompliance(test, 'docker', () => harness(), { serial: dockerTest, features: ['restartEvents', 'exec'] });

/** A planted bug: the runtime's events reach subscribers without its `restarted` lifecycle events. */
function droppingRestarts(runtime: DockerRuntime): Runtime {
  return new Proxy(runtime, {
    get(target, property, receiver) {
      if (property === 'subscribe') return (listener: (event: RuntimeEvent) => void) => target.subscribe((event) => event.type === 'lifecycle' && event.kind === 'restarted' ? undefined : listener(event));
      const value = Reflect.get(target, property, receiver) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

dockerTest('the restart-events compliance check fails on a runtime that drops its restarted events', async (t) => {
  const lifecycle = optionalChecks.find((check) => check.feature === 'restartEvents');
  if (lifecycle === undefined) return t.fail('no restart-events check');
  const planted = await harness(droppingRestarts);
  const events: RuntimeEvent[] = [];
  const unsubscribe = planted.runtime.subscribe((event) => events.push(event));
  try {
    const error = await t.throwsAsync(lifecycle.body(planted, events), { instanceOf: ContractError });
    t.regex(error?.message ?? '', /events of a crash loop are started,exited,restarted,exited,restarted,exited,crashLoop; got started,exited,exited,exited,crashLoop/);
  } finally {
    unsubscribe();
    await planted.close();
  }
});
