// `npm run bench -- NAME [--json]`: runs one benchmark, prints a table, and with
// --json one JSON object as the last line.
import { performance } from 'node:perf_hooks';
import { ALL_FAULTS } from '../simulator/faults.ts';
import { runSeed } from '../simulator/run-seed.ts';
import { actorsBench } from './actors.ts';
import { authBench } from './auth.ts';
import { logsBench } from './logs.ts';
import { mcpBench } from './mcp.ts';
import { raftBench } from './raft.ts';
import { runtimeBench } from './runtime.ts';
import { startBench } from './start.ts';
import { BenchUsageError } from './raft-stats.ts';

type Bench = (args: string[]) => Record<string, number | string> | Promise<Record<string, number | string>>;

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
};

/** Simulator speed: virtual seconds per wall second for a 5-node cluster under all faults, per seed. */
const sim: Bench = () => {
  const seeds = 200;
  const ratios: number[] = [];
  let simulatedMs = 0;
  const started = performance.now();
  for (let seed = 1; seed <= seeds; seed += 1) {
    const seedStarted = performance.now();
    const result = runSeed({ seed, nodes: 5, faults: new Set(ALL_FAULTS) });
    ratios.push(result.simulatedMs / (performance.now() - seedStarted));
    simulatedMs += result.simulatedMs;
  }
  const wallMs = performance.now() - started;
  return {
    benchmark: 'sim',
    nodes: 5,
    seeds,
    simulatedSeconds: Number((simulatedMs / 1000).toFixed(1)),
    wallSeconds: Number((wallMs / 1000).toFixed(2)),
    speedupOverall: Number((simulatedMs / wallMs).toFixed(1)),
    speedupMedianPerSeed: Number(median(ratios).toFixed(1)),
    speedupMinPerSeed: Number(Math.min(...ratios).toFixed(1)),
  };
};

const benches: Record<string, Bench> = { sim, raft: raftBench, logs: logsBench, runtime: runtimeBench, actors: actorsBench, mcp: mcpBench, start: startBench, auth: authBench };

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv.filter((arg) => arg !== '--json');
  const json = argv.includes('--json');
  const bench = name === undefined ? undefined : benches[name];
  if (bench === undefined) {
    process.stderr.write(`bench: unknown benchmark '${name ?? ''}'; known: ${Object.keys(benches).join(', ')}\n`);
    return 2;
  }
  let result: Record<string, number | string>;
  try {
    result = await bench(rest);
  } catch (error) {
    if (!(error instanceof BenchUsageError)) throw error;
    process.stderr.write(`bench ${name}: ${error.message}\n`);
    return 2;
  }
  for (const [key, value] of Object.entries(result)) process.stdout.write(`${key.padEnd(24)} ${String(value)}\n`);
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
