// Real three-node clusters on loopback for benchmarks: debughost node processes
// and etcd processes, each in a temp dir with free ports, the leader found
// over gRPC, and everything stopped by pid (and the dirs removed) in `stop`.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { Admin, Role, StatusRequestSchema } from '../proto/gen/admin_pb.ts';
import { Maintenance, StatusRequestSchema as EtcdStatusRequestSchema } from './etcd/gen/etcd_kv_pb.ts';
import { callUnary, makeClientConstructor } from '../proto/grpc.ts';
import { freePort } from '../node/local-cluster.ts';
import { ensureClusterSecret } from '../node/cluster-files.ts';
import { percentile } from './raft-stats.ts';

/** A cluster could not be started or did not elect a leader; says where its logs are. */
export class ClusterStartError extends Error {
  override readonly name = 'ClusterStartError';
}

export interface RunningCluster {
  /** gRPC client endpoint (host:port) of the current leader. */
  readonly leader: string;
  /** Where each process's output went. */
  readonly dir: string;
  /** The server processes, to read their CPU time. */
  readonly pids: readonly number[];
  /** Prometheus /metrics URLs (debughost only). */
  readonly metricsUrls: readonly string[];
  stop(): Promise<void>;
}

const REPO = resolve(import.meta.dirname, '..');
/** Extra Node.js flags for each debughost node, e.g. '--cpu-prof --cpu-prof-dir=/tmp/prof' to profile the servers. */
const NODE_FLAGS_ENV = 'DEBUGHOST_BENCH_NODE_FLAGS';
const LEADER_WAIT_MS = 30_000;
const STOP_WAIT_MS = 5_000;
export const ETCD_BINARY = '/usr/bin/etcd';


const sleep = (ms: number) => new Promise((resolveSleep) => setTimeout(resolveSleep, ms));

/** Stop each process by its pid: SIGTERM, then SIGKILL if it lingers. */
async function stopProcesses(children: readonly ChildProcess[]): Promise<void> {
  const exited = children.map(
    (child) =>
      new Promise<void>((resolveExit) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolveExit();
        child.once('exit', () => resolveExit());
      }),
  );
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  const timeout = sleep(STOP_WAIT_MS).then(() => 'timeout' as const);
  if ((await Promise.race([Promise.all(exited), timeout])) === 'timeout') {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.all(exited);
  }
}

function spawnLogged(command: string, args: readonly string[], logFile: string, children: ChildProcess[]): ChildProcess {
  const log = openSync(logFile, 'a');
  const child = spawn(command, args, { cwd: REPO, stdio: ['ignore', log, log] });
  closeSync(log);
  children.push(child);
  return child;
}

async function waitFor<T>(what: string, dir: string, children: readonly ChildProcess[], probe: () => Promise<T | null>): Promise<T> {
  const deadline = performance.now() + LEADER_WAIT_MS;
  while (performance.now() < deadline) {
    const dead = children.find((child) => child.exitCode !== null || child.signalCode !== null);
    if (dead !== undefined) throw new ClusterStartError(`${what}: a process exited early (code ${dead.exitCode ?? dead.signalCode}); see the logs in ${dir}`);
    const found = await probe().catch(() => null);
    if (found !== null) return found;
    await sleep(100);
  }
  throw new ClusterStartError(`${what}: no leader within ${LEADER_WAIT_MS} ms; see the logs in ${dir}`);
}

/** Clusters not stopped yet, so that Ctrl-C or SIGTERM to the benchmark stops them too. */
const live = new Set<() => Promise<void>>();
let stopping = false;

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    stopping = true;
    process.stderr.write(`bench: ${signal}, stopping ${live.size} cluster(s)\n`);
    void Promise.all([...live].map((stop) => stop())).finally(() => process.exit(130));
  });
}

/** Also run `stop` if the benchmark gets SIGINT or SIGTERM; call the result once it is no longer needed. */
export function stopOnSignal(stop: () => Promise<void>): () => void {
  live.add(stop);
  return () => live.delete(stop);
}

/** Start, then clean up everything if anything fails before the cluster is handed over. */
async function guarded(dir: string, children: ChildProcess[], start: () => Promise<string>, metricsUrls: string[] = []): Promise<RunningCluster> {
  // One stop for every caller (the run's finally and a signal alike), each awaiting the same cleanup.
  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      live.delete(stop);
      await stopProcesses(children);
      rmSync(dir, { recursive: true, force: true });
    })();
    return stopped;
  };
  live.add(stop);
  try {
    const leader = await start();
    return { leader, dir, pids: children.map((child) => child.pid as number), metricsUrls, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

const AdminClient = makeClientConstructor(Admin);

/**
 * etcd 3.4's default --snapshot-count. debughost's own default (10,000) would
 * snapshot five times in a ten-second run where etcd snapshots never; both
 * systems get the same interval.
 */
export const SNAPSHOT_ENTRIES = 100_000;

/** Three `debughost node` processes with fsync on; resolves once every node knows the same leader. */
export async function startDebughost(nodes = 3): Promise<RunningCluster> {
  if (stopping) throw new ClusterStartError('the benchmark is stopping');
  const dir = mkdtempSync(join(tmpdir(), 'dh-bench-'));
  const children: ChildProcess[] = [];
  const metricsUrls: string[] = [];
  return guarded(dir, children, async () => {
    const grpcPorts = await Promise.all(Array.from({ length: nodes }, () => freePort()));
    const httpPorts = await Promise.all(Array.from({ length: nodes }, () => freePort()));
    const seeds = grpcPorts.map((port) => `127.0.0.1:${port}`);
    for (const port of httpPorts) metricsUrls.push(`http://127.0.0.1:${port}/metrics`);
    // Peers authenticate with a cluster secret; clients go without tokens, as etcd runs here without auth.
    const secretFile = join(dir, 'cluster-secret');
    await ensureClusterSecret(secretFile);
    for (let i = 0; i < nodes; i++) {
      const args = [
        ...(process.env[NODE_FLAGS_ENV] ?? '').split(' ').filter((flag) => flag !== ''),
        'bin/debughost.js', 'node', '--id', `n${i + 1}`, '--grpc', seeds[i] as string, '--mcp', `127.0.0.1:${httpPorts[i]}`,
        '--seeds', seeds.join(','), '--data-dir', join(dir, `n${i + 1}`), '--snapshot-entries', String(SNAPSHOT_ENTRIES),
        '--cluster-secret-file', secretFile, '--insecure-no-auth',
      ];
      spawnLogged(process.execPath, args, join(dir, `n${i + 1}.log`), children);
    }
    const clients = seeds.map((address) => new AdminClient(address, grpc.credentials.createInsecure()));
    try {
      return await waitFor('debughost', dir, children, async () => {
        const statuses = await Promise.all(clients.map((client) => callUnary(client, 'status', create(StatusRequestSchema, {}), { deadline: new Date(Date.now() + 1000) })));
        const leader = statuses.find((status) => status.role === Role.LEADER);
        if (leader === undefined || !statuses.every((status) => status.leaderId === leader.id && status.appliedIndex >= leader.commitIndex)) return null;
        return seeds[statuses.indexOf(leader)] as string;
      });
    } finally {
      for (const client of clients) client.close();
    }
  }, metricsUrls);
}

const MaintenanceClient = makeClientConstructor(Maintenance);

/** Three etcd members with their defaults (WAL fsync on), listening on loopback only. */
export async function startEtcd(nodes = 3): Promise<RunningCluster> {
  if (stopping) throw new ClusterStartError('the benchmark is stopping');
  if (!existsSync(ETCD_BINARY)) throw new ClusterStartError(`${ETCD_BINARY} is not installed; install etcd-server (apt-get install -y etcd-server) or pass --systems debughost`);
  const dir = mkdtempSync(join(tmpdir(), 'etcd-bench-'));
  const children: ChildProcess[] = [];
  return guarded(dir, children, async () => {
    const clientPorts = await Promise.all(Array.from({ length: nodes }, () => freePort()));
    const peerPorts = await Promise.all(Array.from({ length: nodes }, () => freePort()));
    const initialCluster = peerPorts.map((port, i) => `e${i + 1}=http://127.0.0.1:${port}`).join(',');
    for (let i = 0; i < nodes; i++) {
      const client = `http://127.0.0.1:${clientPorts[i]}`;
      const peer = `http://127.0.0.1:${peerPorts[i]}`;
      const args = [
        '--name', `e${i + 1}`, '--data-dir', join(dir, `e${i + 1}`),
        '--listen-client-urls', client, '--advertise-client-urls', client,
        '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
        '--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', 'bench',
        '--logger', 'zap', '--log-level', 'warn', '--snapshot-count', String(SNAPSHOT_ENTRIES),
      ];
      spawnLogged(ETCD_BINARY, args, join(dir, `e${i + 1}.log`), children);
    }
    const endpoints = clientPorts.map((port) => `127.0.0.1:${port}`);
    const clients = endpoints.map((address) => new MaintenanceClient(address, grpc.credentials.createInsecure()));
    try {
      return await waitFor('etcd', dir, children, async () => {
        const statuses = await Promise.all(clients.map((client) => callUnary(client, 'status', create(EtcdStatusRequestSchema, {}), { deadline: new Date(Date.now() + 1000) })));
        const leaderId = statuses[0]?.leader ?? 0n;
        if (leaderId === 0n || !statuses.every((status) => status.leader === leaderId)) return null;
        const index = statuses.findIndex((status) => status.header?.memberId === leaderId);
        return index < 0 ? null : (endpoints[index] as string);
      });
    } finally {
      for (const client of clients) client.close();
    }
  });
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on every Linux port we run on). */
const USER_HZ = 100;

/** User plus system CPU time of the processes so far, in milliseconds (Linux /proc). */
export function cpuMsOf(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return (ticks * 1000) / USER_HZ;
}

const NOOP_SCRIPT = join(REPO, 'bench', 'noop-kv.ts');

/** One bench/noop-kv.ts process: a KV.Put that does nothing, to measure the floor. */
export async function startNoop(): Promise<RunningCluster> {
  if (stopping) throw new ClusterStartError('the benchmark is stopping');
  const dir = mkdtempSync(join(tmpdir(), 'noop-bench-'));
  const children: ChildProcess[] = [];
  return guarded(dir, children, async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', NOOP_SCRIPT], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    const portLine = new Promise<string>((resolvePort) => child.stdout?.once('data', (chunk: Buffer) => resolvePort(chunk.toString().trim())));
    return waitFor('noop', dir, children, async () => {
      const port = await Promise.race([portLine, sleep(100).then(() => null)]);
      return port === null ? null : `127.0.0.1:${port}`;
    });
  });
}

export interface FdatasyncFloor {
  readonly iterations: number;
  readonly latencyMsP50: number;
  readonly latencyMsP99: number;
}

/**
 * The floor under any durable commit: append `bytes` to a file in `dir`'s file
 * system and fdatasync it, `iterations` times (what a WAL append costs).
 */
export function measureFdatasync(dir: string = tmpdir(), iterations = 200, bytes = 512): FdatasyncFloor {
  const workDir = mkdtempSync(join(dir, 'fdatasync-'));
  const file = join(workDir, 'wal');
  const fd = openSync(file, 'a');
  const latencies = new Float64Array(iterations);
  const block = Buffer.alloc(bytes, 0x61);
  try {
    for (let i = 0; i < iterations; i++) {
      const started = performance.now();
      writeSync(fd, block);
      fdatasyncSync(fd);
      latencies[i] = performance.now() - started;
    }
  } finally {
    closeSync(fd);
    rmSync(workDir, { recursive: true, force: true });
  }
  latencies.sort();
  return { iterations, latencyMsP50: percentile(latencies, 50), latencyMsP99: percentile(latencies, 99) };
}
