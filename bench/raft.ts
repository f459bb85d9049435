// `npm run bench -- raft`: durable write throughput and latency of a 3-node
// debughost cluster side by side with a 3-node etcd on loopback, under the same
// closed-loop load from a separate process (bench/raft-load.ts), writes to the
// leader, fsync on. Also the one-client latency next to this disk's fdatasync
// time, which is the floor under any durable commit.
import { spawn } from 'node:child_process';
import { cpus, tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { cpuMsOf, measureFdatasync, startDebughost, startEtcd, startNoop, stopOnSignal, type RunningCluster } from './clusters.ts';
import type { LoadConfig } from './raft-load.ts';
import { median, parseRaftBenchArgs, type LoadResult, type RaftBenchOptions, type SystemName } from './raft-stats.ts';

const LOAD_SCRIPT = resolve(import.meta.dirname, 'raft-load.ts');
const SEED = 20_260_101;
/** The one-client run needs little warm-up: connections and JIT only. */
const SINGLE_WARMUP_MS = 1_000;

/** The load generator failed or printed no result. */
export class LoadRunError extends Error {
  override readonly name = 'LoadRunError';
}

function runLoadProcess(config: LoadConfig): Promise<LoadResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', LOAD_SCRIPT, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const untrack = stopOnSignal(async () => {
      child.kill('SIGTERM');
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      untrack();
      const last = stdout.trim().split('\n').pop() ?? '';
      if (code !== 0 || last === '') return reject(new LoadRunError(`load generator for ${config.system} exited with ${code}: ${stderr.trim().split('\n')[0] ?? ''}`));
      resolveRun(JSON.parse(last) as LoadResult);
    });
  });
}

interface SystemRun {
  readonly loaded: LoadResult;
  readonly single: LoadResult | null;
  /** CPU time of all three servers per write under load: less noisy than writes/s on a shared machine. */
  readonly serverCpuUsPerWrite: number;
  /** Disk syncs of all nodes per write of the one client (debughost only). */
  readonly singleSyncsPerWrite: number | undefined;
}

async function runSystem(system: SystemName, options: RaftBenchOptions, run: number, log: (line: string) => void): Promise<SystemRun> {
  const cluster: RunningCluster = system === 'debughost' ? await startDebughost() : system === 'etcd' ? await startEtcd() : await startNoop();
  try {
    const base = { system, endpoint: cluster.leader, valueBytes: options.valueBytes, keys: options.keys, seed: SEED + run };
    const syncsBefore = await syncCount(cluster.metricsUrls);
    const single =
      options.singleDurationMs === 0
        ? null
        : await runLoadProcess({ ...base, clients: 1, channels: 1, warmupMs: SINGLE_WARMUP_MS, durationMs: options.singleDurationMs });
    // Disk syncs of all three nodes per write of the one client (warm-up included on both sides of the
    // ratio): each is a wait on the write's path, and the figure does not depend on the machine's load.
    const singleSyncsPerWrite = single === null || cluster.metricsUrls.length === 0 ? undefined : ((await syncCount(cluster.metricsUrls)) - syncsBefore) / single.completedTotal;
    if (singleSyncsPerWrite !== undefined) log(`run ${run + 1} ${system.padEnd(9)} one client: ${singleSyncsPerWrite.toFixed(2)} disk syncs per write (all nodes)`);
    const cpuBeforeMs = cluster.pids.map((pid) => cpuMsOf([pid]));
    const loaded = await runLoadProcess({ ...base, clients: options.clients, channels: options.channels, warmupMs: options.warmupMs, durationMs: options.durationMs });
    const cpuUsPerWrite = cluster.pids.map((pid, i) => ((cpuMsOf([pid]) - (cpuBeforeMs[i] as number)) * 1000) / loaded.completedTotal);
    const serverCpuUsPerWrite = cpuUsPerWrite.reduce((sum, us) => sum + us, 0);
    if (cluster.metricsUrls.length > 0) log(`run ${run + 1} ${system.padEnd(9)} log entries per fsync (all runs so far, per node): ${(await entriesPerSync(cluster.metricsUrls)).join(', ')}`);
    for (const result of single === null ? [loaded] : [single, loaded]) {
      log(`run ${run + 1} ${system.padEnd(9)} clients ${String(result.clients).padStart(4)}: ${result.writesPerSecond.toFixed(0).padStart(6)} writes/s  p50 ${result.latencyMsP50.toFixed(2)} ms  p99 ${result.latencyMsP99.toFixed(2)} ms  errors ${result.errors}${result.firstError === null ? '' : ` (${result.firstError})`}`);
    }
    log(`run ${run + 1} ${system.padEnd(9)} CPU per write under load: servers ${serverCpuUsPerWrite.toFixed(0)} µs (all together), load generator ${(loaded.clientCpuUsPerWrite ?? Number.NaN).toFixed(0)} µs; per server ${cpuUsPerWrite.map((us) => us.toFixed(0)).join(', ')} µs`);
    return { loaded, single, serverCpuUsPerWrite, singleSyncsPerWrite };
  } finally {
    await cluster.stop();
  }
}

const metricValue = (text: string, name: string): number => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);

/** Group commit size per node from its Prometheus counters: synced entries / syncs. */
async function entriesPerSync(urls: readonly string[]): Promise<string[]> {
  return Promise.all(
    urls.map(async (url) => {
      const text = await (await fetch(url)).text();
      return (metricValue(text, 'debughost_storage_synced_entries_total') / metricValue(text, 'debughost_storage_fsync_seconds_count')).toFixed(1);
    }),
  );
}

/** Disk syncs so far, all nodes together. */
async function syncCount(urls: readonly string[]): Promise<number> {
  const counts = await Promise.all(urls.map(async (url) => metricValue(await (await fetch(url)).text(), 'debughost_storage_fsync_seconds_count')));
  return counts.reduce((sum, count) => sum + count, 0);
}

const round = (value: number, digits: number): number => (Number.isFinite(value) ? Number(value.toFixed(digits)) : Number.NaN);

function summary(system: SystemName, runs: readonly SystemRun[]): Record<string, number> {
  const of = (pick: (run: SystemRun) => number | undefined): number => median(runs.map(pick).filter((value): value is number => value !== undefined));
  return {
    [`${system}WritesPerSecond`]: round(of((run) => run.loaded.writesPerSecond), 0),
    [`${system}LatencyMsP50`]: round(of((run) => run.loaded.latencyMsP50), 2),
    [`${system}LatencyMsP99`]: round(of((run) => run.loaded.latencyMsP99), 2),
    [`${system}ServerCpuUsPerWrite`]: round(of((run) => run.serverCpuUsPerWrite), 0),
    [`${system}ClientCpuUsPerWrite`]: round(of((run) => run.loaded.clientCpuUsPerWrite), 0),
    [`${system}Errors`]: runs.reduce((sum, run) => sum + run.loaded.errors + (run.single?.errors ?? 0), 0),
    [`${system}SingleClientLatencyMsP50`]: round(of((run) => run.single?.latencyMsP50), 2),
    [`${system}SingleClientLatencyMsP99`]: round(of((run) => run.single?.latencyMsP99), 2),
    ...(runs.some((run) => run.singleSyncsPerWrite !== undefined) ? { [`${system}SingleClientSyncsPerWrite`]: round(of((run) => run.singleSyncsPerWrite), 2) } : {}),
  };
}

/** `log` prints a line for people (bench/run.ts keeps it clear of the progress line). */
export async function raftBench(args: string[], report?: { log(line: string): void }): Promise<Record<string, number | string>> {
  const options = parseRaftBenchArgs(args);
  const log = report?.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const floor = measureFdatasync(tmpdir());
  log(`fdatasync of 512 bytes in ${tmpdir()}: p50 ${floor.latencyMsP50.toFixed(2)} ms, p99 ${floor.latencyMsP99.toFixed(2)} ms`);
  const runs = new Map<SystemName, SystemRun[]>(options.systems.map((system) => [system, []]));
  // Alternate the systems run by run so slow drift on a shared machine hits both.
  for (let run = 0; run < options.runs; run++) {
    for (const system of options.systems) runs.get(system)?.push(await runSystem(system, options, run, log));
  }
  const result: Record<string, number | string> = {
    benchmark: 'raft',
    nodes: 3,
    clients: options.clients,
    channels: options.channels,
    valueBytes: options.valueBytes,
    keys: options.keys,
    durationSeconds: options.durationMs / 1000,
    runs: options.runs,
    cpus: cpus().length,
    fdatasyncMsP50: round(floor.latencyMsP50, 3),
    fdatasyncMsP99: round(floor.latencyMsP99, 3),
  };
  for (const [system, systemRuns] of runs) Object.assign(result, summary(system, systemRuns));
  if (runs.has('debughost') && runs.has('etcd')) {
    result.writesRatio = round((result.debughostWritesPerSecond as number) / (result.etcdWritesPerSecond as number), 2);
    result.latencyP99Ratio = round((result.debughostLatencyMsP99 as number) / (result.etcdLatencyMsP99 as number), 2);
    result.goalMet = (result.writesRatio as number) >= 1.5 && (result.latencyP99Ratio as number) < 1 ? 'yes' : 'no';
  }
  return result;
}
