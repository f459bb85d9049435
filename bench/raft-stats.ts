// Pure parts of the Raft benchmark: its options (parsed and checked), latency
// percentiles and the medians across runs. No I/O, so it is tested without a cluster.
import { parseArgs } from 'node:util';

/** Bad benchmark options: the message is the one line the user sees. */
export class BenchUsageError extends Error {
  override readonly name = 'BenchUsageError';
}

/** `noop` is one process answering debughost's Put at once: the floor of the client and grpc-js here. */
export type SystemName = 'debughost' | 'etcd' | 'noop';
export const SYSTEMS: readonly SystemName[] = ['debughost', 'etcd', 'noop'];

export interface RaftBenchOptions {
  /** Requests in flight at once under load (closed loop: each client sends its next when the last returns). */
  readonly clients: number;
  /** gRPC connections the clients share, round-robin. */
  readonly channels: number;
  readonly valueBytes: number;
  /** Keys are drawn uniformly from this many. */
  readonly keys: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** Measured time of the one-client (1 in flight) latency run. */
  readonly singleDurationMs: number;
  /** Fresh clusters per system; the figures are the medians over runs. */
  readonly runs: number;
  readonly systems: readonly SystemName[];
}

export const RAFT_BENCH_DEFAULTS: RaftBenchOptions = {
  clients: 64,
  channels: 4,
  valueBytes: 256,
  keys: 10_000,
  warmupMs: 2_000,
  durationMs: 10_000,
  singleDurationMs: 3_000,
  runs: 1,
  systems: ['debughost', 'etcd'],
};

const FLAGS = {
  clients: { type: 'string' },
  channels: { type: 'string' },
  'value-bytes': { type: 'string' },
  keys: { type: 'string' },
  'warmup-s': { type: 'string' },
  'duration-s': { type: 'string' },
  'single-s': { type: 'string' },
  runs: { type: 'string' },
  systems: { type: 'string' },
} as const;

export const RAFT_BENCH_USAGE =
  'npm run bench -- raft [--json] [--clients 64] [--channels 4] [--value-bytes 256] [--keys 10000] [--warmup-s 2] [--duration-s 10] [--single-s 3] [--runs 1] [--systems debughost,etcd (also: noop)]';

function wholeNumber(flag: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) throw new BenchUsageError(`--${flag} needs a whole number from ${min} to ${max}, got '${text}'; usage: ${RAFT_BENCH_USAGE}`);
  return value;
}

/** The `raft` benchmark's flags (after the benchmark name, without --json). */
export function parseRaftBenchArgs(argv: readonly string[]): RaftBenchOptions {
  let values: Partial<Record<keyof typeof FLAGS, string>>;
  try {
    values = parseArgs({ args: [...argv], options: FLAGS, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new BenchUsageError(`${((error as Error).message.split('\n')[0] ?? '').trim()}; usage: ${RAFT_BENCH_USAGE}`);
  }
  const d = RAFT_BENCH_DEFAULTS;
  const clients = wholeNumber('clients', values.clients, d.clients, 1, 4096);
  const channels = wholeNumber('channels', values.channels, d.channels, 1, 64);
  if (channels > clients) throw new BenchUsageError(`--channels (${channels}) cannot exceed --clients (${clients}): each channel needs a client`);
  const systems = values.systems === undefined ? d.systems : values.systems.split(',').map((name) => name.trim());
  for (const name of systems) {
    if (!(SYSTEMS as readonly string[]).includes(name)) throw new BenchUsageError(`--systems takes a comma-separated subset of ${SYSTEMS.join(',')}, got '${name}'`);
  }
  return {
    clients,
    channels,
    valueBytes: wholeNumber('value-bytes', values['value-bytes'], d.valueBytes, 1, 1024 * 1024),
    keys: wholeNumber('keys', values.keys, d.keys, 1, 10_000_000),
    warmupMs: wholeNumber('warmup-s', values['warmup-s'], d.warmupMs / 1000, 0, 600) * 1000,
    durationMs: wholeNumber('duration-s', values['duration-s'], d.durationMs / 1000, 1, 3600) * 1000,
    singleDurationMs: wholeNumber('single-s', values['single-s'], d.singleDurationMs / 1000, 0, 600) * 1000,
    runs: wholeNumber('runs', values.runs, d.runs, 1, 20),
    systems: [...new Set(systems as SystemName[])],
  };
}

/** Nearest-rank percentile (0 < p <= 100) of ascending-sorted values; NaN for none. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} is outside (0, 100]`);
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, rank) - 1] as number;
}

/** Median of values in any order: the mean of the middle two for an even count; NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** What one load run reports. */
export interface LoadResult {
  readonly system: SystemName;
  readonly clients: number;
  /** Requests completed within the measured window. */
  readonly completed: number;
  /** Requests completed in the whole run, warm-up included (to divide the servers' CPU time by). */
  readonly completedTotal: number;
  readonly errors: number;
  readonly firstError: string | null;
  readonly measuredMs: number;
  readonly writesPerSecond: number;
  readonly latencyMsP50: number;
  readonly latencyMsP99: number;
  readonly latencyMsMax: number;
  /** The load generator's own CPU time per request (the same client code drives both systems). */
  readonly clientCpuUsPerWrite?: number;
}

/** Latencies (any order) of the requests completed in a window of `measuredMs` into a LoadResult. */
export function summarize(
  system: SystemName,
  clients: number,
  latenciesMs: Float64Array,
  measuredMs: number,
  completedTotal: number,
  errors: number,
  firstError: string | null,
): LoadResult {
  const sorted = Float64Array.from(latenciesMs).sort();
  return {
    system,
    clients,
    completed: sorted.length,
    completedTotal,
    errors,
    firstError,
    measuredMs,
    writesPerSecond: measuredMs > 0 ? (sorted.length * 1000) / measuredMs : Number.NaN,
    latencyMsP50: percentile(sorted, 50),
    latencyMsP99: percentile(sorted, 99),
    latencyMsMax: sorted.length === 0 ? Number.NaN : (sorted[sorted.length - 1] as number),
  };
}
