// `npm run bench -- NAME [--json]`: runs one benchmark, prints a table, and with
// --json one JSON object as the last line.
import { actorsBench } from './actors.ts';
import { logsBench } from './logs.ts';
import { mcpBench } from './mcp.ts';
import { raftBench } from './raft.ts';
import { runtimeBench } from './runtime.ts';
import { simBench } from './sim.ts';
import { BenchUsageError } from './raft-stats.ts';

type Bench = (args: string[]) => Record<string, number | string> | Promise<Record<string, number | string>>;

const benches: Record<string, Bench> = { sim: simBench, raft: raftBench, logs: logsBench, runtime: runtimeBench, actors: actorsBench, mcp: mcpBench };

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
