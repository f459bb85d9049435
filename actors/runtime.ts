// The Runtime interface: what a ProjectActor drives to run a project's workload.
// Real drivers (local processes, Docker) live beside it; the simulator gives its
// own. Shared by the actor layer, the runtime drivers and the simulator.

/** A project is named by its tenant and its name; its key in the store is `projects/<tenant>/<name>`. */
export interface ProjectRef {
  readonly tenant: string;
  readonly name: string;
}

export const projectKey = (ref: ProjectRef): string => `projects/${ref.tenant}/${ref.name}`;

export type RestartPolicy = 'never' | 'on-failure' | 'always';

export interface ResourceLimits {
  readonly memoryBytes?: number;
  /** CPUs as a fraction (0.5 = half a core). */
  readonly cpus?: number;
  readonly pids?: number;
}

/** What to run: exactly one of `command` (through a shell) or `image` (Docker). */
export interface WorkloadSpec {
  readonly project: ProjectRef;
  readonly command?: string;
  readonly image?: string;
  readonly cwd?: string;
  readonly env: Readonly<Record<string, string>>;
  /** Allocated ports by name ('default' is injected as PORT, others as PORT_<NAME>). */
  readonly ports: Readonly<Record<string, number>>;
  readonly restart: RestartPolicy;
  readonly limits?: ResourceLimits;
  /** The node that runs it (recorded in labels so that a restarted node adopts only its own). */
  readonly node: string;
}

export type WorkloadState = 'starting' | 'running' | 'exited' | 'crashLoop' | 'stopped' | 'failed';

export interface WorkloadStatus {
  readonly project: ProjectRef;
  readonly state: WorkloadState;
  /** Process id (process driver) or container id (Docker driver) of the current run. */
  readonly pid: number | null;
  readonly containerId: string | null;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly restarts: number;
  readonly startedAtMs: number | null;
  readonly exitedAtMs: number | null;
  /** Why it failed to start or stopped unexpectedly, in one line a user can act on. */
  readonly error: string | null;
  /** The latest resource sample of the current run; absent until the runtime has taken one. */
  readonly usage?: WorkloadUsage;
}

/** CPU and memory of a workload's current run, sampled by its runtime every few seconds. */
export interface WorkloadUsage {
  /** Percent of one core over the last sampling interval (200 = two cores busy). */
  readonly cpuPercent: number;
  readonly memoryBytes: number;
  /** Wall-clock time of the sample. */
  readonly sampledAtMs: number;
  /** Where the figures come from: 'cgroup', 'proc' or 'docker-stats'. */
  readonly source: 'cgroup' | 'proc' | 'docker-stats';
}

/**
 * What happened to a workload, as its runtime saw it. The actor adds the kinds
 * only it can see (ready and unhealthy from health checks, moved, removed).
 */
export type LifecycleKind = 'started' | 'exited' | 'oomKilled' | 'restarted' | 'crashLoop' | 'stopped';

export interface LifecycleEvent {
  readonly type: 'lifecycle';
  readonly project: ProjectRef;
  readonly kind: LifecycleKind;
  readonly timeMs: number;
  readonly exitCode: number | null;
  readonly signal: string | null;
  /** One line: why, or what (for example 'restart 3 by policy on-failure'). */
  readonly detail: string;
}

/** A one-off command in a project's environment (project_exec). */
export interface ExecSpec {
  readonly command: string;
  /** The project's env plus its ports; the runtime adds only a fixed minimal base (PATH, HOME, LANG), never the node's own variables. */
  readonly env: Readonly<Record<string, string>>;
  readonly cwd?: string;
  readonly timeoutMs: number;
  /** stdout and stderr are each cut at this many bytes. */
  readonly outputBytesMax: number;
}

export interface ExecOutcome {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  readonly stdout: string;
  readonly stderr: string;
  readonly truncated: boolean;
  readonly durationMs: number;
}

export type RuntimeEvent =
  | { readonly type: 'status'; readonly status: WorkloadStatus }
  | LifecycleEvent
  | { readonly type: 'log'; readonly project: ProjectRef; readonly stream: 'stdout' | 'stderr'; readonly line: string; readonly timeMs: number };

export type RuntimeErrorName =
  | 'CommandNotFoundError'
  | 'ImageMissingError'
  | 'PortInUseError'
  | 'RuntimeUnavailableError'
  | 'InvalidSpecError'
  | 'NotFoundError'
  /** exec: the project's workload is not running (exited, stopped, crash loop). */
  | 'NotRunningError'
  /** The spec's cwd does not exist or is not a directory. */
  | 'CwdMissingError'
  /** No free port is left in the node's configured range. */
  | 'PortsExhaustedError';

/** One class per condition, with a stable name; messages say what to do next. */
export class RuntimeError extends Error {
  constructor(
    override readonly name: RuntimeErrorName,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface Runtime {
  /** 'process' or 'docker'. */
  readonly kind: string;
  /** Start (or restart with a new spec) the workload; resolves once it was launched (not once healthy). */
  start(spec: WorkloadSpec): Promise<WorkloadStatus>;
  /** Stop the whole process tree or container: SIGTERM, then SIGKILL after graceMs. Keeps its status readable. */
  stop(project: ProjectRef, graceMs: number): Promise<WorkloadStatus | null>;
  /** Stop if running and forget it. */
  remove(project: ProjectRef): Promise<void>;
  status(project: ProjectRef): WorkloadStatus | null;
  list(): WorkloadStatus[];
  /** Status changes and log lines; returns an unsubscribe function. */
  subscribe(listener: (event: RuntimeEvent) => void): () => void;
  /** Stop everything this runtime started (node shutdown). */
  close(): Promise<void>;
  /**
   * After a node restart, once the desired state is known: stop and forget every workload this
   * runtime holds for this node that is not in `wanted` (Docker: labelled containers found at open).
   * Returns the projects it removed. Optional: a runtime that adopts nothing need not have it.
   */
  removeOrphans?(wanted: readonly ProjectRef[]): Promise<ProjectRef[]>;
  /**
   * Run a one-off command next to the project's workload: in its cgroup and as its user (processes),
   * inside its container (Docker, which needs it running). Optional until both drivers have it.
   */
  exec?(project: ProjectRef, spec: ExecSpec, signal: AbortSignal): Promise<ExecOutcome>;
  /**
   * The node still holds its owner lease for at least `validForMs`. Once a runtime has had one,
   * its workloads run only while they keep coming: when `validForMs` passes without a new one
   * (the node is cut off, paused or stuck), a watchdog outside the node's event loop freezes
   * them, and kills them before another owner may have started them. Optional: a runtime
   * without a watchdog need not have it.
   */
  leaseHeartbeat?(validForMs: number): void;
  /**
   * The node's owner lease is valid until `untilMs` on the runtime's clock unless renewed (a later
   * call). A runtime with a watchdog beats it from outside the node's event loop while that
   * holds, so a busy loop is not taken for a lost lease (actors/lease-fence.ts says why this is
   * as safe as leaseHeartbeat). Optional: a runtime without a watchdog need not have it.
   */
  leaseValidUntil?(untilMs: number): void;
}

/** Runs actions per project one at a time, in call order (two starts of one project must not both launch). */
export class PerProjectQueue {
  readonly #queues = new Map<string, Promise<unknown>>();

  run<T>(project: ProjectRef, action: () => Promise<T>): Promise<T> {
    const key = projectKey(project);
    const previous = this.#queues.get(key) ?? Promise.resolve();
    const next = previous.then(action, action);
    const settled = next.catch(() => undefined);
    this.#queues.set(key, settled);
    void settled.then(() => {
      if (this.#queues.get(key) === settled) this.#queues.delete(key);
    });
    return next;
  }
}
