// `npm test`'s first step: the typecheck (tsc) and the lint (eslint) at the same time, each on its own core (both are
// single-threaded; run one after the other they took about 45 s of a 2-core machine's npm test, side by side about
// the longer of the two). Each one's output is printed whole once it ends, never interleaved; the exit code is
// non-zero when either failed. `npm run typecheck` and `npm run lint` still run them one at a time.
import { spawn } from 'node:child_process';

/** package.json's scripts, so that the commands are written in one place. */
const CHECKS = ['typecheck', 'lint'] as const;
type Check = (typeof CHECKS)[number];

function run(check: Check): Promise<{ check: Check; code: number; output: string; seconds: number }> {
  const startedMs = performance.now();
  const child = spawn('npm', ['run', '--silent', check], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve) => {
    child.once('error', (error) => resolve({ check, code: 1, output: `${output}${error.message}\n`, seconds: 0 }));
    child.once('close', (code, signal) => resolve({ check, code: code ?? (signal === null ? 1 : 128), output, seconds: (performance.now() - startedMs) / 1000 }));
  });
}

async function main(): Promise<number> {
  const results = await Promise.all(CHECKS.map(run));
  for (const { check, code, output, seconds } of results) {
    process.stdout.write(`npm run ${check}: ${code === 0 ? 'ok' : `FAILED (exit ${code})`} in ${seconds.toFixed(0)} s\n`);
    if (output.trim() !== '') process.stdout.write(`${output.trimEnd()}\n`);
  }
  return results.some((result) => result.code !== 0) ? 1 : 0;
}

process.exitCode = await main();
