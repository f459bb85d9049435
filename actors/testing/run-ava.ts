// `npm test` runs ava through this: ava's TAP output is shown as one line per test (with the time
// since the start, so a slow file stands out), and the run ends with the list of skipped tests and
// why, then one closing line of counts. Arguments go to ava (`npm test -- node/mcp.test.ts`).
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { renderSummary, TapReader } from './tap-summary.ts';

const avaCli = join(dirname(fileURLToPath(import.meta.resolve('ava'))), 'cli.mjs');

function clock(startedMs: number): string {
  const seconds = Math.floor((performance.now() - startedMs) / 1000);
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;
}

async function main(args: string[]): Promise<number> {
  const startedMs = performance.now();
  const child = spawn(process.execPath, [avaCli, '--tap', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const reader = new TapReader();
  const lines = createInterface({ input: child.stdout });
  const exited = new Promise<number>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : 128))));
  // Ctrl-C reaches ava through the process group; a SIGTERM to this wrapper alone is passed on.
  process.once('SIGTERM', () => child.kill('SIGTERM'));
  for await (const text of lines) {
    const shown = reader.line(text);
    if (shown === null) continue;
    const isResult = /^ {2}[✔✘\-◌] /.test(shown);
    process.stdout.write(`${isResult ? `[${clock(startedMs).padStart(5)}]` : '       '}${shown}\n`);
  }
  const code = await exited;
  const summary = reader.summary();
  process.stdout.write(`\nava ran for ${clock(startedMs)} (minutes:seconds)\n`);
  for (const line of renderSummary(summary)) process.stdout.write(`${line}\n`);
  if (code !== 0) return code;
  return summary.failed > 0 || !summary.complete ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
