// The process runtime (the default): runs `spec.command` through /bin/sh in its own
// process group under a supervisor (actors/supervisor.ts) so that the workload dies
// with the node, records each run's group in a state dir so a restarted node cleans
// up what is left of its predecessor, restarts by policy with back-off, detects crash
// loops, and sends every output line to the log store and to subscribers.
import { accessSync, constants as fsConstants, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import type { Clock, TimerHandle } from '../consensus/types.ts';
import { LineSplitter, type LogStore, type LogStream } from './logs.ts';
import { decideRestart, describeExit, RESTART_DEFAULTS, type RestartLimits } from './restart-policy.ts';
import { projectKey, PerProjectQueue, RuntimeError, type ProjectRef, type Runtime, type RuntimeEvent, type WorkloadSpec, type WorkloadState, type WorkloadStatus } from './runtime.ts';
import { groupAlive, signalGroup, Supervised, type SupervisedExit } from './supervisor.ts';

export interface ProcessRuntimeOptions {
  readonly node: string;
  /** Where run records live, e.g. `<dataDir>/runtime/process`. */
  readonly stateDir: string;
  readonly logs: LogStore;
  /** Drives back-off timers and waits. */
  readonly clock: Clock;
  /** Wall time (ms since the epoch) for status timestamps. */
  readonly wallNowMs: () => number;
  /** The environment a workload starts from, before spec.env and ports (default: BASE_ENV_NAMES of the node's). */
  readonly baseEnv?: Readonly<Record<string, string | undefined>>;
  /** cwd when the spec gives none. */
  readonly defaultCwd?: string;
  readonly restart?: Partial<RestartLimits>;
  /** SIGTERM-to-SIGKILL grace the supervisor gives a workload when the node is gone. */
  readonly orphanGraceSeconds?: number;
  /** Grace for stops the runtime decides itself (restart with a new spec, remove, close). */
  readonly stopGraceMs?: number;
  /** How many last log lines a crash-loop or start error quotes. */
  readonly errorLinesMax?: number;
}

interface RunRecord {
  readonly node: string;
  readonly project: ProjectRef;
  readonly pgid: number;
  /** Start time of the group leader in clock ticks since boot (/proc/<pid>/stat field 22): guards against pid reuse. */
  readonly startTicks: string;
}

interface Workload {
  spec: WorkloadSpec;
  status: WorkloadStatus;
  run: Supervised | null;
  runStartedMs: number;
  restartTimer: TimerHandle | null;
  recentExitsMs: number[];
  stopRequested: boolean;
}

/**
 * What a workload inherits from the node by default: enough to find programs and behave
 * (locale, home, temp dir), and nothing else — the node's own settings and secrets (tokens,
 * TLS paths) must not reach tenants' code.
 */
export const BASE_ENV_NAMES: readonly string[] = ['PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'TERM'];

/** Shell words that are not programs on PATH, so the command-not-found check leaves them alone. */
const SHELL_WORDS = new Set(
  '. : [ alias bg break cd command continue echo eval exec exit export false fg getopts hash jobs kill local printf pwd read readonly return set shift test times trap true type ulimit umask unalias unset wait if then else elif fi for while until do done case esac { } ! time'.split(' '),
);

export class ProcessRuntime implements Runtime {
  readonly kind = 'process';
  private readonly workloads = new Map<string, Workload>();
  private readonly listeners = new Set<(event: RuntimeEvent) => void>();
  /** start/stop/remove of one project run one at a time, in call order. */
  private readonly queue = new PerProjectQueue();
  private readonly restartLimits: RestartLimits;
  private closed = false;

  private constructor(
    private readonly options: ProcessRuntimeOptions,
    /** Projects whose leftover processes from a previous node run were killed at open. */
    readonly cleanedUp: readonly ProjectRef[],
  ) {
    this.restartLimits = { ...RESTART_DEFAULTS, ...options.restart };
  }

  /** Creates the runtime after killing whatever a previous run of this node left behind. */
  static async open(options: ProcessRuntimeOptions): Promise<ProcessRuntime> {
    mkdirSync(options.stateDir, { recursive: true });
    const cleanedUp = await cleanUpLeftovers(options.stateDir, options.node, (ms) => sleepOn(options.clock, ms));
    return new ProcessRuntime(options, cleanedUp);
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
    if (this.closed) throw new RuntimeError('RuntimeUnavailableError', 'the process runtime is closed (node shutting down); retry on the new owner');
    const env = this.workloadEnv(spec);
    const cwd = this.checkSpec(spec, env);
    const key = projectKey(spec.project);
    const existing = this.workloads.get(key);
    if (existing !== undefined) await this.stopWorkload(existing, this.options.stopGraceMs ?? 5000);
    const workload: Workload = {
      spec,
      status: emptyStatus(spec.project),
      run: null,
      runStartedMs: 0,
      restartTimer: null,
      recentExitsMs: [],
      stopRequested: false,
    };
    this.workloads.set(key, workload);
    await this.launch(workload, cwd, env);
    return workload.status;
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
    await this.stopWorkload(workload, this.options.stopGraceMs ?? 5000);
    this.workloads.delete(key);
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
    const graceMs = this.options.stopGraceMs ?? 5000;
    await Promise.all([...this.workloads.values()].map((workload) => this.stopWorkload(workload, graceMs)));
  }

  /** Refuses a spec that cannot run, with what to do; returns the absolute cwd. */
  private checkSpec(spec: WorkloadSpec, env: Record<string, string>): string {
    if (spec.image !== undefined) throw new RuntimeError('InvalidSpecError', `project ${projectKey(spec.project)} names an image (${spec.image}); images run on the docker runtime, give a command for the process runtime`);
    if (spec.command === undefined || spec.command.trim() === '') throw new RuntimeError('InvalidSpecError', `project ${projectKey(spec.project)} has no command; give the shell command to run`);
    for (const [name, port] of Object.entries(spec.ports)) {
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RuntimeError('InvalidSpecError', `port ${name} is ${String(port)}; ports are whole numbers 1-65535 allocated by the port registry`);
    }
    const cwd = resolve(this.options.defaultCwd ?? process.cwd(), spec.cwd ?? '.');
    let isDirectory = false;
    try {
      isDirectory = statSync(cwd).isDirectory();
    } catch {
      isDirectory = false;
    }
    if (!isDirectory) throw new RuntimeError('CwdMissingError', `working directory ${cwd} does not exist or is not a directory; create it or give an existing cwd`);
    const program = leadingProgram(spec.command);
    if (program !== null && !findProgram(program, env.PATH ?? '', cwd)) {
      throw new RuntimeError('CommandNotFoundError', `command not found: ${program} (searched PATH=${env.PATH ?? ''}); install it, fix the spelling, or give its full path`);
    }
    return cwd;
  }

  private workloadEnv(spec: WorkloadSpec): Record<string, string> {
    const env: Record<string, string> = {};
    const base = this.options.baseEnv ?? Object.fromEntries(BASE_ENV_NAMES.map((name) => [name, process.env[name]]));
    for (const [name, value] of Object.entries(base)) if (value !== undefined) env[name] = value;
    Object.assign(env, spec.env, portEnv(spec.ports));
    return env;
  }

  private async launch(workload: Workload, cwd: string, env: Record<string, string>, restarts = 0): Promise<void> {
    const { spec } = workload;
    workload.stopRequested = false;
    this.setStatus(workload, { state: 'starting', error: null, restarts });
    let run: Supervised;
    try {
      run = await Supervised.launch({ command: spec.command ?? '', cwd, env, orphanGraceSeconds: this.options.orphanGraceSeconds ?? 5 });
    } catch (error) {
      this.setStatus(workload, { state: 'failed', pid: null, error: `could not start /bin/sh for ${projectKey(spec.project)}: ${(error as Error).message}; check that /bin/sh exists and the node may run processes` });
      return;
    }
    workload.run = run;
    workload.runStartedMs = this.options.clock.nowMs();
    this.writeRecord(spec.project, run.pgid);
    this.pipeLogs(workload, run.stdout, 'stdout');
    this.pipeLogs(workload, run.stderr, 'stderr');
    this.setStatus(workload, { state: 'running', pid: run.pgid, exitCode: null, signal: null, startedAtMs: this.options.wallNowMs(), exitedAtMs: null });
    if (spec.limits !== undefined && Object.keys(spec.limits).length > 0) {
      // Per-group memory/CPU/pids limits need cgroups; say so where the user looks, rather than pretend.
      this.recordLine(workload, 'stderr', 'debughost: resource limits are enforced by the docker runtime only; this process runs without them');
    }
    void run.exited.then((exit) => this.onExit(workload, run, exit, cwd, env));
  }

  private pipeLogs(workload: Workload, stream: NodeJS.ReadableStream, name: LogStream): void {
    const splitter = new LineSplitter(this.options.logs.lineCharsMax, (text) => this.recordLine(workload, name, text));
    stream.on('data', (chunk: Buffer) => splitter.push(chunk));
    stream.on('end', () => splitter.end());
    stream.on('error', () => splitter.end());
  }

  private recordLine(workload: Workload, name: LogStream, text: string): void {
    const line = this.options.logs.append(workload.spec.project, name, text);
    this.emit({ type: 'log', project: workload.spec.project, stream: name, line: line.line, timeMs: line.timeMs });
  }

  private onExit(workload: Workload, run: Supervised, exit: SupervisedExit, cwd: string, env: Record<string, string>): void {
    if (workload.run !== run) return;
    workload.run = null;
    this.removeRecord(workload.spec.project);
    const nowMs = this.options.clock.nowMs();
    const { decision, recentExitsMs } = decideRestart(
      workload.spec.restart,
      { exitCode: exit.exitCode, signal: exit.signal, requested: workload.stopRequested, startedAtMs: workload.runStartedMs, exitedAtMs: nowMs },
      workload.recentExitsMs,
      this.restartLimits,
    );
    workload.recentExitsMs = recentExitsMs;
    const ended = { pid: null, exitCode: exit.exitCode, signal: exit.signal, exitedAtMs: this.options.wallNowMs() };
    switch (decision.kind) {
      case 'stay': {
        const state: WorkloadState = decision.reason === 'requested' ? 'stopped' : decision.reason === 'unrecoverable' ? 'failed' : 'exited';
        this.setStatus(workload, { ...ended, state, error: state === 'stopped' ? null : this.exitError(workload, exit) });
        return;
      }
      case 'restart':
        this.setStatus(workload, { ...ended, state: 'exited', error: `${describeExit(exit.exitCode, exit.signal)}; restarting in ${decision.delayMs} ms (restart policy ${workload.spec.restart})` });
        workload.restartTimer = this.options.clock.setTimer(decision.delayMs, () => {
          workload.restartTimer = null;
          if (workload.stopRequested || this.closed || this.workloads.get(projectKey(workload.spec.project)) !== workload) return;
          void this.launch(workload, cwd, env, workload.status.restarts + 1);
        });
        return;
      case 'crashLoop': {
        const windowSeconds = Math.round(this.restartLimits.crashLoopWindowMs / 1000);
        const lines = this.lastLines(workload);
        this.setStatus(workload, {
          ...ended,
          state: 'crashLoop',
          error: `crash loop: ended ${decision.exitsInWindow} times within ${windowSeconds} s (last: ${describeExit(exit.exitCode, exit.signal)}); not restarting, fix the command and start it again${lines}`,
        });
        return;
      }
      default: {
        const unreachable: never = decision;
        throw new Error(`unknown restart decision ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private exitError(workload: Workload, exit: SupervisedExit): string | null {
    if (exit.exitCode === 0) return null;
    const lastLines = this.options.logs.lastLines(workload.spec.project, this.options.errorLinesMax ?? 5);
    if (exit.exitCode === 127) {
      const notFound = lastLines.map((line) => /(?:^|: )([^:]+): (?:not found|command not found)$/.exec(line)?.[1]).find((name) => name !== undefined);
      return `command not found: ${notFound ?? leadingProgram(workload.spec.command ?? '') ?? workload.spec.command ?? ''}; install it, fix the spelling, or give its full path`;
    }
    if (exit.exitCode === 126) return `command not executable (exit 126); check its permissions (chmod +x) or run it through its interpreter${this.lastLines(workload)}`;
    return `${describeExit(exit.exitCode, exit.signal)}${this.lastLines(workload)}`;
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
    if (run !== null) {
      await run.stop(graceMs, this.options.clock);
      // onExit runs from the same promise; wait for it to have recorded the end.
      await run.exited;
      await Promise.resolve();
    }
    if (workload.status.state === 'exited' || workload.status.state === 'starting') this.setStatus(workload, { state: 'stopped' });
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
        // A listener's failure is its own; the runtime keeps going.
      }
    }
  }

  private recordPath(project: ProjectRef): string {
    return join(this.options.stateDir, `${encodeURIComponent(projectKey(project))}.json`);
  }

  private writeRecord(project: ProjectRef, pgid: number): void {
    const record: RunRecord = { node: this.options.node, project, pgid, startTicks: processStartTicks(pgid) ?? '' };
    writeFileSync(this.recordPath(project), JSON.stringify(record));
  }

  private removeRecord(project: ProjectRef): void {
    rmSync(this.recordPath(project), { force: true });
  }
}

function emptyStatus(project: ProjectRef): WorkloadStatus {
  return { project, state: 'starting', pid: null, containerId: null, exitCode: null, signal: null, restarts: 0, startedAtMs: null, exitedAtMs: null, error: null };
}

/** PORT for 'default', PORT_<NAME> for the others (upper case, other characters as _). */
export function portEnv(ports: Readonly<Record<string, number>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, port] of Object.entries(ports)) {
    env[name === 'default' ? 'PORT' : `PORT_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`] = String(port);
  }
  return env;
}

/** The program a command starts with, when it is a plain word we can look up; null otherwise. */
export function leadingProgram(command: string): string | null {
  const match = /^\s*([^\s;&|<>()]+)(?:\s|$)/.exec(command);
  const word = match?.[1];
  if (word === undefined || SHELL_WORDS.has(word) || /[$`"'\\=*?~{}[\]]/.test(word)) return null;
  return word;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function findProgram(program: string, path: string, cwd: string): boolean {
  if (program.includes('/')) return isExecutable(isAbsolute(program) ? program : join(cwd, program));
  return path.split(delimiter).some((dir) => dir !== '' && isExecutable(join(dir, program)));
}

function sleepOn(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(ms, resolve));
}

/** Field 22 of /proc/<pid>/stat (start time), and whether the process is a zombie. */
function readStat(pid: number): { startTicks: string; zombie: boolean } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; fields after it start past the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { startTicks: fields[19] ?? '', zombie: fields[0] === 'Z' };
  } catch {
    return null;
  }
}

function processStartTicks(pid: number): string | null {
  return readStat(pid)?.startTicks ?? null;
}

/** Kills the groups recorded by a previous run of this node that still run; removes every record. */
async function cleanUpLeftovers(stateDir: string, node: string, sleep: (ms: number) => Promise<void>): Promise<ProjectRef[]> {
  const cleaned: ProjectRef[] = [];
  for (const name of readdirSync(stateDir).filter((entry) => entry.endsWith('.json'))) {
    const path = join(stateDir, name);
    let record: RunRecord | null = null;
    try {
      record = JSON.parse(readFileSync(path, 'utf8')) as RunRecord;
    } catch {
      record = null;
    }
    if (record !== null && record.node === node && Number.isInteger(record.pgid) && record.pgid > 1) {
      const stat = readStat(record.pgid);
      // Only the same process (same start time) is ours: a reused pid belongs to someone else.
      if (stat !== null && !stat.zombie && stat.startTicks === record.startTicks && groupAlive(record.pgid)) {
        signalGroup(record.pgid, 'SIGTERM');
        for (let waitedMs = 0; waitedMs < 2000 && readStat(record.pgid)?.zombie === false; waitedMs += 50) await sleep(50);
        signalGroup(record.pgid, 'SIGKILL');
        cleaned.push(record.project);
      }
    }
    rmSync(path, { force: true });
  }
  return cleaned;
}
