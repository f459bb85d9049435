// `npm run bench -- start [--runs N] [--baseline DIR]`: what a node start costs when it
// runs the TypeScript sources through tsx (as every node did before the build) and when
// it runs the esbuild build in dist/, side by side, alternating runs; with --baseline, a
// checkout of an older commit (its own bin/debughost.js) is measured too. Two figures:
// - node start: one founding node from spawn to its "ready:" line; CPU is the process's
//   user+system time at that moment (/proc), wall is spawn to the line;
// - npm start: `npm start` (a 3-node `debughost up`) from spawn to "cluster up", with the
//   CPU of every process of its group (npm, sh, up and the three nodes) at that moment.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../node/local-cluster.ts';
import { cpuMsOf } from './clusters.ts';
import { loadAverage } from './mcp-client.ts';
import { BenchUsageError, median } from './raft-stats.ts';

const REPO = resolve(import.meta.dirname, '..');
/** A start that has not printed its ready line by then is broken, not slow. */
const START_TIMEOUT_MS = 60_000;
/** Random bases tried before giving up: a busy machine rarely holds all of a range of 103. */
const BASE_PORT_ATTEMPTS_MAX = 20;

interface Sample {
  readonly cpuMs: number;
  readonly wallMs: number;
}

/** Spawn, wait for `marker` on stdout, read the CPU of the process group, stop the group. */
async function measure(command: string, args: readonly string[], cwd: string, marker: string): Promise<Sample> {
  const started = performance.now();
  // Its own process group, so the CPU of everything it starts is counted and all of it is stopped.
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, DEBUGHOST_LOG_LEVEL: 'warn' } });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)));
  try {
    await new Promise<void>((resolveReady, reject) => {
      let stdout = '';
      const timer = setTimeout(() => reject(new Error(`${args.join(' ')} printed no '${marker}' within ${START_TIMEOUT_MS} ms: ${stderr}`)), START_TIMEOUT_MS);
      child.stdout?.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (!stdout.includes(marker)) return;
        clearTimeout(timer);
        resolveReady();
      });
      child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code} before '${marker}': ${stderr}`)));
    });
    const wallMs = performance.now() - started;
    return { cpuMs: cpuMsOf(await groupPids(child.pid as number)), wallMs };
  } finally {
    await stopGroup(child);
  }
}

/** Pids of the live processes in process group `group`. */
async function groupPids(group: number): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === group) pids.push(Number(entry));
    } catch {
      // The process exited while we looked.
    }
  }
  return pids;
}

async function stopGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolveExit) => child.once('exit', () => resolveExit()));
  process.kill(-(child.pid as number), 'SIGKILL');
  await exited;
}

async function nodeStart(command: readonly string[], cwd: string): Promise<Sample> {
  const dir = await mkdtemp(join(tmpdir(), 'debughost-start-bench-'));
  try {
    const grpc = `127.0.0.1:${await freePort()}`;
    const args = [...command, 'node', '--id', 'n1', '--grpc', grpc, '--mcp', `127.0.0.1:${await freePort()}`, '--seeds', grpc, '--data-dir', dir, '--docker', 'off'];
    return await measure(process.execPath, args, cwd, 'ready:');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function npmStart(cwd: string): Promise<Sample> {
  const dir = await mkdtemp(join(tmpdir(), 'debughost-start-bench-'));
  try {
    const base = await freeBasePort();
    return await measure('npm', ['start', '--', '--base-port', String(base), '--data-dir', dir], cwd, 'cluster up');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A base port P whose cluster ports (P+1..P+3 MCP, P+101..P+103 gRPC) were all free a moment ago. */
async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < BASE_PORT_ATTEMPTS_MAX; attempt += 1) {
    const base = 30_000 + ((await freePort()) % 25_000);
    const ports = [1, 2, 3, 101, 102, 103].map((offset) => base + offset);
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error(`no free base port after ${BASE_PORT_ATTEMPTS_MAX} tries`);
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolveFree) => {
    const server = createServer();
    server.once('error', () => resolveFree(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolveFree(true)));
  });
}

const summary = (samples: readonly Sample[]) => ({ cpuMs: Math.round(median(samples.map((s) => s.cpuMs))), wallMs: Math.round(median(samples.map((s) => s.wallMs))) });

export async function startBench(argv: string[]): Promise<Record<string, number | string>> {
  let values: { runs?: string | undefined; baseline?: string | undefined };
  try {
    ({ values } = parseArgs({ args: argv, options: { runs: { type: 'string' }, baseline: { type: 'string' } }, strict: true }));
  } catch (error) {
    throw new BenchUsageError(`${(error as Error).message}; options: --runs N (default 5), --baseline DIR (a checkout of an older commit)`);
  }
  const runs = Number(values.runs ?? '5');
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new BenchUsageError(`--runs needs a whole number from 1 to 50, got '${values.runs}'`);
  const baseline = values.baseline === undefined ? null : resolve(values.baseline);
  const loadBefore = loadAverage();
  const samples: Record<string, Sample[]> = { sourceNode: [], buildNode: [], baselineNode: [], baselineNpmStart: [], buildNpmStart: [] };
  for (let run = 0; run < runs; run += 1) {
    samples.sourceNode?.push(await nodeStart(['--import', 'tsx', 'node/main.ts'], REPO));
    samples.buildNode?.push(await nodeStart(['bin/debughost.js'], REPO));
    if (baseline !== null) samples.baselineNode?.push(await nodeStart(['bin/debughost.js'], baseline));
    if (baseline !== null) samples.baselineNpmStart?.push(await npmStart(baseline));
    samples.buildNpmStart?.push(await npmStart(REPO));
  }
  const result: Record<string, number | string> = { benchmark: 'start', runs, loadBefore };
  for (const [name, list] of Object.entries(samples)) {
    if (list.length === 0) continue;
    const { cpuMs, wallMs } = summary(list);
    result[`${name}CpuMs`] = cpuMs;
    result[`${name}WallMs`] = wallMs;
  }
  const ratio = (name: string, over: string, under: string): void => {
    const x = result[over];
    const y = result[under];
    if (typeof x === 'number' && typeof y === 'number' && y > 0) result[name] = Number((x / y).toFixed(2));
  };
  ratio('nodeCpuSourceOverBuild', 'sourceNodeCpuMs', 'buildNodeCpuMs');
  ratio('nodeCpuBaselineOverBuild', 'baselineNodeCpuMs', 'buildNodeCpuMs');
  ratio('npmStartWallBaselineOverBuild', 'baselineNpmStartWallMs', 'buildNpmStartWallMs');
  ratio('npmStartCpuBaselineOverBuild', 'baselineNpmStartCpuMs', 'buildNpmStartCpuMs');
  result.loadAfter = loadAverage();
  return result;
}
