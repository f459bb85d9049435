// Project workload for actor runs: clients of each tenant, with that
// tenant's developer token, start, stop, restart, remove and query projects
// through random nodes with the tools' own call builders (actors/tools.ts, as
// an MCP client's calls are built), one call per project at a time. A call
// whose outcome is unknown is retried once with the same request id, as an
// agent retries after a lost answer; every outcome is recorded so the final
// checks can tell which desired states were acknowledged.
import { projectActorKey, type ActorResponse, type DesiredState, type Identity, type ProjectSpec } from '../actors/messages.ts';
import { quotaSetCall, toolCalls, type ToolCall } from '../actors/tools.ts';
import type { NodeId } from '../consensus/types.ts';
import { SIM_ADMIN, type SimActorCluster } from './actor-cluster.ts';
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
  /** Distinct change requests sent (a retry with the same request id is the same request). */
  changesAsked: number;
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

/** A tenant's developer token, as its agents would hold. */
export const developerOf = (tenant: string): Identity => ({ tokenId: `sim-${tenant}`, tokenName: `${tenant} developer`, tenant, role: 'developer' });

export class ActorWorkload {
  readonly projects: ProjectHistory[] = [];
  readonly counts = { ok: 0, quota: 0, notFound: 0, unknown: 0, refused: 0, quotaSetOk: 0, retried: 0, reads: 0 };
  /** Calls during which the project's owner changed (coverage: ownership moved while a call was in flight). */
  callsWhileOwnerMoved = 0;
  private running = false;
  private sequence = 0;
  private quotasSet = 0;

  constructor(
    private readonly actors: SimActorCluster,
    private readonly prng: Prng,
    private readonly options: ActorWorkloadOptions,
  ) {
    for (let i = 0; i < options.projects; i += 1) {
      this.projects.push({ tenant: `t${i % options.tenants}`, name: `p${i}`, lastAcked: 'absent', maybe: new Set(), busy: false, changesAsked: 0 });
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
    const call = quotaSetCall(SIM_ADMIN, { tenant, projects: this.options.quotaProjects, ports: 1000, memoryMb: 1024 * 1024, storedMb: 1024 }, { projects: 0, ports: 0, memoryBytes: 0, storedBytes: 0 });
    this.send(SIM_ADMIN, call, `quota-${tenant}-${this.sequence + 1}`, (response) => {
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
    const identity = developerOf(project.tenant);
    const args = { name: project.name };
    const roll = this.prng.float();
    let call: ToolCall;
    let fate: ProjectFate | null = null;
    if (roll < 0.45) {
      // Some starts wait until the project runs: a settle after the turn, answered later.
      call = toolCalls.project_start(identity, { ...args, command: SIM_SPEC.command ?? 'true', memoryMb: 64, waitMs: this.prng.chance(0.3) ? 300 : 0 });
      fate = 'running';
    } else if (roll < 0.65) {
      call = toolCalls.project_stop(identity, args);
      fate = 'stopped';
    } else if (roll < 0.73) {
      call = toolCalls.project_restart(identity, { ...args, waitMs: 0 });
      fate = 'running';
    } else if (roll < 0.83) {
      call = toolCalls.project_remove(identity, args);
      fate = 'absent';
    } else if (roll < 0.93) {
      call = toolCalls.project_status(identity, args);
    } else if (roll < 0.97) {
      call = toolCalls.project_events(identity, { ...args, waitMs: this.prng.chance(0.5) ? 200 : 0 });
    } else {
      call = toolCalls.project_wait(identity, { ...args, timeoutMs: 300 });
    }
    this.sequence += 1;
    const requestId = `client-${this.sequence}`;
    if (fate !== null && fate !== 'absent') project.changesAsked += 1;
    const projectKey = projectActorKey(project.tenant, project.name);
    const ownerAtCall = this.ownerNow(projectKey);
    const finish = (response: ActorResponse | null): void => {
      project.busy = false;
      const ownerAtAnswer = this.ownerNow(projectKey);
      if (ownerAtCall !== null && ownerAtAnswer !== null && ownerAtCall !== ownerAtAnswer) this.callsWhileOwnerMoved += 1;
      this.record(project, fate, response);
      this.actors.cluster.scheduler.schedule(this.prng.range(1, 50), () => this.nextCall(), 'workload');
    };
    this.send(identity, call, requestId, (response) => {
      if (fate === null || !this.unknown(response)) return finish(response);
      // The answer was lost: retry once with the same request id, so the change is applied once.
      this.counts.retried += 1;
      if (fate !== null) project.maybe.add(fate);
      this.send(identity, call, requestId, finish);
    });
  }

  /** The project's owner as the current leader's ring has it; null without a leader. */
  private ownerNow(key: string): string | null {
    const leader = this.actors.cluster.leader();
    if (leader === null) return null;
    return this.actors.hosts.get(leader.id)?.placement().owner(key) ?? null;
  }

  /** An answer that leaves the outcome open: none at all, or an error that may follow an applied change. */
  private unknown(response: ActorResponse | null): boolean {
    if (response === null) return true;
    return response.type === 'error' && (response.name === 'OutcomeUnknownError' || response.name === 'DeadlineExceededError' || response.name === 'UnavailableError');
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
      case 'events':
      case 'wait':
        this.counts.reads += 1;
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
      case 'logs':
      case 'exec':
      case 'http':
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
  private send(identity: Identity, call: ToolCall, requestId: string, done: (response: ActorResponse | null) => void, tries = 0): void {
    const ids = this.actors.cluster.allIds();
    const target: NodeId = this.prng.pick(ids);
    // The workload's deadline is shorter than the tools' (the simulated run is short); the settle wait still fits in it.
    const bounded: ToolCall = { ...call, deadlineMs: Math.min(call.deadlineMs, this.options.callDeadlineMs) };
    this.actors.toolCall(target, identity, bounded, requestId, (outcome) => {
      if (outcome.delivered) return done(outcome.response);
      if (outcome.reason === 'timeout') return done(null);
      this.counts.refused += 1;
      if (tries < 5) return this.send(identity, call, requestId, done, tries + 1);
      done(null);
    });
  }
}
