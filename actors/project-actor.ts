// ProjectActor: the owner of one project. It keeps the desired spec
// (`projects/<tenant>/<name>`) in the replicated store and drives the node's
// Runtime to match; it also owns everything done next to the workload —
// settling a start until it is healthy, waits, exec, HTTP calls, logs and the
// project's events. A change is one fenced txn (spec, quota, ports and the
// 'starting' status together); the observed status is written after the
// reply (project-observed.ts). Long work (settle, wait, exec, http, event long
// polls) runs after the turn, so a slow health check never holds the mailbox.
import type { Compare, KeyValue, KvOp } from '../consensus/kv-state-machine.ts';
import { prefixEnd } from '../consensus/kv-state-machine.ts';
import type { Clock, Random } from '../consensus/types.ts';
import type { Actor, ActorContext, Reply } from './actor-system.ts';
import { isActiveState, isSettledState, PortsExhaustedError, type ActorStore, type PortAllocator, type ProjectIo, type RuntimeDriver } from './components.ts';
import { fencedWrite, type FencedOutcome, type FencedWrite } from './fenced-write.ts';
import type { Handoff } from './handoff.ts';
import {
  QUOTA_DEFAULT,
  USAGE_ZERO,
  errorResponse,
  eventsKey,
  portKey,
  projectActorKey,
  quotaKey,
  statusKey,
  usageKey,
  type ActorRequest,
  type ActorResponse,
  type HealthCheckSpec,
  type HttpCall,
  type Identity,
  type LiveWorkload,
  type LogsQuery,
  type ProgressFn,
  type ProjectEventKind,
  type ProjectRecord,
  type ProjectRequest,
  type ProjectSpec,
  type ProjectStatusRecord,
  type ProjectView,
  type TenantQuota,
  type TenantUsage,
} from './messages.ts';
import { ObservedWriter } from './project-observed.ts';
import { attemptFor, describeCheck, pollUntil, type Attempt, type PollOutcome } from './project-probe.ts';
import type { RecordReader } from './records.ts';
import { CALL_LIMITS } from './schemas.ts';
import type { LifecycleEvent, ProjectRef, WorkloadSpec, WorkloadStatus } from './runtime.ts';
import { portEnv } from './runtime-process.ts';

/** What an actor's turn is about: a caller's request, the host's reconcile or release, or what its runtime saw. */
export type ActorMessage =
  | {
      readonly kind: 'call';
      readonly request: ActorRequest;
      readonly requestId: string;
      readonly identity: Identity;
      /** Progress for the caller (null: it did not ask). */
      readonly progress: ProgressFn | null;
      /** Clock time after which no one waits for the answer. */
      readonly deadlineAtMs: number;
    }
  /** Make the runtime match the desired state (activation, ring change, lease regained, periodic). */
  | { readonly kind: 'reconcile' }
  /** Ownership moved away or the node drains: stop the workload here; the host deactivates after. */
  | { readonly kind: 'release'; readonly reason: string }
  /** The runtime reported a lifecycle change of this project's workload. */
  | { readonly kind: 'lifecycle'; readonly event: LifecycleEvent };

/** Limits and timing of the owner's work, validated with the host's options. */
export interface OwnerLimits {
  readonly stopGraceMs: number;
  /** Most attempts of one request when its compare-and-set loses a race. */
  readonly casAttemptsMax: number;
  /** A lost race waits a random time below casBackoffMs × attempt, at most casBackoffMsMax. */
  readonly casBackoffMs: number;
  readonly casBackoffMsMax: number;
  /** Pause between two checks while a start settles or a wait waits. */
  readonly settleIntervalMs: number;
  /** Events kept per project in the replicated state. */
  readonly eventsKept: number;
  /** Log lines' characters in one logs answer: keeps a result far below an MCP client's limit. */
  readonly logPageCharsMax: number;
  /** stdout and stderr bytes each of one exec. */
  readonly execOutputBytesMax: number;
  /** Concurrent execs of one tenant on this node. */
  readonly execsPerTenantMax: number;
}

/** What the host gives each actor. */
export interface OwnerServices {
  readonly node: string;
  readonly clock: Clock;
  readonly store: ActorStore;
  readonly runtime: RuntimeDriver;
  readonly ports: PortAllocator;
  readonly random: Random;
  readonly records: RecordReader;
  readonly io: ProjectIo;
  readonly limits: OwnerLimits;
  /** The epoch this node owns `key` at with a valid lease; null when it does not own it. */
  ownedEpoch(key: string): number | null;
  /** Call back once this node applied `revision` (true) or gave up waiting (false). */
  whenApplied(revision: number, callback: (reached: boolean) => void): void;
  /** May this node launch (or write its own status over) a project whose status record is `status` (actors/handoff.ts)? */
  handoff(status: ProjectStatusRecord | null): Handoff;
  /** This owner waits for another node's release of `key`: reconcile it as soon as the rule clears. */
  awaitHandoff(key: string): void;
  /** Remembers which generation a workload here was started at, across actor deactivations. */
  readonly started: Map<string, number>;
  /** Where the current run's log lines begin, across actor deactivations. */
  readonly runCursors: Map<string, number>;
  /** Execs running per tenant on this node. */
  readonly execsRunning: Map<string, number>;
  /** A project event, for live subscribers (the node pushes it to MCP clients). */
  emit(ref: ProjectRef, event: import('./messages.ts').ProjectEvent): void;
}

type Respond = (response: ActorResponse) => void;

interface Snapshot {
  readonly record: KeyValue | null;
  readonly project: ProjectRecord | null;
  readonly status: KeyValue | null;
  readonly statusRecord: ProjectStatusRecord | null;
  readonly usage: KeyValue | null;
  readonly usageRecord: TenantUsage;
  readonly quota: TenantQuota;
}

type After = (epoch: number, reply: Reply<ActorResponse>) => void;

type Plan =
  | { readonly type: 'reply'; readonly response: ActorResponse }
  /** Nothing to write (a retry of a change already recorded, or nothing changes): go on as if written. */
  | { readonly type: 'skip'; readonly after: After }
  | { readonly type: 'write'; readonly write: FencedWrite; readonly after: After };

/** What a project holds of its tenant's quota. */
export function holdOf(project: ProjectRecord | null): TenantUsage {
  if (project === null) return USAGE_ZERO;
  const storedBytes = JSON.stringify(project.spec).length;
  if (project.desired !== 'running') return { projects: 0, ports: 0, memoryBytes: 0, storedBytes };
  return { projects: 1, ports: project.spec.ports.length, memoryBytes: project.spec.memoryBytes, storedBytes };
}

const DIMENSIONS = ['projects', 'ports', 'memoryBytes', 'storedBytes'] as const;

const addUsage = (a: TenantUsage, b: TenantUsage, sign: 1 | -1): TenantUsage => ({
  projects: a.projects + sign * b.projects,
  ports: a.ports + sign * b.ports,
  memoryBytes: a.memoryBytes + sign * b.memoryBytes,
  storedBytes: a.storedBytes + sign * b.storedBytes,
});

const sameUsage = (a: TenantUsage, b: TenantUsage): boolean => DIMENSIONS.every((dimension) => a[dimension] === b[dimension]);

/** Which quota dimension `next` exceeds where it grew from `before`; null when within quota. */
export function quotaExcess(before: TenantUsage, next: TenantUsage, quota: TenantQuota): string | null {
  for (const dimension of DIMENSIONS) {
    if (next[dimension] > before[dimension] && next[dimension] > quota[dimension]) {
      return `${dimension}: ${next[dimension]} would exceed the quota of ${quota[dimension]}`;
    }
  }
  return null;
}

const sameSpec = (a: ProjectSpec, b: ProjectSpec): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Lifecycle kinds a runtime reports, as project event kinds. */
const LIFECYCLE_EVENT: Record<LifecycleEvent['kind'], ProjectEventKind> = {
  started: 'started',
  exited: 'exited',
  oomKilled: 'oomKilled',
  restarted: 'restarted',
  crashLoop: 'crashLoop',
  stopped: 'stopped',
};

export class ProjectActor implements Actor<ActorMessage, ActorResponse> {
  readonly ref: ProjectRef;
  private readonly key: string;
  private readonly observed: ObservedWriter;
  /** The last health check of the current run: null when none ran. */
  private health: { readonly ok: boolean; readonly detail: string; readonly generation: number } | null = null;
  /** Cancel functions of work running after its turn (settles, waits, long polls). */
  private readonly jobs = new Set<() => void>();
  /**
   * The newest revision a write of this actor was recorded at. Until this node has applied it, its state lacks the
   * write, and a plan or status from that state is wrong (a remove answered 'removed' with nothing written while the
   * start it follows was still to be applied here): calls wait for it first.
   */
  private ownWritesRevision = 0;

  constructor(
    ref: ProjectRef,
    private readonly services: OwnerServices,
    private readonly context: ActorContext,
  ) {
    this.ref = ref;
    this.key = projectActorKey(ref.tenant, ref.name);
    this.observed = new ObservedWriter({
      key: this.key,
      ref,
      node: services.node,
      store: services.store,
      records: services.records,
      context,
      eventsKept: services.limits.eventsKept,
      attemptsMax: services.limits.casAttemptsMax,
      retryMs: services.limits.settleIntervalMs,
      ownedEpoch: () => services.ownedEpoch(this.key),
      whenApplied: (revision, callback) => services.whenApplied(revision, callback),
      compute: (record) => this.observedStatus(record),
      emit: (event) => services.emit(ref, event),
    });
  }

  receive(message: ActorMessage, reply: Reply<ActorResponse>): void {
    switch (message.kind) {
      case 'call':
        return this.call(message, reply);
      case 'reconcile':
        return this.reconcile(reply);
      case 'release':
        return this.stopHere(() => this.recordRelease(() => reply(this.notOwner())));
      case 'lifecycle':
        return this.lifecycle(message.event, reply);
      default: {
        const never: never = message;
        return never;
      }
    }
  }

  deactivated(): void {
    for (const cancel of [...this.jobs]) cancel();
    this.jobs.clear();
    this.observed.close();
  }

  private call(message: Extract<ActorMessage, { kind: 'call' }>, reply: Reply<ActorResponse>): void {
    const request = message.request;
    if (!isProjectRequest(request)) return reply(errorResponse('InvalidRequestError', `request '${request.type}' goes to a tenant key, not ${this.key}`));
    const progress = message.progress ?? (() => undefined);
    switch (request.type) {
      case 'status':
        return this.afterOwnWrites(reply, () => this.status(reply));
      case 'start':
        return this.mutate(reply, (snap, epoch) => this.planStart(snap, epoch, request.spec, request.ifVersion, false, message.requestId, request.waitMs, progress));
      case 'restart':
        return this.mutate(reply, (snap, epoch) =>
          snap.project === null ? this.notFound() : this.planStart(snap, epoch, snap.project.spec, undefined, true, message.requestId, request.waitMs, progress),
        );
      case 'stop':
        return this.mutate(reply, (snap, epoch) => this.planStop(snap, epoch, request.ifVersion, message.requestId));
      case 'remove':
        return this.mutate(reply, (snap, epoch) => this.planRemove(snap, epoch, request.ifVersion));
      case 'logs':
        return reply(this.logs(request.query));
      case 'wait':
        return this.wait(request.condition, request.timeoutMs, progress, reply.detach());
      case 'exec':
        return this.exec(request.command, request.timeoutMs, reply);
      case 'http':
        return this.http(request.call, reply);
      case 'events':
        return this.events(request, reply);
      default: {
        const never: never = request;
        return never;
      }
    }
  }

  // ---- reading ---------------------------------------------------------------

  private read(): Snapshot {
    const view = this.services.store.view();
    const records = this.services.records;
    const record = view.get(this.key);
    const status = view.get(statusKey(this.ref.tenant, this.ref.name));
    const usage = view.get(usageKey(this.ref.tenant));
    return {
      record,
      project: records.project(record),
      status,
      statusRecord: records.status(status),
      usage,
      usageRecord: records.usage(usage) ?? USAGE_ZERO,
      quota: records.quota(view.get(quotaKey(this.ref.tenant))) ?? QUOTA_DEFAULT,
    };
  }

  private live(): LiveWorkload | null {
    const workload = this.services.runtime.status(this.ref);
    if (workload === null) return null;
    return {
      state: workload.state,
      pid: workload.pid,
      containerId: workload.containerId,
      exitCode: workload.exitCode,
      signal: workload.signal,
      restarts: workload.restarts,
      startedAtMs: workload.startedAtMs,
      error: workload.error,
      usage: workload.usage ?? null,
    };
  }

  private viewOf(snap: Snapshot): ProjectView | null {
    if (snap.project === null || snap.record === null) return null;
    const health = this.health !== null && this.health.generation === snap.project.generation ? this.health : null;
    return {
      tenant: this.ref.tenant,
      name: this.ref.name,
      version: snap.record.version,
      desired: snap.project.desired,
      spec: snap.project.spec,
      status: snap.statusRecord,
      live: this.live(),
      healthy: health?.ok ?? null,
      healthDetail: health?.detail ?? null,
    };
  }

  private status(reply: Respond): void {
    reply(this.viewResponse(this.read(), null));
  }

  private viewResponse(snap: Snapshot, settleDetail: string | null): ActorResponse {
    const view = this.viewOf(snap);
    return view === null ? this.notFoundResponse() : { type: 'project', project: view, settleDetail };
  }

  // ---- writing desired state -----------------------------------------------------

  /** Plan against the applied state, write fenced, and re-plan (bounded) when a compare-and-set loses a race. */
  private mutate(reply: Reply<ActorResponse>, plan: (snap: Snapshot, epoch: number) => Plan, attempt = 1): void {
    if (this.services.store.view().revision < this.ownWritesRevision) return this.afterOwnWrites(reply, () => this.mutate(reply, plan, attempt));
    const epoch = this.services.ownedEpoch(this.key);
    if (epoch === null) return reply(this.notOwner());
    const planned = plan(this.read(), epoch);
    if (planned.type === 'reply') return reply(planned.response);
    if (planned.type === 'skip') return planned.after(epoch, reply);
    fencedWrite(
      this.services.store,
      planned.write,
      this.context.guard((outcome: FencedOutcome) => {
        switch (outcome.type) {
          case 'applied':
            this.ownWritesRevision = Math.max(this.ownWritesRevision, outcome.revision);
            return this.services.whenApplied(
              outcome.revision,
              this.context.guard((reached: boolean) => {
                // Recorded, but this node has not applied it yet: what it would report now (its settle, its
                // status) comes from a state without the change, and could say 'not found' of a project it
                // just started (simulator seed 229, 5 nodes, 20 actors). Say that the outcome is not known
                // here; a retry with the same request id finds the change recorded and does not do it twice.
                if (!reached) {
                  return reply(errorResponse('OutcomeUnknownError', `the change was recorded (revision ${outcome.revision}) but node ${this.services.node} has not caught up to it to report on it; check project_status, then retry with the same requestId (it is not done twice)`));
                }
                planned.after(epoch, reply);
              }),
            );
          case 'fenced':
            return reply(this.notOwner(outcome.epoch));
          case 'conflict':
            if (attempt >= this.services.limits.casAttemptsMax) {
              return reply(errorResponse('VersionConflictError', `${this.key} changed under ${attempt} attempts in a row; retry`));
            }
            // Our applied state was behind: catch up to what the txn saw, then plan again after a random pause.
            return this.services.whenApplied(
              outcome.revision,
              this.context.guard(() => {
                const limits = this.services.limits;
                const pauseMs = Math.floor(this.services.random.float() * Math.min(limits.casBackoffMsMax, limits.casBackoffMs * attempt));
                this.context.setTimer(pauseMs, () => this.mutate(reply, plan, attempt + 1));
              }),
            );
          case 'unavailable':
            // The state machine refused the record itself (it does not fit its schema): the same write would be refused again.
            if (outcome.detail.startsWith('InvalidCommandError: ')) {
              return reply(errorResponse('InvalidRequestError', `the cluster refused the record: ${outcome.detail.slice('InvalidCommandError: '.length)}; change the request`));
            }
            return reply(errorResponse('UnavailableError', `the cluster could not record the change (${outcome.detail}); retry`));
          case 'unknown':
            return reply(errorResponse('OutcomeUnknownError', `the change may or may not have been recorded (${outcome.detail}); check project_status, then retry with the same requestId`));
          default: {
            const never: never = outcome;
            return never;
          }
        }
      }),
    );
  }

  /** Go on once this node applied this actor's own recorded writes; answer a retryable error if it cannot in time. */
  private afterOwnWrites(reply: Reply<ActorResponse>, next: () => void): void {
    const revision = this.ownWritesRevision;
    if (this.services.store.view().revision >= revision) return next();
    this.services.whenApplied(
      revision,
      this.context.guard((reached: boolean) => {
        if (!reached) {
          return reply(errorResponse('UnavailableError', `node ${this.services.node} has not yet applied the change to ${this.key} recorded at revision ${revision}; this attempt changed nothing, retry`));
        }
        next();
      }),
    );
  }

  private versionCompare(snap: Snapshot): Compare {
    return { key: this.key, target: 'version', op: '==', operand: snap.record?.version ?? 0 };
  }

  private ifVersionMismatch(snap: Snapshot, ifVersion: number | undefined): Plan | null {
    if (ifVersion === undefined) return null;
    const version = snap.record?.version ?? 0;
    if (version === ifVersion) return null;
    return { type: 'reply', response: errorResponse('VersionConflictError', `${this.key} is at version ${version}, not ${ifVersion}; read it again and retry with its version`) };
  }

  /** Ops that reserve or release quota, with the compare that makes the reservation atomic. */
  private usageOps(snap: Snapshot, next: ProjectRecord | null): { compare: Compare[]; ops: KvOp[]; excess: string | null } {
    const nextUsage = addUsage(addUsage(snap.usageRecord, holdOf(snap.project), -1), holdOf(next), 1);
    if (sameUsage(nextUsage, snap.usageRecord)) return { compare: [], ops: [], excess: null };
    return {
      compare: [{ key: usageKey(this.ref.tenant), target: 'version', op: '==', operand: snap.usage?.version ?? 0 }],
      ops: [{ type: 'put', key: usageKey(this.ref.tenant), value: JSON.stringify(nextUsage) }],
      excess: quotaExcess(snap.usageRecord, nextUsage, snap.quota),
    };
  }

  private withRequest(project: ProjectRecord | null, requestId: string): readonly string[] {
    return [...(project?.requests ?? []), requestId].slice(-CALL_LIMITS.requestIdsRemembered);
  }

  private planStart(
    snap: Snapshot,
    epoch: number,
    spec: ProjectSpec,
    ifVersion: number | undefined,
    restart: boolean,
    requestId: string,
    waitMs: number,
    progress: ProgressFn,
  ): Plan {
    // A retry of a change already recorded (its answer was lost): do not do it twice.
    if (snap.project !== null && snap.project.requests.includes(requestId)) {
      return { type: 'skip', after: (_at, reply) => this.settle(snap.project?.generation ?? 0, waitMs, progress, reply) };
    }
    const mismatch = this.ifVersionMismatch(snap, ifVersion);
    if (mismatch !== null) return mismatch;
    const changed = snap.project !== null && !sameSpec(snap.project.spec, spec);
    const generation = (snap.project?.generation ?? 0) + (restart || changed || snap.project?.desired === 'stopped' ? 1 : 0);
    const next: ProjectRecord = { spec, desired: 'running', generation, requests: this.withRequest(snap.project, requestId) };
    const usage = this.usageOps(snap, next);
    if (usage.excess !== null) {
      return {
        type: 'reply',
        response: errorResponse('QuotaExceededError', `tenant ${this.ref.tenant} is at its quota (${usage.excess}); stop or remove a project, or ask an admin to raise the quota (tenant_quota_set)`),
      };
    }
    const handoff = this.services.handoff(snap.statusRecord);
    if (handoff.type === 'wait') {
      // Another node may still run a copy: record the change now, launch once it released (the host reconciles then).
      return {
        type: 'write',
        write: { epoch, compare: [this.versionCompare(snap), ...usage.compare], success: [{ type: 'put', key: this.key, value: JSON.stringify(next) }, ...usage.ops], inspect: [this.key] },
        after: (_at, reply) => {
          progress(`recorded version ${(snap.record?.version ?? 0) + 1}; ${handoff.detail} before starting on ${this.services.node}`, 1, 3);
          this.services.awaitHandoff(this.key);
          this.settle(generation, waitMs, progress, reply);
        },
      };
    }
    const run = this.runOps(snap, epoch, next);
    if (run instanceof PortsExhaustedError) return { type: 'reply', response: errorResponse('RuntimeFailedError', run.message) };
    return {
      type: 'write',
      write: {
        epoch,
        compare: [this.versionCompare(snap), ...usage.compare, ...run.compare],
        success: [{ type: 'put', key: this.key, value: JSON.stringify(next) }, ...usage.ops, ...run.ops],
        inspect: [this.key],
      },
      after: (ownedAt, reply) => {
        progress(`recorded version ${(snap.record?.version ?? 0) + 1}; starting on ${this.services.node}`, 1, 3);
        const force = restart || this.services.started.get(this.key) !== generation;
        this.launch(ownedAt, next, run.ports, force, () => this.settle(generation, waitMs, progress, reply));
      },
    };
  }

  private planStop(snap: Snapshot, epoch: number, ifVersion: number | undefined, requestId: string): Plan {
    if (snap.project === null) return this.notFound();
    const mismatch = this.ifVersionMismatch(snap, ifVersion);
    if (mismatch !== null) return mismatch;
    if (snap.project.requests.includes(requestId) || (snap.project.desired === 'stopped' && ifVersion === undefined)) {
      return { type: 'skip', after: (_at, reply) => this.stopHere(() => this.status(reply)) };
    }
    const next: ProjectRecord = { ...snap.project, desired: 'stopped', requests: this.withRequest(snap.project, requestId) };
    const usage = this.usageOps(snap, next);
    const status: ProjectStatusRecord = this.statusRecord(epoch, 'stopped', {}, next.generation, null);
    // Another node may still run a copy: its record (and ports) stay until it records its release.
    const holderKept = this.services.handoff(snap.statusRecord).type === 'wait';
    return {
      type: 'write',
      write: {
        epoch,
        compare: [this.versionCompare(snap), ...usage.compare],
        success: [
          { type: 'put', key: this.key, value: JSON.stringify(next) },
          ...usage.ops,
          ...(holderKept ? [] : [...this.freePortOps(snap), { type: 'put' as const, key: statusKey(this.ref.tenant, this.ref.name), value: JSON.stringify(status) }]),
        ],
        inspect: [this.key],
      },
      after: (_epoch, reply) => this.stopHere(() => this.status(reply)),
    };
  }

  private planRemove(snap: Snapshot, epoch: number, ifVersion: number | undefined): Plan {
    if (snap.project === null) {
      // Nothing to remove (perhaps a retry whose first attempt did it): say so, and free what may linger here.
      return { type: 'skip', after: (_at, reply) => this.removeHere(false, reply) };
    }
    const mismatch = this.ifVersionMismatch(snap, ifVersion);
    if (mismatch !== null) return mismatch;
    const usage = this.usageOps(snap, null);
    // Another node may still run a copy: its record (and ports) stay; its release deletes them.
    const holderKept = this.services.handoff(snap.statusRecord).type === 'wait';
    return {
      type: 'write',
      write: {
        epoch,
        compare: [this.versionCompare(snap), ...usage.compare],
        success: [
          { type: 'delete', key: this.key },
          ...usage.ops,
          ...(holderKept ? [] : [...this.freePortOps(snap), { type: 'delete' as const, key: statusKey(this.ref.tenant, this.ref.name) }]),
          { type: 'delete', key: eventsKey(this.ref.tenant, this.ref.name) },
        ],
        inspect: [this.key],
      },
      after: (_epoch, reply) => this.removeHere(true, reply),
    };
  }

  private removeHere(existed: boolean, reply: Respond): void {
    this.services.runtime.remove(
      this.ref,
      this.context.guard(() => {
        this.services.started.delete(this.key);
        this.services.runCursors.delete(this.key);
        this.services.io.logs.drop(
          this.ref,
          this.context.guard(() => {
            if (existed) this.services.emit(this.ref, { seq: 0, timeMs: this.services.clock.nowMs(), kind: 'removed', node: this.services.node, exitCode: null, signal: null, detail: 'removed' });
            reply({ type: 'removed', tenant: this.ref.tenant, name: this.ref.name, existed });
          }),
        );
      }),
    );
  }

  // ---- ports and status --------------------------------------------------------------

  private freePortOps(snap: Pick<Snapshot, 'statusRecord'>): KvOp[] {
    const status = snap.statusRecord;
    if (status === null) return [];
    return Object.values(status.ports).map((port): KvOp => ({ type: 'delete', key: portKey(status.node, port) }));
  }

  /**
   * Ops that give the project its ports on this node and record it as
   * starting here: reuse the ports it holds here, else allocate, taking each
   * new port only if no one holds it (createRevision == 0).
   */
  private runOps(snap: Snapshot, epoch: number, next: ProjectRecord): { compare: Compare[]; ops: KvOp[]; ports: Record<string, number> } | PortsExhaustedError {
    const node = this.services.node;
    const held = snap.statusRecord !== null && snap.statusRecord.node === node ? snap.statusRecord.ports : {};
    const names = next.spec.ports;
    const reuse = names.every((name) => held[name] !== undefined) && Object.keys(held).length === names.length;
    let ports: Record<string, number>;
    if (reuse) ports = { ...held };
    else {
      const prefix = `ports/${node}/`;
      const inUse = new Set(
        this.services.store
          .view()
          .range(prefix, prefixEnd(prefix))
          .map((entry) => Number(entry.key.slice(prefix.length))),
      );
      const allocated = this.services.ports.allocate(node, names, inUse);
      if (allocated instanceof PortsExhaustedError) return allocated;
      ports = allocated;
    }
    const fresh = reuse ? [] : Object.values(ports);
    const status = this.statusRecord(epoch, 'starting', ports, next.generation, null);
    // The hand-off rule cleared the record this replaces (released, or its node down): it must be that record still.
    const holder: Compare[] =
      snap.statusRecord !== null && snap.statusRecord.node !== node ? [{ key: statusKey(this.ref.tenant, this.ref.name), target: 'modRevision', op: '==', operand: snap.status?.modRevision ?? 0 }] : [];
    return {
      compare: [...holder, ...fresh.map((port): Compare => ({ key: portKey(node, port), target: 'createRevision', op: '==', operand: 0 }))],
      ops: [
        ...(reuse ? [] : this.freePortOps(snap)),
        ...fresh.map((port): KvOp => ({ type: 'put', key: portKey(node, port), value: this.key })),
        { type: 'put', key: statusKey(this.ref.tenant, this.ref.name), value: JSON.stringify(status) },
      ],
      ports,
    };
  }

  private statusRecord(epoch: number, state: ProjectStatusRecord['state'], ports: Record<string, number>, generation: number, observed: WorkloadStatus | null): ProjectStatusRecord {
    return {
      state,
      node: this.services.node,
      epoch,
      ports,
      generation,
      restarts: observed?.restarts ?? 0,
      exitCode: observed?.exitCode ?? null,
      error: observed?.error?.slice(0, 4096) ?? null,
    };
  }

  /** The status to record now, from the runtime (null: nothing of ours to say, e.g. it runs elsewhere or is stopped by request). */
  private observedStatus(record: KeyValue): ProjectStatusRecord | null {
    const project = this.services.records.project(record);
    const epoch = this.services.ownedEpoch(this.key);
    if (project === null || epoch === null || project.desired !== 'running') return null;
    const current = this.services.records.status(this.services.store.view().get(statusKey(this.ref.tenant, this.ref.name)));
    // Another node may still run a copy: its record stays until it records its release.
    if (this.services.handoff(current).type === 'wait') return null;
    const ports = current !== null && current.node === this.services.node ? { ...current.ports } : {};
    const workload = this.services.runtime.status(this.ref);
    if (workload === null) return current?.node === this.services.node ? current : null;
    const launchError = this.launchError !== null && this.launchError.generation === project.generation ? this.launchError.error : null;
    const status = this.statusRecord(epoch, workload.state, ports, this.services.started.get(this.key) ?? project.generation, workload);
    return launchError === null ? status : { ...status, state: 'failed', error: launchError };
  }

  /** Why the last launch failed (command not found, missing image), for the status record. */
  private launchError: { readonly generation: number; readonly error: string } | null = null;

  // ---- runtime ---------------------------------------------------------------------

  /** Start (or restart) the workload here; `then` runs once the runtime answered. The observed status is written after. */
  private launch(epoch: number, project: ProjectRecord, ports: Record<string, number>, force: boolean, then: () => void): void {
    const current = this.services.runtime.status(this.ref);
    const running = current !== null && isActiveState(current.state);
    if (running && !force) {
      this.observed.flush();
      return then();
    }
    const spec: WorkloadSpec = {
      project: this.ref,
      ...(project.spec.command === null ? {} : { command: project.spec.command }),
      ...(project.spec.image === null ? {} : { image: project.spec.image }),
      ...(project.spec.cwd === null ? {} : { cwd: project.spec.cwd }),
      env: project.spec.env,
      ports,
      restart: project.spec.restart,
      ...(project.spec.memoryBytes > 0 ? { limits: { memoryBytes: project.spec.memoryBytes } } : {}),
      node: this.services.node,
    };
    this.services.runCursors.set(this.key, this.services.io.logs.cursor(this.ref));
    this.health = null;
    void epoch;
    this.services.runtime.start(
      spec,
      this.context.guard((outcome) => {
        if (outcome.ok) {
          this.launchError = null;
          this.services.started.set(this.key, project.generation);
        } else {
          this.launchError = { generation: project.generation, error: `${outcome.error.name}: ${outcome.error.message}` };
        }
        this.observed.flush();
        then();
      }),
    );
  }

  /** Stop the workload if it runs on this node, or may run again by itself (an exit with a restart pending). */
  private stopHere(done: () => void): void {
    const current = this.services.runtime.status(this.ref);
    if (current === null || isSettledState(current.state)) return done();
    this.services.runtime.stop(
      this.ref,
      this.services.limits.stopGraceMs,
      this.context.guard(() => {
        this.services.started.delete(this.key);
        done();
      }),
    );
  }

  /**
   * This node no longer owns the project and runs no copy of it: say so in the log, for the new
   * owner, which launches only once it reads it (actors/handoff.ts). Said also when nothing ran
   * here (the record may name this node from a start that never ran, or a copy its watchdog
   * killed). Compared on the status record's revision alone, so it never overwrites a newer
   * owner's record; not fenced by the epoch, since it is written after the ring moved. Any
   * outcome ends the turn: a release that did not land is written again at the host's next scan.
   */
  private recordRelease(done: () => void): void {
    if (this.services.ownedEpoch(this.key) !== null) return done();
    const view = this.services.store.view();
    const key = statusKey(this.ref.tenant, this.ref.name);
    const stored = view.get(key);
    const status = this.services.records.status(stored);
    if (stored === null || status === null || status.node !== this.services.node || status.released === true) return done();
    const current = this.services.runtime.status(this.ref);
    if (current !== null && !isSettledState(current.state)) return done();
    const released: ProjectStatusRecord = { ...status, state: 'stopped', ports: {}, released: true };
    // A removed project keeps no record: with none, nobody waits for this node either.
    const record: KvOp = view.get(this.key) === null ? { type: 'delete', key } : { type: 'put', key, value: JSON.stringify(released) };
    this.services.store.propose(
      {
        type: 'txn',
        compare: [{ key, target: 'modRevision', op: '==', operand: stored.modRevision }],
        success: [record, ...this.freePortOps({ statusRecord: status })],
        failure: [],
      },
      this.context.guard(() => done()),
    );
  }

  /** Make the runtime here match the desired state, as the owner at the current epoch. */
  private reconcile(reply: Reply<ActorResponse>): void {
    const epoch = this.services.ownedEpoch(this.key);
    if (epoch === null) return this.stopHere(() => reply(this.notOwner()));
    const snap = this.read();
    if (snap.project === null || snap.project.desired !== 'running') return this.stopHere(() => this.status(reply));
    const current = this.services.runtime.status(this.ref);
    // Exited or crash-looping workloads follow their restart policy in the runtime; only absent or stopped ones start here.
    const needsStart = current === null || current.state === 'stopped';
    const recorded = snap.statusRecord;
    if (!needsStart) {
      if (recorded !== null && recorded.node === this.services.node && recorded.state === current.state) return this.status(reply);
      this.observed.flush();
      return this.status(reply);
    }
    const project = snap.project;
    const previousNode = recorded !== null && recorded.node !== this.services.node ? recorded.node : null;
    this.mutate(reply, (fresh, ownedAt) => {
      if (fresh.project === null || fresh.project.desired !== 'running') return { type: 'reply', response: this.viewResponse(fresh, null) };
      if (this.services.handoff(fresh.statusRecord).type === 'wait') {
        // Another node may still run a copy: the host reconciles again once it released or is down.
        this.services.awaitHandoff(this.key);
        return { type: 'reply', response: this.viewResponse(fresh, null) };
      }
      const run = this.runOps(fresh, ownedAt, fresh.project);
      if (run instanceof PortsExhaustedError) return { type: 'reply', response: errorResponse('RuntimeFailedError', run.message) };
      return {
        type: 'write',
        write: { epoch: ownedAt, compare: [this.versionCompare(fresh), ...run.compare], success: run.ops, inspect: [this.key] },
        after: (at, done) => {
          if (previousNode !== null) this.observed.event('moved', `from ${previousNode} to ${this.services.node}`, this.services.clock.nowMs());
          this.launch(at, fresh.project ?? project, run.ports, true, () => this.status(done));
        },
      };
    });
  }

  /** The runtime saw a change of the workload: record it as an event and refresh the observed status. */
  private lifecycle(event: LifecycleEvent, reply: Respond): void {
    if (this.services.ownedEpoch(this.key) !== null) {
      this.observed.event(LIFECYCLE_EVENT[event.kind], event.detail, event.timeMs, { exitCode: event.exitCode, signal: event.signal });
    }
    reply(this.viewResponse(this.read(), null));
  }

  // ---- after the turn: settle, wait -------------------------------------------------

  /** The workload's state is one it will not leave by itself: a reason to stop waiting, or null. */
  private ended(generation: number): string | null {
    const workload = this.services.runtime.status(this.ref);
    const snap = this.read();
    if (snap.project === null) return 'the project was removed';
    if (snap.project.desired !== 'running') return 'the project is stopped';
    if (snap.project.generation !== generation) return 'the project was restarted meanwhile';
    if (this.launchError !== null && this.launchError.generation === generation) return this.launchError.error;
    if (workload === null) return null;
    if (workload.state === 'failed' || workload.state === 'crashLoop') return workload.error ?? `the workload is ${workload.state}`;
    if (workload.state === 'exited' && snap.project.spec.restart === 'never') {
      return `it exited with ${workload.exitCode !== null ? `code ${workload.exitCode}` : `signal ${workload.signal}`}`;
    }
    return null;
  }

  private runCursor(): number {
    return this.services.runCursors.get(this.key) ?? 0;
  }

  /** The attempt for `check` on the running workload of `generation`; null until it runs. */
  private attemptOf(check: HealthCheckSpec): Attempt | { readonly error: string } | null {
    const workload = this.services.runtime.status(this.ref);
    if (workload?.state !== 'running') return null;
    const status = this.services.records.status(this.services.store.view().get(statusKey(this.ref.tenant, this.ref.name)));
    const ports = status !== null && status.node === this.services.node ? status.ports : {};
    return attemptFor(check, this.ref, ports, this.runCursor(), this.services.io);
  }

  /** Track `cancel` as work of this actor until `done` runs. */
  private job(start: (finish: () => void) => () => void): void {
    let cancel: (() => void) | null = null;
    let finished = false;
    const finish = (): void => {
      finished = true;
      if (cancel !== null) this.jobs.delete(cancel);
    };
    const stop = start(finish);
    if (finished) return;
    cancel = stop;
    this.jobs.add(cancel);
  }

  /**
   * Poll `check` (null: until the workload runs) on this run as a job of this
   * actor, until it passes, the run ends (generation), or `timeoutMs`.
   */
  private pollRun(check: HealthCheckSpec | null, generation: number, timeoutMs: number, done: (outcome: PollOutcome) => void): void {
    let attemptError: string | null = null;
    this.job((finish) =>
      pollUntil(
        {
          context: this.context,
          intervalMs: this.services.limits.settleIntervalMs,
          timeoutMs,
          waitingDetail: () => `state ${this.services.runtime.status(this.ref)?.state ?? 'not running here'}`,
          giveUp: () => attemptError ?? this.ended(generation),
          attempt: () => {
            if (check === null) {
              const state = this.services.runtime.status(this.ref)?.state;
              return state === 'running' ? (callback) => callback({ ok: true, detail: 'running' }) : null;
            }
            const attempt = this.attemptOf(check);
            if (attempt !== null && 'error' in attempt) {
              attemptError = attempt.error;
              return null;
            }
            return attempt;
          },
        },
        (outcome) => {
          finish();
          done(outcome);
        },
      ),
    );
  }

  /** After a start: wait until healthy (or running, without a check), it ends, or `waitMs`; then answer. */
  private settle(generation: number, waitMs: number, progress: ProgressFn, reply: Reply<ActorResponse>): void {
    const snap = this.read();
    const check = snap.project?.spec.healthCheck ?? null;
    if (waitMs <= 0) return reply(this.viewResponse(snap, null));
    const respond = reply.detach();
    progress(check === null ? 'waiting until it runs' : `waiting for ${describeCheck(check)}`, 2, 3);
    this.pollRun(check, generation, waitMs, (outcome) => this.settled(generation, check, outcome, progress, respond));
  }

  private settled(generation: number, check: HealthCheckSpec | null, outcome: PollOutcome, progress: ProgressFn, respond: Respond): void {
    if (outcome.ok || outcome.reason === 'timeout') {
      if (check !== null) this.recordHealth(generation, outcome.ok, outcome.detail);
      progress(outcome.ok ? `ready: ${outcome.detail}` : `not ready yet: ${outcome.detail}`, 3, 3);
      return respond(this.viewResponse(this.read(), outcome.ok ? null : outcome.detail));
    }
    if (outcome.reason === 'cancelled') return respond(this.notOwner());
    // The failure stays readable: project_status and project_logs show it until project_remove.
    const lines = this.services.io.logs.lastLines(this.ref, 10);
    respond(errorResponse('StartFailedError', `${this.ref.tenant}/${this.ref.name} did not start: ${outcome.detail}${lines.length > 0 ? `; last log lines: ${lines.join(' | ')}` : ''}`));
  }

  private recordHealth(generation: number, ok: boolean, detail: string): void {
    const before = this.health !== null && this.health.generation === generation ? this.health.ok : null;
    this.health = { ok, detail, generation };
    if (before === ok) return;
    if (ok) this.observed.event('ready', detail, this.services.clock.nowMs());
    else if (before === true) this.observed.event('unhealthy', detail, this.services.clock.nowMs());
  }

  private wait(condition: HealthCheckSpec | null, timeoutMs: number, progress: ProgressFn, respond: Respond): void {
    const snap = this.read();
    if (snap.project === null) return respond(this.notFoundResponse());
    const check: HealthCheckSpec = condition ?? snap.project.spec.healthCheck ?? { type: 'tcp', port: 'default' };
    const generation = snap.project.generation;
    const what = describeCheck(check);
    progress(`waiting for ${what}`, 0, 1);
    this.pollRun(check, generation, timeoutMs, (outcome) => {
      if (!outcome.ok && outcome.reason === 'cancelled') return respond(this.notOwner());
      const project = this.viewOf(this.read());
      if (project === null) return respond(this.notFoundResponse());
      respond({
        type: 'wait',
        ok: outcome.ok,
        condition: what,
        elapsedMs: Math.round(outcome.elapsedMs),
        detail: outcome.detail,
        lastLines: outcome.ok ? [] : this.services.io.logs.lastLines(this.ref, 20),
        project,
      });
    });
  }

  // ---- after the turn: exec, http, events ---------------------------------------------

  private exec(command: string, timeoutMs: number, reply: Reply<ActorResponse>): void {
    const snap = this.read();
    if (snap.project === null) return reply(this.notFoundResponse());
    const exec = this.services.runtime.exec;
    if (exec === undefined) return reply(errorResponse('UnavailableError', `node ${this.services.node}'s ${this.services.runtime.kind} runtime cannot run commands; retry after the project moved`));
    const running = this.services.execsRunning.get(this.ref.tenant) ?? 0;
    if (running >= this.services.limits.execsPerTenantMax) {
      return reply(errorResponse('RateLimitedError', `tenant ${this.ref.tenant} already runs ${running} project_exec commands on node ${this.services.node} (the most at once); wait for one to finish`));
    }
    const status = snap.statusRecord !== null && snap.statusRecord.node === this.services.node ? snap.statusRecord : null;
    const env = { ...snap.project.spec.env, ...portEnv(status?.ports ?? {}) };
    const respond = reply.detach();
    this.services.execsRunning.set(this.ref.tenant, running + 1);
    exec(
      this.ref,
      { command, env, ...(snap.project.spec.cwd === null ? {} : { cwd: snap.project.spec.cwd }), timeoutMs, outputBytesMax: this.services.limits.execOutputBytesMax },
      this.context.guard((outcome) => {
        this.services.execsRunning.set(this.ref.tenant, (this.services.execsRunning.get(this.ref.tenant) ?? 1) - 1);
        if (!outcome.ok) return respond(errorResponse('RuntimeFailedError', outcome.error.message));
        respond({ type: 'exec', ...outcome.value });
      }),
    );
  }

  private http(call: HttpCall, reply: Reply<ActorResponse>): void {
    const snap = this.read();
    if (snap.project === null) return reply(this.notFoundResponse());
    const status = snap.statusRecord !== null && snap.statusRecord.node === this.services.node ? snap.statusRecord : null;
    const port = status?.ports[call.port];
    if (port === undefined) {
      return reply(
        errorResponse('InvalidRequestError', `project ${this.ref.tenant}/${this.ref.name} has no port named '${call.port}' here; its ports: ${Object.keys(status?.ports ?? {}).join(', ') || 'none (is it running?)'}`),
      );
    }
    const respond = reply.detach();
    this.services.io.http(
      port,
      call,
      this.context.guard((outcome) => respond(outcome.ok ? { type: 'http', ...outcome.answer } : errorResponse('UnavailableError', outcome.error))),
    );
  }

  private events(request: Extract<ProjectRequest, { type: 'events' }>, reply: Reply<ActorResponse>): void {
    if (this.read().project === null) return reply(this.notFoundResponse());
    const answer = (): ActorResponse => {
      const all = this.observed.events().filter((event) => event.seq > request.since && (request.kinds.length === 0 || request.kinds.includes(event.kind)));
      const page = all.slice(0, request.limit);
      const last = page.at(-1)?.seq ?? request.since;
      return { type: 'events', events: page, nextCursor: last, more: all.length > page.length };
    };
    const first = answer();
    if (first.type !== 'events' || first.events.length > 0 || request.waitMs <= 0) return reply(first);
    const respond = reply.detach();
    this.job((finish) => {
      let stopWaiting: () => void = () => undefined;
      const timer = this.context.setTimer(request.waitMs, () => {
        stopWaiting();
        finish();
        respond(answer());
      });
      const listen = (): void => {
        stopWaiting = this.observed.onNextEvent(
          this.context.guard(() => {
            const next = answer();
            if (next.type === 'events' && next.events.length === 0) return listen();
            this.context.clearTimer(timer);
            finish();
            respond(next);
          }),
        );
      };
      listen();
      return () => {
        stopWaiting();
        this.context.clearTimer(timer);
        respond(answer());
      };
    });
  }

  // ---- logs -------------------------------------------------------------------------

  private logs(query: LogsQuery): ActorResponse {
    const logs = this.services.io.logs;
    if (!logs.has(this.ref) && this.services.store.view().get(this.key) === null) return this.notFoundResponse();
    if (!logs.has(this.ref)) return { type: 'logs', lines: [], nextCursor: query.since ?? 0, more: false };
    const page = logs.query(this.ref, {
      ...(query.since === null ? { tail: query.tail ?? 100 } : { since: query.since }),
      ...(query.grep === null ? {} : { grep: query.grep }),
      stream: query.stream,
      limit: query.limit,
    });
    // Keep the page under the character cap: a tail keeps its newest lines, a since-page its oldest.
    let lines = page.lines;
    let chars = 0;
    let cut = false;
    const capChars = this.services.limits.logPageCharsMax;
    if (query.since === null) {
      let start = lines.length;
      while (start > 0 && chars + (lines[start - 1]?.line.length ?? 0) <= capChars) chars += lines[--start]?.line.length ?? 0;
      cut = start > 0;
      lines = lines.slice(start);
    } else {
      let end = 0;
      while (end < lines.length && chars + (lines[end]?.line.length ?? 0) <= capChars) chars += lines[end++]?.line.length ?? 0;
      cut = end < lines.length;
      lines = lines.slice(0, end);
    }
    const nextCursor = query.since !== null && cut ? (lines.at(-1)?.seq ?? query.since) : page.nextCursor;
    return { type: 'logs', lines: lines.map((line) => ({ ...line })), nextCursor, more: page.hasMore || (query.since !== null && cut) };
  }

  private notOwner(epoch?: number): ActorResponse {
    return { type: 'notOwner', epoch: epoch ?? this.services.store.view().get('ring/epoch')?.modRevision ?? 0, ownerHint: null };
  }

  private notFoundResponse(): ActorResponse {
    return errorResponse('NotFoundError', `no project ${this.ref.name} in tenant ${this.ref.tenant}; start it with project_start, or see project_list`);
  }

  private notFound(): Plan {
    return { type: 'reply', response: this.notFoundResponse() };
  }
}

export const isProjectRequest = (request: ActorRequest): request is ProjectRequest =>
  request.type === 'start' ||
  request.type === 'stop' ||
  request.type === 'restart' ||
  request.type === 'remove' ||
  request.type === 'status' ||
  request.type === 'logs' ||
  request.type === 'wait' ||
  request.type === 'exec' ||
  request.type === 'http' ||
  request.type === 'events';
