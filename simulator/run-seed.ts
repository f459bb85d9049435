// One simulator run: a safety phase under the seed's faults, then a liveness
// phase that heals a quorum and must converge within a stated bound, then the
// final checks (logs, state machines, linearizability of the client history).
import { RunStoppedError, SimCluster, type RaftPlant } from './cluster.ts';
import type { CoverageCounts } from './coverage.ts';
import type { FaultKind } from './faults.ts';
import { checkLinearizability } from './linearizability.ts';
import { PoisonNemesis, type PoisonStats } from './nemesis-poison.ts';
import { Trace } from './trace.ts';
import { systemValueError } from '../actors/records.ts';
import { KvWorkload } from './workload.ts';

export interface SeedOptions {
  readonly seed: number;
  readonly nodes: number;
  readonly faults: ReadonlySet<FaultKind>;
  /** Virtual time under faults. */
  readonly safetyMs?: number;
  /** The stated liveness bound: after healing a quorum, a leader and every client's progress within this. */
  readonly livenessMsMax?: number;
  readonly clients?: number;
  readonly keys?: number;
  readonly tracePath?: string | null;
  readonly traceHash?: boolean;
  /** A planted bug (simulator/mutations.ts). */
  readonly plant?: RaftPlant;
  /** Propose malformed entries and records to the leader during the safety phase (simulator/nemesis-poison.ts). */
  readonly poison?: boolean;
}

/** System keys the poison nemesis aims at in a run without actors: one of each kind of record the nodes validate. */
const POISON_KEYS: readonly string[] = [
  'projects/acme/web',
  'status/acme/web',
  'events/acme/web',
  'tenants/acme/quota',
  'tenants/acme/usage',
  'members/n1',
  'liveness/n1',
  'ports/n1/20000',
  'ring/epoch',
  'cluster/alarms/nospace',
  'tokens/0123456789abcdef',
  'audit/n1/head',
  'projects/stray',
];

export const SAFETY_MS_DEFAULT = 10_000;
export const LIVENESS_MS_MAX_DEFAULT = 10_000;

export interface SeedResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly violations: readonly string[];
  /** Virtual time of the first violation, null when none. */
  readonly firstViolationMs: number | null;
  readonly simulatedMs: number;
  readonly faults: string;
  /** 'skipped' when another violation ended the run first. */
  readonly linearizability: 'ok' | 'violation' | 'unknown' | 'skipped';
  readonly operations: { readonly total: number; readonly ok: number; readonly fail: number; readonly unknown: number };
  readonly elections: number;
  readonly messages: number;
  readonly stats: SimCluster['stats'];
  /** How often the run reached each protocol situation (simulator/coverage.ts). */
  readonly coverage: CoverageCounts;
  /** What the poison nemesis injected; null when it was off. */
  readonly poison: PoisonStats | null;
  readonly traceHash: string | null;
}

export function runSeed(options: SeedOptions): SeedResult {
  const tracing = options.tracePath != null || options.traceHash === true;
  const trace = tracing ? new Trace({ enabled: true, ...(options.tracePath == null ? {} : { filePath: options.tracePath }) }) : null;
  const cluster = new SimCluster({
    seed: options.seed,
    nodes: options.nodes,
    faults: options.faults,
    trace,
    ...(options.plant === undefined ? {} : { plant: options.plant }),
    stopAtFirstViolation: true,
  });
  cluster.record('-' as never, 'seed', `${options.seed} nodes=${options.nodes} ${cluster.describeFaults()}`);
  const workload = new KvWorkload(cluster, cluster.prng.fork('workload'), {
    clients: options.clients ?? 4,
    keys: options.keys ?? 3,
    clientTimeoutMs: 1500,
  });
  const safetyMs = options.safetyMs ?? SAFETY_MS_DEFAULT;
  const livenessMsMax = options.livenessMsMax ?? LIVENESS_MS_MAX_DEFAULT;
  const checker = cluster.checker;
  const poison = options.poison === true ? new PoisonNemesis(cluster, cluster.prng.fork('poison'), () => POISON_KEYS, systemValueError) : null;
  try {
    cluster.startNemesis();
    workload.start();
    poison?.start();
    cluster.runFor(safetyMs);
    poison?.stop();
    // Clients may still reach any node (as over a separate client network); the quorum must serve them.
    const quorum = cluster.healQuorum();
    const healedAt = cluster.scheduler.nowMs();
    const converged = cluster.runUntil(() => cluster.leader() !== null && workload.allClientsOkSince(healedAt, 2), livenessMsMax);
    if (!converged) {
      const leader = cluster.leader();
      checker.violation(`liveness: within ${livenessMsMax} ms of healing {${quorum.join(',')}} ${leader === null ? 'no leader' : `leader ${leader.id}`}, not every client completed 2 calls`);
    }
    workload.stop();
    // Let the quorum apply everything, then every pair must hold the same state.
    const settled = cluster.runUntil(() => {
      const nodes = quorum.map((id) => cluster.node(id));
      const leader = cluster.leader();
      return leader !== null && nodes.every((node) => node !== null && node.machine.appliedIndex === leader.raft.log.committed) && leader.machine.appliedIndex === leader.raft.log.committed;
    }, 5000);
    if (settled) {
      const digests = new Set([...quorum.map((id) => cluster.node(id)?.machine.kv.digest()), cluster.leader()?.machine.kv.digest()]);
      if (digests.size !== 1) checker.violation(`state machines differ after convergence: ${[...digests].join(' ')}`);
    }
    for (const problem of poison?.finalProblems() ?? []) checker.violation(problem);
    checker.finalChecks();
  } catch (error) {
    if (!(error instanceof RunStoppedError)) checker.violation(`exception: ${error instanceof Error ? error.message : String(error)}`);
  }
  // A history cut short by a violation is not worth the search (it can take seconds to refute).
  const linearizable = checker.ok ? checkLinearizability(cluster.history) : ({ result: 'skipped' } as const);
  if (linearizable.result === 'violation') checker.violation(`linearizability: key ${linearizable.key}: ${linearizable.explanation}`);
  const counts = { total: cluster.history.length, ok: 0, fail: 0, unknown: 0 };
  for (const op of cluster.history) counts[op.status] += 1;
  trace?.close();
  return {
    seed: options.seed,
    ok: checker.ok,
    violations: checker.violations,
    firstViolationMs: checker.firstViolationMs,
    simulatedMs: cluster.scheduler.nowMs(),
    faults: cluster.describeFaults(),
    linearizability: linearizable.result,
    operations: counts,
    elections: checker.elections,
    messages: cluster.network.stats().totals.sent,
    stats: cluster.stats,
    coverage: { ...cluster.coverage.counts },
    poison: poison === null ? null : poison.stats,
    traceHash: trace === null ? null : trace.digestHex(),
  };
}
