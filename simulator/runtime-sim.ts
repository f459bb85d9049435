// The simulator's Runtime: workloads that start and stop after seeded virtual
// delays. Like Docker containers, they outlive a crash of their node (the
// restarted node finds and reconciles them) and keep running while the node
// is paused; answers to the node are held while it is paused and dropped once
// it crashed. Like the process runtime's spawner, it has a watchdog outside
// the node's event loop (actors/lease-fence.ts): once fed lease heartbeats,
// it freezes every workload when they stop coming, kills them a little later,
// and thaws them on the next one; a crashed or paused node feeds nothing. It
// also tells the invariant checker what runs where and when a copy launches.
import type { ProjectIo, RuntimeDriver, RuntimeOutcome } from '../actors/components.ts';
import { projectKey, RuntimeError, type ProjectRef, type RuntimeEvent, type WorkloadSpec, type WorkloadStatus } from '../actors/runtime.ts';
import type { NodeId } from '../consensus/types.ts';
import type { Prng } from './prng.ts';
import type { Scheduler } from './scheduler.ts';

interface Workload {
  status: WorkloadStatus;
  spec: WorkloadSpec;
  /** Bumped by every start or stop, so a slower earlier transition does not overwrite a later one. */
  operation: number;
}

export interface SimRuntimeOptions {
  readonly node: NodeId;
  readonly scheduler: Scheduler;
  readonly prng: Prng;
  /** Virtual time to launch or stop a workload, drawn in [1, max]. */
  readonly startMsMax: number;
  readonly stopMsMax: number;
  /** Frozen workloads are killed this long after the freeze (fenceTiming's killAfterMs). */
  readonly fenceKillAfterMs: number;
  /** Told each time a workload begins to launch here (a new copy), before it runs. */
  readonly launching?: (node: NodeId, key: string) => void;
}

/** The watchdog's state, as the spawner's: 'none' (running freely or disarmed), 'frozen', 'killed'. */
export type SimFence = 'none' | 'frozen' | 'killed';

export class SimRuntime implements RuntimeDriver {
  readonly kind = 'sim';
  readonly node: NodeId;
  private readonly workloads = new Map<string, Workload>();
  private listeners = new Set<(event: RuntimeEvent) => void>();
  /** Bumped when the node crashes or stops: answers meant for the old process are dropped. */
  private attachment = 0;
  private nextPid = 1;
  readonly stats = { starts: 0, stops: 0, freezes: 0, fenceKills: 0 };
  private fenceState: SimFence = 'none';
  /** Virtual times the watchdog acts at; null until the first heartbeat arms it. */
  private freezeAtMs: number | null = null;
  private killAtMs = 0;
  private watchdogDueMs: number | null = null;

  constructor(private readonly options: SimRuntimeOptions) {
    this.node = options.node;
  }

  /** The node process went away: forget its listeners and pending answers; workloads stay. */
  detach(): void {
    this.attachment += 1;
    this.listeners = new Set();
  }

  start(spec: WorkloadSpec, callback: (outcome: RuntimeOutcome<WorkloadStatus>) => void): void {
    if (this.fenceState === 'frozen') {
      const error = new RuntimeError('RuntimeUnavailableError', "this node's owner lease ran out and its workloads are frozen; retry once it hears from the cluster again, or on another node");
      return this.answer(() => callback({ ok: false, error }));
    }
    const key = projectKey(spec.project);
    this.options.launching?.(this.node, key);
    const existing = this.workloads.get(key);
    const operation = (existing?.operation ?? 0) + 1;
    const restarts = existing === undefined ? 0 : existing.status.restarts + (existing.status.state === 'running' ? 1 : 0);
    const starting: WorkloadStatus = { ...this.blank(spec.project), state: 'starting', restarts };
    const workload: Workload = { status: starting, spec, operation };
    this.workloads.set(key, workload);
    this.stats.starts += 1;
    const delay = this.options.prng.range(1, this.options.startMsMax);
    this.options.scheduler.schedule(delay, () => {
      if (workload.operation === operation && this.workloads.get(key) === workload) {
        workload.status = { ...workload.status, state: 'running', pid: this.nextPid++, startedAtMs: this.options.scheduler.nowMs() };
        this.emit({ type: 'status', status: workload.status });
        this.emit({ type: 'lifecycle', project: spec.project, kind: 'started', timeMs: this.options.scheduler.nowMs(), exitCode: null, signal: null, detail: `pid ${workload.status.pid ?? 0}` });
      }
      this.answer(() => callback({ ok: true, value: this.workloads.get(key)?.status ?? workload.status }));
    }, 'runtime');
  }

  stop(project: ProjectRef, _graceMs: number, callback: (outcome: RuntimeOutcome<WorkloadStatus | null>) => void): void {
    const key = projectKey(project);
    const workload = this.workloads.get(key);
    if (workload === undefined) return this.answer(() => callback({ ok: true, value: null }));
    workload.operation += 1;
    const operation = workload.operation;
    this.stats.stops += 1;
    const delay = this.options.prng.range(1, this.options.stopMsMax);
    this.options.scheduler.schedule(delay, () => {
      if (workload.operation === operation && this.workloads.get(key) === workload) {
        workload.status = { ...workload.status, state: 'stopped', pid: null, exitedAtMs: this.options.scheduler.nowMs(), signal: 'SIGTERM' };
        this.emit({ type: 'status', status: workload.status });
        this.emit({ type: 'lifecycle', project, kind: 'stopped', timeMs: this.options.scheduler.nowMs(), exitCode: null, signal: 'SIGTERM', detail: 'stopped' });
      }
      this.answer(() => callback({ ok: true, value: this.workloads.get(key)?.status ?? null }));
    }, 'runtime');
  }

  remove(project: ProjectRef, callback: (outcome: RuntimeOutcome<null>) => void): void {
    this.stop(project, 0, () => {
      this.workloads.delete(projectKey(project));
      callback({ ok: true, value: null });
    });
  }

  status(project: ProjectRef): WorkloadStatus | null {
    return this.workloads.get(projectKey(project))?.status ?? null;
  }

  list(): WorkloadStatus[] {
    return [...this.workloads.values()].map((workload) => workload.status);
  }

  subscribe(listener: (event: RuntimeEvent) => void): () => void {
    const listeners = this.listeners;
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  /**
   * The node holds its owner lease for at least `validForMs` more (Runtime.leaseHeartbeat): arm
   * or push back the watchdog, and thaw what it froze. It runs on virtual time, outside the node.
   */
  leaseHeartbeat(validForMs: number): void {
    const now = this.options.scheduler.nowMs();
    this.freezeAtMs = now + validForMs;
    this.killAtMs = this.freezeAtMs + this.options.fenceKillAfterMs;
    this.fenceState = 'none';
    this.armWatchdog(this.freezeAtMs);
  }

  /** What the watchdog did last: 'frozen' workloads count as copies still (a frozen process is not gone). */
  fence(): SimFence {
    return this.fenceState;
  }

  /** One pending watchdog event at a time, moved later as heartbeats come. */
  private armWatchdog(atMs: number): void {
    if (this.watchdogDueMs !== null && this.watchdogDueMs <= atMs) return;
    this.watchdogDueMs = atMs;
    this.options.scheduler.scheduleAt(atMs, () => this.watchdog(atMs), 'watchdog');
  }

  private watchdog(dueMs: number): void {
    if (this.watchdogDueMs !== dueMs || this.freezeAtMs === null) return;
    this.watchdogDueMs = null;
    const now = this.options.scheduler.nowMs();
    if (this.fenceState === 'none' && now >= this.freezeAtMs) {
      this.fenceState = 'frozen';
      this.stats.freezes += 1;
    }
    if (this.fenceState === 'frozen' && now >= this.killAtMs) {
      this.fenceState = 'killed';
      this.killAll();
    }
    const next = this.fenceState === 'none' ? this.freezeAtMs : this.fenceState === 'frozen' ? this.killAtMs : null;
    if (next !== null) this.armWatchdog(next);
  }

  /** The watchdog's kill: every active workload ends as 'stopped' with the fence's reason (as runtime-process.ts reports it). */
  private killAll(): void {
    const now = this.options.scheduler.nowMs();
    for (const workload of this.workloads.values()) {
      if (workload.status.state !== 'starting' && workload.status.state !== 'running') continue;
      workload.operation += 1;
      this.stats.fenceKills += 1;
      const error = "fenced: this node's owner lease ran out (no heartbeat), so the workload was frozen, then killed before another owner could start it";
      workload.status = { ...workload.status, state: 'stopped', pid: null, exitedAtMs: now, signal: 'SIGKILL', error };
      this.emit({ type: 'status', status: workload.status });
      this.emit({ type: 'lifecycle', project: workload.spec.project, kind: 'stopped', timeMs: now, exitCode: null, signal: 'SIGKILL', detail: error });
    }
  }

  /** Whether a copy of `key` is starting or running here (frozen ones too). */
  isActive(key: string): boolean {
    const state = this.workloads.get(key)?.status.state;
    return state === 'starting' || state === 'running';
  }

  /** Keys of workloads that count as running (starting, running), for the exactly-once check. */
  activeKeys(): string[] {
    const out: string[] = [];
    for (const [key, workload] of this.workloads) if (workload.status.state === 'starting' || workload.status.state === 'running') out.push(key);
    return out;
  }

  /** Deliver an answer to the node: held while it is paused, dropped if it crashed since. */
  private answer(deliver: () => void): void {
    const attachment = this.attachment;
    this.options.scheduler.scheduleCall(this.options.scheduler.nowMs(), this.node, () => {
      if (this.attachment === attachment) deliver();
    }, undefined, 'runtime-answer');
  }

  private emit(event: RuntimeEvent): void {
    const attachment = this.attachment;
    const listeners = [...this.listeners];
    this.options.scheduler.scheduleCall(this.options.scheduler.nowMs(), this.node, () => {
      if (this.attachment !== attachment) return;
      for (const listener of listeners) listener(event);
    }, undefined, 'runtime-event');
  }

  private blank(project: ProjectRef): WorkloadStatus {
    return { project, state: 'stopped', pid: null, containerId: null, exitCode: null, signal: null, restarts: 0, startedAtMs: null, exitedAtMs: null, error: null };
  }
}

/**
 * The owner's I/O next to simulated workloads: a port answers while the
 * workload runs on this node; no log lines are captured.
 */
export function simProjectIo(runtime: SimRuntime): ProjectIo {
  const running = (port: number): boolean => runtime.list().some((status) => status.state === 'running' && status.pid !== null && port > 0);
  return {
    probe: (probe, _attemptMsMax, callback) => callback(running(probe.port) ? { ok: true, detail: `port ${probe.port} answers` } : { ok: false, detail: `port ${probe.port}: connection refused` }),
    http: (port, call, callback) =>
      callback(running(port) ? { ok: true, answer: { status: 200, headers: {}, body: `${call.method} ${call.path}`, truncated: false, durationMs: 1 } } : { ok: false, error: `nothing listens on port ${port}` }),
    logs: {
      query: () => ({ lines: [], nextCursor: 0, hasMore: false }),
      cursor: () => 0,
      lastLines: () => [],
      has: () => false,
      drop: (_project, callback) => callback(),
    },
  };
}
