// Pure parts of the actors and MCP benchmarks: a bounded-concurrency pool, latency
// summaries and flag checks. No I/O, so they are tested without a cluster.
import { BenchUsageError, percentile } from './raft-stats.ts';

/** Runs `work` over `items` with at most `concurrency` in flight; rejects with the first failure after all settle. */
export async function pool<T>(items: readonly T[], concurrency: number, work: (item: T, worker: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown = null;
  const loop = async (worker: number): Promise<void> => {
    while (failure === null && next < items.length) {
      const item = items[next] as T;
      next += 1;
      try {
        await work(item, worker);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, (_, worker) => loop(worker)));
  if (failure !== null) throw failure;
}

export interface LatencySummary {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export function summarize(samples: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(samples).sort();
  const round = (ms: number): number => Number(ms.toFixed(2));
  return { count: sorted.length, p50Ms: round(percentile(sorted, 50)), p99Ms: round(percentile(sorted, 99)), maxMs: round(sorted[sorted.length - 1] ?? Number.NaN) };
}

export function wholeNumberFlag(flag: string, text: string | undefined, fallback: number, min: number, max: number, usage: string): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) throw new BenchUsageError(`--${flag} must be a whole number from ${min} to ${max}, got '${text}'; usage: ${usage}`);
  return value;
}
