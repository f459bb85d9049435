// Project workload for actor runs: clients start, stop, restart, remove and
// query projects across tenants through random nodes, one call per project
// at a time, recording every outcome so the final checks can tell which
// desired states were acknowledged.
import { projectActorKey, tenantActorKey, type ActorRequest, type ActorResponse, type DesiredState, type ProjectSpec } from '../actors/messages.ts';
import type { NodeId } from '../consensus/types.ts';
import type { SimActorCluster } from './actor-cluster.ts';
import type { Prng } from './prng.ts';

export interface ActorWorkloadOptions {
  readonly tenants: number;
  readonly projects: number;
  readonly clients: number;
  /** Projects quota of every tenant (below its project count, so quota errors happen). */
  readonly quotaProjects: number;
  readonly callDeadlineMs: number;
}

/** What the store holds for a project after an operation: running, stopped, or gone. */
export type ProjectFate = DesiredState | 'absent';

export interface ProjectHistory {
  readonly tenant: string;
  readonly name: string;
  /** Fate after the last acknowledged write, 'absent' before any. */
  lastAcked: ProjectFate;
  /** Fates of writes whose outcome is unknown: any of them may have landed (even after a later ack). */
  readonly maybe: Set<ProjectFate>;
  busy: boolean;
}

export const SIM_SPEC: ProjectSpec = Object.freeze({
  command: 'node server.js',
  image: null,
  cwd: null,
  env: {},
  ports: ['default'],
  restart: 'on-failure',
  healthCheck: null,
  memoryBytes: 64 * 1024 * 1024,
});

export class ActorWorkload {
  readonly projects: ProjectHistory[] = [];
  readonly counts = { ok: 0, quota: 0, notFound: 0, unknown: 0, refused: 0, quotaSetOk: 0 };
  private running = false;
  private sequence = 0;
  private quotasSet = 0;

  constructor(
    private readonly actors: SimActorCluster,
    private readonly prng: Prng,
    private readonly options: ActorWorkloadOptions,
  ) {
    for (let i = 0; i < options.projects; i += 1) {
      this.projects.push({ tenant: `t${i % options.tenants}`, name: `p${i}`, lastAcked: 'absent', maybe: new Set(), busy: false });
    }
  }

  get tenantNames(): string[] {
    return Array.from({ length: this.options.tenants }, (_, i) => `t${i}`);
  }

  /** Set every tenant's quota through the tenant actors (before faults start). */
  setQuotas(): void {
    for (const tenant of this.tenantNames) this.setQuota(tenant);
  }

  get quotasReady(): boolean {
    return this.quotasSet === this.options.tenants;
  }

  start(): void {
    this.running = true;
    for (let i = 0; i < this.options.clients; i += 1) this.nextCall();
  }

  stop(): void {
    this.running = false;
  }

  private setQuota(tenant: string): void {
    const request: ActorRequest = { type: 'quotaSet', quota: { projects: this.options.quotaProjects, ports: 1000, memoryBytes: 1024 ** 4 } };
    this.send(tenantActorKey(tenant), request, (response) => {
      if (response !== null && response.type === 'usage') {
        this.counts.quotaSetOk += 1;
        this.quotasSet += 1;
        return;
      }
      this.actors.cluster.scheduler.schedule(50, () => this.setQuota(tenant), 'workload');
    });
  }

  private nextCall(): void {
    if (!this.running) return;
    const idle = this.projects.filter((project) => !project.busy);
    const project = this.prng.pick(idle.length > 0 ? idle : this.projects);
    if (project.busy) {
      this.actors.cluster.scheduler.schedule(10, () => this.nextCall(), 'workload');
      return;
    }
    project.busy = true;
    const roll = this.prng.float();
    const request: ActorRequest =
      roll < 0.5 ? { type: 'start', spec: SIM_SPEC } : roll < 0.72 ? { type: 'stop' } : roll < 0.8 ? { type: 'restart' } : roll < 0.9 ? { type: 'remove' } : { type: 'status' };
    const fate: ProjectFate | null = request.type === 'start' || request.type === 'restart' ? 'running' : request.type === 'stop' ? 'stopped' : request.type === 'remove' ? 'absent' : null;
    this.send(projectActorKey(project.tenant, project.name), request, (response) => {
      project.busy = false;
      this.record(project, fate, response);
      this.actors.cluster.scheduler.schedule(this.prng.range(1, 50), () => this.nextCall(), 'workload');
    });
  }

  private record(project: ProjectHistory, fate: ProjectFate | null, response: ActorResponse | null): void {
    if (response === null) {
      this.counts.unknown += 1;
      if (fate !== null) project.maybe.add(fate);
      return;
    }
    switch (response.type) {
      case 'project':
      case 'removed':
        this.counts.ok += 1;
        if (fate !== null) project.lastAcked = fate;
        return;
      case 'error':
        if (response.name === 'QuotaExceededError' || response.name === 'NotFoundError' || response.name === 'VersionConflictError') {
          // Definite refusals: nothing was written.
          if (response.name === 'QuotaExceededError') this.counts.quota += 1;
          else this.counts.notFound += 1;
          return;
        }
        this.counts.unknown += 1;
        if (fate !== null) project.maybe.add(fate);
        return;
      case 'usage':
      case 'list':
      case 'notOwner':
        this.counts.unknown += 1;
        if (fate !== null) project.maybe.add(fate);
        return;
      default: {
        const never: never = response;
        return never;
      }
    }
  }

  /** Call through a random node; a refused connection tries another node (null: no answer). */
  private send(key: ReturnType<typeof projectActorKey>, request: ActorRequest, done: (response: ActorResponse | null) => void, tries = 0): void {
    const ids = this.actors.cluster.allIds();
    const target: NodeId = this.prng.pick(ids);
    this.sequence += 1;
    this.actors.clientCall(target, key, request, this.options.callDeadlineMs, `client-${this.sequence}`, (outcome) => {
      if (outcome.delivered) return done(outcome.response);
      if (outcome.reason === 'timeout') return done(null);
      this.counts.refused += 1;
      if (tries < 5) return this.send(key, request, done, tries + 1);
      done(null);
    });
  }
}
