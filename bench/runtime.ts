// `npm run bench -- runtime [--json]`: what the process runtime costs, with real processes:
// start() to running, start to a python3 dev server answering HTTP, stop (SIGTERM), and how
// long a workload outlives a SIGKILLed node (the supervisor's pipe). Docker start/stop too
// when an engine answers at /var/run/docker.sock (with an image the bench imports and removes):
// start to listening, first usage sample, exec, stop, and a kill by hand to the exited event.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Docker from 'dockerode';
import { checkHttp, checkTcp, waitFor } from '../actors/health.ts';
import { LogStore } from '../actors/logs.ts';
import { PortRegistry } from '../actors/ports.ts';
import { DockerRuntime } from '../actors/runtime-docker.ts';
import { ProcessRuntime } from '../actors/runtime-process.ts';
import type { LifecycleEvent, WorkloadSpec } from '../actors/runtime.ts';
import { importImage } from '../actors/testing/dockerd.ts';
import { eventually, groupMembers, realClock } from '../actors/testing/real.ts';

const ROUNDS = 10;

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return Number((sorted[Math.floor(sorted.length / 2)] ?? 0).toFixed(1));
};
const max = (values: number[]): number => Number(Math.max(...values).toFixed(1));

/** Workloads per throughput round: enough that per-start costs dominate, few enough for a shared 2-core machine. */
const THROUGHPUT_WORKLOADS = 64;
const THROUGHPUT_IN_FLIGHT = 32;
const THROUGHPUT_ROUNDS = 3;

export async function runtimeBench(args: string[] = []): Promise<Record<string, number | string>> {
  if (args.includes('--throughput-only')) return throughputOnly();
  const dir = mkdtempSync(join(tmpdir(), 'debughost-bench-runtime-'));
  const logs = new LogStore({ dir: join(dir, 'logs'), wallNowMs: () => Date.now() });
  const runtime = await ProcessRuntime.open({ node: 'bench', stateDir: join(dir, 'state'), logs, clock: realClock, wallNowMs: () => Date.now() });
  const ports = new PortRegistry({ node: 'bench', rangeStart: 25000, rangeEnd: 25999 });
  const result: Record<string, number | string> = { benchmark: 'runtime', rounds: ROUNDS };
  try {
    const started: number[] = [];
    const healthy: number[] = [];
    const stopped: number[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      const owner = `projects/bench/web${round}`;
      const allocated = await ports.allocate(owner, ['default']);
      const spec: WorkloadSpec = { project: { tenant: 'bench', name: `web${round}` }, command: 'exec python3 -m http.server "$PORT" --bind 127.0.0.1', env: {}, ports: allocated, restart: 'never', node: 'bench' };
      const begin = performance.now();
      await runtime.start(spec);
      started.push(performance.now() - begin);
      const ready = await waitFor(() => checkHttp(allocated.default as number, '/'), { timeoutMs: 20_000, clock: realClock, intervalMs: 10 });
      if (!ready.ok) throw new Error(`python3 http.server did not answer: ${ready.detail}`);
      healthy.push(performance.now() - begin);
      const stopBegin = performance.now();
      await runtime.stop(spec.project, 5000);
      stopped.push(performance.now() - stopBegin);
      await runtime.remove(spec.project);
      await ports.release(owner);
    }
    Object.assign(result, {
      processStartMsMedian: median(started),
      processStartMsMax: max(started),
      pythonHttpReadyMsMedian: median(healthy),
      processStopMsMedian: median(stopped),
      processStopMsMax: max(stopped),
      orphanKillMs: await orphanKillMs(dir),
      ...(await throughput(runtime)),
    });
    Object.assign(result, await dockerFigures(dir));
    return result;
  } finally {
    await runtime.close();
    await logs.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function throughputOnly(): Promise<Record<string, number | string>> {
  const dir = mkdtempSync(join(tmpdir(), 'debughost-bench-runtime-'));
  const logs = new LogStore({ dir: join(dir, 'logs'), wallNowMs: () => Date.now() });
  const runtime = await ProcessRuntime.open({ node: 'bench', stateDir: join(dir, 'state'), logs, clock: realClock, wallNowMs: () => Date.now() });
  try {
    return { benchmark: 'runtime', ...(await throughput(runtime)) };
  } finally {
    await runtime.close();
    await logs.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Workloads started per second: THROUGHPUT_WORKLOADS `sleep`s started one at a time, then with
 * THROUGHPUT_IN_FLIGHT start() calls in flight; each round ends with every workload removed.
 * Also how many processes one running project costs (its own, besides any shared per-node ones).
 */
async function throughput(runtime: ProcessRuntime): Promise<Record<string, number>> {
  const serial: number[] = [];
  const parallel: number[] = [];
  const stops: number[] = [];
  let processesPerProject = 0;
  const spec = (round: number, index: number): WorkloadSpec => ({ project: { tenant: 'bench', name: `t${round}-${index}` }, command: 'exec sleep 600', env: {}, ports: {}, restart: 'never', node: 'bench' });
  const startAll = async (round: number, inFlight: number): Promise<number> => {
    let next = 0;
    const begin = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < THROUGHPUT_WORKLOADS) {
          const index = next;
          next += 1;
          await runtime.start(spec(round, index));
        }
      }),
    );
    return THROUGHPUT_WORKLOADS / ((performance.now() - begin) / 1000);
  };
  const removeAll = async (round: number): Promise<void> => {
    const begin = performance.now();
    await Promise.all(Array.from({ length: THROUGHPUT_WORKLOADS }, (_, index) => runtime.remove(spec(round, index).project)));
    stops.push(THROUGHPUT_WORKLOADS / ((performance.now() - begin) / 1000));
  };
  for (let round = 0; round < THROUGHPUT_ROUNDS; round += 1) {
    serial.push(await startAll(round * 2, 1));
    processesPerProject = Math.max(processesPerProject, processesOfProject(runtime, spec(round * 2, 0).project));
    await removeAll(round * 2);
    parallel.push(await startAll(round * 2 + 1, THROUGHPUT_IN_FLIGHT));
    await removeAll(round * 2 + 1);
  }
  return {
    startsPerSecondSerialMedian: median(serial),
    [`startsPerSecondInFlight${THROUGHPUT_IN_FLIGHT}Median`]: median(parallel),
    removesPerSecondInFlight64Median: median(stops),
    processesPerProject,
  };
}

/** Processes one project holds: its process group's live members (the supervisor's group holds the workload). */
function processesOfProject(runtime: ProcessRuntime, project: { tenant: string; name: string }): number {
  const pid = runtime.status(project)?.pid;
  return pid === null || pid === undefined ? 0 : groupMembers(pid).length;
}

/** SIGKILL a node process that runs one workload; time until the workload's group is gone. */
async function orphanKillMs(dir: string): Promise<number> {
  const node = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '..', 'actors', 'testing', 'runtime-node.ts'), join(dir, 'orphan'), 'while :; do sleep 1; done'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  node.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const line = await eventually('the node script', 30_000, () => (out.includes('\n') ? out.split('\n')[0] : null));
  const { pgid } = JSON.parse(line as string) as { pgid: number };
  const begin = performance.now();
  node.kill('SIGKILL');
  await eventually('the orphaned group to die', 20_000, () => groupMembers(pgid).length === 0);
  return Number((performance.now() - begin).toFixed(1));
}

async function dockerFigures(dir: string): Promise<Record<string, number | string>> {
  const docker = new Docker({ socketPath: '/var/run/docker.sock' });
  // An image of the bench's own: the engine is shared, and the tests' image is not ours to remove.
  const image = `debughost-bench-${process.pid}/busybox:1`;
  try {
    await docker.ping();
    importImage(image);
  } catch (error) {
    return { docker: `skipped: no engine at /var/run/docker.sock or no static busybox to import (${(error as Error).message})` };
  }
  const logs = new LogStore({ dir: join(dir, 'docker-logs'), wallNowMs: () => Date.now() });
  const runtime = await DockerRuntime.open({ node: 'bench', stateDir: join(dir, 'docker-state'), logs, clock: realClock, wallNowMs: () => Date.now() });
  const ports = new PortRegistry({ node: 'bench', rangeStart: 25000, rangeEnd: 25999 });
  const started: number[] = [];
  const stopped: number[] = [];
  const killedToEvent: number[] = [];
  const execs: number[] = [];
  const firstUsage: number[] = [];
  const lifecycle: LifecycleEvent[] = [];
  runtime.subscribe((event) => {
    if (event.type === 'lifecycle') lifecycle.push(event);
  });
  try {
    for (let round = 0; round < 5; round += 1) {
      const allocated = await ports.allocate('projects/bench/c', ['default']);
      const project = { tenant: 'bench', name: `c${round}` };
      const begin = performance.now();
      await runtime.start({ project, image, command: 'exec httpd -f -p "$PORT" -h /', env: {}, ports: allocated, restart: 'never', node: 'bench' });
      const ready = await waitFor(() => checkTcp(allocated.default as number), { timeoutMs: 20_000, clock: realClock, intervalMs: 10 });
      if (!ready.ok) throw new Error(`container did not listen: ${ready.detail}`);
      started.push(performance.now() - begin);
      await eventually('a usage sample', 20_000, () => runtime.status(project)?.usage);
      firstUsage.push(performance.now() - begin);
      const execBegin = performance.now();
      await runtime.exec(project, { command: 'echo hi', env: {}, timeoutMs: 10_000, outputBytesMax: 1024 }, new AbortController().signal);
      execs.push(performance.now() - execBegin);
      const stopBegin = performance.now();
      await runtime.stop(project, 1000);
      stopped.push(performance.now() - stopBegin);
      await runtime.remove(project);
      // Killed by hand: how long until the exited event reaches a subscriber.
      const victim = { tenant: 'bench', name: `k${round}` };
      const victimStatus = await runtime.start({ project: victim, image, command: 'exec sleep 600', env: {}, ports: {}, restart: 'never', node: 'bench' });
      const killBegin = performance.now();
      await docker.getContainer(victimStatus.containerId as string).kill({ signal: 'SIGKILL' });
      await eventually('the exited event', 20_000, () => lifecycle.find((event) => event.project.name === victim.name && event.kind === 'exited'));
      killedToEvent.push(performance.now() - killBegin);
      await runtime.remove(victim);
      await ports.release('projects/bench/c');
    }
  } finally {
    await runtime.removeOrphans([]);
    await runtime.close();
    await logs.close();
    await docker.getImage(image).remove({ force: true }).catch(() => undefined);
  }
  return {
    dockerStartToListenMsMedian: median(started),
    dockerStartToFirstUsageMsMedian: median(firstUsage),
    dockerExecMsMedian: median(execs),
    dockerStopMsMedian: median(stopped),
    dockerKillToExitedEventMsMedian: median(killedToEvent),
    dockerKillToExitedEventMsMax: max(killedToEvent),
  };
}
