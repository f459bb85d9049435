// Every limit of the Docker runtime, with its unit last and why, validated once
// when the runtime opens (a bad value is an operator's or programmer's error and
// says which key to fix).

export interface DockerLimits {
  /** Each Docker API request gives up after this long: a wedged engine must not wedge the actor waiting on it. */
  readonly requestMsMax: number;
  /** stop(): the image's stop signal (SIGTERM), then SIGKILL after this long. Docker's own default is 10 s; dev servers stop in well under 5. */
  readonly stopGraceMs: number;
  /**
   * PidsLimit of a container whose spec gives none. A fork bomb in one container then ends at this many
   * tasks (threads count) instead of exhausting the host's pid table; a JVM or a bundler with workers
   * stays far below it.
   */
  readonly pidsDefault: number;
  /** CPU and memory of running containers are sampled this often; CPU is the average over the interval ("the last few seconds"). */
  readonly usageIntervalMs: number;
  /** At most this many stats requests in flight at once, so a node with many containers does not flood its engine each interval. */
  readonly usageRequestsMax: number;
  /** The events stream reconnects after this long, doubling on each failed attempt up to the max (a restarting engine takes seconds). */
  readonly eventsReconnectMsMin: number;
  readonly eventsReconnectMsMax: number;
  /** An event line longer than this is dropped: our events carry four short labels, so a longer line is not one of ours. */
  readonly eventLineBytesMax: number;
  /**
   * An `oom` event on a container that keeps running (a child was killed, not the main process) is reported
   * after this long; if the container dies meanwhile, its exit reports the OOM kill once.
   */
  readonly oomSettleMs: number;
  /** A timed-out or aborted exec's process group is killed by a second exec, which itself gives up after this long. */
  readonly execKillMsMax: number;
  /** Projects remembered per image in the image ledger (the most recent kept), so one busy base image cannot grow it without bound. */
  readonly imageProjectsMax: number;
  /** Images remembered in the ledger; entries of images no longer on the engine are dropped first. */
  readonly imagesTrackedMax: number;
  /** Last log lines quoted in a failed or crashed workload's error. */
  readonly errorLinesMax: number;
}

export const DOCKER_LIMITS_DEFAULT: DockerLimits = {
  requestMsMax: 30_000,
  stopGraceMs: 5_000,
  pidsDefault: 1_024,
  usageIntervalMs: 2_000,
  usageRequestsMax: 8,
  eventsReconnectMsMin: 100,
  eventsReconnectMsMax: 5_000,
  eventLineBytesMax: 64 * 1024,
  oomSettleMs: 500,
  execKillMsMax: 5_000,
  imageProjectsMax: 32,
  imagesTrackedMax: 4_096,
  errorLinesMax: 5,
};

/** Defaults overridden by `overrides`, each checked; throws one line naming the key to fix. */
export function dockerLimits(overrides: Partial<DockerLimits> = {}): DockerLimits {
  const limits = { ...DOCKER_LIMITS_DEFAULT, ...overrides };
  for (const [key, value] of Object.entries(limits)) {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw new Error(`docker runtime config: ${key} must be a positive whole number, got ${String(value)}`);
    }
  }
  if (limits.eventsReconnectMsMin > limits.eventsReconnectMsMax) {
    throw new Error(`docker runtime config: eventsReconnectMsMin (${limits.eventsReconnectMsMin}) must not exceed eventsReconnectMsMax (${limits.eventsReconnectMsMax})`);
  }
  return limits;
}

/** Docker refuses a memory limit below 6 MiB. */
export const DOCKER_MEMORY_BYTES_MIN = 6 * 1024 * 1024;
