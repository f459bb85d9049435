// Whole-cluster actor runs as a user starts them: 500 seeds clean under swarm faults, and the planted fencing bug caught.
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ALL_FAULTS } from './faults.ts';
import { runActorSeed } from './run-actor-seed.ts';

const run = promisify(execFile);
const bin = new URL('../bin/debughost.js', import.meta.url).pathname;

async function debughost(args: string[]): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run(process.execPath, [bin, ...args], { maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout };
  } catch (error) {
    const failure = error as { code: number; stdout: string };
    return { code: failure.code, stdout: failure.stdout };
  }
}

test('debughost sim --actors 20 --seeds 500 --nodes 5 runs clean', async (t) => {
  // A shorter safety phase than the CLI default (8 s) keeps this inside npm test; the default runs in CI by hand.
  const result = await debughost(['sim', '--actors', '20', '--seeds', '500', '--nodes', '5', '--safety-ms', '4000', '--json']);
  const summary = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
  t.is(result.code, 0, result.stdout.split('\n').slice(0, 10).join('\n'));
  t.is(summary.seeds, 500);
  t.deepEqual(summary.failed, []);
  // The runs did real work: calls answered, owner writes checked against the ring, hand-offs made.
  t.true((summary.calls as number) > 20_000, `only ${String(summary.calls)} calls`);
  t.true((summary.ownerWrites as number) > 20_000, `only ${String(summary.ownerWrites)} owner writes`);
  t.true((summary.moves as number) > 5_000, `only ${String(summary.moves)} hand-offs`);
  t.log(`${String(summary.calls)} calls, ${String(summary.ownerWrites)} owner writes, ${String(summary.moves)} hand-offs; ${String(summary.simulatedSeconds)} s simulated in ${String(summary.wallSeconds)} s`);
});

test('the planted fencing bug (--mutation noFencing) is caught, and its seed replays clean without it', async (t) => {
  const result = await debughost(['sim', '--actors', '20', '--seeds', '30', '--nodes', '5', '--mutation', 'noFencing']);
  t.is(result.code, 1, result.stdout);
  const match = /seed (\d+) FAILED: (.*)/.exec(result.stdout);
  t.truthy(match, result.stdout);
  t.regex(match?.[2] ?? '', /fencing|two owners/);
  t.regex(result.stdout, new RegExp(`replay: debughost sim --seed ${match?.[1] ?? ''} --nodes 5 --actors 20 --mutation noFencing`));
  const seed = Number(match?.[1]);
  t.deepEqual(runActorSeed({ seed, nodes: 5, faults: new Set(ALL_FAULTS), actors: 20 }).violations, []);
});

test('an actor run replays exactly: same seed, same trace hash', (t) => {
  const hash = (seed: number): string | null => runActorSeed({ seed, nodes: 3, faults: new Set(ALL_FAULTS), actors: 10, safetyMs: 3000, traceHash: true }).traceHash;
  t.is(hash(7), hash(7));
  t.not(hash(7), hash(8));
});

test('an actor mutation without --actors is refused in one line', async (t) => {
  const result = await run(process.execPath, [bin, 'sim', '--mutation', 'noFencing']).catch((error: unknown) => error as { code: number; stderr: string });
  t.is((result as { code: number }).code, 2);
  t.is((result as { stderr: string }).stderr.trim(), 'debughost sim: --mutation noFencing plants a bug in the actor layer; add --actors N');
});
