// Goal: the Docker runtime against a real engine — start/stop, ports, limits, labels, logs, crash loop, adoption after a restart, orphans, missing image, no engine.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkHttp, probeFor, waitFor } from './health.ts';
import { LogStore } from './logs.ts';
import { PortRegistry } from './ports.ts';
import { DockerRuntime, LABELS, type DockerRuntimeOptions } from './runtime-docker.ts';
import { RuntimeError, type ProjectRef, type WorkloadSpec, type WorkloadStatus } from './runtime.ts';
import { testDocker, TEST_IMAGE, type TestDocker } from './testing/dockerd.ts';
import { prerequisites } from './testing/prerequisites.ts';
import { eventually, realClock } from './testing/real.ts';
import { runtimeCompliance, type Behaviour } from './testing/runtime-compliance.ts';

const root = mkdtempSync(join(tmpdir(), 'debughost-runtime-docker-'));
// A node name of its own, so that this file sees (and removes) only its containers.
const node = `dtest${process.pid}`;
const ports = new PortRegistry({ node, rangeStart: 22000, rangeEnd: 22999 });
const runtimes: DockerRuntime[] = [];
const logStores: LogStore[] = [];
let engine: TestDocker | null = null;
const docker = await prerequisites('docker', 'busybox-static');
const dockerTest = docker.guard(test.serial);

if (docker.met) {
  test.before(async () => {
    engine = await testDocker();
  });
}

test.after.always(async () => {
  for (const runtime of runtimes) runtime.detach();
  if (engine !== null) {
    const own = await engine.docker.listContainers({ all: true, filters: { label: [`${LABELS.node}=${node}`] } });
    for (const info of own) await engine.docker.getContainer(info.Id).remove({ force: true }).catch(() => undefined);
    await engine.cleanUp();
  }
  // Stores flush on the next turn: close them before removing their directories.
  for (const store of logStores) await store.close();
  rmSync(root, { recursive: true, force: true });
});

let logDirs = 0;
function newLogs(dir?: string): LogStore {
  logDirs += 1;
  const store = new LogStore({ dir: dir ?? join(root, `logs-${logDirs}`), wallNowMs: () => Date.now() });
  logStores.push(store);
  return store;
}

async function openRuntime(logs: LogStore, options: Partial<DockerRuntimeOptions> = {}): Promise<DockerRuntime> {
  const runtime = await DockerRuntime.open({ node, logs, clock: realClock, wallNowMs: () => Date.now(), stopGraceMs: 2000, ...options });
  runtimes.push(runtime);
  return runtime;
}

const spec = (name: string, command: string, extra: Partial<WorkloadSpec> = {}): WorkloadSpec => ({
  project: { tenant: 'td', name },
  image: TEST_IMAGE,
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

const HTTPD = 'mkdir -p /www && echo hello > /www/index.html && echo "serving on $PORT" && echo "a warning" >&2 && exec httpd -f -p "$PORT" -h /www';

dockerTest('a container serves HTTP on its allocated port, with labels, limits and demuxed logs; stop stops it', async (t) => {
  if (engine === null) return t.fail('no engine: the before hook failed');
  const logs = newLogs();
  const runtime = await openRuntime(logs);
  const project = { tenant: 'td', name: 'web' };
  const allocated = await ports.allocate('projects/td/web', ['default']);
  const port = allocated.default as number;
  const started = await runtime.start(spec('web', HTTPD, { ports: allocated, limits: { memoryBytes: 64 * 1024 * 1024, cpus: 0.5, pids: 64 }, env: { GREETING: 'hi' } }));
  t.truthy(started.containerId);
  const healthy = await waitFor(probeFor({ kind: 'http', port, path: '/' }, { logs, project }), { timeoutMs: 20_000, clock: realClock, lastLines: () => logs.lastLines(project, 5) });
  t.true(healthy.ok, JSON.stringify(healthy));
  const info = await engine.docker.getContainer(started.containerId as string).inspect();
  t.is(info.Config.Labels[LABELS.project], 'projects/td/web');
  t.is(info.Config.Labels[LABELS.tenant], 'td');
  t.is(info.Config.Labels[LABELS.node], node);
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
  t.false((await engine.docker.getContainer(started.containerId as string).inspect()).State.Running);
  t.false((await checkHttp(port, '/')).ok);
  await runtime.remove(project);
  await ports.release('projects/td/web');
  await t.throwsAsync(engine.docker.getContainer(started.containerId as string).inspect());
});

dockerTest('a crashing container is restarted by policy with back-off, then held in crashLoop', async (t) => {
  if (engine === null) return t.fail('no engine: the before hook failed');
  const logs = newLogs();
  const runtime = await openRuntime(logs, { restart: { backoffMsMin: 50, backoffMsMax: 500, crashLoopExitsMax: 3, crashLoopWindowMs: 60_000, stableRunMs: 10_000 } });
  const project = { tenant: 'td', name: 'crash' };
  await runtime.start(spec('crash', 'echo "bad config"; exit 2', { restart: 'on-failure' }));
  const status = await waitState(runtime, project, ['crashLoop'], 60_000);
  t.is(status.restarts, 2);
  t.is(status.exitCode, 2);
  t.regex(status.error ?? '', /crash loop: ended 3 times.*bad config/);
  await runtime.remove(project);
});

dockerTest('the memory limit is enforced: a container that needs more is OOM-killed and the status says so', async (t) => {
  if (engine === null) return t.fail('no engine: the before hook failed');
  const runtime = await openRuntime(newLogs());
  const project = { tenant: 'td', name: 'oom' };
  // dd allocates its 64 MiB block and fills it: far above the 16 MiB limit (no swap beyond it).
  await runtime.start(spec('oom', 'dd if=/dev/zero of=/dev/null bs=64M count=1', { limits: { memoryBytes: 16 * 1024 * 1024 } }));
  const ended = await waitState(runtime, project, ['exited', 'failed']);
  t.is(ended.signal, 'SIGKILL');
  t.regex(ended.error ?? '', /^killed: out of memory \(limit 16777216 bytes\)/);
  await runtime.remove(project);
});

dockerTest('a missing image and a missing engine give errors that say what to do', async (t) => {
  if (engine === null) return t.fail('no engine: the before hook failed');
  const runtime = await openRuntime(newLogs());
  const missing = await t.throwsAsync(runtime.start(spec('ghost', 'true', { image: 'debughost-test/not-here:0' })), { instanceOf: RuntimeError });
  t.is(missing?.name, 'ImageMissingError');
  t.is(missing?.message, "image debughost-test/not-here:0 is not present on this node's Docker engine; build or load it (docker load / docker import)");
  const noEngine = await t.throwsAsync(DockerRuntime.open({ node, logs: newLogs(), clock: realClock, wallNowMs: () => Date.now(), socketPath: join(root, 'no-engine.sock') }), { instanceOf: RuntimeError });
  t.is(noEngine?.name, 'RuntimeUnavailableError');
  t.regex(noEngine?.message ?? '', /^no Docker engine answers at .*no-engine\.sock .*start dockerd/);
});

dockerTest('after a node restart the runtime adopts its running container (not started twice) and removes orphans', async (t) => {
  if (engine === null) return t.fail('no engine: the before hook failed');
  const logDir = join(root, 'logs-adopt');
  const logs = newLogs(logDir);
  const first = await openRuntime(logs);
  const kept = spec('kept', 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.2; done', { restart: 'always' });
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
  const second = await openRuntime(reopened);
  t.deepEqual(second.adopted().map((status) => status.project.name).sort(), ['kept', 'orphan']);
  const again = await second.start(kept);
  t.is(again.containerId, keptStatus.containerId);
  t.is(again.restarts, 0);
  t.deepEqual(await second.removeOrphans([kept.project]), [orphan.project]);
  const own = await engine.docker.listContainers({ all: true, filters: { label: [`${LABELS.node}=${node}`] } });
  t.deepEqual(own.map((info) => info.Id), [keptStatus.containerId]);
  // Logs keep flowing into the reopened store, without duplicating lines it already had.
  await eventually('new ticks after adoption', 10_000, () => reopened.cursor(kept.project) >= linesBefore + 3);
  const ticks = reopened.query(kept.project, {}).lines.map((line) => Number(line.line.split(' ')[1]));
  t.deepEqual(ticks, ticks.map((_, index) => (ticks[0] ?? 0) + index));
  await second.remove(kept.project);
  t.deepEqual(await engine.docker.listContainers({ all: true, filters: { label: [`${LABELS.node}=${node}`] } }), []);
});

const behaviours: Record<Behaviour, string> = { helloThenRun: 'echo hello; exec sleep 600', exit0: 'exit 0', exit3: 'exit 3' };
runtimeCompliance(dockerTest, 'docker', async () => {
  if (engine === null) throw new Error('no engine: the before hook failed');
  const logs = newLogs();
  const runtime = await openRuntime(logs, { restart: { backoffMsMin: 20, backoffMsMax: 200, crashLoopExitsMax: 3, crashLoopWindowMs: 60_000, stableRunMs: 10_000 } });
  return {
    runtime,
    // sleep as PID 1 has no SIGTERM handler: Docker kills it after the grace.
    graceMs: 1000,
    spec: (project, behaviour, restart) => spec(project.name, behaviours[behaviour], { project, restart }),
    eventually: (what, probe) => eventually(what, 30_000, probe),
    close: async () => {
      for (const status of runtime.list()) await runtime.remove(status.project);
      await runtime.close();
    },
  };
});
