// `debughost sim` as a user runs it, for the simulator's CLI tests (npm test) and their many-seed
// versions (npm run test:long): the exit code, the output, and checks a clean run must pass.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';

const run = promisify(execFile);
const bin = new URL('../../bin/debughost.js', import.meta.url).pathname;

export async function debughost(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as { code: number; stdout: string; stderr: string };
    return { code: failure.code, stdout: failure.stdout, stderr: failure.stderr };
  }
}

/** `debughost ARGS` on a pseudo-terminal (script(1)), as from a person's shell: stdout and stderr arrive together. */
export async function runInTerminal(args: readonly string[]): Promise<{ code: number; stdout: string }> {
  const quote = (word: string): string => `'${word.replaceAll("'", "'\\''")}'`;
  const command = [process.execPath, bin, ...args].map(quote).join(' ');
  try {
    const { stdout } = await run('script', ['-qec', command, '/dev/null'], { maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout };
  } catch (error) {
    const failure = error as { code: number; stdout: string };
    return { code: failure.code, stdout: failure.stdout };
  }
}

/** The `--json` summary: stdout holds it alone (the lines for people go to stderr). */
export const lastJson = (stdout: string): Record<string, unknown> => JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;

/** The lines a failed run printed, for an assertion's message. */
const head = (result: { stdout: string; stderr: string }): string => `${result.stderr}\n${result.stdout}`.trim().split('\n').slice(0, 10).join('\n');

/**
 * `sim --seeds N --nodes 5 --json` (Raft and KV only) exits 0 with no failed seed, did real work, and ran at
 * least `speedupMin` times faster than real time (wall clock, so the margin must allow for a loaded machine).
 */
export async function raftSeedsRunClean(t: ExecutionContext, seeds: number, speedupMin: number): Promise<void> {
  const result = await debughost(['sim', '--seeds', String(seeds), '--nodes', '5', '--json']);
  const summary = lastJson(result.stdout);
  t.is(result.code, 0, head(result));
  t.is(result.stdout.trim().split('\n').length, 1, 'with --json, stdout is the JSON object alone');
  t.is(summary.seeds, seeds);
  t.deepEqual(summary.failed, []);
  t.is(summary.violations, 0);
  // 200 a seed says the workload really ran (seeds 1 and 9 alone run 469 and 1004).
  t.true((summary.operations as number) > 200 * seeds, `only ${String(summary.operations)} client operations`);
  t.true((summary.speedup as number) > speedupMin, `speedup ${String(summary.speedup)}x`);
  t.log(`simulated ${String(summary.simulatedSeconds)} s in ${String(summary.wallSeconds)} s: ${String(summary.speedup)}x real time`);
}

/** `sim --actors 20 --seeds N --nodes 5` exits 0 with no failed seed, and the runs did real work: calls, owner writes, hand-offs. */
export async function actorSeedsRunClean(t: ExecutionContext, seeds: number, extra: readonly string[] = []): Promise<void> {
  const result = await debughost(['sim', '--actors', '20', '--seeds', String(seeds), '--nodes', '5', ...extra, '--json']);
  const summary = lastJson(result.stdout);
  t.is(result.code, 0, head(result));
  t.is(result.stdout.trim().split('\n').length, 1, 'with --json, stdout is the JSON object alone');
  t.is(summary.seeds, seeds);
  t.deepEqual(summary.failed, []);
  // Per seed, at least 40 calls, 40 owner writes and 10 hand-offs (50 seeds at --safety-ms 4000 ran 112, 124 and 55 a seed).
  t.true((summary.calls as number) > 40 * seeds, `only ${String(summary.calls)} calls`);
  t.true((summary.ownerWrites as number) > 40 * seeds, `only ${String(summary.ownerWrites)} owner writes`);
  t.true((summary.moves as number) > 10 * seeds, `only ${String(summary.moves)} hand-offs`);
  t.log(`${String(summary.calls)} calls, ${String(summary.ownerWrites)} owner writes, ${String(summary.moves)} hand-offs; ${String(summary.simulatedSeconds)} s simulated in ${String(summary.wallSeconds)} s`);
}
