// `npm run bench -- sim`: simulator speed, virtual seconds per wall second on a
// 5-node cluster, under no faults, under each fault kind alone, and under the
// swarm of all kinds (after a warm-up seed, so the JIT is not on the bill).
import { cpuUsage } from 'node:process';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { ALL_FAULTS, type FaultKind } from '../simulator/faults.ts';
import { runSeed } from '../simulator/run-seed.ts';
import { BenchUsageError } from './raft-stats.ts';

const SEEDS_DEFAULT = 30;
const NODES = 5;

interface MixResult {
  readonly mix: string;
  readonly simulatedSeconds: number;
  readonly wallSeconds: number;
  readonly cpuSeconds: number;
  /** Virtual time over wall time. */
  readonly speedup: number;
  /** Virtual time over this process's CPU time (less sensitive to other load on the machine). */
  readonly speedupCpu: number;
}

function runMix(mix: string, faults: ReadonlySet<FaultKind>, seeds: number): MixResult {
  let simulatedMs = 0;
  const cpuBefore = cpuUsage();
  const started = performance.now();
  for (let seed = 1; seed <= seeds; seed += 1) simulatedMs += runSeed({ seed, nodes: NODES, faults }).simulatedMs;
  const wallMs = performance.now() - started;
  const cpu = cpuUsage(cpuBefore);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  return {
    mix,
    simulatedSeconds: Number((simulatedMs / 1000).toFixed(1)),
    wallSeconds: Number((wallMs / 1000).toFixed(2)),
    cpuSeconds: Number((cpuMs / 1000).toFixed(2)),
    speedup: Number((simulatedMs / wallMs).toFixed(1)),
    speedupCpu: Number((simulatedMs / cpuMs).toFixed(1)),
  };
}

export function simBench(args: string[]): Record<string, number | string> {
  const seedsFlag = args.indexOf('--seeds');
  const seeds = seedsFlag < 0 ? SEEDS_DEFAULT : Number(args[seedsFlag + 1]);
  if (!Number.isInteger(seeds) || seeds < 1) throw new BenchUsageError('--seeds needs a whole number >= 1');
  runSeed({ seed: 0, nodes: NODES, faults: new Set(ALL_FAULTS) });
  const results = [runMix('none', new Set(), seeds), ...ALL_FAULTS.map((kind) => runMix(kind, new Set([kind]), seeds)), runMix('all', new Set(ALL_FAULTS), seeds)];
  for (const result of results) {
    process.stdout.write(`${result.mix.padEnd(15)} ${String(result.simulatedSeconds).padStart(7)} s simulated in ${String(result.wallSeconds).padStart(6)} s: ${String(result.speedup).padStart(6)}x (CPU ${result.speedupCpu}x)\n`);
  }
  const singles = results.filter((result) => result.mix !== 'all');
  const slowest = singles.reduce((a, b) => (b.speedup < a.speedup ? b : a));
  return {
    benchmark: 'sim',
    nodes: NODES,
    seedsPerMix: seeds,
    load1: Number((loadavg()[0] ?? 0).toFixed(2)),
    slowestSingleMix: slowest.mix,
    slowestSingleSpeedup: slowest.speedup,
    allFaultsSpeedup: (results[results.length - 1] as MixResult).speedup,
    ...Object.fromEntries(results.map((result) => [`speedup_${result.mix}`, result.speedup])),
  };
}
