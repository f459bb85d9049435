// One chaos run from start to end: hosts and nodes up, workload and nemesis
// side by side, recovery measured, checks, report, and teardown of everything
// the run made, whatever happened.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { create } from '@bufbuild/protobuf';
import { KV, PutRequestSchema } from '../proto/gen/kv_pb.ts';
import { callUnary, makeClientConstructor } from '../proto/grpc.ts';
import { poisonLeaks, recoveryPerWindow } from './checker.ts';
import { ChaosCluster, OBSERVER_CHANNEL_OPTIONS } from './cluster.ts';
import { Hosts, newRunPrefix } from './hosts.ts';
import { runNemesis, type TimelineEvent, type WindowRecord } from './nemesis.ts';
import { describePoison } from './nemesis-poison.ts';
import { renderReport } from './report.ts';
import { describeFault, planSchedule, type NemesisKind, type Window } from './schedule.ts';
import type { CallRecord, Workload, WorkloadVerdict } from './workload.ts';
import { KvWorkload, type OpMix } from './workload-kv.ts';
import { McpWorkload, type McpVerdict } from './workload-mcp.ts';

export const WORKLOAD_KINDS = ['kv', 'mcp'] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];
/** Projects the MCP workload's clients share, and how many clients: few, so that calls often meet on one project. */
export const MCP_PROJECTS = 6;
export const MCP_CLIENTS = 3;
/** A project call may wait for the owner to record and launch it; longer than a KV call. */
const MCP_OP_TIMEOUT_MS_MIN = 5_000;

/** `kv,mcp` → the kinds; a clear error for anything else. */
export function parseWorkloads(text: string): WorkloadKind[] {
  const kinds = text.split(',').map((kind) => kind.trim()).filter((kind) => kind !== '');
  const unknown = kinds.filter((kind) => !(WORKLOAD_KINDS as readonly string[]).includes(kind));
  if (unknown.length > 0 || kinds.length === 0) throw new ChaosRunError(`--workload takes a comma list of ${WORKLOAD_KINDS.join(', ')}; got '${text}'`);
  return [...new Set(kinds)] as WorkloadKind[];
}

export interface ChaosOptions {
  readonly seed: number;
  readonly durationMs: number;
  readonly nodeCount: number;
  readonly kinds: readonly NemesisKind[];
  /** Which workloads run side by side (kv registers and inserts; mcp projects). */
  readonly workloads: readonly WorkloadKind[];
  readonly clients: number;
  readonly keys: number;
  readonly opTimeoutMs: number;
  readonly fsync: boolean;
  /** Planted fault for tests: nodes acknowledge writes before commit. */
  readonly unsafeAckBeforeCommit: boolean;
  /** Where the HTML report goes; null: none. */
  readonly reportPath: string | null;
  /** A schedule to play instead of the one drawn from the seed (planted-fault tests). */
  readonly schedule?: readonly Window[];
  /** The run's name prefix; drawn at random unless given (tests give it to check teardown). */
  readonly prefix?: string;
  /** Operation weights of the KV workload (tests); the workload's default otherwise. */
  readonly mix?: OpMix;
  /** Planted client bug for tests: possibly stale (serializable) reads. */
  readonly staleReads?: boolean;
  /** Told at each step of the run, for a progress line (debughost chaos on a terminal). */
  readonly onPhase?: (phase: ChaosPhase) => void;
  /** Planted node faults for tests: modules every node process imports first (e.g. chaos/plants/no-fence.ts). */
  readonly nodeImports?: readonly string[];
  readonly log: (line: string) => void;
}

export interface ChaosResult {
  readonly ok: boolean;
  readonly seed: number;
  readonly prefix: string;
  readonly ops: number;
  readonly unknown: number;
  readonly failed: number;
  readonly lost: number;
  readonly duplicates: number;
  readonly linearizable: boolean | null;
  /** The MCP workload's exactly-once figures; null when it did not run. */
  readonly mcp: McpVerdict | null;
  /** From the end of the last fault until a write succeeded through every node; null if that never happened. */
  readonly recoverySeconds: number | null;
  /** Nodes that had to be SIGKILLed because they did not exit after SIGTERM or removal. */
  readonly stuckStops: readonly string[];
  /** Nodes that exited without being asked to. */
  readonly crashes: readonly string[];
  readonly windows: readonly WindowRecord[];
  readonly verdicts: readonly WorkloadVerdict[];
  /** Every workload call, for tests and further analysis. */
  readonly calls: readonly CallRecord[];
  readonly reportPath: string | null;
}

/** Bound on waiting for a first leader and on the final recovery probe. */
const LEADER_WAIT_MS_MAX = 60_000;
const RECOVERY_MS_MAX = 60_000;
const PROBE_TIMEOUT_MS = 1_000;

export class ChaosRunError extends Error {
  override readonly name = 'ChaosRunError';
}

/** The step a run is at; `runMs` and `ops` are read when the caller redraws. */
export interface ChaosPhase {
  readonly name: 'setting up hosts' | 'starting nodes' | 'faults under load' | 'checking' | 'tearing down';
  /** Milliseconds into the timed run (faults and workload), or null before it started. */
  readonly runMs: () => number | null;
  /** Client operations so far. */
  readonly ops: () => number;
}

export async function runChaos(options: ChaosOptions, signal: AbortSignal): Promise<ChaosResult> {
  const prefix = options.prefix ?? newRunPrefix();
  const { log } = options;
  const windows = options.schedule ?? planSchedule({ seed: options.seed, durationMs: options.durationMs, kinds: options.kinds, nodeCount: options.nodeCount });
  log(`chaos: run ${prefix}, seed ${options.seed}, ${options.nodeCount} nodes, ${options.durationMs / 1000} s, nemesis ${options.kinds.join(',')}`);
  for (const window of windows) log(`  plan ${(window.startMs / 1000).toFixed(1)}–${(window.endMs / 1000).toFixed(1)} s: ${window.faults.map(describeFault).join(' + ')}`);
  let runStartedMs: number | null = null;
  const workloads: Workload[] = [];
  const phase = (name: ChaosPhase['name']): void =>
    options.onPhase?.({ name, runMs: () => (runStartedMs === null ? null : performance.now() - runStartedMs), ops: () => workloads.reduce((sum, workload) => sum + workload.calls.length, 0) });
  phase('setting up hosts');
  const hosts = await Hosts.create(prefix);
  const workDir = await mkdtemp(join(tmpdir(), `debughost-${prefix}-`));
  let cluster: ChaosCluster | null = null;
  // Process events (exits, stuck stops) before the nemesis clock starts go to the log only.
  const events = { push: (text: string): void => log(`  ${text}`) };
  try {
    log(`chaos: hosts on ${hosts.subnet}.0/24 (namespaces ${prefix}-*), data and logs in ${workDir}`);
    cluster = new ChaosCluster({
      hosts,
      nodeCount: options.nodeCount,
      dataRoot: join(workDir, 'data'),
      logDir: workDir,
      fsync: options.fsync,
      unsafeAckBeforeCommit: options.unsafeAckBeforeCommit,
      ...(options.nodeImports === undefined ? {} : { nodeImports: options.nodeImports }),
      onEvent: (text) => events.push(text),
    });
    const started = performance.now();
    phase('starting nodes');
    await cluster.startAll();
    await waitForLeader(cluster, signal);
    log(`chaos: cluster up in ${((performance.now() - started) / 1000).toFixed(1)} s; seeds ${cluster.seeds}`);
    const t0 = performance.now();
    runStartedMs = t0;
    phase('faults under load');
    const now = (): number => performance.now() - t0;
    const live = cluster;
    const targets = {
      members: () => live.members.map((node) => ({ id: node.id, address: node.address })),
      running: () => live.members.filter((node) => node.state === 'running').map((node) => ({ id: node.id, address: node.address })),
    };
    const kv = !options.workloads.includes('kv') ? null : new KvWorkload({
      seed: options.seed,
      clients: options.clients,
      keys: options.keys,
      opTimeoutMs: options.opTimeoutMs,
      now,
      ...(options.mix === undefined ? {} : { mix: options.mix }),
      staleReads: options.staleReads === true,
      targets,
      credentials: live.clientCredentials,
    });
    const mcp = !options.workloads.includes('mcp')
      ? null
      : new McpWorkload({
          seed: options.seed,
          clients: MCP_CLIENTS,
          projects: MCP_PROJECTS,
          mark: `DH_CHAOS_MARK_${prefix}`,
          opTimeoutMs: Math.max(options.opTimeoutMs, MCP_OP_TIMEOUT_MS_MIN),
          targets,
          now,
          token: live.adminToken ?? '',
        });
    if (kv !== null) workloads.push(kv);
    if (mcp !== null) workloads.push(mcp);
    const stopWorkload = new AbortController();
    const onAbort = (): void => stopWorkload.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    const clients = Promise.all(workloads.map((workload) => workload.run(stopWorkload.signal)));
    let nemesis: { records: WindowRecord[]; timeline: TimelineEvent[] };
    try {
      nemesis = await runNemesis(windows, { cluster, hosts, now, signal, event: (text) => log(`  ${(now() / 1000).toFixed(1)} s  ${text}`) });
    } catch (error) {
      stopWorkload.abort();
      await clients;
      throw error;
    }
    const healedMs = now();
    const recoveryMs = await measureRecovery(cluster, now, signal);
    const recoverySeconds = recoveryMs === null ? null : Math.round(recoveryMs - healedMs) / 1000;
    log(`chaos: ${recoverySeconds === null ? 'writes did NOT succeed through every node' : `writes succeed through every node ${recoverySeconds} s`} after the last fault`);
    if (recoveryMs === null) for (const line of await cluster.describe()) log(`chaos: status ${line}`);
    // The tail: the workload goes on against the healed cluster until the run's time is up.
    await sleepUntil(Math.max(options.durationMs, now()), now, signal);
    stopWorkload.abort();
    await clients;
    signal.removeEventListener('abort', onAbort);
    if (signal.aborted) throw new ChaosRunError('interrupted; everything the run made was removed');
    phase('checking');
    const verdicts: WorkloadVerdict[] = [];
    for (const workload of workloads) {
      const verdict = await workload.verdict(signal);
      for (const line of verdict.findings) log(`chaos: ${workload.name}: ${line}`);
      verdicts.push(verdict);
    }
    const mcpVerdict = (verdicts.find((verdict) => verdict.workload === 'mcp') as McpVerdict | undefined) ?? null;
    const lost = verdicts.reduce((sum, verdict) => sum + verdict.lost, 0);
    const duplicates = verdicts.reduce((sum, verdict) => sum + verdict.duplicates, 0);
    const linearizable = verdicts.find((verdict) => verdict.workload === 'kv')?.linearizable ?? null;
    const calls = workloads.flatMap((workload) => workload.calls).sort((a, b) => a.startMs - b.startMs);
    const ops = calls.length;
    const unknown = calls.filter((call) => call.outcome === 'unknown').length;
    const failed = calls.filter((call) => call.outcome === 'fail').length;
    // A malformed write the cluster applied or accepted is a failure of its own, whatever the workloads saw.
    const leaks = poisonLeaks(nemesis.records);
    for (const leak of leaks) log(`chaos: the cluster took poison: ${describePoison(leak)}`);
    const ok = verdicts.every((verdict) => verdict.ok) && recoverySeconds !== null && cluster.crashes.length === 0 && leaks.length === 0;
    if (cluster.crashes.length > 0) log(`chaos: nodes exited by themselves: ${cluster.crashes.join(', ')}`);
    if (cluster.stuckStops.length > 0) log(`chaos: ${cluster.stuckStops.length} graceful stops hung and needed SIGKILL (${cluster.stuckStops.join(', ')})`);
    const perWindow = recoveryPerWindow(nemesis.records, writeSuccesses(calls), cluster.members.map((node) => node.id));
    let reportPath: string | null = null;
    if (options.reportPath !== null) {
      const html = renderReport({
        seed: options.seed,
        prefix,
        nodes: options.nodeCount,
        kinds: options.kinds,
        durationMs: options.durationMs,
        calls,
        windows: nemesis.records,
        perWindowRecoveryMs: perWindow,
        timeline: nemesis.timeline,
        verdicts,
        summary: {
          ok,
          workloads: options.workloads,
          ops,
          unknown,
          failed,
          lost,
          duplicates,
          linearizable,
          ...(mcpVerdict === null ? {} : { mcp: mcpFigures(mcpVerdict) }),
          recoverySeconds,
          stuckStops: cluster.stuckStops.length,
          crashes: cluster.crashes.length,
        },
        registerExplanation: kv === null ? 'no register workload in this run' : kv.explainRegisters(),
      });
      await writeFile(options.reportPath, html);
      reportPath = options.reportPath;
      log(`chaos: report written to ${reportPath}`);
    }
    return {
      ok,
      seed: options.seed,
      prefix,
      ops,
      unknown,
      failed,
      lost,
      duplicates,
      linearizable,
      mcp: mcpVerdict,
      recoverySeconds,
      stuckStops: [...cluster.stuckStops],
      crashes: [...cluster.crashes],
      windows: nemesis.records,
      verdicts,
      calls,
      reportPath,
    };
  } finally {
    phase('tearing down');
    for (const workload of workloads) workload.close();
    await cluster?.stopAll();
    const problems = await hosts.destroy();
    await rm(workDir, { recursive: true, force: true });
    if (problems.length > 0) log(`chaos: teardown problems: ${problems.join('; ')}`);
  }
}

async function waitForLeader(cluster: ChaosCluster, signal: AbortSignal): Promise<void> {
  const until = performance.now() + LEADER_WAIT_MS_MAX;
  while (performance.now() < until && !signal.aborted) {
    if ((await cluster.leaderSlot()) !== null) return;
    await sleep(200);
  }
  throw new ChaosRunError(`no leader within ${LEADER_WAIT_MS_MAX / 1000} s of starting the nodes; see the node logs`);
}

/** When (ms since start) a fresh write had succeeded through every running member; null past the bound. */
async function measureRecovery(cluster: ChaosCluster, now: () => number, signal: AbortSignal): Promise<number | null> {
  const KvClient = makeClientConstructor(KV);
  const startMs = now();
  const results = await Promise.all(
    cluster.members.map(async (node) => {
      const client = new KvClient(node.address, cluster.clientCredentials, OBSERVER_CHANNEL_OPTIONS);
      try {
        while (now() - startMs < RECOVERY_MS_MAX && !signal.aborted) {
          try {
            await callUnary(client, 'put', create(PutRequestSchema, { key: `chaos/probe/${node.id}`, value: String(Math.round(now())) }), { deadline: new Date(Date.now() + PROBE_TIMEOUT_MS) });
            return now();
          } catch {
            await sleep(50);
          }
        }
        return null;
      } finally {
        client.close();
      }
    }),
  );
  if (results.some((at) => at === null)) return null;
  return Math.max(startMs, ...(results as number[]));
}

/** The MCP workload's figures for the JSON line and the report. */
export function mcpFigures(verdict: McpVerdict): Record<string, number | null> {
  return {
    duplicates: verdict.duplicates,
    missing: verdict.missing,
    orphans: verdict.orphans,
    contradicted: verdict.contradicted,
    maxCopies: verdict.maxCopies,
    duplicatesDuringRun: verdict.duplicatesDuringRun,
    settleSeconds: verdict.settleSeconds,
    leftAfterRemove: verdict.leftAfterRemove,
  };
}

const WRITE_OPS = new Set(['write', 'insert', 'cas', 'project_start', 'project_stop', 'project_restart']);

function writeSuccesses(calls: readonly CallRecord[]): { node: string; startMs: number; endMs: number }[] {
  return calls.filter((call) => call.outcome === 'ok' && WRITE_OPS.has(call.op)).map((call) => ({ node: call.node, startMs: call.startMs, endMs: call.endMs }));
}

async function sleepUntil(atMs: number, now: () => number, signal: AbortSignal): Promise<void> {
  while (!signal.aborted && now() < atMs) await sleep(Math.min(100, atMs - now()));
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
