// Shared parts of the actors and MCP benchmarks: a 3-node cluster of real node
// processes (stopped by pid on return, error or Ctrl-C), MCP clients on it,
// a bounded-concurrency pool, latency summaries, and /proc readings of the
// nodes and of the workloads (found by a marker in their environment).
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LocalCluster, until, type Member } from '../node/local-cluster.ts';
import { stopOnSignal } from './clusters.ts';
export { pool, summarize, wholeNumberFlag, type LatencySummary } from './mcp-stats.ts';

export type ToolResult = { isError?: boolean; content: { type: string; text: string }[]; structuredContent?: Record<string, unknown> };

/** A tool call answered with isError: the benchmark's load is wrong, so it stops and says why. */
export class ToolCallError extends Error {
  override readonly name = 'ToolCallError';
}

const CLUSTER_LEADER_WAIT_MS = 60_000;
const WORKLOADS_GONE_WAIT_MS = 20_000;
const CALL_TIMEOUT_MS = 120_000;
/** How long a profiled node may take to exit on SIGTERM (it hands off leadership, stops, then writes its profile) before it is killed. */
const GRACEFUL_STOP_WAIT_MS = 20_000;

export interface BenchCluster {
  readonly cluster: LocalCluster;
  readonly members: readonly Member[];
  /** Stops every node by pid, waits for the marked workloads to die with them, removes the temp dir. */
  stop(): Promise<void>;
}

export interface BenchClusterOptions {
  /**
   * Start each node with `--cpu-prof` writing into this directory, and stop the nodes with SIGTERM (waiting for them
   * to exit) instead of SIGKILL: Node.js writes a CPU profile only when the process exits on its own.
   */
  readonly cpuProfDir?: string;
}

/** Three `debughost node` processes in a temp dir on free loopback ports; `extraArgs` go to each node. */
export async function startBenchCluster(nodes: number, extraArgs: readonly string[], marker: string, options: BenchClusterOptions = {}): Promise<BenchCluster> {
  const profiled = options.cpuProfDir !== undefined;
  const cluster = await LocalCluster.create(nodes, { extraArgs, ...(profiled ? { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`] } : {}) });
  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      forget();
      if (profiled) await stopGracefully(cluster, GRACEFUL_STOP_WAIT_MS);
      await cluster.stop();
      // Workloads die with their node (the supervisor watches a pipe from it); wait so that none outlive the bench.
      await until('marked workloads gone', WORKLOADS_GONE_WAIT_MS, () => (markedProcesses(marker).length === 0 ? true : null), 100).catch(() => {
        process.stderr.write(`bench: some processes marked ${marker} were still alive ${WORKLOADS_GONE_WAIT_MS} ms after the nodes stopped\n`);
      });
    })();
    return stopped;
  };
  const forget = stopOnSignal(stop);
  try {
    for (const member of cluster.members) cluster.start(member);
    await cluster.waitForLeader(CLUSTER_LEADER_WAIT_MS);
    for (const member of cluster.members) await cluster.waitCaughtUp(member, CLUSTER_LEADER_WAIT_MS);
  } catch (error) {
    await stop();
    throw error;
  }
  return { cluster, members: cluster.members, stop };
}

/** SIGTERM to every running node by pid, then wait up to `waitMs` for all to exit; those left are SIGKILLed. */
async function stopGracefully(cluster: LocalCluster, waitMs: number): Promise<void> {
  const children = cluster.members.filter((m) => cluster.running(m)).map((m) => m.process as ChildProcess);
  const sentMs = performance.now();
  const exits = Promise.all(cluster.members.map((m) => cluster.kill(m, 'SIGTERM').then(() => performance.now() - sentMs)));
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), waitMs);
  });
  const exited = await Promise.race([exits, late]);
  if (exited === 'late') {
    process.stderr.write(`bench: a node did not exit within ${waitMs} ms of SIGTERM; it is killed and writes no profile\n`);
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exits;
  } else {
    process.stderr.write(`bench: the nodes exited ${exited.map((ms) => ms.toFixed(0)).join(', ')} ms after SIGTERM (profiles written)\n`);
  }
  clearTimeout(timer);
}

export async function connect(member: Member, name: string): Promise<Client> {
  const client = new Client({ name, version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://${member.mcp}/mcp`), { requestInit: { headers: { ...member.mcpHeaders } } }));
  return client;
}

/** One tool call; an isError result throws, since every call of a benchmark is meant to succeed. */
export async function callTool(client: Client, name: string, args: Record<string, unknown>): Promise<ToolResult> {
  const result = (await client.callTool({ name, arguments: args }, undefined, { timeout: CALL_TIMEOUT_MS })) as ToolResult;
  if (result.isError === true) throw new ToolCallError(`${name} ${JSON.stringify(args).slice(0, 120)} failed: ${result.content[0]?.text ?? ''}`);
  return result;
}

/** Timed call in milliseconds. */
export async function timedCall(client: Client, name: string, args: Record<string, unknown>): Promise<{ ms: number; result: ToolResult }> {
  const started = performance.now();
  const result = await callTool(client, name, args);
  return { ms: performance.now() - started, result };
}

/** VmRSS of one process in MB, from /proc/PID/status. */
export function rssMbOf(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match?.[1] === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) / 1024;
}

export interface MarkedProcess {
  readonly pid: number;
  readonly parentPid: number;
  readonly command: string;
  /** The marker variable's value (which project it belongs to). */
  readonly value: string;
  readonly rssKb: number;
  /** Proportional set size: shared pages divided among the processes that map them (the honest per-process cost). */
  readonly pssKb: number;
}

function pssKbOf(pid: string): number {
  try {
    const match = /^Pss:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return match?.[1] === undefined ? 0 : Number(match[1]);
  } catch {
    return 0;
  }
}

/** Live (not zombie) processes whose environment holds `marker=VALUE`; memory only when `withMemory`; only those named `command` if given (cheaper: no environ read for others). */
export function markedProcesses(marker: string, withMemory = false, command?: string): MarkedProcess[] {
  const needle = `\0${marker}=`;
  const found: MarkedProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let environ: string;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (command !== undefined && !stat.includes(`(${command})`)) continue;
      environ = `\0${readFileSync(`/proc/${entry}/environ`, 'utf8')}`;
    } catch {
      continue;
    }
    const at = environ.indexOf(needle);
    if (at < 0) continue;
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    if (fields[0] === 'Z') continue;
    const end = environ.indexOf('\0', at + needle.length);
    let rssKb = 0;
    if (withMemory) {
      try {
        rssKb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1] ?? 0);
      } catch {
        continue;
      }
    }
    found.push({
      pid: Number(entry),
      parentPid: Number(fields[1]),
      command: stat.slice(stat.indexOf('(') + 1, close),
      value: environ.slice(at + needle.length, end < 0 ? undefined : end),
      rssKb,
      pssKb: withMemory ? pssKbOf(entry) : 0,
    });
  }
  return found;
}

/**
 * For each marked workload process running exactly `argv`, the project (marker value) and the ancestor node pid among
 * `nodePids` (0 when none). The whole argv is compared so that a supervisor's own `sleep GRACE` does not count.
 */
export function workloadsByNode(marker: string, argv: readonly string[], nodePids: ReadonlySet<number>): Map<string, number[]> {
  const byProject = new Map<string, number[]>();
  const wanted = `${argv.join('\0')}\0`;
  for (const p of markedProcesses(marker, false, argv[0])) {
    if (readCommandLine(p.pid) !== wanted) continue;
    // Climb through the supervisor shell to the node; at most a few levels.
    let pid = p.parentPid;
    for (let depth = 0; depth < 8 && pid > 1 && !nodePids.has(pid); depth += 1) pid = readParentPid(pid);
    const owners = byProject.get(p.value) ?? [];
    owners.push(nodePids.has(pid) ? pid : 0);
    byProject.set(p.value, owners);
  }
  return byProject;
}

function readCommandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

function readParentPid(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/** Load average over 1, 5 and 15 minutes, as text (the machine is shared: the figures depend on it). */
export function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

