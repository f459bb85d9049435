// CPU and memory of running containers from the Docker stats API. One-shot
// stats (no second sample taken by the engine, ~50 ms instead of ~2 s) every
// usageIntervalMs; CPU is our own difference between two samples, the first one
// against the container's start. Samples land in the workload's status quietly:
// a status event per sample would wake the project's actor every few seconds.
import type Docker from 'dockerode';
import type { Clock, TimerHandle } from '../consensus/types.ts';
import type { WorkloadUsage } from './runtime.ts';

/** The part of a stats answer we read (cgroup v1 and v2 shapes). */
export interface DockerStats {
  readonly read?: string;
  readonly cpu_stats?: { readonly cpu_usage?: { readonly total_usage?: number } };
  readonly memory_stats?: { readonly usage?: number; readonly stats?: Readonly<Record<string, number | undefined>> };
}

/** Cumulative CPU time at a wall-clock instant. */
export interface CpuPoint {
  readonly cpuNs: number;
  readonly atMs: number;
}

/** Memory as `docker stats` shows it: usage minus the inactive page cache the kernel reclaims first. */
export function memoryBytesOf(stats: DockerStats): number | null {
  const memory = stats.memory_stats;
  if (memory?.usage === undefined) return null;
  const inactive = memory.stats?.total_inactive_file ?? memory.stats?.inactive_file ?? 0;
  return Math.max(0, memory.usage - inactive);
}

export function cpuPointOf(stats: DockerStats): CpuPoint | null {
  const cpuNs = stats.cpu_stats?.cpu_usage?.total_usage;
  const atMs = stats.read === undefined ? Number.NaN : Date.parse(stats.read);
  if (cpuNs === undefined || !Number.isFinite(atMs) || atMs <= 0) return null;
  return { cpuNs, atMs };
}

/** Percent of one core between two points (200 = two cores busy); null when no time passed between them. */
export function cpuPercentBetween(previous: CpuPoint, current: CpuPoint): number | null {
  const wallNs = (current.atMs - previous.atMs) * 1e6;
  if (!(wallNs > 0)) return null;
  const percent = (Math.max(0, current.cpuNs - previous.cpuNs) / wallNs) * 100;
  return Math.round(percent * 10) / 10;
}

/** What the sampler needs of each running container. */
export interface UsageTarget {
  readonly key: string;
  readonly container: Docker.Container;
  /** Wall-clock start of the current run: the first sample's CPU is averaged since then. */
  readonly startedAtMs: number;
  readonly run: number;
}

export interface UsageSamplerOptions {
  readonly clock: Clock;
  readonly intervalMs: number;
  readonly requestsMax: number;
  readonly targets: () => UsageTarget[];
  /** A new sample of a target's run; dropped by the caller if that run has ended meanwhile. */
  readonly record: (target: UsageTarget, usage: WorkloadUsage) => void;
}

export class UsageSampler {
  readonly #options: UsageSamplerOptions;
  /** Last CPU point per project key and run. */
  readonly #previous = new Map<string, { run: number; point: CpuPoint }>();
  #timer: TimerHandle | null = null;
  #sampling = false;
  #stopped = false;

  constructor(options: UsageSamplerOptions) {
    this.#options = options;
  }

  start(): void {
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) this.#options.clock.clearTimer(this.#timer);
    this.#timer = null;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = this.#options.clock.setTimer(this.#options.intervalMs, () => {
      this.#timer = null;
      void this.sampleAll().finally(() => this.#schedule());
    });
  }

  /** One round over every running container, at most requestsMax at a time; a round still running is not overlapped. */
  async sampleAll(): Promise<void> {
    if (this.#sampling) return;
    this.#sampling = true;
    try {
      const targets = this.#options.targets();
      const live = new Set(targets.map((target) => target.key));
      for (const key of this.#previous.keys()) if (!live.has(key)) this.#previous.delete(key);
      for (let index = 0; index < targets.length; index += this.#options.requestsMax) {
        await Promise.all(targets.slice(index, index + this.#options.requestsMax).map((target) => this.#sample(target)));
      }
    } finally {
      this.#sampling = false;
    }
  }

  async #sample(target: UsageTarget): Promise<void> {
    let stats: DockerStats;
    try {
      // `one-shot` is not in dockerode's types; the engine (API ≥ 1.41) answers at once instead of after a second sample.
      stats = (await target.container.stats({ stream: false, 'one-shot': true } as { stream: false })) as unknown as DockerStats;
    } catch {
      return; // The container ended or the engine is away: the next round tries again.
    }
    const point = cpuPointOf(stats);
    const memoryBytes = memoryBytesOf(stats);
    if (point === null || memoryBytes === null) return;
    const previous = this.#previous.get(target.key);
    const baseline = previous !== undefined && previous.run === target.run ? previous.point : { cpuNs: 0, atMs: target.startedAtMs };
    this.#previous.set(target.key, { run: target.run, point });
    const cpuPercent = cpuPercentBetween(baseline, point);
    if (cpuPercent === null) return;
    this.#options.record(target, { cpuPercent, memoryBytes, sampledAtMs: point.atMs, source: 'docker-stats' });
  }
}
