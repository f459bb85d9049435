// The Docker runtime (dockerode): one hardened container per project, labelled
// with its project and node (docker-container-spec.ts). The driver, not Docker,
// applies the restart policy, so both runtimes restart and detect crash loops
// alike. Exits, OOM kills and starts are learnt from the engine's events stream
// (docker-events.ts), which reconnects and re-inspects after a drop; CPU and
// memory from the stats API (docker-usage.ts); exec goes through the exec API
// (docker-exec.ts); images are listed, pruned and prewarmed per node
// (docker-images.ts). After a node restart it adopts its own containers from the
// specs in its state dir (nothing started twice) and removes the ones nobody
// wants. It never pulls: images must already be on the node's engine.
import { mkdirSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import Docker from 'dockerode';
import type { Clock, TimerHandle } from '../consensus/types.ts';
import { dockerLimits, type DockerLimits } from './docker-config.ts';
import { checkSpec, containerName, createOptions, LABELS, specHash } from './docker-container-spec.ts';
import { dockerCall, oneLine, statusCode, unavailable, type DockerEndpoint } from './docker-errors.ts';
import { DockerEvents, type ContainerEvent } from './docker-events.ts';
import { execInContainer } from './docker-exec.ts';
import { ImageLedger } from './docker-image-ledger.ts';
import { NodeImages, StartPruneLock, type NodeImage, type PrewarmOptions, type PrewarmResult, type PruneOutcome, type PruneRequest } from './docker-images.ts';
import { ContainerRecords } from './docker-state.ts';
import { UsageSampler, type UsageTarget } from './docker-usage.ts';
import { LineSplitter, type LogStore, type LogStream } from './logs.ts';
import { decideRestart, describeExit, RESTART_DEFAULTS, type RestartLimits } from './restart-policy.ts';
import {
  projectKey,
  PerProjectQueue,
  RuntimeError,
  type ExecOutcome,
  type ExecSpec,
  type LifecycleKind,
  type ProjectRef,
  type Runtime,
  type RuntimeEvent,
  type WorkloadSpec,
  type WorkloadState,
  type WorkloadStatus,
  type WorkloadUsage,
} from './runtime.ts';
import { decodeShellStatus } from './supervisor.ts';

export { containerName, LABELS, specHash } from './docker-container-spec.ts';

export interface DockerRuntimeOptions {
  readonly node: string;
  /** The runtime's own dir (0700): the spec of each container (for adoption) and the image ledger. */
  readonly stateDir: string;
  readonly logs: LogStore;
  readonly clock: Clock;
  readonly wallNowMs: () => number;
  /** Default /var/run/docker.sock. */
  readonly socketPath?: string;
  /** Host address ports are published on (default 127.0.0.1: the node reaches them, nothing else). */
  readonly publishHost?: string;
  readonly restart?: Partial<RestartLimits>;
  readonly limits?: Partial<DockerLimits>;
  /** Only images matching this Docker `reference` filter (e.g. `team/*`) are listed, counted and pruned; default all of the engine's. */
  readonly imageReference?: string;
}

interface Workload {
  spec: WorkloadSpec;
  status: WorkloadStatus;
  readonly name: string;
  readonly container: Docker.Container;
  imageId: string | null;
  /** Bumped per run; callbacks of older runs see a different value and do nothing. */
  run: number;
  /** The last run whose end was handled (stop() and the events both report an end). */
  handledRun: number;
  exitHandled: Promise<void>;
  /** The current run's container.start(); its end is not judged before this settles. */
  launching: Promise<void> | null;
  runStartedMs: number;
  /** The engine's wall-clock start of the current run: the first usage sample's CPU baseline. 0 until inspected. */
  engineStartedAtMs: number;
  restartTimer: TimerHandle | null;
  oomTimer: TimerHandle | null;
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
  private readonly records: ContainerRecords;
  private readonly ledger: ImageLedger;
  private readonly imageLock = new StartPruneLock();
  private readonly nodeImages: NodeImages;
  private readonly events: DockerEvents;
  private readonly usage: UsageSampler;
  private readonly endpoint: DockerEndpoint;
  private closed = false;

  private constructor(
    private readonly options: DockerRuntimeOptions,
    private readonly limits: DockerLimits,
    /** Requests, each with a timeout. */
    private readonly docker: Docker,
    /** Long streams (events, logs, exec, image loads): no timeout, since a quiet stream is not a dead one. */
    private readonly streams: Docker,
  ) {
    this.endpoint = { socketPath: options.socketPath ?? DOCKER_SOCKET, requestMsMax: limits.requestMsMax, nowMs: () => options.clock.nowMs() };
    this.restartLimits = { ...RESTART_DEFAULTS, ...options.restart };
    mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
    this.records = new ContainerRecords(options.stateDir);
    this.ledger = new ImageLedger(options.stateDir, limits);
    this.nodeImages = new NodeImages({
      docker,
      streams,
      node: options.node,
      ledger: this.ledger,
      lock: this.imageLock,
      ...(options.imageReference === undefined ? {} : { reference: options.imageReference }),
    });
    this.events = new DockerEvents({
      docker: streams,
      labels: [`${LABELS.node}=${options.node}`],
      clock: options.clock,
      reconnectMsMin: limits.eventsReconnectMsMin,
      reconnectMsMax: limits.eventsReconnectMsMax,
      lineBytesMax: limits.eventLineBytesMax,
      onEvent: (event) => this.onEngineEvent(event),
      onConnected: (reconnected) => {
        // What happened while the stream was down is read from the containers themselves.
        if (reconnected) void this.syncAll();
      },
    });
    this.usage = new UsageSampler({
      clock: options.clock,
      intervalMs: limits.usageIntervalMs,
      requestsMax: limits.usageRequestsMax,
      targets: () => this.usageTargets(),
      record: (target, usage) => this.recordUsage(target, usage),
    });
  }

  /** Connects to the engine (a clear error if none answers), opens the events stream and adopts this node's containers. */
  static async open(options: DockerRuntimeOptions): Promise<DockerRuntime> {
    const limits = dockerLimits(options.limits);
    const socketPath = options.socketPath ?? DOCKER_SOCKET;
    const docker = new Docker({ socketPath, timeout: limits.requestMsMax });
    try {
      await docker.ping();
    } catch (error) {
      throw unavailable(socketPath, error);
    }
    const runtime = new DockerRuntime(options, limits, docker, new Docker({ socketPath }));
    // The stream first: an exit during adoption is then seen, by the stream or by the sync after it.
    await runtime.events.start();
    await runtime.adoptAll();
    await runtime.syncAll();
    runtime.usage.start();
    return runtime;
  }

  /** The workloads found labelled for this node at open, as they were adopted. */
  adopted(): WorkloadStatus[] {
    return this.list();
  }

  /** How many times the events stream was opened: 1, plus one per reconnect. */
  get eventStreamConnections(): number {
    return this.events.connections;
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

  /** A one-off command inside the project's running container, through the exec API. */
  async exec(project: ProjectRef, spec: ExecSpec, signal: AbortSignal): Promise<ExecOutcome> {
    checkExecSpec(spec);
    const key = projectKey(project);
    const workload = this.workloads.get(key);
    if (workload === undefined) throw new RuntimeError('NotFoundError', `project ${key} has no container on this node; start it first (project_start)`);
    if (workload.status.state !== 'running' || workload.launching !== null) {
      throw new RuntimeError('NotRunningError', `project ${key} has no running container to exec in (it is ${workload.status.state}); start it first (project_start)`);
    }
    try {
      return await dockerCall(this.endpoint, `exec in ${key}`, () =>
        execInContainer(workload.container.id, spec, signal, { docker: this.streams, clock: this.options.clock, killMsMax: this.limits.execKillMsMax }),
      );
    } catch (error) {
      if (statusCode(error) === 409) throw new RuntimeError('NotRunningError', `project ${key}'s container stopped before the exec began; start it again (project_start)`, { cause: error });
      throw error;
    }
  }

  /** This node's images: size, when a container of ours last started from each and for which projects. */
  images(): Promise<NodeImage[]> {
    return dockerCall(this.endpoint, 'list images', () => this.nodeImages.list());
  }

  /** Removes images no container uses and `keep` does not name, oldest-used first, until the node's images fit the budget. */
  pruneImages(request: PruneRequest): Promise<PruneOutcome> {
    return dockerCall(this.endpoint, 'prune images', () => this.nodeImages.prune(request));
  }

  /** Makes sure these images are on the engine before the node takes projects; missing ones load from tarballs (never pulled). */
  prewarm(images: readonly string[], options: PrewarmOptions = {}): Promise<PrewarmResult[]> {
    return dockerCall(this.endpoint, 'prewarm images', () => this.nodeImages.prewarm(images, options));
  }

  /** Node shutdown: stops every container (they stay, with their records, for the next start to adopt or remove). */
  async close(): Promise<void> {
    this.closed = true;
    this.usage.stop();
    await Promise.all([...this.workloads.values()].map((workload) => this.stopWorkload(workload, this.limits.stopGraceMs).catch(() => undefined)));
    this.events.close();
    this.closing.abort();
    for (const workload of this.workloads.values()) this.clearTimers(workload);
  }

  /**
   * Lets go of every container without stopping it (the node hands them to its next start,
   * or a test simulates a crash): stops following logs and events, forgets the workloads.
   */
  detach(): void {
    this.closed = true;
    this.usage.stop();
    this.events.close();
    for (const workload of this.workloads.values()) {
      this.clearTimers(workload);
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
      if (workload !== undefined && workload.container.id === info.Id) await this.queue.run(project, () => this.removeWorkload(workload, this.limits.stopGraceMs));
      else await this.call(`remove container ${info.Id}`, () => this.docker.getContainer(info.Id).remove({ force: true }));
      removed.push(project);
    }
    return removed;
  }

  // ---- start, stop, remove ---------------------------------------------------------

  private async startNow(spec: WorkloadSpec): Promise<WorkloadStatus> {
    if (this.closed) throw new RuntimeError('RuntimeUnavailableError', 'the docker runtime is closed (node shutting down); retry on the new owner');
    checkSpec(spec);
    const key = projectKey(spec.project);
    const existing = this.workloads.get(key);
    if (existing !== undefined && existing.status.state === 'running' && specHash(existing.spec) === specHash(spec)) {
      // Same spec and running (adopted after a restart, or started twice): nothing to do.
      if (existing.spec.restart !== spec.restart) this.records.write(existing.name, { containerId: existing.container.id, spec });
      existing.spec = spec;
      return existing.status;
    }
    if (existing !== undefined) await this.removeWorkload(existing, this.limits.stopGraceMs);
    const name = containerName(this.options.node, spec.project);
    // A prune waits for this, and this for a prune: the image cannot vanish between the check and the create.
    const { container, imageId } = await this.imageLock.whileStarting(async () => {
      const image = await this.call(`inspect image ${spec.image}`, () => this.docker.getImage(spec.image as string).inspect()).catch((error: unknown) => {
        if (statusCode(error) === 404) {
          throw new RuntimeError('ImageMissingError', `image ${spec.image} is not present on this node's Docker engine; build or load it (docker load / docker import)`, { cause: error });
        }
        throw error;
      });
      await this.removeByName(name);
      const created = await this.call(`create container for ${key}`, () =>
        this.docker.createContainer(createOptions(spec, { node: this.options.node, publishHost: this.options.publishHost ?? '127.0.0.1', pidsDefault: this.limits.pidsDefault })),
      );
      return { container: created, imageId: image.Id };
    });
    this.records.write(name, { containerId: container.id, spec });
    const workload = this.newWorkload(spec, name, container, imageId, { ...emptyStatus(spec.project), containerId: container.id });
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
    await this.removeWorkload(workload, this.limits.stopGraceMs);
  }

  private newWorkload(spec: WorkloadSpec, name: string, container: Docker.Container, imageId: string | null, status: WorkloadStatus): Workload {
    return {
      spec,
      status,
      name,
      container,
      imageId,
      run: 0,
      handledRun: 0,
      exitHandled: Promise.resolve(),
      launching: null,
      runStartedMs: this.options.clock.nowMs(),
      engineStartedAtMs: 0,
      restartTimer: null,
      oomTimer: null,
      recentExitsMs: [],
      stopRequested: false,
      following: null,
    };
  }

  /** Starts a new run of the container: `restarts` 0 is a start, above 0 a restart by policy. */
  private async launch(workload: Workload, restarts: number): Promise<void> {
    workload.stopRequested = false;
    workload.run += 1;
    workload.engineStartedAtMs = 0;
    this.setStatus(workload, { state: 'starting', error: null, restarts, usage: undefined });
    const started = this.call(`start container ${workload.container.id}`, () => workload.container.start());
    workload.launching = started.then(
      () => undefined,
      () => undefined,
    );
    try {
      await started;
    } catch (error) {
      workload.launching = null;
      this.setStatus(workload, { state: 'failed', error: `container for ${projectKey(workload.spec.project)} did not start: ${oneLine(error)}; check the image's command and the ports` });
      return;
    }
    workload.launching = null;
    workload.runStartedMs = this.options.clock.nowMs();
    const startedAtMs = this.options.wallNowMs();
    if (workload.imageId !== null) this.ledger.recordStart(workload.imageId, workload.spec.project, startedAtMs);
    this.setStatus(workload, { state: 'running', pid: null, exitCode: null, signal: null, startedAtMs, exitedAtMs: null });
    if (restarts === 0) this.lifecycle(workload, 'started', `container ${workload.container.id.slice(0, 12)} started from ${workload.spec.image}`);
    else this.lifecycle(workload, 'restarted', `restart ${restarts} by policy ${workload.spec.restart}`);
    void this.follow(workload);
    // An end before we looked (a command that exits at once) is caught here, as is the start time for usage.
    await this.sync(workload);
  }

  private async stopWorkload(workload: Workload, graceMs: number): Promise<void> {
    workload.stopRequested = true;
    this.clearTimers(workload);
    // A restart by policy may be starting the container right now: let it finish, then stop that run.
    if (workload.launching !== null) await workload.launching;
    const run = workload.run;
    let info: Docker.ContainerInspectInfo;
    try {
      info = await this.call(`inspect container ${workload.container.id}`, () => workload.container.inspect());
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
    } else if (workload.status.state === 'running' || workload.status.state === 'starting') {
      // It ended on its own and the event is still on its way: record that end, as requested.
      await this.onExit(workload, run, info);
    } else if (workload.status.state === 'exited') {
      this.setStatus(workload, { state: 'stopped' });
      this.lifecycle(workload, 'stopped', 'stopped (it had already exited)');
    }
  }

  private async removeWorkload(workload: Workload, graceMs: number): Promise<void> {
    await this.stopWorkload(workload, graceMs);
    workload.following?.abort();
    await this.call(`remove container ${workload.container.id}`, () => workload.container.remove({ force: true })).catch((error: unknown) => {
      if (statusCode(error) !== 404) throw error;
    });
    this.records.remove(workload.name);
    this.workloads.delete(projectKey(workload.spec.project));
  }

  private async removeByName(name: string): Promise<void> {
    await this.call(`remove container ${name}`, () => this.docker.getContainer(name).remove({ force: true })).catch((error: unknown) => {
      if (statusCode(error) !== 404) throw error;
    });
  }

  private clearTimers(workload: Workload): void {
    if (workload.restartTimer !== null) this.options.clock.clearTimer(workload.restartTimer);
    if (workload.oomTimer !== null) this.options.clock.clearTimer(workload.oomTimer);
    workload.restartTimer = null;
    workload.oomTimer = null;
  }

  // ---- what the engine tells us ------------------------------------------------------

  private onEngineEvent(event: ContainerEvent): void {
    const workload = [...this.workloads.values()].find((candidate) => candidate.container.id === event.containerId);
    if (workload === undefined) return;
    if (event.action === 'oom') {
      this.onOom(workload);
      return;
    }
    void this.sync(workload);
  }

  /**
   * An `oom` event: if the container dies of it, its exit reports `oomKilled` once. If it keeps
   * running (the kernel killed a child, not the main process), that is reported after oomSettleMs.
   */
  private onOom(workload: Workload): void {
    if (workload.oomTimer !== null) return;
    const run = workload.run;
    workload.oomTimer = this.options.clock.setTimer(this.limits.oomSettleMs, () => {
      workload.oomTimer = null;
      if (workload.run !== run || workload.handledRun >= run || !this.isCurrent(workload)) return;
      void this.call(`inspect container ${workload.container.id}`, () => workload.container.inspect())
        .then((info) => {
          if (!info.State.Running || workload.run !== run) return;
          this.lifecycle(workload, 'oomKilled', `a process in the container was killed: out of memory (limit ${workload.spec.limits?.memoryBytes ?? 'none'} bytes); the container still runs`);
        })
        .catch(() => undefined);
    });
  }

  /** Compares the container as the engine has it with our status, and acts on the difference. Level-triggered: safe to repeat. */
  private async sync(workload: Workload): Promise<void> {
    if (workload.launching !== null || !this.isCurrent(workload)) return;
    const run = workload.run;
    let info: Docker.ContainerInspectInfo;
    try {
      info = await workload.container.inspect();
    } catch (error) {
      if (statusCode(error) === 404 && workload.run === run && this.isCurrent(workload)) this.containerGone(workload);
      return; // Otherwise the engine is away: the reconnect syncs again.
    }
    if (workload.launching !== null || workload.run !== run || !this.isCurrent(workload)) return;
    if (info.State.Running) {
      if (workload.engineStartedAtMs === 0) workload.engineStartedAtMs = Date.parse(info.State.StartedAt) || 0;
      if (workload.status.state !== 'running' && workload.status.state !== 'starting') this.startedOutside(workload, info);
      if (workload.following === null) void this.follow(workload);
      return;
    }
    if (workload.status.state === 'running' || workload.status.state === 'starting') await this.onExit(workload, run, info);
  }

  private async syncAll(): Promise<void> {
    await Promise.all([...this.workloads.values()].map((workload) => this.sync(workload)));
  }

  /** Someone ran `docker start` on a container we had as ended: a new run we did not launch. */
  private startedOutside(workload: Workload, info: Docker.ContainerInspectInfo): void {
    workload.run += 1;
    workload.stopRequested = false;
    workload.runStartedMs = this.options.clock.nowMs();
    workload.engineStartedAtMs = Date.parse(info.State.StartedAt) || 0;
    this.setStatus(workload, { state: 'running', exitCode: null, signal: null, error: null, startedAtMs: this.options.wallNowMs(), exitedAtMs: null });
    this.lifecycle(workload, 'started', `container ${workload.container.id.slice(0, 12)} was started outside debughost`);
  }

  private containerGone(workload: Workload): void {
    if (workload.status.state !== 'running' && workload.status.state !== 'starting') return;
    workload.handledRun = workload.run;
    this.setStatus(workload, { state: 'failed', error: 'the container disappeared (removed outside debughost); start the project again', exitedAtMs: this.options.wallNowMs(), usage: undefined });
    this.lifecycle(workload, 'exited', 'the container was removed outside debughost');
  }

  private isCurrent(workload: Workload): boolean {
    return !this.closed && this.workloads.get(projectKey(workload.spec.project)) === workload;
  }

  // ---- the end of a run --------------------------------------------------------------

  /** Handles the end of a run once; a second report of the same end waits for the first. */
  private onExit(workload: Workload, run: number, info?: Docker.ContainerInspectInfo): Promise<void> {
    if (workload.run !== run || this.workloads.get(projectKey(workload.spec.project)) !== workload) return Promise.resolve();
    if (workload.handledRun >= run) return workload.exitHandled;
    workload.handledRun = run;
    workload.exitHandled = this.handleExit(workload, info);
    return workload.exitHandled;
  }

  private async handleExit(workload: Workload, known?: Docker.ContainerInspectInfo): Promise<void> {
    let inspected: Docker.ContainerInspectInfo;
    try {
      inspected = known ?? (await workload.container.inspect());
    } catch {
      this.containerGone(workload);
      return;
    }
    if (workload.oomTimer !== null) {
      this.options.clock.clearTimer(workload.oomTimer);
      workload.oomTimer = null;
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
    const ended = { exitCode, signal, exitedAtMs: this.options.wallNowMs(), usage: undefined };
    // Status first, then the event: a subscriber that reads status() on an event sees the end.
    const reportEnd = (): void => {
      const requested = decision.kind === 'stay' && decision.reason === 'requested';
      this.lifecycle(workload, requested ? 'stopped' : oomKilled ? 'oomKilled' : 'exited', requested ? `stopped (${how})` : how, { exitCode, signal });
    };
    switch (decision.kind) {
      case 'stay': {
        const state: WorkloadState = decision.reason === 'requested' ? 'stopped' : decision.reason === 'unrecoverable' ? 'failed' : 'exited';
        const error = state === 'stopped' || (exitCode === 0 && !oomKilled) ? null : exitCode === 127 ? `command not found in image ${workload.spec.image}${this.lastLines(workload)}` : `${how}${this.lastLines(workload)}`;
        this.setStatus(workload, { ...ended, state, error });
        reportEnd();
        return;
      }
      case 'restart':
        this.setStatus(workload, { ...ended, state: 'exited', error: `${how}; restarting in ${decision.delayMs} ms (restart policy ${workload.spec.restart})` });
        reportEnd();
        workload.restartTimer = this.options.clock.setTimer(decision.delayMs, () => {
          workload.restartTimer = null;
          if (workload.stopRequested || !this.isCurrent(workload)) return;
          void this.launch(workload, workload.status.restarts + 1);
        });
        return;
      case 'crashLoop': {
        const error = `crash loop: ended ${decision.exitsInWindow} times within ${Math.round(this.restartLimits.crashLoopWindowMs / 1000)} s (last: ${how}); not restarting, fix the image or command and start it again`;
        this.setStatus(workload, { ...ended, state: 'crashLoop', error: `${error}${this.lastLines(workload)}` });
        reportEnd();
        this.lifecycle(workload, 'crashLoop', error, { exitCode, signal });
        return;
      }
      default: {
        const unreachable: never = decision;
        throw new Error(`unknown restart decision ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private lastLines(workload: Workload): string {
    const lines = this.options.logs.lastLines(workload.spec.project, this.limits.errorLinesMax);
    return lines.length === 0 ? '' : `; last lines: ${lines.join(' | ')}`;
  }

  // ---- logs --------------------------------------------------------------------------

  /** Follows the run's logs until the container stops or the connection drops (a sync then follows again). */
  private async follow(workload: Workload): Promise<void> {
    workload.following?.abort();
    const controller = new AbortController();
    workload.following = controller;
    const done = (): void => {
      if (workload.following === controller) workload.following = null;
    };
    const afterMs = this.options.logs.lastTimeMs(workload.spec.project) ?? 0;
    let stream: NodeJS.ReadableStream;
    try {
      stream = await this.streams
        .getContainer(workload.container.id)
        .logs({ follow: true, stdout: true, stderr: true, timestamps: true, since: Math.floor(afterMs / 1000), abortSignal: controller.signal });
    } catch {
      done();
      return;
    }
    const out = new PassThrough();
    const err = new PassThrough();
    this.splitInto(workload, out, 'stdout', afterMs);
    this.splitInto(workload, err, 'stderr', afterMs);
    this.streams.modem.demuxStream(stream, out, err);
    const end = (): void => {
      done();
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

  // ---- usage -------------------------------------------------------------------------

  private usageTargets(): UsageTarget[] {
    return [...this.workloads.values()]
      .filter((workload) => workload.status.state === 'running' && workload.launching === null && workload.engineStartedAtMs > 0)
      .map((workload) => ({ key: projectKey(workload.spec.project), container: workload.container, startedAtMs: workload.engineStartedAtMs, run: workload.run }));
  }

  /** Updates the status without an event: a sample is not a change the actor must act on. */
  private recordUsage(target: UsageTarget, usage: WorkloadUsage): void {
    const workload = this.workloads.get(target.key);
    if (workload === undefined || workload.run !== target.run || workload.status.state !== 'running') return;
    workload.status = { ...workload.status, usage };
  }

  // ---- adoption ----------------------------------------------------------------------

  private async listOwn(): Promise<Docker.ContainerInfo[]> {
    return this.call('list containers', () => this.docker.listContainers({ all: true, filters: { label: [`${LABELS.node}=${this.options.node}`] } }));
  }

  /** Takes over this node's containers that have a record in the state dir; the others are left for removeOrphans or a new start. */
  private async adoptAll(): Promise<void> {
    const own = await this.listOwn();
    const names = new Set<string>();
    for (const info of own) {
      const name = (info.Names[0] ?? '').replace(/^\//, '');
      names.add(name);
      const record = this.records.read(name, info.Id);
      if (record === null) continue;
      const container = this.docker.getContainer(info.Id);
      const inspected = await this.call(`inspect container ${info.Id}`, () => container.inspect());
      const running = inspected.State.Running;
      const { exitCode, signal } = decodeShellStatus(inspected.State.ExitCode);
      const workload = this.newWorkload(record.spec, name, container, inspected.Image, {
        ...emptyStatus(record.spec.project),
        state: running ? 'running' : 'exited',
        containerId: info.Id,
        exitCode: running ? null : exitCode,
        signal: running ? null : signal,
        startedAtMs: Date.parse(inspected.State.StartedAt) || null,
        exitedAtMs: running ? null : Date.parse(inspected.State.FinishedAt) || null,
      });
      workload.run = 1;
      workload.handledRun = running ? 0 : 1;
      workload.engineStartedAtMs = running ? Date.parse(inspected.State.StartedAt) || 0 : 0;
      this.workloads.set(projectKey(record.spec.project), workload);
      if (running) void this.follow(workload);
    }
    this.records.removeAllBut(names);
  }

  // ---- events to subscribers -----------------------------------------------------------

  private setStatus(workload: Workload, change: Partial<WorkloadStatus>): void {
    const next = { ...workload.status, ...change };
    if ('usage' in change && change.usage === undefined) delete (next as { usage?: WorkloadUsage }).usage;
    workload.status = next;
    this.emit({ type: 'status', status: workload.status });
  }

  private lifecycle(workload: Workload, kind: LifecycleKind, detail: string, exit: { exitCode: number | null; signal: string | null } = { exitCode: null, signal: null }): void {
    this.emit({ type: 'lifecycle', project: workload.spec.project, kind, timeMs: this.options.wallNowMs(), exitCode: exit.exitCode, signal: exit.signal, detail });
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

  private call<T>(what: string, action: () => Promise<T>): Promise<T> {
    return dockerCall(this.endpoint, what, action);
  }
}

function checkExecSpec(spec: ExecSpec): void {
  if (typeof spec.command !== 'string' || spec.command.trim() === '') throw new RuntimeError('InvalidSpecError', 'exec needs a command (run through /bin/sh -c in the container)');
  if (!Number.isSafeInteger(spec.timeoutMs) || spec.timeoutMs <= 0) throw new RuntimeError('InvalidSpecError', `exec timeoutMs ${String(spec.timeoutMs)} must be a whole number of milliseconds above 0`);
  if (!Number.isSafeInteger(spec.outputBytesMax) || spec.outputBytesMax < 0) throw new RuntimeError('InvalidSpecError', `exec outputBytesMax ${String(spec.outputBytesMax)} must be a whole number of bytes ≥ 0`);
}

function emptyStatus(project: ProjectRef): WorkloadStatus {
  return { project, state: 'starting', pid: null, containerId: null, exitCode: null, signal: null, restarts: 0, startedAtMs: null, exitedAtMs: null, error: null };
}
