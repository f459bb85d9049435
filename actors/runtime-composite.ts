// One Runtime in front of the two drivers: a spec with `command` runs as a local
// process, one with `image` in Docker. A node without a Docker engine still runs
// commands; an image then gets a clear error instead of a silent fallback.
import { execLocal, EXEC_BASE_ENV } from './io-local.ts';
import type { ExecAnswer } from './messages.ts';
import { runExec } from './project-io.ts';
import { RuntimeError, projectKey, type ExecSpec, type ProjectRef, type Runtime, type RuntimeEvent, type WorkloadSpec, type WorkloadStatus } from './runtime.ts';

export class CompositeRuntime implements Runtime {
  readonly kind: string;
  /** Which driver runs each project (by key), so stop/remove/status go to the right one. */
  readonly #owners = new Map<string, Runtime>();

  constructor(
    private readonly process: Runtime,
    private readonly docker: Runtime | null,
    /** Why there is no Docker driver, for the error a user sees. */
    private readonly dockerMissing: string,
  ) {
    this.kind = docker === null ? 'process' : 'process+docker';
  }

  #driverFor(project: ProjectRef): Runtime | null {
    const known = this.#owners.get(projectKey(project));
    if (known !== undefined) return known;
    if (this.process.status(project) !== null) return this.process;
    if (this.docker?.status(project) != null) return this.docker;
    return null;
  }

  async start(spec: WorkloadSpec): Promise<WorkloadStatus> {
    const wanted = spec.image !== undefined ? this.docker : this.process;
    if (wanted === null) throw new RuntimeError('RuntimeUnavailableError', `this node cannot run images: ${this.dockerMissing}; give a command instead, or start dockerd on every node`);
    const previous = this.#driverFor(spec.project);
    // Switching between command and image: the old driver lets go first.
    if (previous !== null && previous !== wanted) await previous.remove(spec.project);
    this.#owners.set(projectKey(spec.project), wanted);
    return wanted.start(spec);
  }

  async stop(project: ProjectRef, graceMs: number): Promise<WorkloadStatus | null> {
    return (await this.#driverFor(project)?.stop(project, graceMs)) ?? null;
  }

  async remove(project: ProjectRef): Promise<void> {
    const driver = this.#driverFor(project);
    this.#owners.delete(projectKey(project));
    await driver?.remove(project);
  }

  status(project: ProjectRef): WorkloadStatus | null {
    return this.#driverFor(project)?.status(project) ?? null;
  }

  list(): WorkloadStatus[] {
    return [...this.process.list(), ...(this.docker?.list() ?? [])];
  }

  subscribe(listener: (event: RuntimeEvent) => void): () => void {
    const stops = [this.process.subscribe(listener), ...(this.docker === null ? [] : [this.docker.subscribe(listener)])];
    return () => {
      for (const stop of stops) stop();
    };
  }

  /** The node holds its owner lease: both drivers' watchdogs hear it. */
  leaseHeartbeat(validForMs: number): void {
    this.process.leaseHeartbeat?.(validForMs);
    this.docker?.leaseHeartbeat?.(validForMs);
  }

  /** The node's owner lease is valid until `untilMs`: both drivers' watchdogs hear it. */
  leaseValidUntil(untilMs: number): void {
    this.process.leaseValidUntil?.(untilMs);
    this.docker?.leaseValidUntil?.(untilMs);
  }

  /** Which driver runs (or would run) a project: for exec inside its container. */
  driverOf(project: ProjectRef): Runtime | null {
    return this.#driverFor(project);
  }

  /** A one-off command next to the workload: the driver's own exec, else a local process or `docker exec`. */
  async exec(project: ProjectRef, spec: ExecSpec, signal: AbortSignal): Promise<ExecAnswer> {
    const driver = this.#driverFor(project) ?? this.process;
    if (driver.exec !== undefined) return driver.exec(project, spec, signal);
    if (driver === this.process) return execLocal(spec, signal);
    const workload = driver.status(project);
    if (workload?.containerId === null || workload?.containerId === undefined || workload.state !== 'running') {
      throw new RuntimeError('NotFoundError', `${project.tenant}/${project.name} has no running container to exec in; start it first (project_start)`);
    }
    const envArgs = Object.entries(spec.env).flatMap(([key, value]) => ['-e', `${key}=${value}`]);
    return runExec({ argv: ['docker', 'exec', ...envArgs, workload.containerId, '/bin/sh', '-c', spec.command], env: { ...EXEC_BASE_ENV } }, spec.timeoutMs, signal, spec.outputBytesMax);
  }

  async close(): Promise<void> {
    await Promise.all([this.process.close(), this.docker?.close()]);
  }
}
