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
}

export type RuntimeEvent =
  | { readonly type: 'status'; readonly status: WorkloadStatus }
  | { readonly type: 'log'; readonly project: ProjectRef; readonly stream: 'stdout' | 'stderr'; readonly line: string; readonly timeMs: number };

/** One class per condition, with a stable name; messages say what to do next. */
export class RuntimeError extends Error {
  constructor(
    override readonly name: 'CommandNotFoundError' | 'ImageMissingError' | 'PortInUseError' | 'RuntimeUnavailableError' | 'InvalidSpecError' | 'NotFoundError',
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
}
