// The MCP project workload: a few clients, each connected to one random node
// over Streamable HTTP, start, stop, restart and query a small set of projects
// whose command is a long `sleep` carrying a run marker in its environment.
// After recovery the store's desired state is read back and the host's real
// processes are counted from /proc until every project wanted running runs
// exactly once and every other runs nowhere (bounded). Nodes in network
// namespaces share the host's /proc, so one scan sees every node's workloads.
import { readdirSync, readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Prng } from '../simulator/prng.ts';
import { allowedFinal, checkExactlyOnce, CopiesDuringRun, type ExactlyOnceVerdict, type FinalDesired, type ProjectCall, type ProjectIntent } from './checker.ts';
import { MCP_PORT } from './cluster.ts';
import type { CallRecord, Now, Outcome, Targets, Workload, WorkloadVerdict } from './workload.ts';

export interface McpWorkloadOptions {
  readonly seed: number;
  readonly clients: number;
  readonly projects: number;
  /** Environment variable that marks this run's workloads (unique per run, e.g. DH_CHAOS_MARK_dhc1a2b3c). */
  readonly mark: string;
  /** Deadline of each tool call; a change past it is `unknown`. */
  readonly opTimeoutMs: number;
  readonly targets: Targets;
  readonly now: Now;
  /** The bearer token MCP calls carry (the cluster's admin token). */
  readonly token: string;
}

/** The MCP workload's own figures, beside the common verdict. */
export interface McpVerdict extends WorkloadVerdict {
  readonly missing: number;
  readonly orphans: number;
  /** Final desired states that no acknowledged or unknown change allows (an acknowledged change was lost). */
  readonly contradicted: number;
  /** Most copies of one project seen at any sample during the run. */
  readonly maxCopies: number;
  /** Projects seen running more than once at some sample during the run (a failure: exactly once must hold at every moment). */
  readonly duplicatesDuringRun: number;
  /** From the start of the check until the host matched the desired state; null = it never did within the bound. */
  readonly settleSeconds: number | null;
  /** Marked processes still alive after every project was removed at the end. */
  readonly leftAfterRemove: number;
}

export const PROJECT_PREFIX = 'chaos-p';
/** How the checker finds the workload among the host's processes: `exec` makes the shell become this. */
const WORKLOAD_COMM = '(sleep)';
const COMMAND = 'exec sleep 100000';
const BACKOFF_MS = 100;
const THINK_MS_MAX = 100;
const SAMPLE_MS = 250;
/** Bound on the host reaching the desired state once the cluster has recovered. */
export const SETTLE_MS_MAX = 30_000;
/** Bound on reading one project's desired state back, and on removing one project, through any running node. */
const READBACK_MS_MAX = 20_000;
const REMOVED_MS_MAX = 20_000;
/** While the host does not match yet, how often the desired state is read again. */
const REREAD_MS = 2_000;

type ToolResult = { isError?: boolean; content?: { type: string; text?: string }[]; structuredContent?: Record<string, unknown> };

/** A project call's result: ok with its structured content, an error result, or no answer. */
type Answer = { readonly type: 'ok'; readonly structured: Record<string, unknown> } | { readonly type: 'error'; readonly text: string } | { readonly type: 'lost'; readonly text: string; readonly sent: boolean };

/** An error result that proves the change did not happen: the project does not exist (stop and restart only). */
const NOT_FOUND = /^no project \S+ in tenant \S+/;

interface Connection {
  readonly node: { id: string; address: string };
  client: Client | null;
}

export class McpWorkload implements Workload {
  readonly name = 'mcp';
  readonly calls: CallRecord[] = [];
  readonly projectCalls: ProjectCall[] = [];
  /** /proc samples during the run: no project may run twice at any moment. */
  private readonly duringRun = new CopiesDuringRun();
  private readonly observers = new Map<string, Client>();

  constructor(readonly options: McpWorkloadOptions) {}

  get projectNames(): string[] {
    return Array.from({ length: this.options.projects }, (_, i) => `${PROJECT_PREFIX}${i + 1}`);
  }

  async run(signal: AbortSignal): Promise<void> {
    const root = new Prng(this.options.seed).fork('chaos:workload:mcp');
    // Exactly once at every moment, not only at the end: a paused or cut-off owner must have fenced its copy before another starts one.
    const sampler = setInterval(() => this.duringRun.observe(this.options.now(), countMarked(this.options.mark)), SAMPLE_MS);
    try {
      await Promise.all(Array.from({ length: this.options.clients }, (_, clientId) => this.clientLoop(root.fork(`client:${clientId}`), signal)));
    } finally {
      clearInterval(sampler);
    }
  }

  private async clientLoop(random: Prng, signal: AbortSignal): Promise<void> {
    let connection: Connection | null = null;
    try {
      while (!signal.aborted) {
        const members = this.options.targets.members();
        if (members.length === 0) {
          await sleep(BACKOFF_MS);
          continue;
        }
        // A client stays on its node; it moves on after trouble, and now and then anyway.
        if (connection === null || random.float() < 0.05 || !members.some((m) => m.id === connection?.node.id)) {
          await closeQuietly(connection?.client ?? null);
          connection = { node: random.pick(members), client: null };
        }
        const project = random.pick(this.projectNames);
        const dice = random.float();
        const [tool, intent]: [string, ProjectIntent] =
          dice < 0.4 ? ['project_start', 'running'] : dice < 0.7 ? ['project_stop', 'stopped'] : dice < 0.8 ? ['project_restart', 'running'] : ['project_status', null];
        const outcome = await this.change(connection, tool, project, intent);
        if (outcome !== 'ok') {
          await closeQuietly(connection.client);
          connection = null;
        }
        await sleep(outcome === 'ok' ? random.int(THINK_MS_MAX + 1) : BACKOFF_MS);
      }
    } finally {
      await closeQuietly(connection?.client ?? null);
    }
  }

  private argumentsFor(tool: string, project: string): Record<string, unknown> {
    if (tool !== 'project_start') return { name: project };
    return { name: project, command: COMMAND, ports: [], restart: 'always', env: { [this.options.mark]: project }, waitMs: 0 };
  }

  /** One tool call through the client's node, recorded with what it asked for and how it ended. */
  private async change(connection: Connection, tool: string, project: string, intent: ProjectIntent): Promise<Outcome> {
    const startMs = this.options.now();
    const answer = await this.callThrough(connection, tool, this.argumentsFor(tool, project));
    const outcome = outcomeOf(answer, intent);
    const endMs = this.options.now();
    const error = answer.type === 'ok' ? undefined : answer.text.slice(0, 200);
    this.calls.push({ workload: this.name, op: tool, node: connection.node.id, startMs, endMs, outcome, ...(error === undefined ? {} : { error }) });
    this.projectCalls.push({ project, intent, outcome, startMs, endMs });
    return outcome;
  }

  private async callThrough(connection: Connection, tool: string, args: Record<string, unknown>): Promise<Answer> {
    if (connection.client === null) {
      try {
        connection.client = await connect(connection.node.address, this.options.opTimeoutMs, this.options.token);
      } catch (error) {
        return { type: 'lost', text: `connect: ${describe(error)}`, sent: false };
      }
    }
    return callTool(connection.client, tool, args, this.options.opTimeoutMs);
  }

  /** An observer's client of a node, for the final checks. */
  private async observer(node: { id: string; address: string }): Promise<Client> {
    const existing = this.observers.get(node.id);
    if (existing !== undefined) return existing;
    const client = await connect(node.address, this.options.opTimeoutMs, this.options.token);
    this.observers.set(node.id, client);
    return client;
  }

  /** Call `tool` through any running node until one gives a definite answer, or the bound passes. */
  private async throughAnyNode(tool: string, project: string, boundMs: number, signal: AbortSignal): Promise<Answer | null> {
    const until = Date.now() + boundMs;
    while (Date.now() < until && !signal.aborted) {
      for (const node of this.options.targets.running()) {
        let answer: Answer;
        try {
          answer = await callTool(await this.observer(node), tool, { name: project }, this.options.opTimeoutMs);
        } catch (error) {
          answer = { type: 'lost', text: describe(error), sent: false };
        }
        if (answer.type === 'ok' || (answer.type === 'error' && NOT_FOUND.test(answer.text))) return answer;
        if (answer.type === 'lost') {
          await closeQuietly(this.observers.get(node.id) ?? null);
          this.observers.delete(node.id);
        }
      }
      await sleep(200);
    }
    return null;
  }

  /** Every project's desired state as the store holds it, through any running node; unread ones are left out. */
  private async readDesired(signal: AbortSignal): Promise<Map<string, FinalDesired>> {
    const desired = new Map<string, FinalDesired>();
    for (const project of this.projectNames) {
      const answer = await this.throughAnyNode('project_status', project, READBACK_MS_MAX, signal);
      if (answer !== null) desired.set(project, answer.type === 'ok' ? (answer.structured.desired === 'running' ? 'running' : 'stopped') : 'absent');
    }
    return desired;
  }

  async verdict(signal: AbortSignal): Promise<McpVerdict> {
    const findings: string[] = [];
    const settleStart = Date.now();
    let desired = await this.readDesired(signal);
    let readAt = Date.now();
    let check: ExactlyOnceVerdict = checkExactlyOnce(desired, countMarked(this.options.mark));
    let settleSeconds: number | null = null;
    while (!signal.aborted) {
      check = checkExactlyOnce(desired, countMarked(this.options.mark));
      if (desired.size === this.options.projects && check.duplicates.length + check.missing.length + check.orphans.length === 0) {
        settleSeconds = (Date.now() - settleStart) / 1000;
        break;
      }
      if (Date.now() - settleStart > SETTLE_MS_MAX) break;
      await sleep(200);
      // A change that timed out at the client may still be applied by a node's retries: read the store again now and then.
      if (Date.now() - readAt > REREAD_MS) {
        desired = await this.readDesired(signal);
        readAt = Date.now();
      }
    }
    let contradicted = 0;
    for (const project of this.projectNames) {
      const state = desired.get(project);
      if (state === undefined) {
        findings.push(`${project}: its desired state could not be read through any node within ${READBACK_MS_MAX / 1000} s`);
        continue;
      }
      const allowed = allowedFinal(this.projectCalls.filter((call) => call.project === project));
      if (!allowed.has(state)) {
        contradicted += 1;
        findings.push(`${project}: the store says ${state}, but the history allows only ${[...allowed].join(' or ')}: an acknowledged change was lost`);
      }
    }
    const unread = this.options.projects - desired.size;
    const running = [...desired.values()].filter((state) => state === 'running').length;
    const changes = this.projectCalls.filter((call) => call.intent !== null);
    findings.push(
      `projects: ${changes.filter((c) => c.outcome === 'ok').length} acknowledged changes, ${changes.filter((c) => c.outcome === 'unknown').length} unknown; ` +
        `at the end ${running} of ${this.options.projects} desired running; ` +
        (settleSeconds === null ? `the host did NOT match within ${SETTLE_MS_MAX / 1000} s` : `the host matched after ${settleSeconds} s`),
    );
    const duringRun = this.duringRun.violations;
    findings.push(
      `exactly once: ${check.duplicates.length} duplicated, ${check.missing.length} missing, ${check.orphans.length} orphaned at the end; ` +
        `at most ${this.duringRun.maxCopies} copies of one project in ${this.duringRun.samples} samples during the run`,
    );
    for (const violation of duringRun) findings.push(`during the run: ${violation.copies} copies of ${violation.project} at ${(violation.atMs / 1000).toFixed(1)} s`);
    if (check.duplicates.length > 0) findings.push(`running more than once: ${check.duplicates.join(', ')}`);
    if (check.missing.length > 0) findings.push(`desired running, running nowhere: ${check.missing.join(', ')}`);
    if (check.orphans.length > 0) findings.push(`desired stopped, still running: ${check.orphans.join(', ')}`);
    const leftAfterRemove = await this.removeAll(signal, findings);
    return {
      workload: this.name,
      ok: unread === 0 && contradicted === 0 && check.duplicates.length + check.missing.length + check.orphans.length === 0 && duringRun.length === 0 && leftAfterRemove === 0,
      lost: check.missing.length,
      duplicates: check.duplicates.length,
      linearizable: null,
      findings,
      missing: check.missing.length,
      orphans: check.orphans.length,
      contradicted,
      maxCopies: this.duringRun.maxCopies,
      duplicatesDuringRun: duringRun.length,
      settleSeconds,
      leftAfterRemove,
    };
  }

  /** Remove every project (a removed project runs nowhere) and count marked processes still alive afterwards. */
  private async removeAll(signal: AbortSignal, findings: string[]): Promise<number> {
    for (const project of this.projectNames) {
      const answer = await this.throughAnyNode('project_remove', project, REMOVED_MS_MAX, signal);
      if (answer === null) findings.push(`${project}: could not be removed through any node within ${REMOVED_MS_MAX / 1000} s`);
    }
    const until = Date.now() + REMOVED_MS_MAX;
    let left = countMarked(this.options.mark);
    while (left.size > 0 && Date.now() < until && !signal.aborted) {
      await sleep(200);
      left = countMarked(this.options.mark);
    }
    const total = [...left.values()].reduce((sum, n) => sum + n, 0);
    if (total > 0) findings.push(`after removing every project ${total} marked processes still ran: ${[...left.keys()].join(', ')}`);
    return total;
  }

  close(): void {
    for (const client of this.observers.values()) void closeQuietly(client);
    this.observers.clear();
  }
}

/**
 * How a project call ended: ok; a definite refusal (the project does not
 * exist, or the request never left this process) fails; any other error or a
 * lost answer may have taken effect. A status call changes nothing, so it is
 * ok or fail.
 */
function outcomeOf(answer: Answer, intent: ProjectIntent): Outcome {
  switch (answer.type) {
    case 'ok':
      return 'ok';
    case 'error':
      return intent === null || NOT_FOUND.test(answer.text) ? 'fail' : 'unknown';
    case 'lost':
      return intent === null || !answer.sent ? 'fail' : 'unknown';
    default: {
      const never: never = answer;
      throw new Error(`unexpected answer ${String(never)}`);
    }
  }
}

const mcpUrl = (grpcAddress: string): URL => new URL(`http://${grpcAddress.slice(0, grpcAddress.lastIndexOf(':'))}:${MCP_PORT}/mcp`);

async function connect(grpcAddress: string, timeoutMs: number, token: string): Promise<Client> {
  const client = new Client({ name: 'debughost-chaos', version: '1' });
  try {
    await client.connect(new StreamableHTTPClientTransport(mcpUrl(grpcAddress), { requestInit: { headers: { authorization: `Bearer ${token}` } } }), { timeout: timeoutMs });
  } catch (error) {
    await closeQuietly(client);
    throw error;
  }
  return client;
}

async function callTool(client: Client, tool: string, args: Record<string, unknown>, timeoutMs: number): Promise<Answer> {
  try {
    const result = (await client.callTool({ name: tool, arguments: args }, undefined, { timeout: timeoutMs })) as ToolResult;
    const text = result.content?.map((part) => part.text ?? '').join(' ') ?? '';
    if (result.isError === true) return { type: 'error', text };
    return { type: 'ok', structured: result.structuredContent ?? {} };
  } catch (error) {
    // Refused connections never carried the request; anything else (timeout, reset) may have.
    return { type: 'lost', text: describe(error), sent: !/ECONNREFUSED/.test(causeChain(error)) };
  }
}

async function closeQuietly(client: Client | null): Promise<void> {
  if (client === null) return;
  await client.close().catch(() => {});
}

function causeChain(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    const e = current as { message?: string; code?: string; cause?: unknown };
    parts.push(`${e.code ?? ''} ${e.message ?? String(current)}`);
    current = e.cause;
  }
  return parts.join(' / ');
}

function describe(error: unknown): string {
  return causeChain(error).split('\n')[0]?.trim().slice(0, 200) ?? '';
}

/** Live (not zombie) workload processes of this run per project, from the marker in their environment. */
export function countMarked(mark: string): Map<string, number> {
  const counts = new Map<string, number>();
  const pattern = new RegExp(`(?:^|\\0)${mark}=([^\\0]*)`);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Only the workload itself, not a shell around it; a zombie runs nothing.
      if (!stat.includes(WORKLOAD_COMM) || stat.charAt(stat.lastIndexOf(')') + 2) === 'Z') continue;
      const project = pattern.exec(readFileSync(`/proc/${entry}/environ`, 'utf8'))?.[1];
      if (project !== undefined) counts.set(project, (counts.get(project) ?? 0) + 1);
    } catch {
      // The process ended between listing and reading.
    }
  }
  return counts;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
