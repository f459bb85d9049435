// ProjectActor: the owner of one project. It keeps the desired spec (key
// `projects/<tenant>/<name>`) and the observed status (`status/<tenant>/<name>`)
// in the replicated store and drives the node's Runtime to match. Every write
// is fenced by the ring epoch; starting reserves the tenant's quota in the
// same txn that records the project (compare on the usage key's version).
import type { Compare, KeyValue, KvOp } from '../consensus/kv-state-machine.ts';
import { prefixEnd } from '../consensus/kv-state-machine.ts';
import type { Clock } from '../consensus/types.ts';
import type { Actor } from './actor-system.ts';
import { isActiveState, PortsExhaustedError, type ActorStore, type PortAllocator, type RuntimeDriver } from './components.ts';
import { fencedWrite, type FencedOutcome, type FencedWrite } from './fenced-write.ts';
import {
  QUOTA_DEFAULT,
  USAGE_ZERO,
  errorResponse,
  parseRecord,
  portKey,
  projectActorKey,
  quotaKey,
  statusKey,
  usageKey,
  type ActorRequest,
  type ActorResponse,
  type ProjectRecord,
  type ProjectRequest,
  type ProjectSpec,
  type ProjectStatusRecord,
  type ProjectView,
  type TenantQuota,
  type TenantUsage,
} from './messages.ts';
import type { ProjectRef, WorkloadSpec, WorkloadStatus } from './runtime.ts';

/** What an actor's turn is about: a caller's request, or the host's reconcile / release. */
export type ActorMessage =
  | { readonly kind: 'call'; readonly request: ActorRequest }
  /** Make the runtime match the desired state (activation, ring change, lease regained, periodic). */
  | { readonly kind: 'reconcile' }
  /** Ownership moved away or the node drains: stop the workload here; the host deactivates after. */
  | { readonly kind: 'release'; readonly reason: string };

/** What the host gives each actor. */
export interface OwnerServices {
  readonly node: string;
  readonly clock: Clock;
  readonly store: ActorStore;
  readonly runtime: RuntimeDriver;
  readonly ports: PortAllocator;
  /** False only under the simulator's planted bug (mutation noFencing). */
  readonly fencing: boolean;
  readonly stopGraceMs: number;
  /** Most attempts of one request when its compare-and-set loses a race. */
  readonly casAttemptsMax: number;
  /** The epoch this node owns `key` at with a valid lease; null when it does not own it. */
  ownedEpoch(key: string): number | null;
  /** Call back once this node applied `revision` (true) or gave up waiting (false). */
  whenApplied(revision: number, callback: (reached: boolean) => void): void;
  /** Remembers which generation a workload here was started at, across actor deactivations. */
  readonly started: Map<string, number>;
}

type Reply = (response: ActorResponse) => void;

interface Snapshot {
  readonly record: KeyValue | null;
  readonly project: ProjectRecord | null;
  readonly status: KeyValue | null;
  readonly statusRecord: ProjectStatusRecord | null;
  readonly usage: KeyValue | null;
  readonly usageRecord: TenantUsage;
  readonly quota: TenantQuota;
}

type Plan = { readonly type: 'reply'; readonly response: ActorResponse } | { readonly type: 'write'; readonly write: FencedWrite; readonly after: (epoch: number, reply: Reply) => void };

const hold = (project: ProjectRecord | null): TenantUsage =>
  project === null || project.desired !== 'running' ? USAGE_ZERO : { projects: 1, ports: project.spec.ports.length, memoryBytes: project.spec.memoryBytes };

const addUsage = (a: TenantUsage, b: TenantUsage, sign: 1 | -1): TenantUsage => ({
  projects: a.projects + sign * b.projects,
  ports: a.ports + sign * b.ports,
  memoryBytes: a.memoryBytes + sign * b.memoryBytes,
});

const sameUsage = (a: TenantUsage, b: TenantUsage): boolean => a.projects === b.projects && a.ports === b.ports && a.memoryBytes === b.memoryBytes;

/** Which quota dimension `next` exceeds where it grew from `before`; null when within quota. */
export function quotaExcess(before: TenantUsage, next: TenantUsage, quota: TenantQuota): string | null {
  for (const dimension of ['projects', 'ports', 'memoryBytes'] as const) {
    if (next[dimension] > before[dimension] && next[dimension] > quota[dimension]) {
      return `${dimension}: ${next[dimension]} would exceed the quota of ${quota[dimension]}`;
    }
  }
  return null;
}

export class ProjectActor implements Actor<ActorMessage, ActorResponse> {
  readonly ref: ProjectRef;
  private readonly key: string;

  constructor(
    ref: ProjectRef,
    private readonly services: OwnerServices,
  ) {
    this.ref = ref;
    this.key = projectActorKey(ref.tenant, ref.name);
  }

  receive(message: ActorMessage, reply: Reply): void {
    switch (message.kind) {
      case 'call':
        return this.call(message.request, reply);
      case 'reconcile':
        return this.reconcile(reply);
      case 'release':
        return this.stopHere(() => reply(this.notOwner()));
      default: {
        const never: never = message;
        return never;
      }
    }
  }

  private call(request: ActorRequest, reply: Reply): void {
    if (!isProjectRequest(request)) return reply(errorResponse('InvalidRequestError', `request '${request.type}' goes to a tenant key, not ${this.key}`));
    switch (request.type) {
      case 'status':
        return this.status(reply);
      case 'start':
        return this.mutate(reply, (snap, epoch) => this.planStart(snap, epoch, request.spec, request.ifVersion, false));
      case 'restart':
        return this.mutate(reply, (snap, epoch) => (snap.project === null ? this.notFound() : this.planStart(snap, epoch, snap.project.spec, undefined, true)));
      case 'stop':
        return this.mutate(reply, (snap, epoch) => this.planStop(snap, epoch, request.ifVersion));
      case 'remove':
        return this.mutate(reply, (snap, epoch) => this.planRemove(snap, epoch, request.ifVersion));
      default: {
        const never: never = request;
        return never;
      }
    }
  }

  // ---- reading ---------------------------------------------------------------

  private read(): Snapshot {
    const view = this.services.store.view();
    const record = view.get(this.key);
    const status = view.get(statusKey(this.ref.tenant, this.ref.name));
    const usage = view.get(usageKey(this.ref.tenant));
    return {
      record,
      project: parseRecord<ProjectRecord>(record?.value),
      status,
      statusRecord: parseRecord<ProjectStatusRecord>(status?.value),
      usage,
      usageRecord: parseRecord<TenantUsage>(usage?.value) ?? USAGE_ZERO,
      quota: parseRecord<TenantQuota>(view.get(quotaKey(this.ref.tenant))?.value) ?? QUOTA_DEFAULT,
    };
  }

  private viewOf(snap: Snapshot): ProjectView | null {
    if (snap.project === null || snap.record === null) return null;
    return { tenant: this.ref.tenant, name: this.ref.name, version: snap.record.version, desired: snap.project.desired, spec: snap.project.spec, status: snap.statusRecord };
  }

  private status(reply: Reply): void {
    const view = this.viewOf(this.read());
    reply(view === null ? this.notFoundResponse() : { type: 'project', project: view });
  }

  // ---- writing desired state -----------------------------------------------------

  /** Plan against the applied state, write fenced, and re-plan (bounded) when a compare-and-set loses a race. */
  private mutate(reply: Reply, plan: (snap: Snapshot, epoch: number) => Plan, attempt = 1): void {
    const epoch = this.services.ownedEpoch(this.key);
    if (epoch === null) return reply(this.notOwner());
    const planned = plan(this.read(), epoch);
    if (planned.type === 'reply') return reply(planned.response);
    fencedWrite(this.services.store, this.services.fencing, planned.write, (outcome) => {
      switch (outcome.type) {
        case 'applied':
          return this.services.whenApplied(outcome.revision, () => planned.after(epoch, reply));
        case 'fenced':
          return reply(this.notOwner(outcome.epoch));
        case 'conflict':
          if (attempt >= this.services.casAttemptsMax) {
            return reply(errorResponse('VersionConflictError', `${this.key} changed under ${attempt} attempts in a row; retry`));
          }
          // Our applied state was behind: catch up to what the txn saw, then plan again.
          return this.services.whenApplied(outcome.revision, () => this.mutate(reply, plan, attempt + 1));
        case 'unavailable':
          return reply(errorResponse('UnavailableError', `the cluster could not record the change (${outcome.detail}); retry`));
        case 'unknown':
          return reply(errorResponse('UnavailableError', `the change may or may not have been recorded (${outcome.detail}); check project_status, then retry`));
        default: {
          const never: never = outcome;
          return never;
        }
      }
    });
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
    const nextUsage = addUsage(addUsage(snap.usageRecord, hold(snap.project), -1), hold(next), 1);
    if (sameUsage(nextUsage, snap.usageRecord)) return { compare: [], ops: [], excess: null };
    return {
      compare: [{ key: usageKey(this.ref.tenant), target: 'version', op: '==', operand: snap.usage?.version ?? 0 }],
      ops: [{ type: 'put', key: usageKey(this.ref.tenant), value: JSON.stringify(nextUsage) }],
      excess: quotaExcess(snap.usageRecord, nextUsage, snap.quota),
    };
  }

  private planStart(snap: Snapshot, epoch: number, spec: ProjectSpec, ifVersion: number | undefined, restart: boolean): Plan {
    const mismatch = this.ifVersionMismatch(snap, ifVersion);
    if (mismatch !== null) return mismatch;
    const generation = (snap.project?.generation ?? 0) + (restart || (snap.project !== null && JSON.stringify(snap.project.spec) !== JSON.stringify(spec)) ? 1 : 0);
    const next: ProjectRecord = { spec, desired: 'running', generation };
    const usage = this.usageOps(snap, next);
    if (usage.excess !== null) {
      return {
        type: 'reply',
        response: errorResponse('QuotaExceededError', `tenant ${this.ref.tenant} is at its quota (${usage.excess}); stop or remove a project, or raise the quota with tenant_quota_set`),
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
      after: (ownedAt, done) => this.launch(ownedAt, next, run.ports, restart || this.services.started.get(this.key) !== generation, done),
    };
  }

  private planStop(snap: Snapshot, epoch: number, ifVersion: number | undefined): Plan {
    if (snap.project === null) return this.notFound();
    const mismatch = this.ifVersionMismatch(snap, ifVersion);
    if (mismatch !== null) return mismatch;
    const next: ProjectRecord = { ...snap.project, desired: 'stopped' };
    const usage = this.usageOps(snap, next);
    const status: ProjectStatusRecord = this.statusRecord(epoch, 'stopped', {}, next.generation, null);
    return {
      type: 'write',
      write: {
        epoch,
        compare: [this.versionCompare(snap), ...usage.compare],
        success: [
          { type: 'put', key: this.key, value: JSON.stringify(next) },
          ...usage.ops,
          ...this.freePortOps(snap),
          { type: 'put', key: statusKey(this.ref.tenant, this.ref.name), value: JSON.stringify(status) },
        ],
        inspect: [this.key],
      },
      after: (_epoch, done) => this.stopHere(() => this.status(done)),
    };
  }

  private planRemove(snap: Snapshot, epoch: number, ifVersion: number | undefined): Plan {
    if (snap.project === null) return this.notFound();
    const mismatch = this.ifVersionMismatch(snap, ifVersion);
    if (mismatch !== null) return mismatch;
    const usage = this.usageOps(snap, null);
    return {
      type: 'write',
      write: {
        epoch,
        compare: [this.versionCompare(snap), ...usage.compare],
        success: [{ type: 'delete', key: this.key }, ...usage.ops, ...this.freePortOps(snap), { type: 'delete', key: statusKey(this.ref.tenant, this.ref.name) }],
        inspect: [this.key],
      },
      after: (_epoch, done) =>
        this.services.runtime.remove(this.ref, () => {
          this.services.started.delete(this.key);
          done({ type: 'removed', tenant: this.ref.tenant, name: this.ref.name });
        }),
    };
  }

  // ---- ports and status --------------------------------------------------------------

  private freePortOps(snap: Snapshot): KvOp[] {
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
    return {
      compare: fresh.map((port): Compare => ({ key: portKey(node, port), target: 'createRevision', op: '==', operand: 0 })),
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
      error: observed?.error ?? null,
    };
  }

  /** Write the observed status under the fence when it differs from the stored one. */
  private writeStatus(epoch: number, status: ProjectStatusRecord, done: (outcome: FencedOutcome | null) => void): void {
    const current = this.read().statusRecord;
    if (current !== null && JSON.stringify(current) === JSON.stringify(status)) return done(null);
    const write: FencedWrite = { epoch, compare: [], success: [{ type: 'put', key: statusKey(this.ref.tenant, this.ref.name), value: JSON.stringify(status) }], inspect: [] };
    fencedWrite(this.services.store, this.services.fencing, write, done);
  }

  // ---- runtime ---------------------------------------------------------------------

  /** Start (or restart) the workload here, then record what the runtime observed. */
  private launch(epoch: number, project: ProjectRecord, ports: Record<string, number>, force: boolean, done: Reply): void {
    const current = this.services.runtime.status(this.ref);
    const running = current !== null && isActiveState(current.state);
    const finish = (observed: WorkloadStatus | null, error: string | null): void => {
      const state = observed?.state ?? 'failed';
      const status = this.statusRecord(epoch, state, ports, project.generation, observed);
      const withError = error === null ? status : { ...status, error };
      this.writeStatus(epoch, withError, (outcome) => {
        if (outcome !== null && outcome.type === 'fenced') {
          // The ring moved while we started it: the new owner runs it, not us.
          return this.stopHere(() => done(this.notOwner(outcome.epoch)));
        }
        this.status(done);
      });
    };
    if (running && !force) return finish(current, null);
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
    this.services.runtime.start(spec, (outcome) => {
      if (!outcome.ok) return finish(null, `${outcome.error.name}: ${outcome.error.message}`);
      this.services.started.set(this.key, project.generation);
      finish(outcome.value, null);
    });
  }

  /** Stop the workload if it runs on this node. */
  private stopHere(done: () => void): void {
    const current = this.services.runtime.status(this.ref);
    if (current === null || !isActiveState(current.state)) return done();
    this.services.runtime.stop(this.ref, this.services.stopGraceMs, () => {
      this.services.started.delete(this.key);
      done();
    });
  }

  /** Make the runtime here match the desired state, as the owner at the current epoch. */
  private reconcile(reply: Reply): void {
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
      const ports = recorded !== null && recorded.node === this.services.node ? recorded.ports : {};
      return this.launch(epoch, snap.project, { ...ports }, false, reply);
    }
    const project = snap.project;
    this.mutate(
      reply,
      (fresh, ownedAt) => {
        if (fresh.project === null || fresh.project.desired !== 'running') return { type: 'reply', response: this.viewResponse(fresh) };
        const run = this.runOps(fresh, ownedAt, fresh.project);
        if (run instanceof PortsExhaustedError) return { type: 'reply', response: errorResponse('RuntimeFailedError', run.message) };
        return {
          type: 'write',
          write: { epoch: ownedAt, compare: [this.versionCompare(fresh), ...run.compare], success: run.ops, inspect: [this.key] },
          after: (at, done) => this.launch(at, fresh.project ?? project, run.ports, true, done),
        };
      },
    );
  }

  private viewResponse(snap: Snapshot): ActorResponse {
    const view = this.viewOf(snap);
    return view === null ? this.notFoundResponse() : { type: 'project', project: view };
  }

  private notOwner(epoch?: number): ActorResponse {
    return { type: 'notOwner', epoch: epoch ?? this.services.store.view().get('ring/epoch')?.modRevision ?? 0, ownerHint: null };
  }

  private notFoundResponse(): ActorResponse {
    return errorResponse('NotFoundError', `no project ${this.ref.name} in tenant ${this.ref.tenant}; start it with project_start`);
  }

  private notFound(): Plan {
    return { type: 'reply', response: this.notFoundResponse() };
  }
}

export const isProjectRequest = (request: ActorRequest): request is ProjectRequest =>
  request.type === 'start' || request.type === 'stop' || request.type === 'restart' || request.type === 'remove' || request.type === 'status';
