// The Docker runtime (dockerode): one container per project, labelled with its
// project, tenant and node, with port bindings and memory/CPU/pids limits. The
// driver (not Docker) applies the restart policy, so both runtimes restart and
// detect crash loops alike. After a node restart it adopts its own labelled
// containers (nothing started twice) and removes the ones nobody wants. It never
// pulls: images must already be on the node's engine.
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import Docker from 'dockerode';
import type { Clock, TimerHandle } from '../consensus/types.ts';
import { LineSplitter, type LogStore, type LogStream } from './logs.ts';
import { decideRestart, describeExit, RESTART_DEFAULTS, type RestartLimits } from './restart-policy.ts';
import { projectKey, PerProjectQueue, RuntimeError, type ProjectRef, type Runtime, type RuntimeEvent, type WorkloadSpec, type WorkloadState, type WorkloadStatus } from './runtime.ts';
import { decodeShellStatus } from './supervisor.ts';
import { portEnv } from './runtime-process.ts';

export const LABELS = {
  project: 'debughost.project',
  tenant: 'debughost.tenant',
  name: 'debughost.name',
  node: 'debughost.node',
  /** Hash of the spec the container was created from: same hash, same container (adopt, do not recreate). */
  specHash: 'debughost.spec-hash',
  /** The spec itself, so that a restarted node can keep applying its restart policy. */
  spec: 'debughost.spec',
} as const;

export interface DockerRuntimeOptions {
  readonly node: string;
  readonly logs: LogStore;
  readonly clock: Clock;
  readonly wallNowMs: () => number;
  /** Default /var/run/docker.sock. */
  readonly socketPath?: string;
  /** Host address ports are published on (default 127.0.0.1: the node reaches them, nothing else). */
  readonly publishHost?: string;
  readonly restart?: Partial<RestartLimits>;
  readonly stopGraceMs?: number;
  readonly errorLinesMax?: number;
  /** Each Docker API call gives up after this long. */
  readonly requestMsMax?: number;
}

interface Workload {
  spec: WorkloadSpec;
  status: WorkloadStatus;
  container: Docker.Container;
  /** Bumped per run; callbacks of older runs see a different value and do nothing. */
  run: number;
  /** The last run whose end was handled (stop() and wait() both report an end). */
  handledRun: number;
  exitHandled: Promise<void>;
  runStartedMs: number;
  restartTimer: TimerHandle | null;
  recentExitsMs: number[];
  stopRequested: boolean;
  following: AbortController | null;
}

const DOCKER_SOCKET = '/var/run/docker.sock';

export class DockerRuntime implements Runtime {
  readonly kind = 'docker';
  private readonly workloads = new Map<string, Workload>();
  private readonly listeners = new Set<(event: RuntimeEvent) => void>();
  /** start/stop/remove of one project run one at a time, in call order. */
  private readonly queue = new PerProjectQueue();
  private readonly restartLimits: RestartLimits;
  private readonly closing = new AbortController();
  private closed = false;

  private constructor(
    private readonly options: DockerRuntimeOptions,
    private readonly docker: Docker,
  ) {
    this.restartLimits = { ...RESTART_DEFAULTS, ...options.restart };
  }

  /** Connects to the engine (a clear error if none answers) and adopts this node's labelled containers. */
  static async open(options: DockerRuntimeOptions): Promise<DockerRuntime> {
    const socketPath = options.socketPath ?? DOCKER_SOCKET;
    const docker = new Docker({ socketPath, timeout: options.requestMsMax ?? 30_000 });
    try {
      await docker.ping();
    } catch (error) {
      throw unavailable(socketPath, error);
    }
    const runtime = new DockerRuntime(options, docker);
    await runtime.adoptAll();
    return runtime;
  }

  /** The workloads found labelled for this node at open, as they were adopted. */
  adopted(): WorkloadStatus[] {
    return this.list();
  }

  start(spec: WorkloadSpec): Promise<WorkloadStatus> {
    return this.queue.run(spec.project, () => this.startNow(spec));
  }

  stop(project: ProjectRef, graceMs: number): Promise<WorkloadStatus | null> {
    return this.queue.run(project, () => this.stopNow(project, graceMs));
  }

  remove(project: ProjectRef): Promise<void> {
    return this.queue.run(project, () => this.removeNow(project));
  }

  private async startNow(spec: WorkloadSpec): Promise<WorkloadStatus> {
    if (this.closed) throw new RuntimeError('RuntimeUnavailableError', 'the docker runtime is closed (node shutting down); retry on the new owner');
    checkSpec(spec);
    const key = projectKey(spec.project);
    const hash = specHash(spec);
    const existing = this.workloads.get(key);
    if (existing !== undefined && existing.status.state === 'running' && specHash(existing.spec) === hash) {
      // Same spec and running (adopted after a restart, or started twice): nothing to do.
      existing.spec = spec;
      return existing.status;
    }
    await this.call(`inspect image ${spec.image}`, () => this.docker.getImage(spec.image as string).inspect()).catch((error: unknown) => {
      if (statusCode(error) === 404) {
        throw new RuntimeError('ImageMissingError', `image ${spec.image} is not present on this node's Docker engine; build or load it (docker load / docker import)`, { cause: error });
      }
      throw error;
    });
    if (existing !== undefined) await this.removeWorkload(existing, this.options.stopGraceMs ?? 5000);
    await this.removeByName(containerName(this.options.node, spec.project));
    const container = await this.call(`create container for ${key}`, () => this.docker.createContainer(this.createOptions(spec, hash)));
    const workload: Workload = {
      spec,
      status: { ...emptyStatus(spec.project), containerId: container.id },
      container,
      run: 0,
      handledRun: 0,
      exitHandled: Promise.resolve(),
      runStartedMs: 0,
      restartTimer: null,
      recentExitsMs: [],
      stopRequested: false,
      following: null,
    };
    this.workloads.set(key, workload);
    await this.launch(workload, 0);
    return workload.status;
  }

  private async stopNow(project: ProjectRef, graceMs: number): Promise<WorkloadStatus | null> {
    const workload = this.workloads.get(projectKey(project));
    if (workload === undefined) return null;
    await this.stopWorkload(workload, graceMs);
    return workload.status;
  }

  private async removeNow(project: ProjectRef): Promise<void> {
    const workload = this.workloads.get(projectKey(project));
    if (workload === undefined) return;
    await this.removeWorkload(workload, this.options.stopGraceMs ?? 5000);
  }

  status(project: ProjectRef): WorkloadStatus | null {
    return this.workloads.get(projectKey(project))?.status ?? null;
  }

  list(): WorkloadStatus[] {
    return [...this.workloads.values()].map((workload) => workload.status);
  }

  subscribe(listener: (event: RuntimeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Node shutdown: stops every container (they stay, labelled, for the next start to adopt or remove). */
  async close(): Promise<void> {
    this.closed = true;
    const graceMs = this.options.stopGraceMs ?? 5000;
    await Promise.all([...this.workloads.values()].map((workload) => this.stopWorkload(workload, graceMs).catch(() => undefined)));
    this.closing.abort();
  }

  /**
   * Lets go of every container without stopping it (the node hands them to its next start,
   * or a test simulates a crash): stops following logs and waiting, forgets the workloads.
   */
  detach(): void {
    this.closed = true;
    for (const workload of this.workloads.values()) {
      if (workload.restartTimer !== null) this.options.clock.clearTimer(workload.restartTimer);
      workload.following?.abort();
    }
    this.workloads.clear();
    this.closing.abort();
  }

  async removeOrphans(wanted: readonly ProjectRef[]): Promise<ProjectRef[]> {
    const keep = new Set(wanted.map(projectKey));
    const removed: ProjectRef[] = [];
    for (const info of await this.listOwn()) {
      const project = { tenant: info.Labels[LABELS.tenant] ?? '', name: info.Labels[LABELS.name] ?? '' };
      const key = projectKey(project);
      if (keep.has(key)) continue;
      const workload = this.workloads.get(key);
      if (workload !== undefined) await this.removeWorkload(workload, this.options.stopGraceMs ?? 5000);
      else await this.call(`remove container ${info.Id}`, () => this.docker.getContainer(info.Id).remove({ force: true }));
      removed.push(project);
    }
    return removed;
  }

  private createOptions(spec: WorkloadSpec, hash: string): Docker.ContainerCreateOptions {
    const exposed: Record<string, object> = {};
    const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
    for (const port of Object.values(spec.ports)) {
      // Container port = host port, so PORT means the same inside and outside.
      exposed[`${port}/tcp`] = {};
      bindings[`${port}/tcp`] = [{ HostIp: this.options.publishHost ?? '127.0.0.1', HostPort: String(port) }];
    }
    const env = { ...spec.env, ...portEnv(spec.ports) };
    return {
      name: containerName(this.options.node, spec.project),
      Image: spec.image,
      ...(spec.command === undefined ? {} : { Cmd: ['/bin/sh', '-c', spec.command] }),
      ...(spec.cwd === undefined ? {} : { WorkingDir: spec.cwd }),
      Env: Object.entries(env).map(([name, value]) => `${name}=${value}`),
      Tty: false,
      ExposedPorts: exposed,
      Labels: {
        [LABELS.project]: projectKey(spec.project),
        [LABELS.tenant]: spec.project.tenant,
        [LABELS.name]: spec.project.name,
        [LABELS.node]: this.options.node,
        [LABELS.specHash]: hash,
        [LABELS.spec]: JSON.stringify(spec),
      },
      HostConfig: {
        PortBindings: bindings,
        ...(spec.limits?.memoryBytes === undefined ? {} : { Memory: spec.limits.memoryBytes, MemorySwap: spec.limits.memoryBytes }),
        ...(spec.limits?.cpus === undefined ? {} : { NanoCpus: Math.round(spec.limits.cpus * 1e9) }),
        ...(spec.limits?.pids === undefined ? {} : { PidsLimit: spec.limits.pids }),
        RestartPolicy: { Name: 'no' },
      },
    };
  }

  private async launch(workload: Workload, restarts: number): Promise<void> {
    workload.stopRequested = false;
    workload.run += 1;
    const run = workload.run;
    this.setStatus(workload, { state: 'starting', error: null, restarts });
    try {
      await this.call(`start container ${workload.container.id}`, () => workload.container.start());
    } catch (error) {
      this.setStatus(workload, { state: 'failed', error: `container for ${projectKey(workload.spec.project)} did not start: ${oneLine(error)}; check the image's command and the ports` });
      return;
    }
    workload.runStartedMs = this.options.clock.nowMs();
    this.setStatus(workload, { state: 'running', pid: null, exitCode: null, signal: null, startedAtMs: this.options.wallNowMs(), exitedAtMs: null });
    this.watch(workload, run);
  }

  /** Follows the run's logs and waits for its end. */
  private watch(workload: Workload, run: number): void {
    void this.follow(workload);
    void workload.container
      .wait({ abortSignal: this.closing.signal })
      .then(() => this.onExit(workload, run))
      .catch(() => undefined);
  }

  private async follow(workload: Workload): Promise<void> {
    workload.following?.abort();
    const controller = new AbortController();
    workload.following = controller;
    const afterMs = this.options.logs.lastTimeMs(workload.spec.project) ?? 0;
    let stream: NodeJS.ReadableStream;
    try {
      stream = await workload.container.logs({ follow: true, stdout: true, stderr: true, timestamps: true, since: Math.floor(afterMs / 1000), abortSignal: controller.signal });
    } catch {
      return;
    }
    const out = new PassThrough();
    const err = new PassThrough();
    this.splitInto(workload, out, 'stdout', afterMs);
    this.splitInto(workload, err, 'stderr', afterMs);
    this.docker.modem.demuxStream(stream, out, err);
    const end = (): void => {
      out.end();
      err.end();
    };
    stream.on('end', end);
    stream.on('close', end);
    stream.on('error', end);
  }

  private splitInto(workload: Workload, stream: PassThrough, name: LogStream, afterMs: number): void {
    const splitter = new LineSplitter(this.options.logs.lineCharsMax + 40, (text) => {
      // Each line starts with Docker's RFC 3339 nano timestamp and a space.
      const space = text.indexOf(' ');
      const timeMs = Date.parse(text.slice(0, space));
      if (Number.isNaN(timeMs) || timeMs <= afterMs) return;
      const line = this.options.logs.append(workload.spec.project, name, text.slice(space + 1), timeMs);
      this.emit({ type: 'log', project: workload.spec.project, stream: name, line: line.line, timeMs: line.timeMs });
    });
    stream.on('data', (chunk: Buffer) => splitter.push(chunk));
    stream.on('end', () => splitter.end());
  }

  /** Handles the end of a run once; a second report of the same end waits for the first. */
  private onExit(workload: Workload, run: number): Promise<void> {
    if (workload.run !== run || this.workloads.get(projectKey(workload.spec.project)) !== workload) return Promise.resolve();
    if (workload.handledRun >= run) return workload.exitHandled;
    workload.handledRun = run;
    workload.exitHandled = this.handleExit(workload);
    return workload.exitHandled;
  }

  private async handleExit(workload: Workload): Promise<void> {
    let inspected: Docker.ContainerInspectInfo;
    try {
      inspected = await workload.container.inspect();
    } catch {
      this.setStatus(workload, { state: 'failed', error: 'the container disappeared (removed outside debughost); start the project again' });
      return;
    }
    const { exitCode, signal } = decodeShellStatus(inspected.State.ExitCode);
    const oomKilled = inspected.State.OOMKilled;
    const nowMs = this.options.clock.nowMs();
    const { decision, recentExitsMs } = decideRestart(
      workload.spec.restart,
      { exitCode, signal, requested: workload.stopRequested, startedAtMs: workload.runStartedMs, exitedAtMs: nowMs },
      workload.recentExitsMs,
      this.restartLimits,
    );
    workload.recentExitsMs = recentExitsMs;
    const how = oomKilled ? `killed: out of memory (limit ${workload.spec.limits?.memoryBytes ?? '?'} bytes)` : describeExit(exitCode, signal);
    const ended = { exitCode, signal, exitedAtMs: this.options.wallNowMs() };
    switch (decision.kind) {
      case 'stay': {
        const state: WorkloadState = decision.reason === 'requested' ? 'stopped' : decision.reason === 'unrecoverable' ? 'failed' : 'exited';
        const error = state === 'stopped' || (exitCode === 0 && !oomKilled) ? null : exitCode === 127 ? `command not found in image ${workload.spec.image}${this.lastLines(workload)}` : `${how}${this.lastLines(workload)}`;
        this.setStatus(workload, { ...ended, state, error });
        return;
      }
      case 'restart':
        this.setStatus(workload, { ...ended, state: 'exited', error: `${how}; restarting in ${decision.delayMs} ms (restart policy ${workload.spec.restart})` });
        workload.restartTimer = this.options.clock.setTimer(decision.delayMs, () => {
          workload.restartTimer = null;
          if (workload.stopRequested || this.closed || this.workloads.get(projectKey(workload.spec.project)) !== workload) return;
          void this.launch(workload, workload.status.restarts + 1);
        });
        return;
      case 'crashLoop':
        this.setStatus(workload, {
          ...ended,
          state: 'crashLoop',
          error: `crash loop: ended ${decision.exitsInWindow} times within ${Math.round(this.restartLimits.crashLoopWindowMs / 1000)} s (last: ${how}); not restarting, fix the image or command and start it again${this.lastLines(workload)}`,
        });
        return;
      default: {
        const unreachable: never = decision;
        throw new Error(`unknown restart decision ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private lastLines(workload: Workload): string {
    const lines = this.options.logs.lastLines(workload.spec.project, this.options.errorLinesMax ?? 5);
    return lines.length === 0 ? '' : `; last lines: ${lines.join(' | ')}`;
  }

  private async stopWorkload(workload: Workload, graceMs: number): Promise<void> {
    workload.stopRequested = true;
    if (workload.restartTimer !== null) {
      this.options.clock.clearTimer(workload.restartTimer);
      workload.restartTimer = null;
    }
    const run = workload.run;
    let info: Docker.ContainerInspectInfo;
    try {
      info = await workload.container.inspect();
    } catch (error) {
      if (statusCode(error) === 404) return;
      throw error;
    }
    if (info.State.Running) {
      // Docker sends the image's stop signal (SIGTERM), then SIGKILL after t seconds.
      await this.call(`stop container ${workload.container.id}`, () => workload.container.stop({ t: Math.max(0, Math.ceil(graceMs / 1000)) })).catch((error: unknown) => {
        if (statusCode(error) !== 304) throw error;
      });
      await this.onExit(workload, run);
    } else if (workload.status.state === 'exited' || workload.status.state === 'starting') {
      this.setStatus(workload, { state: 'stopped' });
    }
  }

  private async removeWorkload(workload: Workload, graceMs: number): Promise<void> {
    await this.stopWorkload(workload, graceMs);
    workload.following?.abort();
    await this.call(`remove container ${workload.container.id}`, () => workload.container.remove({ force: true })).catch((error: unknown) => {
      if (statusCode(error) !== 404) throw error;
    });
    this.workloads.delete(projectKey(workload.spec.project));
  }

  private async removeByName(name: string): Promise<void> {
    await this.call(`remove container ${name}`, () => this.docker.getContainer(name).remove({ force: true })).catch((error: unknown) => {
      if (statusCode(error) !== 404) throw error;
    });
  }

  private async listOwn(): Promise<Docker.ContainerInfo[]> {
    return this.call('list containers', () => this.docker.listContainers({ all: true, filters: { label: [`${LABELS.node}=${this.options.node}`] } }));
  }

  /** Takes over this node's labelled containers: running ones are followed and waited on again. */
  private async adoptAll(): Promise<void> {
    for (const info of await this.listOwn()) {
      let spec: WorkloadSpec;
      try {
        spec = JSON.parse(info.Labels[LABELS.spec] ?? '') as WorkloadSpec;
      } catch {
        continue; // Not ours to interpret; removeOrphans will remove it.
      }
      const container = this.docker.getContainer(info.Id);
      const inspected = await container.inspect();
      const running = inspected.State.Running;
      const { exitCode, signal } = decodeShellStatus(inspected.State.ExitCode);
      const workload: Workload = {
        spec,
        status: {
          ...emptyStatus(spec.project),
          state: running ? 'running' : 'exited',
          containerId: info.Id,
          exitCode: running ? null : exitCode,
          signal: running ? null : signal,
          startedAtMs: Date.parse(inspected.State.StartedAt) || null,
          exitedAtMs: running ? null : Date.parse(inspected.State.FinishedAt) || null,
        },
        container,
        run: 1,
        handledRun: running ? 0 : 1,
        exitHandled: Promise.resolve(),
        runStartedMs: this.options.clock.nowMs(),
        restartTimer: null,
        recentExitsMs: [],
        stopRequested: false,
        following: null,
      };
      this.workloads.set(projectKey(spec.project), workload);
      if (running) this.watch(workload, workload.run);
    }
  }

  private setStatus(workload: Workload, change: Partial<WorkloadStatus>): void {
    workload.status = { ...workload.status, ...change };
    this.emit({ type: 'status', status: workload.status });
  }

  private emit(event: RuntimeEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  /** One Docker API call; a dead engine becomes RuntimeUnavailableError, other errors keep their status code. */
  private async call<T>(what: string, action: () => Promise<T>): Promise<T> {
    try {
      return await action();
    } catch (error) {
      if (isConnectionError(error)) throw unavailable(this.options.socketPath ?? DOCKER_SOCKET, error);
      if (statusCode(error) !== undefined) throw Object.assign(new Error(`docker: ${what} failed: ${oneLine(error)}`, { cause: error }), { statusCode: statusCode(error) });
      throw error;
    }
  }
}

function checkSpec(spec: WorkloadSpec): void {
  if (spec.image === undefined || spec.image.trim() === '') {
    throw new RuntimeError('InvalidSpecError', `project ${projectKey(spec.project)} has no image; the docker runtime runs images (give image, optionally with a command run through /bin/sh in it)`);
  }
  for (const [name, port] of Object.entries(spec.ports)) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RuntimeError('InvalidSpecError', `port ${name} is ${String(port)}; ports are whole numbers 1-65535 allocated by the port registry`);
  }
  const limits = spec.limits;
  if (limits?.memoryBytes !== undefined && (!Number.isInteger(limits.memoryBytes) || limits.memoryBytes < 6 * 1024 * 1024)) {
    throw new RuntimeError('InvalidSpecError', `memory limit ${limits.memoryBytes} bytes is below Docker's minimum of 6 MiB; give at least 6291456`);
  }
  if (limits?.cpus !== undefined && !(limits.cpus > 0)) throw new RuntimeError('InvalidSpecError', `cpus ${limits.cpus} must be above 0 (0.5 = half a core)`);
  if (limits?.pids !== undefined && (!Number.isInteger(limits.pids) || limits.pids < 1)) throw new RuntimeError('InvalidSpecError', `pids limit ${limits.pids} must be a whole number ≥ 1`);
}

function emptyStatus(project: ProjectRef): WorkloadStatus {
  return { project, state: 'starting', pid: null, containerId: null, exitCode: null, signal: null, restarts: 0, startedAtMs: null, exitedAtMs: null, error: null };
}

export function specHash(spec: WorkloadSpec): string {
  const { project, image, command, cwd, env, ports, limits, node } = spec;
  const sortedEnv = Object.fromEntries(Object.entries(env).sort(([a], [b]) => a.localeCompare(b)));
  const sortedPorts = Object.fromEntries(Object.entries(ports).sort(([a], [b]) => a.localeCompare(b)));
  return createHash('sha256').update(JSON.stringify([project, image, command, cwd, sortedEnv, sortedPorts, limits ?? null, node])).digest('hex').slice(0, 16);
}

/** Docker names allow [a-zA-Z0-9][a-zA-Z0-9_.-]; a hash of the key keeps sanitized names distinct. */
export function containerName(node: string, project: ProjectRef): string {
  const clean = (text: string): string => text.replace(/[^a-zA-Z0-9_.-]/g, '_');
  const hash = createHash('sha256').update(`${node}\n${projectKey(project)}`).digest('hex').slice(0, 8);
  return `debughost-${clean(node)}-${clean(project.tenant)}-${clean(project.name)}-${hash}`.slice(0, 200);
}

function statusCode(error: unknown): number | undefined {
  const code = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES' || code === 'ECONNRESET' || code === 'EPIPE';
}

function unavailable(socketPath: string, error: unknown): RuntimeError {
  return new RuntimeError('RuntimeUnavailableError', `no Docker engine answers at ${socketPath} (${oneLine(error)}); start dockerd, point the node at a running engine, or use the process runtime`, { cause: error });
}

function oneLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\s+/g, ' ').trim().slice(0, 300);
}
