// `debughost chaos`: a real cluster in network namespaces under a seeded
// nemesis schedule, with a KV workload, checks and an HTML report. Prints a
// human summary and, with --json, one JSON object as the last line.
import { randomInt } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { parseArgs } from 'node:util';
import { progressLine } from '../node/progress.ts';
import { UsageError, parseIntegerFlag } from '../node/usage-error.ts';
import { leftovers, sweep } from './hosts.ts';
import { ChaosRunError, mcpFigures, parseWorkloads, runChaos, type ChaosPhase } from './run.ts';
import { NEMESIS_KINDS, ScheduleError, parseKinds } from './schedule.ts';

const HELP = `usage: debughost chaos [--time S] [--nodes N] [--nemesis KINDS] [--workload kv,mcp] [--seed S] [--json]
                       [--report FILE | --no-report] [--clients N] [--keys N] [--op-timeout-ms MS]
                       [--no-fsync] [--unsafe-ack-before-commit]
       debughost chaos --sweep PREFIX

Runs N real nodes (default 5), each in its own network namespace, for S seconds
(default 60) under faults drawn from the seed (printed at the start; give it
again to replay the schedule), with concurrent KV clients and MCP clients
starting and stopping projects (--workload, default kv,mcp); then checks the
history (linearizable registers, no acknowledged insert lost or applied twice,
every project wanted running runs exactly once on the host, every other
nowhere) and measures recovery. Needs root, iproute2 and iptables. Everything the run
makes is removed at the end, also on Ctrl-C; if the runner itself was
SIGKILLed, --sweep PREFIX (the dhcXXXXXX printed at the start) removes what
that run left.

nemesis kinds (comma-separated, default partition,kill,pause):
  ${NEMESIS_KINDS.join(', ')}
--unsafe-ack-before-commit starts the nodes with a planted bug (TEST-ONLY) to
show the checkers fail.`;

export async function chaosCommand(argv: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      options: {
        time: { type: 'string' },
        nodes: { type: 'string' },
        nemesis: { type: 'string' },
        workload: { type: 'string' },
        seed: { type: 'string' },
        json: { type: 'boolean' },
        report: { type: 'string' },
        'no-report': { type: 'boolean' },
        clients: { type: 'string' },
        keys: { type: 'string' },
        'op-timeout-ms': { type: 'string' },
        'no-fsync': { type: 'boolean' },
        'unsafe-ack-before-commit': { type: 'boolean' },
        sweep: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (error) {
    throw new UsageError(`${(error as Error).message.split('\n')[0] ?? ''}; run 'debughost chaos --help' for the options`);
  }
  if (values.help === true) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (values.sweep !== undefined) return sweepCommand(values.sweep);
  const seconds = parseIntegerFlag('time', values.time ?? '60', 10, 86_400);
  const nodeCount = parseIntegerFlag('nodes', values.nodes ?? '5', 3, 9);
  const seed = values.seed === undefined ? randomInt(2 ** 31) : parseIntegerFlag('seed', values.seed, 0, 2 ** 32 - 1);
  let kinds;
  try {
    kinds = parseKinds(values.nemesis ?? 'partition,kill,pause');
  } catch (error) {
    if (error instanceof ScheduleError) throw new UsageError(error.message);
    throw error;
  }
  let workloads;
  try {
    workloads = parseWorkloads(values.workload ?? 'kv,mcp');
  } catch (error) {
    if (error instanceof ChaosRunError) throw new UsageError(error.message);
    throw error;
  }
  const reportPath = values['no-report'] === true ? null : resolvePath(values.report ?? `chaos-report-${seed}.html`);
  const json = values.json === true;
  // With --json, stdout carries the JSON object alone; the run's log goes to stderr.
  const progress = progressLine(process.stderr, { json });
  const human = json ? process.stderr : process.stdout;
  const say = (line: string): void => progress.print(() => human.write(`${line}\n`));
  const started = performance.now();
  let phase: ChaosPhase | null = null;
  progress.tick(() => {
    const elapsed = `${((performance.now() - started) / 1000).toFixed(0)} s`;
    if (phase === null) return `chaos: ${elapsed}`;
    const runMs = phase.runMs();
    const run = runMs === null ? '' : `, ${Math.min(seconds, Math.floor(runMs / 1000))}/${seconds} s of the run`;
    return `chaos: ${phase.name}${run}, ${phase.ops()} ops, ${elapsed} in all`;
  });
  const abort = new AbortController();
  const interrupt = (): void => {
    say('debughost chaos: interrupted; tearing down what the run made');
    abort.abort();
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  const result = await runChaos(
    {
      seed,
      durationMs: seconds * 1000,
      nodeCount,
      kinds,
      workloads,
      clients: parseIntegerFlag('clients', values.clients ?? '6', 1, 64),
      keys: parseIntegerFlag('keys', values.keys ?? '3', 1, 100),
      opTimeoutMs: parseIntegerFlag('op-timeout-ms', values['op-timeout-ms'] ?? '2000', 100, 60_000),
      fsync: values['no-fsync'] !== true,
      unsafeAckBeforeCommit: values['unsafe-ack-before-commit'] === true,
      reportPath,
      log: say,
      onPhase: (next) => (phase = next),
    },
    abort.signal,
  ).finally(() => {
    progress.done();
    process.removeListener('SIGINT', interrupt);
    process.removeListener('SIGTERM', interrupt);
  });
  human.write(
    `chaos: ${result.ok ? 'OK' : 'FAILED'} — ${result.ops} ops (${result.unknown} unknown, ${result.failed} failed), lost ${result.lost}, duplicates ${result.duplicates}, linearizable ${String(result.linearizable)}${result.mcp === null ? '' : `, projects: ${result.mcp.duplicates} duplicated, ${result.mcp.missing} missing, ${result.mcp.orphans} orphaned, ${result.mcp.duplicatesDuringRun} twice during the run`}, recovery ${result.recoverySeconds ?? 'never'} s (seed ${seed})\n`,
  );
  if (json) {
    const figures = {
      ok: result.ok,
      seed,
      nodes: nodeCount,
      time: seconds,
      nemesis: kinds,
      workloads,
      ops: result.ops,
      unknown: result.unknown,
      failed: result.failed,
      lost: result.lost,
      duplicates: result.duplicates,
      linearizable: result.linearizable,
      ...(result.mcp === null ? {} : { mcp: mcpFigures(result.mcp) }),
      recoverySeconds: result.recoverySeconds,
      stuckStops: result.stuckStops.length,
      crashes: result.crashes.length,
      windows: result.windows.length,
      report: result.reportPath,
    };
    process.stdout.write(`${JSON.stringify(figures)}\n`);
  }
  return result.ok ? 0 : 1;
}

async function sweepCommand(prefix: string): Promise<number> {
  if (!/^dhc[0-9a-f]{6}$/.test(prefix)) throw new UsageError(`--sweep needs a run prefix such as dhc1a2b3c (printed as "chaos: run dhc…"), got '${prefix}'`);
  const before = await leftovers(prefix);
  const problems = await sweep(prefix);
  for (const dir of (await readdir(tmpdir())).filter((name) => name.startsWith(`debughost-${prefix}-`))) await rm(join(tmpdir(), dir), { recursive: true, force: true });
  const after = await leftovers(prefix);
  process.stdout.write(`chaos: swept ${prefix}: ${before.length} things found${after.length === 0 ? ', nothing left' : `, left: ${after.join('; ')}`}\n`);
  for (const problem of problems) process.stderr.write(`debughost chaos: ${problem}\n`);
  return after.length === 0 ? 0 : 1;
}
