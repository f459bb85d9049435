// The actor layer's invariants, checked on the committed log and at the end:
// every owner write accepted at an epoch came from that epoch's owner (so no
// project has two owners that both commit at one epoch); a tenant's running
// projects never exceed its quota and its usage counter matches them; after
// healing, each desired-running project runs exactly once and each other
// nowhere; no acknowledged desired state is lost. And during the run, each
// time a copy of a project launches: any other copy still running is one the
// design allows (see overlapRefused), never that of a member the ring marked
// down before its lease lapsed and its watchdog fenced it.
import { RING_EPOCH_KEY } from '../consensus/kv-machine.ts';
import { decodeCommand, prefixEnd, type KvStateMachine } from '../consensus/kv-state-machine.ts';
import type { NodeId } from '../consensus/types.ts';
import { usageKey, quotaKey, type ProjectRecord, type ProjectStatusRecord, type TenantQuota, type TenantUsage } from '../actors/messages.ts';

/** The checker reads raw values: a record that does not parse counts as absent. */
function parseRecord<T>(value: string | undefined): T | null {
  if (value === undefined) return null;
  try {
    const parsed: unknown = JSON.parse(value);
    return typeof parsed === 'object' && parsed !== null ? (parsed as T) : null;
  } catch {
    return null;
  }
}
import { Placement, readRingInputs } from '../actors/placement.ts';
import type { SimActorCluster } from './actor-cluster.ts';
import type { ActorWorkload, ProjectFate } from './actor-workload.ts';

export class ActorInvariants {
  /** Indexes already checked (every replica applies the same entry; the first is enough). */
  private checkedIndex = 0;
  /** `${project}@${epoch}` -> the node that wrote its status at that epoch. */
  private readonly writers = new Map<string, string>();
  private placement: Placement | null = null;
  /** The last committed record of each project, to tell whether a change's request id was applied before. */
  private readonly records = new Map<string, ProjectRecord | null>();
  /** Changes applied per project: committed record writes that carry a request id the record did not hold. */
  readonly applied = new Map<string, number>();
  readonly stats = { ownerWrites: 0, epochs: new Set<number>(), launches: 0, overlapsAllowed: 0, copiesMax: 0, releases: 0 };

  constructor(
    private readonly actors: SimActorCluster,
    private readonly violation: (text: string) => void,
  ) {
    actors.onApplied((_id, node, entry) => {
      if (entry.index <= this.checkedIndex) return;
      this.checkedIndex = entry.index;
      if (entry.type !== 'normal') return;
      this.checkEntry(node.machine.kv, entry.data);
    });
    actors.onLaunching((node, key) => this.checkLaunch(node, key));
  }

  /**
   * Why an old copy on `other` may not overlap a new one launching on `node`, or null if the
   * design allows it. It allows one overlap: docs/architecture.md's one-way link case, an old
   * owner that the ring `node` launches at marks down while it still holds its lease (the leader
   * stopped hearing it, it still hears the leader; it stops its copy when it applies the move).
   * Every other overlap is refused: a graceful move (a join, a drain, a rejoin: `other` is not
   * marked down) must wait for the old owner's recorded release, and a takeover of a member
   * marked down must find its copy fenced by its watchdog.
   */
  private overlapRefused(node: NodeId, other: NodeId): string | null {
    const host = this.actors.hosts.get(other);
    const lease = host === undefined ? 'none (down)' : host.leaseState();
    const launcher = this.actors.cluster.node(node);
    const markedDown = launcher !== null && readRingInputs(launcher.machine.kv).down.includes(other);
    if (markedDown && lease === 'valid') return null;
    const paused = this.actors.cluster.scheduler.isPaused(other) ? ', paused' : '';
    return markedDown ? `marked down, lease ${lease}${paused}` : `not marked down: a graceful move that did not wait for its release, lease ${lease}${paused}`;
  }

  /** A copy of `key` begins to launch on `node`: every other copy must be one overlapRefused allows. */
  private checkLaunch(node: NodeId, key: string): void {
    this.stats.launches += 1;
    const others: NodeId[] = [];
    for (const [id, runtime] of this.actors.runtimes) if (id !== node && runtime.isActive(key)) others.push(id);
    this.stats.copiesMax = Math.max(this.stats.copiesMax, others.length + 1);
    for (const other of others) {
      const why = this.overlapRefused(node, other);
      if (why === null) {
        this.stats.overlapsAllowed += 1;
        continue;
      }
      this.violation(`two copies: ${key} launches on ${node} while ${other} still runs it (${other}: ${why}; watchdog ${this.actors.runtimes.get(other)?.fence() ?? 'none'})`);
    }
  }

  private placementAt(kv: KvStateMachine): Placement {
    const epoch = kv.get(RING_EPOCH_KEY)?.modRevision ?? 0;
    if (this.placement === null || this.placement.epoch !== epoch) this.placement = new Placement(readRingInputs(kv));
    return this.placement;
  }

  /** `kv` is the state right after the entry applied. */
  private checkEntry(kv: KvStateMachine, data: Uint8Array): void {
    const command = decodeCommand(data);
    if (command === null || command.type !== 'txn') return;
    const tenants = new Set<string>();
    for (const op of command.success) {
      if (op.type !== 'put' && op.type !== 'delete') continue;
      const parts = op.key.split('/');
      if (parts[0] === 'projects' && parts.length === 3) this.checkOnce(kv, op.key);
      if ((parts[0] === 'projects' || parts[0] === 'status' || parts[0] === 'tenants') && parts[1] !== undefined) tenants.add(parts[1]);
      if (op.type !== 'put' || parts[0] !== 'status') continue;
      const stored = kv.get(op.key);
      // Written by this entry only if the txn's success branch ran: the key's last put is this revision.
      if (stored === null || stored.modRevision !== kv.revision || stored.value !== op.value) continue;
      const status = parseRecord<ProjectStatusRecord>(op.value);
      if (status === null) continue;
      if (status.released === true) this.releaseWrite(`projects/${parts[1]}/${parts[2]}`, status);
      else this.ownerWrite(kv, `projects/${parts[1]}/${parts[2]}`, status);
    }
    for (const tenant of tenants) this.checkQuota(kv, tenant);
  }

  /** A change is applied once per request id: a record that grows a request id it already held did the work twice. */
  private checkOnce(kv: KvStateMachine, key: string): void {
    const stored = kv.get(key);
    // The entry's success branch ran only if the key changed at this revision.
    if (stored !== null && stored.modRevision !== kv.revision) return;
    const next = stored === null ? null : parseRecord<ProjectRecord>(stored.value);
    const previous = this.records.get(key) ?? null;
    this.records.set(key, next);
    const newest = next?.requests?.at(-1);
    if (next === null || newest === undefined || (previous?.requests ?? []).at(-1) === newest) return;
    this.applied.set(key, (this.applied.get(key) ?? 0) + 1);
    if ((previous?.requests ?? []).includes(newest)) {
      this.violation(`idempotency: request ${newest} was applied to ${key} twice (generation ${previous?.generation ?? 0} -> ${next.generation})`);
    }
  }

  /** Each client change is applied at most once: no project saw more applied changes than its clients asked for. */
  appliedOnceProblems(workload: ActorWorkload): string[] {
    const problems: string[] = [];
    for (const project of workload.projects) {
      const key = `projects/${project.tenant}/${project.name}`;
      const applied = this.applied.get(key) ?? 0;
      if (applied > project.changesAsked) problems.push(`idempotency: ${key} had ${applied} changes applied, its clients asked for ${project.changesAsked} (a retried request was applied twice)`);
    }
    return problems;
  }

  /** A release record is not an owner write: it must say the truth, that its node runs no copy (actors/handoff.ts). */
  private releaseWrite(project: string, status: ProjectStatusRecord): void {
    this.stats.releases += 1;
    if (this.actors.runtimes.get(status.node as NodeId)?.isActive(project) === true) {
      this.violation(`release: ${status.node} recorded the release of ${project} while its copy still runs`);
    }
  }

  private ownerWrite(kv: KvStateMachine, project: string, status: ProjectStatusRecord): void {
    const placement = this.placementAt(kv);
    const epoch = placement.epoch;
    this.stats.ownerWrites += 1;
    this.stats.epochs.add(epoch);
    const owner = placement.owner(project);
    if (status.epoch !== epoch) this.violation(`fencing: ${status.node} wrote ${project} as owner at epoch ${status.epoch}, accepted at epoch ${epoch} (owner ${owner ?? 'none'})`);
    else if (owner !== status.node) this.violation(`fencing: ${status.node} wrote ${project} at epoch ${epoch}, whose owner is ${owner ?? 'none'}`);
    const slot = `${project}@${epoch}`;
    const first = this.writers.get(slot);
    if (first === undefined) this.writers.set(slot, status.node);
    else if (first !== status.node) this.violation(`two owners: ${first} and ${status.node} both committed writes to ${project} at epoch ${epoch}`);
  }

  private checkQuota(kv: KvStateMachine, tenant: string): void {
    const quota = parseRecord<TenantQuota>(kv.get(quotaKey(tenant))?.value);
    const usage = parseRecord<TenantUsage>(kv.get(usageKey(tenant))?.value) ?? { projects: 0, ports: 0, memoryBytes: 0, storedBytes: 0 };
    const prefix = `projects/${tenant}/`;
    let running = 0;
    for (const entry of kv.range(prefix, prefixEnd(prefix))) if (parseRecord<ProjectRecord>(entry.value)?.desired === 'running') running += 1;
    if (usage.projects !== running) this.violation(`quota: tenant ${tenant} usage says ${usage.projects} running projects, the store holds ${running}`);
    if (quota !== null && running > quota.projects) this.violation(`quota: tenant ${tenant} runs ${running} projects over its quota of ${quota.projects}`);
  }

  /** Desired fates in `kv` against what the runtimes run; null when they match exactly once. */
  static exactlyOnceProblem(actors: SimActorCluster, kv: KvStateMachine, projects: readonly string[]): string | null {
    const runningOn = new Map<string, NodeId[]>();
    for (const [id, runtime] of actors.runtimes) for (const key of runtime.activeKeys()) runningOn.set(key, [...(runningOn.get(key) ?? []), id]);
    for (const key of projects) {
      const desired = parseRecord<ProjectRecord>(kv.get(key)?.value)?.desired ?? 'absent';
      const nodes = runningOn.get(key) ?? [];
      if (desired === 'running' && nodes.length !== 1) return `${key} is desired running but runs on ${nodes.length} nodes {${nodes.join(',')}}`;
      if (desired !== 'running' && nodes.length > 0) return `${key} is ${desired} but runs on {${nodes.join(',')}}`;
    }
    return null;
  }

  /** Every project's final fate is its last acknowledged one or that of a write with an unknown outcome. */
  static lostStates(kv: KvStateMachine, workload: ActorWorkload): string[] {
    const problems: string[] = [];
    for (const project of workload.projects) {
      const record = parseRecord<ProjectRecord>(kv.get(`projects/${project.tenant}/${project.name}`)?.value);
      const fate: ProjectFate = record?.desired ?? 'absent';
      if (fate !== project.lastAcked && !project.maybe.has(fate)) {
        problems.push(`projects/${project.tenant}/${project.name} is ${fate}; last acknowledged ${project.lastAcked}, unknown outcomes {${[...project.maybe].join(',')}}`);
      }
    }
    return problems;
  }
}
