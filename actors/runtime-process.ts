// The process runtime (the default): runs `spec.command` through /bin/sh, forked by the node's
// spawner (actors/spawner.ts) into the project's cgroup (actors/cgroups.ts) as the tenant's user
// (actors/workload-user.ts) with the project's env on a fixed base. The cgroup holds everything
// the workload starts, so setsid and double forks cannot leave it and stop kills all of it;
// limits apply to it; its CPU and memory are sampled into the status. Restarts by policy with
// back-off, detects crash loops, sends every output line to the log store and to subscribers,
// and emits lifecycle events. Without a writable cgroup hierarchy, process groups serve instead.
import { mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Clock, TimerHandle } from '../consensus/types.ts';
import { CappedBuffer } from './capped-buffer.ts';
import { projectOfCgroupName, ProjectCgroup } from './cgroup-project.ts';
import { nodeRootName, openCgroups, removeLayoutRoots, spawnerRoots, type CgroupLayout, type CgroupMode } from './cgroups.ts';
import { LineSplitter, type LogStore, type LogStream } from './logs.ts';
import { commandArgv, findProgram, leadingProgram, portEnv } from './process-command.ts';
import { decideRestart, describeExit, RESTART_DEFAULTS, type RestartLimits } from './restart-policy.ts';
import { RunRecords } from './run-records.ts';
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
} from './runtime.ts';
import { LeaseBeats } from './lease-beats.ts';
import { Spawner, SpawnerError, type FenceState, type RunEnd } from './spawner.ts';
import type { ProcessExit, Target } from './spawner-protocol.ts';
import { decodeShellStatus, membersOfGroups, procFigures, signalGroup } from './supervisor.ts';
import { closedAncestor, userMayEnter, workloadBaseEnv, WorkloadUsers, type WorkloadIdentity, type WorkloadUserLimits, type WorkloadUserMode } from './workload-user.ts';

export { leadingProgram, portEnv } from './process-command.ts';

/**
 * The names of the fixed base every workload starts from (values: workloadBaseEnv in
 * actors/workload-user.ts, never the node's). Kept for callers that build an exec env themselves.
 */
export const BASE_ENV_NAMES: readonly string[] = ['PATH', 'HOME', 'LANG'];

export type RuntimeLog = (level: 'info' | 'warn', message: string) => void;

export interface ProcessRuntimeOptions {
  readonly node: string;
  /** Where the runtime keeps its state (tenants' uids, run records), e.g. `<dataDir>/runtime/process`. */
  readonly stateDir: string;
  readonly logs: LogStore;
  /** Drives back-off timers, waits and usage sampling. */
  readonly clock: Clock;
  /** Wall time (ms since the epoch) for status timestamps. */
  readonly wallNowMs: () => number;
  /** Tenants' homes and default project directories (default `<stateDir>/work`); reachable by tenants' users. */
  readonly workRoot?: string;
  /** cwd when the spec gives none (default: the project's own directory under workRoot). */
  readonly defaultCwd?: string;
  /** Whom workloads run as: 'auto' = a user per tenant when the node is root, else the node's user. */
  readonly users?: 'auto' | WorkloadUserMode;
  readonly userLimits?: Partial<WorkloadUserLimits>;
  /** Which cgroup hierarchies track workloads (default auto; off: process groups). */
  readonly cgroups?: CgroupMode;
  readonly restart?: Partial<RestartLimits>;
  /** SIGTERM-to-SIGKILL grace the spawner gives workloads when the node is gone: below the time others wait before taking over. */
  readonly orphanGraceMs?: number;
  /** Grace for stops the runtime decides itself (restart with a new spec, remove, close). */
  readonly stopGraceMs?: number;
  /** How many last log lines a crash-loop or start error quotes. */
  readonly errorLinesMax?: number;
  /** How often CPU and memory of running workloads are sampled; the CPU figure covers the last interval. */
  readonly usageSampleMs?: number;
  /**
   * How often (at the next usage sample from then) running workloads' cgroups are read for OOM kills of a
   * process other than the workload's own, whose end is checked at once. With cgroup v1 each check lists the
   * project's sub-cgroups and reads a counter in each: most of what sampling costs an idle node.
   */
  readonly oomCheckMs?: number;
  /** After a missed lease heartbeat froze the workloads, how much later they are killed: before another owner may start them. */
  readonly fenceKillAfterMs?: number;
  /** How often the lease heartbeat thread beats while the lease published by leaseValidUntil holds (fenceTiming's heartbeatMs). */
  readonly fenceHeartbeatMs?: number;
  /** Each of its beats keeps the workloads running this long (fenceTiming's validForMs). */
  readonly fenceValidForMs?: number;
  /** One-off commands running at once on this node. */
  readonly execsInFlightMax?: number;
  /** Bound on the spawner starting (it first kills a previous run's leftovers, itself bounded by 5 s). */
  readonly spawnerReadyTimeoutMs?: number;
  /** The perl interpreter the spawner runs on (default /usr/bin/perl, from perl-base). */
  readonly perl?: string;
  readonly log?: RuntimeLog;
}

const DEFAULTS = {
  stopGraceMs: 5000,
  // Below suspectMs - leaseMs (1 s with the host's defaults): a dead node's workloads are gone before others restart them.
  orphanGraceMs: 800,
  errorLinesMax: 5,
  usageSampleMs: 2000,
  // A process killed inside a project that keeps running is told within 10 s instead of 2 s.
  oomCheckMs: 10_000,
  fenceKillAfterMs: 300,
  // fenceTiming(2000, 3000), the host's defaults.
  fenceHeartbeatMs: 100,
  fenceValidForMs: 600,
  execsInFlightMax: 64,
  spawnerReadyTimeoutMs: 15_000,
};

interface Run {
  readonly pid: number;
  readonly spawnerRun: number;
  /** Whom stop signals and kills: the run's cgroup, or its process group. */
  readonly target: Target;
  readonly shellStays: boolean;
  readonly ended: Promise<RunEnd>;
  /** The watchdog killed it (the node's lease ran out). */
  fenced: boolean;
  /** Watchdog kills reported before its spawn was sent: a later one may have killed it before its start was seen here. */
  readonly fenceKillsAtSpawn: number;
}

interface Workload {
  spec: WorkloadSpec;
  status: WorkloadStatus;
  readonly identity: WorkloadIdentity;
  readonly cwd: string;
  readonly env: Record<string, string>;
  readonly cgroup: ProjectCgroup | null;
  run: Run | null;
  runStartedMs: number;
  restartTimer: TimerHandle | null;
  recentExitsMs: number[];
  stopRequested: boolean;
  oomKillsSeen: number;
  lastSample: { cpuNs: number; atMs: number } | null;
}

/** The workload cgroup's subdirectory; each exec gets `x<n>` beside it. */
const MAIN = 'main';
/** The spawner's heartbeat FIFO in stateDir; its name exists only until the node has opened it. */
const BEATS_FIFO = 'spawner-beats.fifo';

export class ProcessRuntime implements Runtime {
  readonly kind = 'process';
  /** Projects whose leftover processes from a previous run of this node were killed at open. */
  cleanedUp: readonly ProjectRef[] = [];
  private readonly workloads = new Map<string, Workload>();
  private readonly listeners = new Set<(event: RuntimeEvent) => void>();
  /** start/stop/remove and policy restarts of one project run one at a time, in call order. */
  private readonly queue = new PerProjectQueue();
  private readonly restartLimits: RestartLimits;
  private readonly limits: typeof DEFAULTS;
  /** When sampling next reads the OOM counters (see oomCheckMs). */
  private nextOomCheckMs = 0;
  private readonly records: RunRecords;
  private spawner: Promise<Spawner> | null = null;
  private fence: FenceState | 'none' = 'none';
  /** Watchdog kills reported so far ('killed' fence frames). */
  private fenceKills = 0;
  /** Heartbeats from a thread, by the lease's published end (leaseValidUntil); started by the first. */
  private beats: LeaseBeats | null = null;
  /** The spawner whose beats FIFO was handed to that thread, and the FIFO; until the thread writes it, beats go from this loop. */
  private beatsSpawner: { spawner: Spawner; fd: number } | null = null;
  private sampleTimer: TimerHandle | null = null;
  private execsInFlight = 0;
  private nextExec = 1;
  /** Execs running per project: the project's cgroup stays while one runs. */
  private readonly execsOf = new Map<string, number>();
  private closed = false;

  private constructor(
    private readonly options: ProcessRuntimeOptions,
    private readonly users: WorkloadUsers,
    /** null: process groups track workloads. */
    readonly cgroups: CgroupLayout | null,
  ) {
    this.restartLimits = { ...RESTART_DEFAULTS, ...options.restart };
    this.limits = {
      stopGraceMs: options.stopGraceMs ?? DEFAULTS.stopGraceMs,
      orphanGraceMs: options.orphanGraceMs ?? DEFAULTS.orphanGraceMs,
      errorLinesMax: options.errorLinesMax ?? DEFAULTS.errorLinesMax,
      usageSampleMs: options.usageSampleMs ?? DEFAULTS.usageSampleMs,
      oomCheckMs: options.oomCheckMs ?? DEFAULTS.oomCheckMs,
      fenceKillAfterMs: options.fenceKillAfterMs ?? DEFAULTS.fenceKillAfterMs,
      fenceHeartbeatMs: options.fenceHeartbeatMs ?? DEFAULTS.fenceHeartbeatMs,
      fenceValidForMs: options.fenceValidForMs ?? DEFAULTS.fenceValidForMs,
      execsInFlightMax: options.execsInFlightMax ?? DEFAULTS.execsInFlightMax,
      spawnerReadyTimeoutMs: options.spawnerReadyTimeoutMs ?? DEFAULTS.spawnerReadyTimeoutMs,
    };
    for (const [name, value] of Object.entries(this.limits)) {
      if (!Number.isSafeInteger(value) || value < 1) throw new RuntimeError('InvalidSpecError', `process runtime option ${name} is ${String(value)}; give a whole number >= 1`);
    }
    this.records = new RunRecords(join(options.stateDir, 'runs'), options.node);
  }

  /**
   * Opens the runtime: picks the cgroup hierarchies (trying each by running a probe in it, and
   * falling back as far as process groups, with a log line saying so), starts the spawner, which
   * first kills whatever a previous run of this node left behind.
   */
  static async open(options: ProcessRuntimeOptions): Promise<ProcessRuntime> {
    mkdirSync(options.stateDir, { recursive: true });
    const log = options.log ?? (() => undefined);
    const workRoot = options.workRoot ?? join(options.stateDir, 'work');
    const usersMode = chooseUserMode(options.users ?? 'auto', workRoot, log);
    const users = WorkloadUsers.open({ mode: usersMode, workRoot, stateDir: options.stateDir, ...(options.userLimits === undefined ? {} : { limits: options.userLimits }) });
    const wanted = options.cgroups ?? 'auto';
    const modes: CgroupMode[] = wanted === 'auto' ? ['auto', 'v1', 'off'] : wanted === 'off' ? ['off'] : [wanted, 'off'];
    const rootName = nodeRootName(options.node, options.stateDir);
    for (const mode of modes) {
      const opened = openCgroups({ mode, rootName });
      const runtime = new ProcessRuntime(options, users, opened.layout);
      try {
        await runtime.spawnerReady();
      } catch (error) {
        // No spawner to remove the roots at its end: this node leaves nothing in the cgroup file systems.
        removeLayoutRoots(opened.layout);
        throw new RuntimeError('RuntimeUnavailableError', `the process runtime cannot start: ${(error as Error).message}`, { cause: error });
      }
      const probe = opened.layout === null ? null : await runtime.probe();
      if (probe !== null) {
        log('warn', `process runtime: cgroups (${mode}) did not work here (${probe}); trying the next choice`);
        await runtime.close();
        continue;
      }
      log(opened.layout === null ? 'warn' : 'info', `process runtime: ${opened.description}; workloads run as ${usersMode === 'tenant' ? 'a user per tenant' : "the node's user"}`);
      await runtime.collectLeftovers();
      return runtime;
    }
    throw new RuntimeError('RuntimeUnavailableError', 'the process runtime could not start its spawner; see the node log');
  }

  /** Runs /bin/true in a probe cgroup; null when it ran, else why not. */
  private async probe(): Promise<string | null> {
    const layout = this.cgroups as CgroupLayout;
    const cgroup = new ProjectCgroup(layout, { tenant: 'debughost', name: 'probe' });
    try {
      cgroup.ensure(MAIN);
      const spawner = await this.spawnerReady();
      const end = await new Promise<RunEnd>((resolveEnd, reject) => {
        spawner
          .spawn(
            { uid: -1, gid: -1, cwd: '/', target: { kind: 'cgroup', dir: cgroup.trackDir(MAIN) }, procsFiles: cgroup.procsFiles(MAIN), argv: ['/bin/true'], env: {} },
            { onOutput: () => undefined, onEnd: resolveEnd },
          )
          .catch(reject);
      });
      return end.failure ?? (end.exit.exitCode === 0 ? null : `the probe ${describeExit(end.exit.exitCode, end.exit.signal)}`);
    } catch (error) {
      return (error as Error).message;
    } finally {
      await cgroup.remove();
    }
  }

  private async collectLeftovers(): Promise<void> {
    if (this.cgroups === null) {
      this.cleanedUp = await this.records.cleanUp((ms) => sleepOn(this.options.clock, ms));
      return;
    }
    const spawner = await this.spawnerReady();
    const found = new Map<string, ProjectRef>();
    for (const path of spawner.leftovers) {
      const project = projectOfCgroupName(path.split('/')[0] ?? '');
      if (project !== null && !(project.tenant === 'debughost' && project.name === 'probe')) found.set(projectKey(project), project);
    }
    this.cleanedUp = [...found.values()];
  }

  /** The spawner, started on first use and again after it died (the new one kills what the old one left). */
  private spawnerReady(): Promise<Spawner> {
    if (this.spawner !== null) return this.spawner;
    const starting = Spawner.start({
      roots: spawnerRoots(this.cgroups),
      orphanGraceMs: this.limits.orphanGraceMs,
      readyTimeoutMs: this.limits.spawnerReadyTimeoutMs,
      clock: this.options.clock,
      // stateDir is the node's own (private when it runs as root): no workload can open it by name.
      beatsFifo: join(this.options.stateDir, BEATS_FIFO),
      ...(this.options.perl === undefined ? {} : { perl: this.options.perl }),
    }).then((spawner) => {
      spawner.onFence = (state) => this.onFence(state);
      spawner.onWarning = (text) => this.options.log?.('warn', `spawner: ${text}`);
      spawner.onDeath = (why) => this.onSpawnerDeath(why);
      this.connectBeats(spawner);
      return spawner;
    });
    this.spawner = starting;
    starting.catch(() => {
      if (this.spawner === starting) this.spawner = null;
    });
    return starting;
  }

  private onSpawnerDeath(why: string): void {
    this.options.log?.('warn', `process runtime: the spawner died (${why}); its workloads are killed and restarted by policy`);
    this.spawner = null;
    // Without cgroups nobody else would stop the old spawner's workloads: do it here.
    if (this.cgroups === null) for (const workload of this.workloads.values()) if (workload.run !== null) signalGroup(workload.run.pid, 'SIGKILL');
    // A new spawner kills whatever is left in the node's cgroups before it takes runs.
    if (!this.closed) void this.spawnerReady().catch((error: unknown) => this.options.log?.('warn', `process runtime: the spawner does not start again: ${(error as Error).message}`));
  }

  private onFence(state: FenceState): void {
    this.fence = state === 'thawed' ? 'none' : state;
    if (state === 'killed') {
      this.fenceKills += 1;
      for (const workload of this.workloads.values()) if (workload.run !== null) workload.run.fenced = true;
    }
    this.options.log?.('warn', `process runtime: lease heartbeats stopped; workloads ${state}`);
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

  /**
   * The node's owner lease is valid until `untilMs` on the runtime's clock, unless renewed. A
   * thread of this process (actors/lease-beats.ts) beats the watchdog while that holds, so a busy
   * event loop here does not fence a node whose lease is valid; SIGSTOP or death of the node stops
   * the thread too. Until the thread writes the live spawner's FIFO, this loop beats as before.
   */
  leaseValidUntil(untilMs: number): void {
    if (this.closed || !Number.isFinite(untilMs)) return;
    if (this.beats === null) {
      this.beats = new LeaseBeats(
        { heartbeatMs: this.limits.fenceHeartbeatMs, validForMs: this.limits.fenceValidForMs, killAfterMs: this.limits.fenceKillAfterMs },
        (text) => this.options.log?.('warn', `process runtime: ${text}`),
      );
      void this.spawner?.then((spawner) => this.connectBeats(spawner), () => undefined);
    }
    this.beats.publish(this.options.clock, untilMs);
    const threadBeats = this.beatsSpawner !== null && this.beatsSpawner.spawner.alive && this.beats.beatsInto(this.beatsSpawner.fd);
    if (!threadBeats && untilMs > this.options.clock.nowMs()) this.leaseHeartbeat(this.limits.fenceValidForMs);
  }

  /** Hands a (new) spawner's beats FIFO to the heartbeat thread, if there is one. */
  private connectBeats(spawner: Spawner): void {
    if (this.beats === null || this.closed) return;
    const fd = spawner.takeBeatsFd();
    if (fd === null) {
      if (spawner.beatsProblem !== null) this.options.log?.('warn', `process runtime: ${spawner.beatsProblem}; lease heartbeats come from the main event loop`);
      return;
    }
    this.beats.connect(fd);
    this.beatsSpawner = { spawner, fd };
  }

  leaseHeartbeat(validForMs: number): void {
    if (this.closed || !Number.isFinite(validForMs) || validForMs <= 0) return;
    void this.spawnerReady().then(
      (spawner) => {
        spawner.heartbeat(validForMs, validForMs + this.limits.fenceKillAfterMs);
        // The spawner reads commands in order: it thaws before it takes the next start.
        this.fence = 'none';
      },
      () => undefined,
    );
  }

  private async startNow(spec: WorkloadSpec): Promise<WorkloadStatus> {
    if (this.closed) throw new RuntimeError('RuntimeUnavailableError', 'the process runtime is closed (node shutting down); retry on the new owner');
    if (this.fence === 'frozen') throw new RuntimeError('RuntimeUnavailableError', "this node's owner lease ran out and its workloads are frozen; retry once it hears from the cluster again, or on another node");
    this.checkSpec(spec);
    const identity = this.users.identity(spec.project.tenant);
    const env = { ...workloadBaseEnv(identity.home), ...spec.env, ...portEnv(spec.ports) };
    const cwd = this.workingDir(spec.project, spec.cwd, identity);
    this.checkProgram(spec, env, cwd);
    const key = projectKey(spec.project);
    const existing = this.workloads.get(key);
    if (existing !== undefined) await this.stopWorkload(existing, this.limits.stopGraceMs);
    const cgroup = existing?.cgroup ?? (this.cgroups === null ? null : new ProjectCgroup(this.cgroups, spec.project));
    const unenforced = this.setUpCgroup(cgroup, spec);
    const workload: Workload = {
      spec,
      status: emptyStatus(spec.project),
      identity,
      cwd,
      env,
      cgroup,
      run: null,
      runStartedMs: 0,
      restartTimer: null,
      recentExitsMs: [],
      stopRequested: false,
      oomKillsSeen: cgroup?.oomKills() ?? 0,
      lastSample: null,
    };
    this.workloads.set(key, workload);
    for (const line of unenforced) this.recordLine(workload, 'stderr', `debughost: ${line} is not enforced on this node; this process runs without it`);
    await this.launch(workload, 0);
    return workload.status;
  }

  private setUpCgroup(cgroup: ProjectCgroup | null, spec: WorkloadSpec): string[] {
    if (cgroup === null) {
      const asked = spec.limits ?? {};
      return [asked.memoryBytes === undefined ? null : 'memory limit', asked.pids === undefined ? null : 'pids limit', asked.cpus === undefined ? null : 'cpu limit'].filter((line): line is string => line !== null).map((line) => `${line} (no cgroups on this node)`);
    }
    try {
      cgroup.ensure(MAIN);
      return cgroup.applyLimits(spec.limits);
    } catch (error) {
      throw new RuntimeError('InvalidSpecError', `cannot set up the limits of ${projectKey(spec.project)} (${(error as Error).message}); give limits the node can hold (a memory limit above what the project uses now, pids >= 1, cpus > 0)`, { cause: error });
    }
  }

  private async stopNow(project: ProjectRef, graceMs: number): Promise<WorkloadStatus | null> {
    const workload = this.workloads.get(projectKey(project));
    if (workload === undefined) return null;
    await this.stopWorkload(workload, graceMs);
    return workload.status;
  }

  private async removeNow(project: ProjectRef): Promise<void> {
    const key = projectKey(project);
    const workload = this.workloads.get(key);
    if (workload === undefined) return;
    await this.stopWorkload(workload, this.limits.stopGraceMs);
    this.workloads.delete(key);
    await this.dropCgroup(workload.cgroup);
  }

  /** Kills whatever still runs in a project's cgroup (its execs) and removes it, unless an exec still needs it. */
  private async dropCgroup(cgroup: ProjectCgroup | null): Promise<void> {
    if (cgroup === null || (this.execsOf.get(projectKey(cgroup.project)) ?? 0) > 0 || this.workloads.has(projectKey(cgroup.project))) return;
    const spawner = await this.spawnerReady().catch(() => null);
    if (spawner !== null) await spawner.kill({ kind: 'cgroup', dir: cgroup.trackDir() });
    await cgroup.remove();
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

  async close(): Promise<void> {
    this.closed = true;
    if (this.sampleTimer !== null) this.options.clock.clearTimer(this.sampleTimer);
    this.sampleTimer = null;
    await Promise.all([...this.workloads.values()].map((workload) => this.stopWorkload(workload, this.limits.stopGraceMs)));
    await this.beats?.close();
    const spawner = await this.spawner?.catch(() => null);
    // The spawner kills what is left (execs), removes the node's cgroups and exits.
    await spawner?.close();
    this.spawner = null;
  }

  /** Refuses a spec that cannot run, with what to do. */
  private checkSpec(spec: WorkloadSpec): void {
    if (spec.image !== undefined) throw new RuntimeError('InvalidSpecError', `project ${projectKey(spec.project)} names an image (${spec.image}); images run on the docker runtime, give a command for the process runtime`);
    if (spec.command === undefined || spec.command.trim() === '') throw new RuntimeError('InvalidSpecError', `project ${projectKey(spec.project)} has no command; give the shell command to run`);
    for (const [name, port] of Object.entries(spec.ports)) {
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RuntimeError('InvalidSpecError', `port ${name} is ${String(port)}; ports are whole numbers 1-65535 allocated by the port registry`);
    }
    for (const [name, value] of Object.entries(spec.env)) {
      if (name === '' || name.includes('=') || name.includes('\0') || value.includes('\0')) throw new RuntimeError('InvalidSpecError', `environment variable ${JSON.stringify(name)} cannot be passed to a process; names must be non-empty without '=', and neither may hold a NUL byte`);
    }
    if (spec.command.includes('\0')) throw new RuntimeError('InvalidSpecError', 'the command holds a NUL byte; remove it');
  }

  private checkProgram(spec: WorkloadSpec, env: Record<string, string>, cwd: string): void {
    const program = leadingProgram(spec.command ?? '');
    if (program !== null && !findProgram(program, env.PATH ?? '', cwd)) {
      throw new RuntimeError('CommandNotFoundError', `command not found: ${program} (searched PATH=${env.PATH ?? ''}); install it, fix the spelling, or give its full path`);
    }
  }

  /**
   * The absolute cwd of a project's processes: relative to the project's own directory (or
   * defaultCwd). The spawner enters it as the workload's user, so the kernel checks the whole
   * path; the last directory is checked here too, for an error before anything runs.
   */
  private workingDir(project: ProjectRef, cwd: string | undefined, identity: WorkloadIdentity): string {
    const base = this.options.defaultCwd ?? this.users.projectDir(project, identity);
    const absolute = resolve(base, cwd ?? '.');
    let isDirectory = false;
    try {
      isDirectory = statSync(absolute).isDirectory();
    } catch {
      isDirectory = false;
    }
    if (!isDirectory) throw new RuntimeError('CwdMissingError', `working directory ${absolute} does not exist or is not a directory; create it or give an existing cwd`);
    if (!userMayEnter(absolute, identity.uid, identity.gid)) {
      throw new RuntimeError('InvalidSpecError', `working directory ${absolute} is not open to tenant ${project.tenant}'s user (uid ${identity.uid}); give it to that user (chown -R ${identity.uid}:${identity.gid} ${absolute}), let others in (chmod o+rx), or leave cwd out to use the project's own directory`);
    }
    return absolute;
  }

  private async launch(workload: Workload, restarts: number): Promise<void> {
    const { spec } = workload;
    workload.stopRequested = false;
    this.setStatus(workload, { state: 'starting', error: null, restarts, usage: undefined });
    const key = projectKey(spec.project);
    const { argv, shellStays } = commandArgv(spec.command ?? '');
    let resolveEnd: (end: RunEnd) => void = () => undefined;
    const ended = new Promise<RunEnd>((resolveRun) => (resolveEnd = resolveRun));
    const splitters = {
      stdout: new LineSplitter(this.options.logs.lineCharsMax, (text) => this.recordLine(workload, 'stdout', text)),
      stderr: new LineSplitter(this.options.logs.lineCharsMax, (text) => this.recordLine(workload, 'stderr', text)),
    };
    let started: { run: number; pid: number };
    const fenceKillsAtSpawn = this.fenceKills;
    try {
      const spawner = await this.spawnerReady();
      workload.cgroup?.ensure(MAIN);
      started = await spawner.spawn(
        {
          uid: workload.identity.uid,
          gid: workload.identity.gid,
          cwd: workload.cwd,
          target: workload.cgroup === null ? null : { kind: 'cgroup', dir: workload.cgroup.trackDir(MAIN) },
          procsFiles: workload.cgroup?.procsFiles(MAIN) ?? [],
          argv,
          env: workload.env,
        },
        {
          onOutput: (stream, chunk) => splitters[stream].push(chunk),
          onEnd: (end) => {
            splitters.stdout.end();
            splitters.stderr.end();
            resolveEnd(end);
          },
        },
      );
    } catch (error) {
      const why = error instanceof SpawnerError ? error.message : `${(error as Error).message}`;
      this.setStatus(workload, { state: 'failed', pid: null, error: `could not start ${key}: ${why}; see the node log` });
      this.lifecycle(workload, 'exited', { exitCode: null, signal: null }, `could not start: ${why}`);
      return;
    }
    const target: Target = workload.cgroup === null ? { kind: 'group', pgid: started.pid } : { kind: 'cgroup', dir: workload.cgroup.trackDir(MAIN) };
    const run: Run = { pid: started.pid, spawnerRun: started.run, target, shellStays, ended, fenced: false, fenceKillsAtSpawn };
    workload.run = run;
    workload.runStartedMs = this.options.clock.nowMs();
    if (workload.cgroup === null) this.records.write(spec.project, started.pid);
    this.setStatus(workload, { state: 'running', pid: started.pid, exitCode: null, signal: null, startedAtMs: this.options.wallNowMs(), exitedAtMs: null });
    this.lifecycle(workload, restarts === 0 ? 'started' : 'restarted', { exitCode: null, signal: null }, restarts === 0 ? `pid ${started.pid}` : `restart ${restarts} by policy ${spec.restart}, pid ${started.pid}`);
    // The cgroup's counters outlive runs: a baseline now gives a figure after one interval. (Without
    // cgroups the first periodic sample is the baseline: a scan of /proc per start would cost too much.)
    workload.lastSample = workload.cgroup === null ? null : (this.sampleOne(workload, null)?.sample ?? null);
    this.scheduleSampling();
    void ended.then((end) => this.onExit(workload, run, end));
  }

  private recordLine(workload: Workload, name: LogStream, text: string): void {
    const line = this.options.logs.append(workload.spec.project, name, text);
    this.emit({ type: 'log', project: workload.spec.project, stream: name, line: line.line, timeMs: line.timeMs });
  }

  private onExit(workload: Workload, run: Run, end: RunEnd): void {
    if (workload.run !== run) return;
    workload.run = null;
    if (workload.cgroup === null) this.records.remove(workload.spec.project);
    this.checkOom(workload);
    const exit = exitOf(end, run.shellStays);
    const ended = { pid: null, exitCode: exit.exitCode, signal: exit.signal, exitedAtMs: this.options.wallNowMs(), usage: undefined };
    if (end.failure !== null) {
      const error = startFailure(end.failure, workload);
      this.setStatus(workload, { ...ended, state: 'failed', error });
      this.lifecycle(workload, 'exited', exit, error);
      return;
    }
    // A run whose start was in flight when the watchdog killed everything was not marked above (its
    // start was not seen here yet): its SIGKILL is the fence's too. Without this it ended 'exited', and a
    // restart policy of 'never' kept it down though it is desired running (the failover bench: 29 of 300).
    const killedInFlight = run.fenceKillsAtSpawn !== this.fenceKills && exit.signal === 'SIGKILL';
    if ((run.fenced || killedInFlight) && !workload.stopRequested) {
      const error = "fenced: this node's owner lease ran out (no heartbeat), so the workload was frozen, then killed before another owner could start it";
      this.setStatus(workload, { ...ended, state: 'stopped', error });
      this.lifecycle(workload, 'stopped', exit, error);
      return;
    }
    const nowMs = this.options.clock.nowMs();
    const { decision, recentExitsMs } = decideRestart(
      workload.spec.restart,
      { exitCode: exit.exitCode, signal: exit.signal, requested: workload.stopRequested, startedAtMs: workload.runStartedMs, exitedAtMs: nowMs },
      workload.recentExitsMs,
      this.restartLimits,
    );
    workload.recentExitsMs = recentExitsMs;
    switch (decision.kind) {
      case 'stay': {
        const state: WorkloadState = decision.reason === 'requested' ? 'stopped' : decision.reason === 'unrecoverable' ? 'failed' : 'exited';
        const error = state === 'stopped' ? null : this.exitError(workload, exit);
        this.setStatus(workload, { ...ended, state, error });
        this.lifecycle(workload, state === 'stopped' ? 'stopped' : 'exited', exit, error ?? describeExit(exit.exitCode, exit.signal));
        return;
      }
      case 'restart': {
        const error = `${describeExit(exit.exitCode, exit.signal)}; restarting in ${decision.delayMs} ms (restart policy ${workload.spec.restart})`;
        this.setStatus(workload, { ...ended, state: 'exited', error });
        this.lifecycle(workload, 'exited', exit, error);
        workload.restartTimer = this.options.clock.setTimer(decision.delayMs, () => {
          workload.restartTimer = null;
          void this.queue.run(workload.spec.project, async () => {
            if (workload.stopRequested || this.closed || this.workloads.get(projectKey(workload.spec.project)) !== workload) return;
            await this.launch(workload, workload.status.restarts + 1);
          });
        });
        return;
      }
      case 'crashLoop': {
        const windowSeconds = Math.round(this.restartLimits.crashLoopWindowMs / 1000);
        const error = `crash loop: ended ${decision.exitsInWindow} times within ${windowSeconds} s (last: ${describeExit(exit.exitCode, exit.signal)}); not restarting, fix the command and start it again${this.lastLines(workload)}`;
        this.setStatus(workload, { ...ended, state: 'crashLoop', error });
        this.lifecycle(workload, 'exited', exit, describeExit(exit.exitCode, exit.signal));
        this.lifecycle(workload, 'crashLoop', exit, error);
        return;
      }
      default: {
        const unreachable: never = decision;
        throw new Error(`unknown restart decision ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private exitError(workload: Workload, exit: ProcessExit): string | null {
    if (exit.exitCode === 0) return null;
    const lastLines = this.options.logs.lastLines(workload.spec.project, this.limits.errorLinesMax);
    if (exit.exitCode === 127) {
      const notFound = lastLines.map((line) => /(?:^|: )([^:]+): (?:not found|command not found)$/.exec(line)?.[1]).find((name) => name !== undefined);
      return `command not found: ${notFound ?? leadingProgram(workload.spec.command ?? '') ?? workload.spec.command ?? ''}; install it, fix the spelling, or give its full path`;
    }
    if (exit.exitCode === 126) return `command not executable (exit 126); check its permissions (chmod +x) or run it through its interpreter${this.lastLines(workload)}`;
    return `${describeExit(exit.exitCode, exit.signal)}${this.lastLines(workload)}`;
  }

  private lastLines(workload: Workload): string {
    const lines = this.options.logs.lastLines(workload.spec.project, this.limits.errorLinesMax);
    return lines.length === 0 ? '' : `; last lines: ${lines.join(' | ')}`;
  }

  /** SIGTERM to every process of the workload, SIGKILL to all after graceMs; returns once none is left. */
  private async stopWorkload(workload: Workload, graceMs: number): Promise<void> {
    workload.stopRequested = true;
    if (workload.restartTimer !== null) {
      this.options.clock.clearTimer(workload.restartTimer);
      workload.restartTimer = null;
    }
    const run = workload.run;
    if (run !== null) {
      const spawner = await this.spawnerReady().catch(() => null);
      spawner?.signal(run.target, 'SIGTERM');
      let timer: TimerHandle | null = null;
      const graceOver = new Promise<false>((resolveGrace) => {
        timer = this.options.clock.setTimer(graceMs, () => resolveGrace(false));
      });
      const ended = await Promise.race([run.ended.then(() => true), graceOver]);
      // A pending grace timer would hold a shutting-down node for graceMs.
      if (timer !== null) this.options.clock.clearTimer(timer);
      if (!ended) await spawner?.kill(run.target);
      // onExit runs from the same promise, registered first: it has recorded the end after this.
      await run.ended;
      await Promise.resolve();
    }
    if (workload.status.state === 'exited' || workload.status.state === 'starting') this.setStatus(workload, { state: 'stopped' });
  }

  // ---- usage ---------------------------------------------------------------------------

  private scheduleSampling(): void {
    if (this.sampleTimer !== null || this.closed) return;
    this.sampleTimer = this.options.clock.setTimer(this.limits.usageSampleMs, () => {
      this.sampleTimer = null;
      this.sampleAll();
      if ([...this.workloads.values()].some((workload) => workload.run !== null)) this.scheduleSampling();
    });
  }

  private sampleAll(): void {
    const running = [...this.workloads.values()].filter((workload) => workload.run !== null);
    const now = this.options.clock.nowMs();
    const checkOom = now >= this.nextOomCheckMs;
    if (checkOom) this.nextOomCheckMs = now + this.limits.oomCheckMs;
    // Without cgroups: one scan of /proc for every workload's process group.
    const groups = this.cgroups === null ? membersOfGroups(new Set(running.map((workload) => (workload.run as Run).pid))) : null;
    for (const workload of running) {
      const result = this.sampleOne(workload, groups);
      if (result === null) continue;
      const previous = workload.lastSample;
      workload.lastSample = result.sample;
      if (previous !== null && result.sample.atMs > previous.atMs) {
        const cpuPercent = Math.max(0, ((result.sample.cpuNs - previous.cpuNs) / ((result.sample.atMs - previous.atMs) * 1e6)) * 100);
        // No event: usage changes every sample; status() shows the latest.
        workload.status = { ...workload.status, usage: { cpuPercent: Math.round(cpuPercent * 10) / 10, memoryBytes: result.memoryBytes, sampledAtMs: this.options.wallNowMs(), source: result.source } };
      }
      if (checkOom) this.checkOom(workload);
    }
  }

  private sampleOne(workload: Workload, groups: Map<number, number[]> | null): { sample: { cpuNs: number; atMs: number }; memoryBytes: number; source: 'cgroup' | 'proc' } | null {
    const run = workload.run;
    if (run === null) return null;
    const atMs = this.options.clock.nowMs();
    if (workload.cgroup !== null) {
      const usage = workload.cgroup.usage();
      const fallback = usage.cpuNs === null || usage.memoryBytes === null ? procFigures(workload.cgroup.pids()) : null;
      return { sample: { cpuNs: usage.cpuNs ?? fallback?.cpuNs ?? 0, atMs }, memoryBytes: usage.memoryBytes ?? fallback?.rssBytes ?? 0, source: 'cgroup' };
    }
    const members = groups?.get(run.pid) ?? membersOfGroups(new Set([run.pid])).get(run.pid) ?? [];
    const figures = procFigures(members);
    return { sample: { cpuNs: figures.cpuNs, atMs }, memoryBytes: figures.rssBytes, source: 'proc' };
  }

  private checkOom(workload: Workload): void {
    const count = workload.cgroup?.oomKills() ?? null;
    if (count === null) return;
    if (count > workload.oomKillsSeen) {
      const limit = workload.spec.limits?.memoryBytes;
      this.lifecycle(workload, 'oomKilled', { exitCode: null, signal: 'SIGKILL' }, `the kernel's OOM killer ended ${count - workload.oomKillsSeen} process(es) of the project${limit === undefined ? '' : ` at its memory limit of ${limit} bytes`}`);
    }
    workload.oomKillsSeen = count;
  }

  // ---- exec ------------------------------------------------------------------------------

  /**
   * A one-off command next to the project's workload: its user, its cgroup (its own `x<n>` below
   * the project's, under the project's limits), its directory unless `spec.cwd` names another,
   * the fixed base env plus `spec.env`. Whatever it leaves running is killed when it ends.
   */
  async exec(project: ProjectRef, spec: ExecSpec, signal: AbortSignal): Promise<ExecOutcome> {
    if (this.closed) throw new RuntimeError('RuntimeUnavailableError', 'the process runtime is closed (node shutting down); retry on the new owner');
    if (this.fence === 'frozen') throw new RuntimeError('RuntimeUnavailableError', "this node's owner lease ran out and its workloads are frozen; retry shortly or on another node");
    if (!Number.isSafeInteger(spec.timeoutMs) || spec.timeoutMs < 1 || !Number.isSafeInteger(spec.outputBytesMax) || spec.outputBytesMax < 0) {
      throw new RuntimeError('InvalidSpecError', `exec needs timeoutMs >= 1 and outputBytesMax >= 0 (whole numbers), got ${spec.timeoutMs} and ${spec.outputBytesMax}`);
    }
    if (spec.command.trim() === '' || spec.command.includes('\0')) throw new RuntimeError('InvalidSpecError', 'exec needs a command without NUL bytes');
    if (this.execsInFlight >= this.limits.execsInFlightMax) {
      throw new RuntimeError('RuntimeUnavailableError', `${this.execsInFlight} one-off commands already run on this node (the bound is ${this.limits.execsInFlightMax}); retry when one has finished`);
    }
    const key = projectKey(project);
    const workload = this.workloads.get(key);
    const identity = workload?.identity ?? this.users.identity(project.tenant);
    const cwd = spec.cwd === undefined && workload !== undefined ? workload.cwd : this.workingDir(project, spec.cwd, identity);
    const env = { ...workloadBaseEnv(identity.home), ...spec.env };
    const spawner = await this.spawnerReady();
    const cgroup = workload?.cgroup ?? (this.cgroups === null ? null : new ProjectCgroup(this.cgroups, project));
    const sub = `x${this.nextExec}`;
    this.nextExec += 1;
    this.execsInFlight += 1;
    this.execsOf.set(key, (this.execsOf.get(key) ?? 0) + 1);
    const startedMs = this.options.clock.nowMs();
    const stdout = new CappedBuffer(spec.outputBytesMax);
    const stderr = new CappedBuffer(spec.outputBytesMax);
    let timedOut = false;
    let timer: TimerHandle | null = null;
    let kill: () => void = () => undefined;
    const onAbort = (): void => kill();
    try {
      cgroup?.ensure(sub);
      const { argv, shellStays } = commandArgv(spec.command);
      let runId = 0;
      let target: Target | null = cgroup === null ? null : { kind: 'cgroup', dir: cgroup.trackDir(sub) };
      kill = () => {
        if (target !== null) void spawner.kill(target);
      };
      let resolveEnd: (end: RunEnd) => void = () => undefined;
      const ended = new Promise<RunEnd>((resolveRun) => (resolveEnd = resolveRun));
      const started = await spawner.spawn(
        { uid: identity.uid, gid: identity.gid, cwd, target: cgroup === null ? null : { kind: 'cgroup', dir: cgroup.trackDir(sub) }, procsFiles: cgroup?.procsFiles(sub) ?? [], argv, env },
        {
          onOutput: (stream, chunk) => {
            (stream === 'stdout' ? stdout : stderr).push(chunk);
            // Past both caps the output is only counted: the spawner stops sending it.
            if (stdout.full && stderr.full) spawner.mute(runId);
          },
          onEnd: resolveEnd,
        },
      );
      runId = started.run;
      target ??= { kind: 'group', pgid: started.pid };
      timer = this.options.clock.setTimer(spec.timeoutMs, () => {
        timer = null;
        timedOut = true;
        kill();
      });
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) kill();
      const end = await ended;
      const exit = exitOf(end, shellStays);
      return {
        exitCode: exit.exitCode,
        signal: exit.signal,
        timedOut,
        stdout: stdout.text(),
        stderr: end.failure === null ? stderr.text() : `${stderr.text()}${startFailure(end.failure, null)}`,
        truncated: stdout.truncated || stderr.truncated,
        durationMs: Math.round(this.options.clock.nowMs() - startedMs),
      };
    } catch (error) {
      if (error instanceof RuntimeError) throw error;
      throw new RuntimeError('RuntimeUnavailableError', `could not run the command: ${(error as Error).message}; see the node log`, { cause: error });
    } finally {
      if (timer !== null) this.options.clock.clearTimer(timer);
      signal.removeEventListener('abort', onAbort);
      this.execsInFlight -= 1;
      const left = (this.execsOf.get(key) ?? 1) - 1;
      if (left === 0) this.execsOf.delete(key);
      else this.execsOf.set(key, left);
      await cgroup?.removeSub(sub);
      if (cgroup !== null && workload === undefined) await this.dropCgroup(cgroup);
    }
  }

  // ---- events ----------------------------------------------------------------------------

  private lifecycle(workload: Workload, kind: LifecycleKind, exit: ProcessExit, detail: string): void {
    this.emit({ type: 'lifecycle', project: workload.spec.project, kind, timeMs: this.options.wallNowMs(), exitCode: exit.exitCode, signal: exit.signal, detail });
  }

  private setStatus(workload: Workload, change: Partial<WorkloadStatus>): void {
    const next = { ...workload.status, ...change };
    if (next.usage === undefined) delete (next as { usage?: unknown }).usage;
    workload.status = next;
    this.emit({ type: 'status', status: workload.status });
  }

  private emit(event: RuntimeEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own; the runtime keeps going.
      }
    }
  }
}

/**
 * auto: a user per tenant when the node is root and tenants' users can reach the work root by
 * path (their homes live there); otherwise the node's user, said in the log.
 */
function chooseUserMode(wanted: 'auto' | WorkloadUserMode, workRoot: string, log: RuntimeLog): WorkloadUserMode {
  if (wanted === 'node') return 'node';
  const root = process.getuid?.() === 0;
  const closed = closedAncestor(workRoot);
  if (wanted === 'tenant' && closed !== null) {
    throw new RuntimeError('RuntimeUnavailableError', `workloads cannot run as per-tenant users: other users cannot pass ${closed} on the way to ${workRoot}; allow them through (chmod o+x ${closed}) or put the data dir elsewhere`);
  }
  if (!root) return wanted === 'tenant' ? 'tenant' : 'node';
  if (closed !== null) {
    log('warn', `process runtime: workloads run as root, not as per-tenant users: other users cannot pass ${closed} on the way to ${workRoot}, where tenants' homes live; allow them through (chmod o+x ${closed}) or put the data dir elsewhere`);
    return 'node';
  }
  return 'tenant';
}

function emptyStatus(project: ProjectRef): WorkloadStatus {
  return { project, state: 'starting', pid: null, containerId: null, exitCode: null, signal: null, restarts: 0, startedAtMs: null, exitedAtMs: null, error: null };
}

/** A run's exit: the kernel's wait status, read the shell's way (128+n = signal n) when a shell stayed in front. */
function exitOf(end: RunEnd, shellStays: boolean): ProcessExit {
  if (shellStays && end.exit.exitCode !== null && end.exit.exitCode > 128) return decodeShellStatus(end.exit.exitCode);
  return end.exit;
}

/** Why a process never got to run, with what to do about it. */
function startFailure(failure: string, workload: Workload | null): string {
  const user = workload === null || workload.identity.uid < 0 ? '' : ` (uid ${workload.identity.uid})`;
  if (failure.startsWith('cwd ')) return `could not enter the working directory: ${failure.slice(4)}; check that it exists and that the tenant's user${user} may enter every directory on its path`;
  if (failure.startsWith('join cgroup')) return `could not place the process in its cgroup: ${failure}; see the node log (cgroup setup)`;
  if (failure.startsWith('user ') || failure.startsWith('group ')) return `could not switch to the tenant's user: ${failure}; the node must run as root to run workloads as per-tenant users`;
  return `could not start: ${failure}`;
}

function sleepOn(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolveSleep) => clock.setTimer(ms, resolveSleep));
}
