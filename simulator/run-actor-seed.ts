// One simulator run of the whole cluster with the actor layer: a safety phase
// (project workload under the seed's faults, fencing and quota checked on
// every committed entry), then heal everything and a liveness phase that must
// reach "each desired-running project runs exactly once" within a bound, then
// the final checks (acknowledged desired states, Raft logs).
import type { NodeId } from '../consensus/types.ts';
import { eventsKey, quotaKey, statusKey, usageKey } from '../actors/messages.ts';
import { systemValueError } from '../actors/records.ts';
import { SimActorCluster } from './actor-cluster.ts';
import { RunStoppedError } from './cluster.ts';
import type { ActorCoverageCounts, CoverageCounts } from './coverage.ts';
import { ActorInvariants } from './actor-invariants.ts';
import { ActorWorkload } from './actor-workload.ts';
import type { FaultKind } from './faults.ts';
import { ACTOR_MUTATIONS, type ActorMutationName } from './mutations.ts';
import { PoisonNemesis, type PoisonStats } from './nemesis-poison.ts';
import { prngFromSeed, type Prng } from './prng.ts';
import type { SimRuntime } from './runtime-sim.ts';
import { confShows } from './scenario-harness.ts';
import { Trace } from './trace.ts';


export interface ActorSeedOptions {
  readonly seed: number;
  readonly nodes: number;
  readonly faults: ReadonlySet<FaultKind>;
  /** Projects in the workload. */
  readonly actors: number;
  readonly safetyMs?: number;
  readonly livenessMsMax?: number;
  readonly tracePath?: string | null;
  readonly traceHash?: boolean;
  readonly mutation?: ActorMutationName | null;
  /** Propose malformed entries and records to the leader during the safety phase (simulator/nemesis-poison.ts). */
  readonly poison?: boolean;
}

export const ACTOR_SAFETY_MS_DEFAULT = 8000;
export const ACTOR_LIVENESS_MS_MAX_DEFAULT = 20_000;
/** The converged state must hold this long (no late start or stop undoes it). */
const STABLE_MS = 1000;
const SETUP_MS_MAX = 30_000;
/** How often a joining spare checks its progress and proposes its next step. */
const JOIN_RETRY_MS = 300;
/** Mean virtual time between graceful drains (rolling restarts) of a random node; some seeds have none. */
const DRAIN_INTERVAL_MS_RANGE: readonly [number, number] = [1000, 6000];
/** A drain that has not finished by then is cut short by the restart (as a shutdown timeout would). */
const DRAIN_MS_MAX = 4000;

/**
 * Graceful rolling restarts: drain a node's actors (the ring moves its keys
 * away), restart it, and let it rejoin the ring. Ring changes that the
 * workload's moves, hand-offs and the fencing checks feed on.
 */
class DrainNemesis {
  private active = false;
  private readonly intervalMs: number | null;

  constructor(
    private readonly actors: SimActorCluster,
    private readonly prng: Prng,
  ) {
    this.intervalMs = prng.chance(0.7) ? prng.range(DRAIN_INTERVAL_MS_RANGE[0], DRAIN_INTERVAL_MS_RANGE[1]) : null;
  }

  start(): void {
    if (this.intervalMs === null) return;
    this.active = true;
    this.next();
  }

  stop(): void {
    this.active = false;
  }

  private next(): void {
    const interval = this.intervalMs as number;
    this.actors.cluster.scheduler.schedule(this.prng.range(Math.floor(interval / 2), Math.floor((interval * 3) / 2)), () => {
      if (!this.active) return;
      const id = this.prng.pick(this.actors.cluster.allIds());
      const host = this.actors.hosts.get(id);
      if (host !== undefined && this.actors.cluster.isUp(id)) {
        let restarted = false;
        const restart = (): void => {
          if (restarted || !this.active || this.actors.hosts.get(id) !== host) return;
          restarted = true;
          this.actors.cluster.record(id, 'drained', '');
          this.actors.cluster.restartGracefully(id);
        };
        this.actors.cluster.record(id, 'drain', '');
        host.drain(restart);
        this.actors.cluster.scheduler.schedule(DRAIN_MS_MAX, restart, 'drain');
      }
      this.next();
    }, 'drain');
  }
}

export interface ActorSeedResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly violations: readonly string[];
  /** Virtual time of the first violation, null when none. */
  readonly firstViolationMs: number | null;
  readonly simulatedMs: number;
  readonly faults: string;
  readonly calls: ActorWorkload['counts'];
  /** How often the run reached each Raft situation, and each of the actor layer. */
  readonly coverage: CoverageCounts;
  readonly actorCoverage: ActorCoverageCounts;
  readonly ownerWrites: number;
  readonly epochs: number;
  /** Voters at the end (one more than --nodes when the spare joined). */
  readonly voters: number;
  readonly host: { moves: number; forwardedCalls: number; leaseExpiries: number; livenessChanges: number; retries: number; handoffWaits: number };
  readonly stats: SimActorClusterStats;
  /** What the poison nemesis injected; null when it was off. */
  readonly poison: PoisonStats | null;
  readonly traceHash: string | null;
}

type SimActorClusterStats = SimActorCluster['cluster']['stats'];

export function runActorSeed(options: ActorSeedOptions): ActorSeedResult {
  const tracing = options.tracePath != null || options.traceHash === true;
  const trace = tracing ? new Trace({ enabled: true, ...(options.tracePath == null ? {} : { filePath: options.tracePath }) }) : null;
  // Half the seeds have one spare node that joins the cluster during the safety phase.
  const joinPrng = prngFromSeed(options.seed).fork('actors:join');
  const joins = joinPrng.chance(0.5);
  const actors = new SimActorCluster({ seed: options.seed, nodes: options.nodes, spareNodes: joins ? 1 : 0, faults: options.faults, trace, stopAtFirstViolation: true, ...(options.mutation == null ? {} : { actorPlant: ACTOR_MUTATIONS[options.mutation].plant }) });
  const cluster = actors.cluster;
  const checker = cluster.checker;
  cluster.record('-' as NodeId, 'seed', `${options.seed} nodes=${options.nodes} actors=${options.actors} ${cluster.describeFaults()}`);
  const invariants = new ActorInvariants(actors, (text) => checker.violation(text));
  const tenants = Math.max(1, Math.ceil(options.actors / 8));
  const perTenant = Math.ceil(options.actors / tenants);
  const workload = new ActorWorkload(actors, cluster.prng.fork('actor-workload'), {
    tenants,
    projects: options.actors,
    clients: Math.min(options.actors, 6),
    quotaProjects: Math.max(1, Math.floor(perTenant * 0.6)),
    callDeadlineMs: 2000,
  });
  const projectKeys = workload.projects.map((project) => `projects/${project.tenant}/${project.name}`);
  const safetyMs = options.safetyMs ?? ACTOR_SAFETY_MS_DEFAULT;
  const livenessMsMax = options.livenessMsMax ?? ACTOR_LIVENESS_MS_MAX_DEFAULT;
  let poisonStats: PoisonStats | null = null;
  try {
    // Setup without faults: the tenants' quotas are in place before any project starts.
    workload.setQuotas();
    if (!cluster.runUntil(() => workload.quotasReady, SETUP_MS_MAX)) checker.violation(`setup: tenant quotas not set within ${SETUP_MS_MAX} ms without faults`);
    cluster.startNemesis();
    const drains = new DrainNemesis(actors, cluster.prng.fork('drain'));
    drains.start();
    const poison = options.poison === true ? poisonFor(actors, workload) : null;
    poisonStats = poison?.stats ?? null;
    poison?.start();
    for (const spare of cluster.spareIds) cluster.scheduler.schedule(joinPrng.range(0, safetyMs), () => join(actors, spare), 'join');
    workload.start();
    cluster.runFor(safetyMs);
    workload.stop();
    drains.stop();
    poison?.stop();
    cluster.healAll();
    const healedAt = cluster.scheduler.nowMs();
    let problem: string | null = 'not checked';
    const settled = (): boolean => {
      problem = settledProblem(actors, workload, projectKeys);
      return problem === null;
    };
    let converged = cluster.runUntil(settled, livenessMsMax);
    if (converged) {
      // It must stay so: no late start or stop undoes it.
      cluster.runFor(STABLE_MS);
      converged = cluster.runUntil(settled, livenessMsMax);
    }
    if (!converged) checker.violation(`liveness: ${cluster.scheduler.nowMs() - healedAt} ms after healing all: ${problem ?? ''}`);
    else {
      const leader = cluster.leader();
      if (leader !== null) for (const lost of ActorInvariants.lostStates(leader.machine.kv, workload)) checker.violation(`acknowledged state lost: ${lost}`);
    }
    for (const problem of invariants.appliedOnceProblems(workload)) checker.violation(problem);
    for (const problem of poison?.finalProblems() ?? []) checker.violation(problem);
    checker.finalChecks();
  } catch (error) {
    if (!(error instanceof RunStoppedError)) checker.violation(`exception: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  }
  trace?.close();
  const host = { moves: 0, forwardedCalls: 0, leaseExpiries: 0, livenessChanges: 0, retries: 0, handoffWaits: 0 };
  for (const h of actors.hosts.values()) {
    host.moves += h.stats.moves;
    host.forwardedCalls += h.stats.forwardedCalls;
    host.leaseExpiries += h.stats.leaseExpiries;
    host.handoffWaits += h.stats.handoffWaits;
    host.livenessChanges += h.stats.livenessChanges;
    host.retries += h.stats.retries;
  }
  return {
    seed: options.seed,
    ok: checker.ok,
    violations: checker.violations,
    firstViolationMs: checker.firstViolationMs,
    simulatedMs: cluster.scheduler.nowMs(),
    faults: cluster.describeFaults(),
    calls: workload.counts,
    coverage: { ...cluster.coverage.counts },
    actorCoverage: {
      callsWhileOwnerMoved: workload.callsWhileOwnerMoved,
      handOffs: host.moves,
      ownerLeasesLapsed: host.leaseExpiries,
      callsRetried: host.retries,
      launchesBesideOldCopy: invariants.stats.overlapsAllowed,
      launchesWaitingForRelease: host.handoffWaits,
      releasesRecorded: invariants.stats.releases,
      watchdogFreezes: runtimeSum(actors, 'freezes'),
      watchdogKills: runtimeSum(actors, 'fenceKills'),
    },
    ownerWrites: invariants.stats.ownerWrites,
    epochs: invariants.stats.epochs.size,
    voters: cluster.currentVoters().length,
    host,
    stats: cluster.stats,
    poison: poisonStats,
    traceHash: trace === null ? null : trace.digestHex(),
  };
}

function runtimeSum(actors: SimActorCluster, stat: keyof SimRuntime['stats']): number {
  let sum = 0;
  for (const runtime of actors.runtimes.values()) sum += runtime.stats[stat];
  return sum;
}

/**
 * Add `spare` as a learner, then promote it, retrying through whichever node
 * leads until it is a voter (also past the safety phase, so that healing
 * finds it a member).
 */
function join(actors: SimActorCluster, spare: NodeId): void {
  const cluster = actors.cluster;
  const step = (): void => {
    const leader = cluster.leader();
    const conf = leader?.raft.confState();
    if (leader !== null && conf !== undefined) {
      if (confShows(conf, { type: 'promote', node: spare })) return cluster.record(spare, 'joined', '');
      const change = confShows(conf, { type: 'addLearner', node: spare }) ? ({ type: 'promote', node: spare } as const) : ({ type: 'addLearner', node: spare, address: `${spare}:7000` } as const);
      // Fire and check again later: a proposal's answer can be lost (a leader re-proposing at an index drops the earlier callback).
      cluster.proposeConfChange(leader.id, change, () => undefined);
    }
    cluster.scheduler.schedule(JOIN_RETRY_MS, step, 'join');
  };
  step();
}

/** Why the healed cluster has not converged yet; null once it has. */
function settledProblem(actors: SimActorCluster, workload: ActorWorkload, projectKeys: readonly string[]): string | null {
  const cluster = actors.cluster;
  const leader = cluster.leader();
  if (leader === null) return 'no leader';
  if (workload.projects.some((project) => project.busy)) return 'client calls still in flight';
  const commit = leader.raft.log.committed;
  for (const id of cluster.allIds()) {
    const node = cluster.node(id);
    if (node === null) return `${id} is down`;
    if (node.machine.appliedIndex < commit) return `${id} applied ${node.machine.appliedIndex} of ${commit}`;
    if (actors.hosts.get(id)?.leaseState() !== 'valid') return `${id} holds no owner lease`;
  }
  const placement = actors.hosts.get(leader.id)?.placement();
  if (placement === undefined) return `no actor host on leader ${leader.id}`;
  if (placement.live.length !== placement.members.length) return `members marked down: ${placement.members.filter((m) => !placement.live.includes(m)).join(',')}`;
  return ActorInvariants.exactlyOnceProblem(actors, leader.machine.kv, projectKeys);
}

/** The poison nemesis aimed at the workload's own records: each project's record, status and events, each tenant's quota and usage. */
function poisonFor(actors: SimActorCluster, workload: ActorWorkload): PoisonNemesis {
  const keys: string[] = [];
  for (const project of workload.projects) keys.push(`projects/${project.tenant}/${project.name}`, statusKey(project.tenant, project.name), eventsKey(project.tenant, project.name));
  for (const tenant of new Set(workload.projects.map((project) => project.tenant))) keys.push(quotaKey(tenant), usageKey(tenant));
  // And the keys every other layer reads: members and liveness marks (the ring), port holders, the ring epoch, the NOSPACE alarm, tokens, audit chains, and stray keys.
  for (const id of actors.cluster.allIds()) keys.push(`members/${id}`, `liveness/${id}`, `ports/${id}/20000`, `audit/${id}/head`);
  keys.push('ring/epoch', 'cluster/alarms/nospace', 'cluster/other', 'tokens/0123456789abcdef', 'projects/stray', 'tenants/t0/other');
  return new PoisonNemesis(actors.cluster, actors.cluster.prng.fork('poison'), () => keys, systemValueError);
}
