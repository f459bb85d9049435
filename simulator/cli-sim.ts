// `debughost sim`: run seeds of the deterministic cluster simulator and report.
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { progressLine, type Progress } from '../node/progress.ts';
import { UsageError, parseIntegerFlag } from '../node/usage-error.ts';
import { addCoverage, describeCounts, describeCoverage, emptyCoverage } from './coverage.ts';
import { ALL_FAULTS, parseFaultList, type FaultKind } from './faults.ts';
import { ACTOR_MUTATIONS, MUTATIONS, isActorMutationName, isMutationName, type ActorMutationName } from './mutations.ts';
import { ACTOR_LIVENESS_MS_MAX_DEFAULT, ACTOR_SAFETY_MS_DEFAULT, runActorSeed } from './run-actor-seed.ts';
import type { PoisonStats } from './nemesis-poison.ts';
import { LIVENESS_MS_MAX_DEFAULT, SAFETY_MS_DEFAULT, runSeed, type SeedResult } from './run-seed.ts';

const HELP = `usage: debughost sim [--seeds N | --seed S] [--nodes K] [--faults LIST] [--json]
                    [--trace FILE] [--trace-hash] [--safety-ms MS] [--liveness-ms MS] [--mutation NAME]
                    [--actors N] [--poison]

Runs the real Raft core and KV state machine on a virtual clock, network and
disk. Each seed draws its own fault mix (swarm testing) and replays exactly.
With --actors, every node also runs the actor layer (placement, forwarding,
project and tenant actors) over a simulated runtime, under a project workload.

  --seeds N         run seeds 1..N (default 1)
  --seed S          run the one seed S
  --nodes K         cluster size, 1..9 (default 5)
  --faults LIST     faults the swarm may use, comma-separated, 'all' (default) or 'none';
                    -KIND removes one (all,-priority); kinds: ${ALL_FAULTS.join(', ')}
  --json            print one JSON summary object as the last line
  --trace FILE      with --seed: write the full event trace to FILE
  --trace-hash      print the SHA-256 of each seed's trace (same seed, same hash)
  --safety-ms MS    virtual time under faults per seed (default ${SAFETY_MS_DEFAULT})
  --liveness-ms MS  bound to converge after healing a quorum (default ${LIVENESS_MS_MAX_DEFAULT})
  --mutation NAME   run a deliberately broken core (${Object.keys(MUTATIONS).join(', ')}) or, with --actors,
                    actor layer (${Object.keys(ACTOR_MUTATIONS).join(', ')}) to see the checks fail
  --actors N        run the actor layer with N projects across tenants (default 0: Raft and KV only);
                    then --safety-ms defaults to ${ACTOR_SAFETY_MS_DEFAULT} and --liveness-ms to ${ACTOR_LIVENESS_MS_MAX_DEFAULT}
  --poison          also propose malformed entries and records to the leader during the faults
                    (the poison-pill nemesis); every check must still pass`;

interface SimArgs {
  readonly seeds: number[];
  readonly nodes: number;
  readonly faults: Set<FaultKind>;
  readonly faultsText: string;
  readonly json: boolean;
  readonly trace: string | null;
  readonly traceHash: boolean;
  readonly safetyMs: number;
  readonly livenessMs: number;
  readonly mutation: keyof typeof MUTATIONS | ActorMutationName | null;
  readonly actors: number;
  readonly poison: boolean;
}

export function parseSimArgs(argv: string[]): SimArgs | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        seeds: { type: 'string' },
        seed: { type: 'string' },
        nodes: { type: 'string' },
        faults: { type: 'string' },
        json: { type: 'boolean' },
        trace: { type: 'string' },
        'trace-hash': { type: 'boolean' },
        'safety-ms': { type: 'string' },
        'liveness-ms': { type: 'string' },
        mutation: { type: 'string' },
        actors: { type: 'string' },
        poison: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    let message = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
    // parseArgs calls a value that starts with '-' ambiguous; say what is wrong with it instead.
    if (message.includes('ambiguous')) message = `${message.replace(/ argument is ambiguous\.?.*/, '')} needs a non-negative whole number`;
    throw new UsageError(`${message}; run 'debughost sim --help' for the options`);
  }
  const v = parsed.values;
  if (v.help === true) return 'help';
  if (v.seeds !== undefined && v.seed !== undefined) throw new UsageError('give either --seeds N or --seed S, not both');
  let seeds: number[];
  if (v.seed !== undefined) seeds = [parseIntegerFlag('seed', v.seed, 0, 2 ** 32 - 1)];
  else {
    const count = parseIntegerFlag('seeds', v.seeds ?? '1', 1, 1_000_000);
    seeds = Array.from({ length: count }, (_, i) => i + 1);
  }
  const nodes = parseIntegerFlag('nodes', v.nodes ?? '5', 1, 9);
  const faultsText = v.faults ?? 'all';
  const faults = parseFaultList(faultsText);
  if (!faults.ok) throw new UsageError(faults.error);
  if (v.trace !== undefined && v.seed === undefined) throw new UsageError('--trace needs --seed S (one seed per trace file)');
  const mutation = v.mutation ?? null;
  const actors = parseIntegerFlag('actors', v.actors ?? '0', 0, 100_000);
  if (mutation !== null && !isMutationName(mutation) && !isActorMutationName(mutation)) {
    throw new UsageError(`unknown --mutation '${mutation}'; known: ${[...Object.keys(MUTATIONS), ...Object.keys(ACTOR_MUTATIONS)].join(', ')}`);
  }
  if (mutation !== null && isActorMutationName(mutation) && actors === 0) {
    throw new UsageError(`--mutation ${mutation} plants a bug in the actor layer; add --actors N`);
  }
  const safetyDefault = actors > 0 ? ACTOR_SAFETY_MS_DEFAULT : SAFETY_MS_DEFAULT;
  const livenessDefault = actors > 0 ? ACTOR_LIVENESS_MS_MAX_DEFAULT : LIVENESS_MS_MAX_DEFAULT;
  return {
    seeds,
    nodes,
    faults: faults.faults,
    faultsText,
    json: v.json === true,
    trace: v.trace ?? null,
    traceHash: v['trace-hash'] === true,
    safetyMs: parseIntegerFlag('safety-ms', v['safety-ms'] ?? String(safetyDefault), 100, 3_600_000),
    livenessMs: parseIntegerFlag('liveness-ms', v['liveness-ms'] ?? String(livenessDefault), 100, 3_600_000),
    mutation,
    actors,
    poison: v.poison === true,
  };
}

export function replayCommand(args: SimArgs, seed: number): string {
  const parts = ['debughost sim', `--seed ${seed}`, `--nodes ${args.nodes}`];
  if (args.actors > 0) parts.push(`--actors ${args.actors}`);
  if (args.faultsText !== 'all') parts.push(`--faults ${args.faultsText}`);
  if (args.safetyMs !== (args.actors > 0 ? ACTOR_SAFETY_MS_DEFAULT : SAFETY_MS_DEFAULT)) parts.push(`--safety-ms ${args.safetyMs}`);
  if (args.livenessMs !== (args.actors > 0 ? ACTOR_LIVENESS_MS_MAX_DEFAULT : LIVENESS_MS_MAX_DEFAULT)) parts.push(`--liveness-ms ${args.livenessMs}`);
  if (args.mutation !== null) parts.push(`--mutation ${args.mutation}`);
  if (args.poison) parts.push('--poison');
  parts.push(`--trace sim-seed-${seed}.trace`);
  return parts.join(' ');
}

export async function simCommand(argv: string[]): Promise<number> {
  const args = parseSimArgs(argv);
  if (args === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  // With --json, stdout carries the JSON object alone; the lines for people go to stderr.
  const progress = progressLine(process.stderr, { json: args.json });
  const human = args.json ? process.stderr : process.stdout;
  const out = (line: string): void => progress.print(() => human.write(`${line}\n`));
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  try {
    return args.actors > 0 ? actorSimCommand(args, out, started, cpuStarted, progress) : raftSimCommand(args, out, started, cpuStarted, progress);
  } finally {
    progress.done();
  }
}

/** The status line after `done` of the run's seeds. */
function seedProgress(progress: Progress, done: number, args: SimArgs, failed: number, started: number): void {
  progress.update(`sim: seed ${done}/${args.seeds.length}, ${failed} failed, ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

/**
 * Speed of the run: virtual time over wall time, and over this process's CPU
 * time since `sim` started (user + system, garbage-collector threads included),
 * which stays comparable when other processes share the machine.
 */
function speedOf(simulatedSeconds: number, started: number, cpuStarted: NodeJS.CpuUsage): { wallSeconds: number; cpuSeconds: number; speedup: number; speedupCpu: number } {
  const wallSeconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStarted);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return { wallSeconds, cpuSeconds, speedup: simulatedSeconds / Math.max(wallSeconds, 1e-9), speedupCpu: simulatedSeconds / Math.max(cpuSeconds, 1e-9) };
}

/** `debughost sim` without --actors: Raft and the KV store under faults. */
function raftSimCommand(args: SimArgs, out: (line: string) => void, started: number, cpuStarted: NodeJS.CpuUsage, progress: Progress): number {
  const failed: number[] = [];
  let violations = 0;
  let simulatedMs = 0;
  let operations = 0;
  let unknownLinearizability = 0;
  const coverage = emptyCoverage();
  const poison = emptyPoison();
  const plant = args.mutation === null || !isMutationName(args.mutation) ? undefined : MUTATIONS[args.mutation].plant;
  for (const [index, seed] of args.seeds.entries()) {
    const result: SeedResult = runSeed({
      seed,
      nodes: args.nodes,
      faults: args.faults,
      safetyMs: args.safetyMs,
      livenessMsMax: args.livenessMs,
      tracePath: args.trace,
      traceHash: args.traceHash,
      ...(plant === undefined ? {} : { plant }),
      poison: args.poison,
    });
    addPoison(poison, result.poison);
    seedProgress(progress, index + 1, args, failed.length + (result.ok ? 0 : 1), started);
    simulatedMs += result.simulatedMs;
    operations += result.operations.total;
    addCoverage(coverage, result.coverage);
    if (result.linearizability === 'unknown') unknownLinearizability += 1;
    if (args.traceHash) out(`seed ${seed} trace-hash ${result.traceHash}`);
    if (args.seeds.length === 1 && !args.json) {
      out(`seed ${seed}: ${result.ok ? 'ok' : 'FAILED'}; ${result.faults}`);
      out(`  ops ${result.operations.total} (ok ${result.operations.ok}, fail ${result.operations.fail}, unknown ${result.operations.unknown}); linearizability ${result.linearizability}; elections ${result.elections}; messages ${result.messages}; ${JSON.stringify(result.stats)}`);
      out(`  coverage: ${describeCoverage(result.coverage)}`);
    }
    if (!result.ok) {
      failed.push(seed);
      violations += result.violations.length;
      out(`seed ${seed} FAILED: ${result.violations[0] ?? ''}${result.violations.length > 1 ? ` (+${result.violations.length - 1} more)` : ''}`);
      out(`  replay: ${replayCommand(args, seed)}`);
    }
  }
  progress.done();
  const simulatedSeconds = simulatedMs / 1000;
  const { wallSeconds, cpuSeconds, speedup, speedupCpu } = speedOf(simulatedSeconds, started, cpuStarted);
  out(
    `${args.seeds.length} seed(s), ${args.nodes} nodes: ${failed.length} failed, ${violations} violation(s); ` +
      `${operations} client ops; simulated ${simulatedSeconds.toFixed(1)} s in ${wallSeconds.toFixed(1)} s of wall time (${speedup.toFixed(0)}x real time; ${speedupCpu.toFixed(0)}x per CPU second)` +
      (unknownLinearizability > 0 ? `; linearizability check ran out of budget on ${unknownLinearizability} seed(s)` : ''),
  );
  out(`coverage: ${describeCoverage(coverage)}`);
  if (args.poison) out(describePoison(poison));
  if (args.json) {
    process.stdout.write(
      `${JSON.stringify({
        seeds: args.seeds.length,
        failed,
        violations,
        simulatedSeconds: Number(simulatedSeconds.toFixed(3)),
        wallSeconds: Number(wallSeconds.toFixed(3)),
        speedup: Number(speedup.toFixed(1)),
        cpuSeconds: Number(cpuSeconds.toFixed(3)),
        speedupCpu: Number(speedupCpu.toFixed(1)),
        nodes: args.nodes,
        operations,
        linearizabilityUnknown: unknownLinearizability,
        coverage,
        ...(args.poison ? { poison } : {}),
      })}\n`,
    );
  }
  return failed.length === 0 ? 0 : 1;
}

/** `debughost sim --actors N`: whole-cluster runs with the actor layer on every node. */
function actorSimCommand(args: SimArgs, out: (line: string) => void, started: number, cpuStarted: NodeJS.CpuUsage, progress: Progress): number {
  const failed: number[] = [];
  let violations = 0;
  let simulatedMs = 0;
  let calls = 0;
  let ownerWrites = 0;
  let moves = 0;
  const poison = emptyPoison();
  for (const [index, seed] of args.seeds.entries()) {
    const result = runActorSeed({
      seed,
      nodes: args.nodes,
      faults: args.faults,
      actors: args.actors,
      safetyMs: args.safetyMs,
      livenessMsMax: args.livenessMs,
      tracePath: args.trace,
      traceHash: args.traceHash,
      mutation: args.mutation !== null && isActorMutationName(args.mutation) ? args.mutation : null,
      poison: args.poison,
    });
    addPoison(poison, result.poison);
    seedProgress(progress, index + 1, args, failed.length + (result.ok ? 0 : 1), started);
    simulatedMs += result.simulatedMs;
    const c = result.calls;
    calls += c.ok + c.quota + c.notFound + c.unknown;
    ownerWrites += result.ownerWrites;
    moves += result.host.moves;
    if (args.traceHash) out(`seed ${seed} trace-hash ${result.traceHash}`);
    if (args.seeds.length === 1 && !args.json) {
      out(`seed ${seed}: ${result.ok ? 'ok' : 'FAILED'}; ${result.faults}`);
      out(`  calls ok ${c.ok}, quota errors ${c.quota}, not found ${c.notFound}, unknown ${c.unknown}; owner writes ${result.ownerWrites} over ${result.epochs} epochs; voters at the end ${result.voters}; ${JSON.stringify(result.host)}; ${JSON.stringify(result.stats)}`);
      out(`  coverage: ${describeCoverage(result.coverage)}`);
      out(`  actor coverage: ${describeCounts(result.actorCoverage)}`);
    }
    if (!result.ok) {
      failed.push(seed);
      violations += result.violations.length;
      out(`seed ${seed} FAILED: ${result.violations[0] ?? ''}${result.violations.length > 1 ? ` (+${result.violations.length - 1} more)` : ''}`);
      out(`  replay: ${replayCommand(args, seed)}`);
    }
  }
  progress.done();
  const simulatedSeconds = simulatedMs / 1000;
  const { wallSeconds, cpuSeconds, speedup, speedupCpu } = speedOf(simulatedSeconds, started, cpuStarted);
  out(
    `${args.seeds.length} seed(s), ${args.nodes} nodes, ${args.actors} projects: ${failed.length} failed, ${violations} violation(s); ` +
      `${calls} project calls, ${ownerWrites} owner writes, ${moves} hand-offs; simulated ${simulatedSeconds.toFixed(1)} s in ${wallSeconds.toFixed(1)} s of wall time (${speedup.toFixed(0)}x real time; ${speedupCpu.toFixed(0)}x per CPU second)`,
  );
  if (args.poison) out(describePoison(poison));
  if (args.json) {
    process.stdout.write(
      `${JSON.stringify({
        seeds: args.seeds.length,
        failed,
        violations,
        simulatedSeconds: Number(simulatedSeconds.toFixed(3)),
        wallSeconds: Number(wallSeconds.toFixed(3)),
        speedup: Number(speedup.toFixed(1)),
        cpuSeconds: Number(cpuSeconds.toFixed(3)),
        speedupCpu: Number(speedupCpu.toFixed(1)),
        nodes: args.nodes,
        actors: args.actors,
        calls,
        ownerWrites,
        moves,
        ...(args.poison ? { poison } : {}),
      })}\n`,
    );
  }
  return failed.length === 0 ? 0 : 1;
}

/** Poison entries over all seeds: injected (all kinds), committed to the log, refused at apply. */
interface PoisonTotals {
  injected: number;
  committed: number;
  refused: number;
}

const emptyPoison = (): PoisonTotals => ({ injected: 0, committed: 0, refused: 0 });

function addPoison(totals: PoisonTotals, stats: PoisonStats | null): void {
  if (stats === null) return;
  totals.injected += Object.values(stats.injected).reduce((sum, n) => sum + n, 0);
  totals.committed += stats.committed;
  totals.refused += stats.refused;
}

const describePoison = (totals: PoisonTotals): string =>
  `poison: ${totals.injected} malformed entries proposed, ${totals.committed} committed, ${totals.refused} refused at apply (the rest were lost with a leader or met none)`;
