// MCP latency on a 3-node cluster of real processes: many concurrent MCP clients call
// project_status and project_logs through the owner node (local) and through another
// node (forwarded); then the time project_start takes until the process runs, and the
// same for a Docker container when an engine answers and the test image is present.
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import Docker from 'dockerode';
import { seededRandom, sleep, type Member } from '../node/local-cluster.ts';
import { cpuMsOf } from './clusters.ts';
import { callTool, connect, loadAverage, pool, startBenchCluster, summarize, timedCall, wholeNumberFlag, type LatencySummary } from './mcp-client.ts';
import { BenchUsageError, percentile } from './raft-stats.ts';
import { PHASES_FILE, PhaseMarks } from './cpu-profile.ts';

const USAGE = 'npm run bench -- mcp [--json] [--clients 50] [--projects 30] [--duration-s 10] [--starts 50] [--docker-starts 10] [--idle-s 2] [--cpu-prof-dir DIR]';
const NODES = 3;
const DOCKER_SOCKET = '/var/run/docker.sock';
const DOCKER_IMAGE = 'debughost-test/busybox:1';
const BENCH_IMAGE_REPO = 'debughost-bench/busybox';
const DOCKER_PING_MS = 3000;
/** Lines each project prints before it sleeps, so that project_logs returns a page. */
const LOG_LINES = 50;

interface McpOptions {
  readonly clients: number;
  readonly projects: number;
  readonly durationMs: number;
  readonly starts: number;
  readonly dockerStarts: number;
  /** How long the idle nodes' CPU is sampled before the load (longer for an idle profile). */
  readonly idleMs: number;
  /** Profile the nodes (`--cpu-prof`) into this directory; they are stopped with SIGTERM so that they write it. */
  readonly cpuProfDir: string | undefined;
}

function parseOptions(args: string[]): McpOptions {
  let values: Record<string, string | undefined>;
  try {
    values = parseArgs({
      args,
      options: { clients: { type: 'string' }, projects: { type: 'string' }, 'duration-s': { type: 'string' }, starts: { type: 'string' }, 'docker-starts': { type: 'string' }, 'idle-s': { type: 'string' }, 'cpu-prof-dir': { type: 'string' } },
      strict: true,
    }).values;
  } catch (error) {
    throw new BenchUsageError(`${(error as Error).message.split('\n')[0] ?? ''}; usage: ${USAGE}`);
  }
  return {
    clients: wholeNumberFlag('clients', values.clients, 50, 1, 500, USAGE),
    projects: wholeNumberFlag('projects', values.projects, 30, 3, 100, USAGE),
    durationMs: wholeNumberFlag('duration-s', values['duration-s'], 10, 1, 600, USAGE) * 1000,
    starts: wholeNumberFlag('starts', values.starts, 50, 1, 1000, USAGE),
    dockerStarts: wholeNumberFlag('docker-starts', values['docker-starts'], 10, 0, 100, USAGE),
    idleMs: wholeNumberFlag('idle-s', values['idle-s'], 2, 1, 600, USAGE) * 1000,
    cpuProfDir: values['cpu-prof-dir'] === undefined ? undefined : resolve(values['cpu-prof-dir']),
  };
}

type DockerSetup = { readonly skip: string } | { readonly image: string; readonly docker: Docker };

/**
 * The test image under the bench's own tag (so that a test removing its tag meanwhile cannot take it away),
 * or why Docker starts cannot be measured here.
 */
async function dockerSetup(): Promise<DockerSetup> {
  const docker = new Docker({ socketPath: DOCKER_SOCKET, timeout: DOCKER_PING_MS });
  try {
    await docker.ping();
  } catch (error) {
    return { skip: `no Docker engine answers at ${DOCKER_SOCKET} (${(error as Error).message.split('\n')[0] ?? ''})` };
  }
  const tag = String(process.pid);
  try {
    await docker.getImage(DOCKER_IMAGE).tag({ repo: BENCH_IMAGE_REPO, tag });
  } catch {
    return { skip: `image ${DOCKER_IMAGE} is not present (the Docker tests build it)` };
  }
  return { image: `${BENCH_IMAGE_REPO}:${tag}`, docker };
}

/** Containers left from the bench image (a run that failed before project_remove), then the bench's tag. */
async function removeBenchDocker(docker: Docker, image: string): Promise<void> {
  const left = await docker.listContainers({ all: true, filters: { ancestor: [image] } }).catch(() => []);
  for (const container of left) await docker.getContainer(container.Id).remove({ force: true }).catch(() => {});
  await docker.getImage(image).remove().catch(() => {});
}

type Bucket = 'statusLocal' | 'statusForwarded' | 'logsLocal' | 'logsForwarded';
const BUCKETS: readonly Bucket[] = ['statusLocal', 'statusForwarded', 'logsLocal', 'logsForwarded'];

/** Start times: each call's wall time from project_start until its reply (which waits for the process to run). */
async function measureStarts(client: Client, count: number, prefix: string, args: Record<string, unknown>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const name = `${prefix}${i}`;
    const { ms, result } = await timedCall(client, 'project_start', { name, ...args });
    const state = result.structuredContent?.state;
    if (state !== 'running') throw new Error(`project_start ${name} replied in state ${String(state)}: ${result.content[0]?.text ?? ''}`);
    times.push(ms);
    await callTool(client, 'project_remove', { name });
  }
  return times;
}

export async function mcpBench(args: string[]): Promise<Record<string, number | string>> {
  const options = parseOptions(args);
  const marker = `DH_BENCH_MCP_${process.pid}`;
  const docker: DockerSetup = options.dockerStarts === 0 ? { skip: '--docker-starts 0' } : await dockerSetup();
  const loadBefore = loadAverage();
  const bench = await startBenchCluster(NODES, ['--docker', 'skip' in docker ? 'off' : 'auto'], marker, options.cpuProfDir === undefined ? {} : { cpuProfDir: options.cpuProfDir });
  const clients: Client[] = [];
  try {
    const members = bench.members;
    for (let i = 0; i < options.clients; i += 1) clients.push(await connect(members[i % NODES] as Member, `bench-mcp-${i}`));
    const memberOfClient = (i: number): Member => members[i % NODES] as Member;

    // Projects that print LOG_LINES lines and sleep; their owners come from project_status.
    const names = Array.from({ length: options.projects }, (_, i) => `q${i}`);
    const owners = new Map<string, string>();
    await pool(names, NODES, async (name, worker) => {
      const { result } = await timedCall(clients[worker] as Client, 'project_start', {
        name, command: `i=0; while [ $i -lt ${LOG_LINES} ]; do echo "line $i of ${name}"; i=$((i+1)); done; exec sleep 100000`, env: { [marker]: name }, ports: [], restart: 'never',
      });
      owners.set(name, String(result.structuredContent?.owner));
    });

    // Closed loop: each client calls again as soon as its last call returns, for the duration.
    const samples: Record<Bucket, number[]> = { statusLocal: [], statusForwarded: [], logsLocal: [], logsForwarded: [] };
    const random = seededRandom(5);
    const nodePids = members.map((m) => m.process?.pid ?? 0);
    // The nodes' own background (heartbeats, liveness, status polls), so that the CPU per call can leave it out.
    const phases = new PhaseMarks();
    const idleCpuStartMs = cpuMsOf(nodePids);
    phases.begin('idle');
    await sleep(options.idleMs);
    phases.begin('load');
    const nodesIdleCpuMsPerS = ((cpuMsOf(nodePids) - idleCpuStartMs) * 1000) / options.idleMs;
    const nodeCpuBeforeMs = cpuMsOf(nodePids);
    const benchCpuBefore = process.cpuUsage();
    const loadStarted = performance.now();
    const deadline = loadStarted + options.durationMs;
    await Promise.all(
      clients.map(async (client, i) => {
        const via = memberOfClient(i).id;
        while (performance.now() < deadline) {
          const name = names[Math.floor(random() * names.length)] as string;
          const logs = random() < 0.5;
          const { ms } = await timedCall(client, logs ? 'project_logs' : 'project_status', logs ? { name, tail: 20 } : { name });
          const local = owners.get(name) === via;
          samples[logs ? (local ? 'logsLocal' : 'logsForwarded') : local ? 'statusLocal' : 'statusForwarded'].push(ms);
        }
      }),
    );
    const loadWallMs = performance.now() - loadStarted;
    phases.begin('oneClient');
    // Where the CPU went: the nodes, or this one process that runs every client (the machine has few cores).
    const nodeCpuMs = cpuMsOf(nodePids) - nodeCpuBeforeMs;
    const benchCpu = process.cpuUsage(benchCpuBefore);
    const benchCpuMs = (benchCpu.user + benchCpu.system) / 1000;
    const totalCalls = BUCKETS.reduce((sum, bucket) => sum + samples[bucket].length, 0);
    const summaries = Object.fromEntries(BUCKETS.map((bucket) => [bucket, summarize(samples[bucket])])) as Record<Bucket, LatencySummary>;
    const forwardedAll = summarize([...samples.statusForwarded, ...samples.logsForwarded]);

    // The same calls from one client at a time: latency without queueing behind the other 49.
    const single: Record<'local' | 'forwarded', number[]> = { local: [], forwarded: [] };
    for (let i = 0; i < 400; i += 1) {
      const name = names[i % names.length] as string;
      const clientIndex = i % NODES;
      const { ms } = await timedCall(clients[clientIndex] as Client, i % 4 < 2 ? 'project_status' : 'project_logs', i % 4 < 2 ? { name } : { name, tail: 20 });
      single[owners.get(name) === memberOfClient(clientIndex).id ? 'local' : 'forwarded'].push(ms);
    }
    const singleLocal = summarize(single.local);
    const singleForwarded = summarize(single.forwarded);
    phases.begin('starts');

    // Start to running, one at a time, through the first node (so about 2 of 3 are forwarded to their owner).
    const starts = await measureStarts(clients[0] as Client, options.starts, 's', { command: 'exec sleep 1000', env: { [marker]: 'start' }, ports: [], restart: 'never' });
    phases.begin('end');
    if (options.cpuProfDir !== undefined) phases.write(join(options.cpuProfDir, PHASES_FILE));
    const startSorted = Float64Array.from(starts).sort();
    const round = (ms: number): number => Number(ms.toFixed(1));
    let dockerFigures: Record<string, number | string> = { dockerStart: 'skip' in docker ? `skipped (${docker.skip})` : '' };
    if (!('skip' in docker)) {
      const dockerTimes = Float64Array.from(await measureStarts(clients[0] as Client, options.dockerStarts, 'd', { image: docker.image, command: 'sleep 1000', ports: [], restart: 'never' })).sort();
      dockerFigures = {
        dockerStarts: dockerTimes.length,
        dockerStartP50Ms: round(percentile(dockerTimes, 50)),
        dockerStartP95Ms: round(percentile(dockerTimes, 95)),
        dockerStartGoalMet: percentile(dockerTimes, 95) < 1000 ? 'yes' : 'no',
      };
    }
    return {
      benchmark: 'mcp',
      nodes: NODES,
      clients: options.clients,
      projects: options.projects,
      durationS: options.durationMs / 1000,
      callsPerSecond: Math.round(totalCalls / (loadWallMs / 1000)),
      ...Object.fromEntries(BUCKETS.flatMap((bucket) => [[`${bucket}P50Ms`, summaries[bucket].p50Ms], [`${bucket}P99Ms`, summaries[bucket].p99Ms]])),
      nodesIdleCpuMsPerS: Math.round(nodesIdleCpuMsPerS),
      nodesCpuPerCallMs: Number((nodeCpuMs / totalCalls).toFixed(2)),
      nodesCpuPerCallLessIdleMs: Number(((nodeCpuMs - (nodesIdleCpuMsPerS * loadWallMs) / 1000) / totalCalls).toFixed(2)),
      clientCpuPerCallMs: Number((benchCpuMs / totalCalls).toFixed(2)),
      forwardedCalls: forwardedAll.count,
      forwardedP99Ms: forwardedAll.p99Ms,
      forwardedGoalMet: forwardedAll.p99Ms < 10 ? 'yes' : 'no',
      oneClientLocalP50Ms: singleLocal.p50Ms,
      oneClientLocalP99Ms: singleLocal.p99Ms,
      oneClientForwardedP50Ms: singleForwarded.p50Ms,
      oneClientForwardedP99Ms: singleForwarded.p99Ms,
      processStarts: starts.length,
      processStartP50Ms: round(percentile(startSorted, 50)),
      processStartP95Ms: round(percentile(startSorted, 95)),
      processStartGoalMet: percentile(startSorted, 95) < 100 ? 'yes' : 'no',
      ...dockerFigures,
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadAverage(),
    };
  } finally {
    for (const client of clients) await client.close().catch(() => {});
    await bench.stop();
    if (!('skip' in docker)) await removeBenchDocker(docker.docker, docker.image);
  }
}
