// `npm run bench -- batch`: starting N projects on a 3-node cluster with one `project_batch` call against N single
// `project_start` calls, one at a time (as an agent that loops) and N at `--concurrency` in flight (as the batch runs
// them). Each start waits until its process runs; the cluster is the same for all three, the order rotates per run,
// and every project is removed (untimed) before the next round. Figures: projects/s per way, medians over --runs.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { until } from '../node/local-cluster.ts';
import { BATCH_LIMITS } from '../node/mcp-batch.ts';
import { callTool, connect, loadAverage, markedProcesses, pool, startBenchCluster, wholeNumberFlag } from './mcp-client.ts';
import { BenchUsageError } from './raft-stats.ts';

const USAGE = 'usage: npm run bench -- batch [--projects N] [--concurrency N] [--runs N] [--json]';
const NODES = 3;
/** Every workload of a round is up this soon after its start answered, or the round failed. */
const WORKLOADS_WAIT_MS = 10_000;

type Way = 'batch' | 'sequential' | 'concurrent';
const WAYS: readonly Way[] = ['batch', 'sequential', 'concurrent'];

interface Options {
  readonly projects: number;
  readonly concurrency: number;
  readonly runs: number;
}

function parse(args: string[]): Options {
  const flag = (name: string): string | undefined => {
    const at = args.indexOf(name);
    return at === -1 ? undefined : args[at + 1];
  };
  for (const arg of args) if (arg.startsWith('--') && !['--projects', '--concurrency', '--runs'].includes(arg)) throw new BenchUsageError(`unknown flag ${arg}; ${USAGE}`);
  return {
    projects: wholeNumberFlag('--projects', flag('--projects'), 50, 1, BATCH_LIMITS.itemsMax, USAGE),
    concurrency: wholeNumberFlag('--concurrency', flag('--concurrency'), BATCH_LIMITS.concurrencyDefault, 1, BATCH_LIMITS.concurrencyMax, USAGE),
    runs: wholeNumberFlag('--runs', flag('--runs'), 3, 1, 20, USAGE),
  };
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};

export async function batchBench(args: string[], report: { status(text: string): void; log(line: string): void }): Promise<Record<string, number | string>> {
  const options = parse(args);
  const marker = `DH_BENCH_BATCH_${process.pid}`;
  const loadBefore = loadAverage();
  report.status('starting 3 nodes');
  const bench = await startBenchCluster(NODES, ['--docker', 'off'], marker);
  const client: Client = await connect(bench.members[0] as (typeof bench.members)[number], 'bench-batch');
  const perSecond: Record<Way, number[]> = { batch: [], sequential: [], concurrent: [] };
  try {
    const spec = (round: string, i: number): Record<string, unknown> => ({ name: `${round}-${i}`, command: 'exec sleep 100000', env: { [marker]: `${round}-${i}` }, ports: [], restart: 'never' });
    const names = (round: string): string[] => Array.from({ length: options.projects }, (_, i) => `${round}-${i}`);
    for (let run = 0; run < options.runs; run += 1) {
      for (let k = 0; k < WAYS.length; k += 1) {
        const way = WAYS[(run + k) % WAYS.length] as Way;
        const round = `r${run}${way[0]}`;
        report.status(`run ${run + 1}/${options.runs}: ${way}`);
        const started = performance.now();
        if (way === 'batch') {
          const result = await callTool(client, 'project_batch', { items: names(round).map((_, i) => ({ op: 'start', ...spec(round, i) })), concurrency: options.concurrency });
          const failed = Number(result.structuredContent?.failed ?? -1);
          if (failed !== 0) throw new Error(`project_batch: ${failed} of ${options.projects} starts failed: ${result.content[0]?.text.slice(0, 300) ?? ''}`);
        } else {
          const items = names(round).map((_, i) => i);
          await pool(items, way === 'sequential' ? 1 : options.concurrency, async (i) => {
            await callTool(client, 'project_start', spec(round, i));
          });
        }
        const seconds = (performance.now() - started) / 1000;
        // A start answers once its process is spawned; the exec into the workload may follow a moment later.
        const running = (): number => markedProcesses(marker).filter((p) => p.value.startsWith(`${round}-`)).length;
        await until(`${way}: all ${options.projects} workloads running`, WORKLOADS_WAIT_MS, () => (running() === options.projects ? true : null), 50).catch(() => {
          throw new Error(`${way}: ${running()} of ${options.projects} workloads run ${WORKLOADS_WAIT_MS} ms after the starts answered`);
        });
        perSecond[way].push(options.projects / seconds);
        report.log(`run ${run + 1} ${way.padEnd(10)} ${options.projects} starts in ${seconds.toFixed(2)} s: ${(options.projects / seconds).toFixed(1)} projects/s`);
        report.status(`run ${run + 1}/${options.runs}: removing ${way}`);
        await callTool(client, 'project_batch', { items: names(round).map((name) => ({ op: 'remove', name })), concurrency: BATCH_LIMITS.concurrencyMax });
      }
    }
  } finally {
    await client.close().catch(() => {});
    await bench.stop();
  }
  const batch = median(perSecond.batch);
  const sequential = median(perSecond.sequential);
  const concurrent = median(perSecond.concurrent);
  return {
    benchmark: 'batch',
    nodes: NODES,
    projects: options.projects,
    concurrency: options.concurrency,
    runs: options.runs,
    loadBefore,
    loadAfter: loadAverage(),
    batchProjectsPerSecond: Math.round(batch * 10) / 10,
    sequentialProjectsPerSecond: Math.round(sequential * 10) / 10,
    concurrentProjectsPerSecond: Math.round(concurrent * 10) / 10,
    batchOverSequential: Math.round((batch / sequential) * 100) / 100,
    batchOverConcurrent: Math.round((batch / concurrent) * 100) / 100,
  };
}
