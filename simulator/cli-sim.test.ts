// The simulator as a user runs it: 500 seeds clean, same seed same trace hash, bad input refused in one line.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const bin = new URL('../bin/debughost.js', import.meta.url).pathname;

async function debughost(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as { code: number; stdout: string; stderr: string };
    return { code: failure.code, stdout: failure.stdout, stderr: failure.stderr };
  }
}

const lastJson = (stdout: string): Record<string, unknown> => JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;

test('debughost sim --seeds 500 --nodes 5 --json runs clean, faster than real time', async (t) => {
  const result = await debughost(['sim', '--seeds', '500', '--nodes', '5', '--json']);
  const summary = lastJson(result.stdout);
  t.is(result.code, 0, result.stdout.split('\n').slice(0, 10).join('\n'));
  t.is(summary.seeds, 500);
  t.deepEqual(summary.failed, []);
  t.is(summary.violations, 0);
  t.true((summary.operations as number) > 100_000, `only ${String(summary.operations)} client operations`);
  // The goal is 100x (see docs/simulator.md for the measured figure); a wide margin here, as this machine is shared.
  t.true((summary.speedup as number) > 20, `speedup ${String(summary.speedup)}x`);
  t.log(`simulated ${String(summary.simulatedSeconds)} s in ${String(summary.wallSeconds)} s: ${String(summary.speedup)}x real time`);
});

test('the same seed gives the same trace, byte for byte', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'debughost-sim-'));
  try {
    const first = await debughost(['sim', '--seed', '42', '--trace', join(dir, 'a.trace'), '--trace-hash']);
    const second = await debughost(['sim', '--seed', '42', '--trace', join(dir, 'b.trace'), '--trace-hash']);
    const other = await debughost(['sim', '--seed', '43', '--trace-hash']);
    const hashOf = (stdout: string): string => /trace-hash ([0-9a-f]{64})/.exec(stdout)?.[1] ?? 'missing';
    t.is(first.code, 0);
    t.is(hashOf(first.stdout), hashOf(second.stdout));
    t.not(hashOf(first.stdout), hashOf(other.stdout));
    const [a, b] = await Promise.all([readFile(join(dir, 'a.trace')), readFile(join(dir, 'b.trace'))]);
    t.true(a.byteLength > 10_000);
    t.true(a.equals(b));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a failing seed prints the command that replays it', async (t) => {
  const result = await debughost(['sim', '--seeds', '40', '--mutation', 'voteWithoutLogCheck']);
  t.is(result.code, 1);
  const seed = /seed (\d+) FAILED: /.exec(result.stdout)?.[1];
  t.truthy(seed, result.stdout);
  t.regex(result.stdout, new RegExp(`replay: debughost sim --seed ${seed} --nodes 5 --mutation voteWithoutLogCheck --trace sim-seed-${seed}\\.trace`));
  // The printed command does replay the failure.
  const replay = await debughost(['sim', '--seed', String(seed), '--mutation', 'voteWithoutLogCheck']);
  t.is(replay.code, 1);
  t.regex(replay.stdout, new RegExp(`seed ${seed} FAILED`));
});

for (const [name, args, pattern] of [
  ['an unknown flag', ['sim', '--bogus'], /Unknown option '--bogus'/],
  ['a nonsense seed', ['sim', '--seed', 'abc'], /--seed needs a whole number/],
  ['a negative seed count', ['sim', '--seeds', '-3'], /needs a non-negative whole number/],
  ['a node count out of range', ['sim', '--nodes', '0'], /--nodes must be between 1 and 9/],
  ['an unknown fault', ['sim', '--faults', 'drop,meteor'], /unknown fault 'meteor'/],
  ['a trace without one seed', ['sim', '--seeds', '2', '--trace', 'x.trace'], /--trace needs --seed/],
  ['an unknown command', ['frob'], /unknown command 'frob'/],
] as const) {
  test(`bad input, ${name}: one line on stderr, exit 2, no stack trace`, async (t) => {
    const result = await debughost([...args]);
    t.is(result.code, 2);
    t.is(result.stdout, '');
    t.is(result.stderr.trim().split('\n').length, 1, result.stderr);
    t.regex(result.stderr, pattern);
    t.notRegex(result.stderr, /\bat .*\.(ts|js):\d+/);
  });
}
