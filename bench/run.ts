// `npm run bench -- NAME [--json]`: runs one benchmark, prints a table, and with
// --json one JSON object on stdout (the table then goes to stderr). On a terminal a
// progress line shows how long it has run, and what the benchmark says it is doing.
import { performance } from 'node:perf_hooks';
import { progressLine } from '../node/progress.ts';
import { actorsBench } from './actors.ts';
import { authBench } from './auth.ts';
import { batchBench } from './batch.ts';
import { logsBench } from './logs.ts';
import { mcpBench } from './mcp.ts';
import { raftBench } from './raft.ts';
import { runtimeBench } from './runtime.ts';
import { simBench } from './sim.ts';
import { startBench } from './start.ts';
import { BenchUsageError } from './raft-stats.ts';

/** How a benchmark talks while it runs: `status` for the progress line (which seed), `log` for a line that stays. */
interface BenchReport {
  status(text: string): void;
  log(line: string): void;
}

type Bench = (args: string[], report: BenchReport) => Record<string, number | string> | Promise<Record<string, number | string>>;

const benches: Record<string, Bench> = { sim: simBench, raft: raftBench, logs: logsBench, runtime: runtimeBench, actors: actorsBench, mcp: mcpBench, start: startBench, auth: authBench, batch: batchBench };

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv.filter((arg) => arg !== '--json');
  const json = argv.includes('--json');
  const bench = name === undefined ? undefined : benches[name];
  if (bench === undefined) {
    process.stderr.write(`bench: unknown benchmark '${name ?? ''}'; known: ${Object.keys(benches).join(', ')}\n`);
    return 2;
  }
  const progress = progressLine(process.stderr, { json });
  const started = performance.now();
  let doing = '';
  const line = (): string => `bench ${name}: ${doing === '' ? '' : `${doing}, `}${((performance.now() - started) / 1000).toFixed(0)} s`;
  progress.tick(line);
  let result: Record<string, number | string>;
  try {
    result = await bench(rest, {
      status: (text) => {
        doing = text;
        progress.update(line());
      },
      log: (text) => progress.print(() => process.stderr.write(`${text}\n`)),
    });
  } catch (error) {
    if (!(error instanceof BenchUsageError)) throw error;
    process.stderr.write(`bench ${name}: ${error.message}\n`);
    return 2;
  } finally {
    progress.done();
  }
  const table = json ? process.stderr : process.stdout;
  for (const [key, value] of Object.entries(result)) table.write(`${key.padEnd(24)} ${String(value)}\n`);
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
