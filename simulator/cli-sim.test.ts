// The simulator as a user runs it: progress on a terminal, quiet with --json, 50 seeds clean, same seed same trace hash, bad input refused in one line.
import test from 'ava';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { debughost, raftSeedsRunClean, runInTerminal } from './testing/sim-cli.ts';

// 50 seeds here, at least twice real time even on a loaded machine (one at load 21 on 2 cores ran 3.5x);
// 500 seeds and the 20x margin in simulator/cli-sim.long.test.ts (npm run test:long).
test('debughost sim --seeds 50 --nodes 5 --json runs clean, faster than real time', (t) => raftSeedsRunClean(t, 50, 2));

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
  // Seed 6 is the first this mutation fails; seed 7 alone would cost 90 s of CPU (its broken leaders trade rejected appends).
  const result = await debughost(['sim', '--seeds', '6', '--mutation', 'voteWithoutLogCheck']);
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

test('on a terminal a run shows a progress line on stderr; with --json it stays quiet', async (t) => {
  // script(1) gives the command a pseudo-terminal, as a person's shell would.
  const onTerminal = (args: string): Promise<{ code: number; stdout: string }> => runInTerminal(['sim', ...args.split(' ')]);
  const plain = await onTerminal('--seeds 3 --nodes 3');
  t.is(plain.code, 0, plain.stdout);
  t.regex(plain.stdout, /\r\x1b\[Ksim: seed [123]\/3, 0 failed, \d+ s/);
  t.regex(plain.stdout, /3 seed\(s\), 3 nodes: 0 failed/);
  const json = await onTerminal('--seeds 3 --nodes 3 --json');
  t.is(json.code, 0, json.stdout);
  t.notRegex(json.stdout, /\r\x1b\[K/);
});
