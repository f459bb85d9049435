// One simulator run: a safety phase under the seed's faults, then a liveness
// phase that heals a quorum and must converge within a stated bound, then the
// final checks (logs, state machines, linearizability of the client history).
import type { PersistedState } from '../consensus/storage.ts';
import type { Raft } from '../consensus/raft.ts';
import type { RaftConfig, Random } from '../consensus/types.ts';
import { SimCluster } from './cluster.ts';
import type { FaultKind } from './faults.ts';
import { checkLinearizability } from './linearizability.ts';
import { Trace } from './trace.ts';
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
  readonly createRaft?: (config: RaftConfig, random: Random, persisted: PersistedState) => Raft;
}

export const SAFETY_MS_DEFAULT = 10_000;
export const LIVENESS_MS_MAX_DEFAULT = 10_000;

export interface SeedResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly violations: readonly string[];
  readonly simulatedMs: number;
  readonly faults: string;
  readonly linearizability: 'ok' | 'violation' | 'unknown';
  readonly operations: { readonly total: number; readonly ok: number; readonly fail: number; readonly unknown: number };
  readonly elections: number;
  readonly messages: number;
  readonly stats: SimCluster['stats'];
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
    ...(options.createRaft === undefined ? {} : { createRaft: options.createRaft }),
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
  try {
    cluster.startNemesis();
    workload.start();
    cluster.runFor(safetyMs);
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
    checker.finalChecks();
  } catch (error) {
    checker.violation(`exception: ${error instanceof Error ? error.message : String(error)}`);
  }
  const linearizable = checkLinearizability(cluster.history);
  if (linearizable.result === 'violation') checker.violation(`linearizability: key ${linearizable.key}: ${linearizable.explanation}`);
  const counts = { total: cluster.history.length, ok: 0, fail: 0, unknown: 0 };
  for (const op of cluster.history) counts[op.status] += 1;
  trace?.close();
  return {
    seed: options.seed,
    ok: checker.ok,
    violations: checker.violations,
    simulatedMs: cluster.scheduler.nowMs(),
    faults: cluster.describeFaults(),
    linearizability: linearizable.result,
    operations: counts,
    elections: checker.elections,
    messages: cluster.network.stats().totals.sent,
    stats: cluster.stats,
    traceHash: trace === null ? null : trace.digestHex(),
  };
}
