// The MCP front end every node serves at /mcp: Streamable HTTP with sessions
// (SSE for server-to-client messages), every request authenticated by a
// bearer token, and the tools of actors/tools.ts: each is one typed request
// to the owner's actor through ActorHost.call, rendered here as
// structuredContent plus the same content as text (Claude Code ignores
// structuredContent when the text is empty), capped well below Claude Code's
// 25,000-token limit. Logs and events are resources with subscriptions.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  isInitializeRequest,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type CallToolResult,
  type ServerNotification,
  type ServerRequest,
  type ToolAnnotations,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { FollowedEvent } from '../actors/forwarder-grpc.ts';
import { ACTOR_NAME_PATTERN, type ActorResponse, type Identity, type ProgressFn, type ProjectEvent } from '../actors/messages.ts';
import { changeShape, eventsShape, execShape, httpShape, logsShape, projectRefShape, quotaSetShape, restartShape, startShape, waitShape } from '../actors/schemas.ts';
import { batchOutShape, batchShape, renderBatch, runBatch } from './mcp-batch.ts';
import { eventOutShape, projectOut, projectOutSchema, projectOutShape, quotaSetCall, toolCalls, ToolInputError, unexpected, type ProjectOut, type ToolCall } from '../actors/tools.ts';

/** Characters of text in one tool result: about 10,000 tokens, well under Claude Code's 25,000. */
export const RESULT_TEXT_CHARS_MAX = 40_000;

/** Bounds of the MCP endpoint, each checked before what it bounds is spent. */
export interface McpLimits {
  readonly sessionsMax: number;
  /** Sessions one token may hold; past it its least recently used session is closed. */
  readonly sessionsPerIdentityMax: number;
  readonly sessionIdleMs: number;
  /** Request body bytes, checked against Content-Length before reading and while reading. */
  readonly bodyBytesMax: number;
  /** Resource subscriptions per session. */
  readonly subscriptionsPerSessionMax: number;
}

export const MCP_LIMITS_DEFAULT: McpLimits = Object.freeze({
  sessionsMax: 1024,
  sessionsPerIdentityMax: 32,
  sessionIdleMs: 10 * 60_000,
  // The largest tool input (an env of 256 KB, an HTTP body of 1 MB) fits with room to spare.
  bodyBytesMax: 4 * 1024 * 1024,
  subscriptionsPerSessionMax: 64,
});

/** What the endpoint needs from the node. */
export interface McpBackend {
  /** One tool call through the actor layer: edge check, then ActorHost.call to the owner. */
  call(identity: Identity, call: ToolCall, progress: ProgressFn | null): Promise<ActorResponse>;
  /** Follow a project's new log lines and events wherever it runs; returns a stop function. */
  follow(identity: Identity, tenant: string, name: string, onEvent: (event: FollowedEvent) => void): () => void;
  /** cluster_status as the reached node sees it, filtered for the identity. */
  clusterStatus(identity: Identity): { text: string; structured: Record<string, unknown> };
  /** The host part of a node's address, for project URLs. */
  hostOf(node: string): string | null;
  nowMs(): number;
}

export type AuthOutcome =
  | { readonly ok: true; readonly identity: Identity }
  /** `unknownToken`: well formed but not (yet) in this node's state; worth one more look once the node has caught up. */
  | { readonly ok: false; readonly status: 401 | 403 | 429; readonly message: string; readonly unknownToken?: boolean };

export interface McpOptions {
  readonly backend: McpBackend;
  /** Who sent this HTTP request (from its Authorization header). */
  authenticate(request: IncomingMessage): AuthOutcome;
  /**
   * Bring this node's applied state up to what the cluster has committed (a
   * read index). Asked once before a well-formed token this node does not
   * know is refused: it may have been created through another node a moment
   * ago. Absent: refuse at once.
   */
  readonly catchUp?: () => Promise<void>;
  readonly allowedHosts: readonly string[];
  readonly allowedOrigins: readonly string[];
  readonly log: { warn(object: object, message: string): void };
  readonly limits?: McpLimits;
  /** Tools that live elsewhere (tokens, audit, images, batches), registered on every session's server. */
  readonly extraTools?: (server: McpServer, context: ToolContext) => void;
  /** Asked before every tool call: the caller's request rate (per token and per tenant). */
  readonly admit?: (identity: Identity, tool: string) => Promise<{ readonly ok: true } | { readonly ok: false; readonly message: string }>;
  /** Told after every call of a tool that changes something (and of any refused call), for the audit trail. */
  readonly audit?: (entry: ToolAuditEntry) => void;
}

/** One tool call as the audit trail keeps it (the writer digests the arguments). */
export interface ToolAuditEntry {
  readonly identity: Identity;
  readonly tool: string;
  readonly tenant: string | null;
  readonly target: string | null;
  readonly args: unknown;
  readonly outcome: 'ok' | 'denied' | 'error';
  readonly detail: string | null;
}

/** Tools that audit their own changes (with the tenant they acted on): the wrapper leaves them alone. */
const SELF_AUDITED_TOOLS: ReadonlySet<string> = new Set(['token_create', 'token_revoke']);

/**
 * Every tool registered on `server` goes through the rate limit first and, when it changes something
 * (readOnlyHint false) or is refused, into the audit trail after: one place, so a tool added later
 * cannot skip either.
 */
function admitAndAudit(server: McpServer, options: McpOptions, identityOf: (extra: Extra) => Identity): void {
  const register = server.registerTool.bind(server) as (name: string, config: { annotations?: ToolAnnotations }, handler: (args: unknown, extra: Extra) => Promise<CallToolResult>) => unknown;
  (server as unknown as { registerTool: typeof register }).registerTool = (name, config, handler) =>
    register(name, config, async (args: unknown, extra: Extra): Promise<CallToolResult> => {
      let identity: Identity;
      try {
        identity = identityOf(extra);
      } catch (error) {
        return errorResult(error);
      }
      if (options.admit !== undefined) {
        const admitted = await options.admit(identity, name);
        if (!admitted.ok) return errorResult(new ToolError('RateLimitedError', admitted.message));
      }
      const result = await handler(args, extra);
      const changes = config.annotations?.readOnlyHint !== true;
      const refused = result.isError === true && errorNameOf(result) === 'ForbiddenError';
      if (options.audit !== undefined && !SELF_AUDITED_TOOLS.has(name) && (changes || refused)) {
        const fields = (typeof args === 'object' && args !== null ? args : {}) as { tenant?: unknown; name?: unknown };
        options.audit({
          identity,
          tool: name,
          tenant: typeof fields.tenant === 'string' ? fields.tenant : identity.tenant,
          target: typeof fields.name === 'string' ? fields.name : null,
          args,
          outcome: result.isError !== true ? 'ok' : refused ? 'denied' : 'error',
          detail: result.isError === true ? resultText(result).slice(0, 200) : null,
        });
      }
      return result;
    });
}

const resultText = (result: CallToolResult): string => result.content.map((part) => (part.type === 'text' ? part.text : '')).join(' ');

/** What a tool registered from elsewhere gets to build its handlers. */
export interface ToolContext {
  identityOf(extra: Extra): Identity;
  progressFor(extra: Extra): ProgressFn;
  guard<A>(run: (args: A, extra: Extra) => Promise<CallToolResult>): (args: A, extra: Extra) => Promise<CallToolResult>;
  readonly backend: McpBackend;
}

interface Session {
  readonly transport: StreamableHTTPServerTransport;
  readonly server: McpServer;
  readonly identityKey: string;
  lastSeenMs: number;
  /** Resources this session follows: uri -> stop function. */
  readonly follows: Map<string, () => void>;
}

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** Text form of a result, cut to the cap with a note saying how to get the rest. */
export function capText(text: string, how = 'narrow the query or use the cursor'): string {
  if (text.length <= RESULT_TEXT_CHARS_MAX) return text;
  return `${text.slice(0, RESULT_TEXT_CHARS_MAX)}\n… cut at ${RESULT_TEXT_CHARS_MAX} characters; ${how}`;
}

export function ok(text: string, structured: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text: capText(text) }], structuredContent: structured };
}

/** An expected failure as an MCP result: one line that says what to do. */
export class ToolError extends Error {
  constructor(
    override readonly name: string,
    message: string,
  ) {
    super(message);
  }
}

/** The one place where errors become MCP results: expected ones say what to do; others are reported without a stack. */
export function errorResult(error: unknown): CallToolResult {
  const expected = error instanceof ToolError || error instanceof ToolInputError || error instanceof z.ZodError;
  const message = expected ? (error as Error).message : `internal error: ${(error as Error)?.message ?? String(error)}; retry, and if it persists look at the node's log`;
  const name = error instanceof ToolError ? error.name : expected ? 'InvalidRequestError' : 'InternalError';
  return { content: [{ type: 'text', text: message.split('\n')[0] ?? message }], isError: true, _meta: { [ERROR_NAME_META]: name } };
}

/** Where a tool error carries its error name (ForbiddenError, QuotaExceededError, …) for programs; the text is for people. */
export const ERROR_NAME_META = 'debughost/error';
const errorNameOf = (result: CallToolResult): string | null => {
  const name = result._meta?.[ERROR_NAME_META];
  return typeof name === 'string' ? name : null;
};

/** The answer, or the ToolError its error response stands for. */
function expect<T extends ActorResponse['type']>(response: ActorResponse, type: T): Extract<ActorResponse, { type: T }> {
  if (response.type === type) return response as Extract<ActorResponse, { type: T }>;
  const error = unexpected(response, type);
  if (error.type === 'error') throw new ToolError(error.name, error.message);
  throw new ToolError('UnavailableError', `unexpected answer '${response.type}'; retry`);
}

export function renderProject(view: ProjectOut): string {
  const head = `${view.tenant}/${view.name}: ${view.state} (desired ${view.desired}) on ${view.owner ?? 'no node'}; version ${view.version}`;
  const lines = [head];
  const what = view.command !== null ? `command: ${view.command}` : view.image !== null ? `image: ${view.image}` : null;
  if (what !== null) lines.push(what);
  if (view.pid !== null) lines.push(`pid ${view.pid}`);
  if (view.containerId !== null) lines.push(`container ${view.containerId.slice(0, 12)}`);
  for (const [name, url] of Object.entries(view.urls)) lines.push(`port ${name}: ${url}`);
  if (view.uptimeSeconds !== null) lines.push(`up ${view.uptimeSeconds} s, restarts ${view.restarts}`);
  if (view.cpuPercent !== null || view.memoryBytes !== null) lines.push(`cpu ${view.cpuPercent ?? '?'}%, memory ${view.memoryBytes === null ? '?' : `${Math.round(view.memoryBytes / 1024 / 1024)} MB`}`);
  if (view.exitCode !== null || view.signal !== null) lines.push(`exited with ${view.exitCode !== null ? `code ${view.exitCode}` : `signal ${view.signal}`}`);
  if (view.healthy !== null) lines.push(view.healthy ? 'healthy' : 'not healthy');
  if (view.error !== null) lines.push(`error: ${view.error}`);
  return lines.join('\n');
}

function progressOf(extra: Extra): ProgressFn {
  const token = extra._meta?.progressToken;
  if (token === undefined) return () => {};
  return (message, progress, total) => {
    const params = total > 0 ? { progressToken: token, progress, total, message } : { progressToken: token, progress, message };
    void extra.sendNotification({ method: 'notifications/progress', params }).catch(() => {});
  };
}

function identityOf(extra: Extra): Identity {
  const identity = (extra.authInfo?.extra as { identity?: Identity } | undefined)?.identity;
  // The endpoint authenticates every request before the SDK sees it: no identity here is a bug.
  if (identity === undefined) throw new ToolError('ForbiddenError', 'this request carries no verified identity; send Authorization: Bearer <token>');
  return identity;
}

const READ_ONLY: ToolAnnotations = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };
const CHANGE: ToolAnnotations = { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false };
const DESTRUCTIVE: ToolAnnotations = { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false };
/** exec and http reach whatever the project does: the outside world, as far as the client can tell. */
const OPEN: ToolAnnotations = { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true };

export const logsUri = (tenant: string, name: string): string => `debughost://projects/${tenant}/${name}/logs`;
export const eventsUri = (tenant: string, name: string): string => `debughost://projects/${tenant}/${name}/events`;

function parseProjectUri(uri: string): { tenant: string; name: string; kind: 'logs' | 'events' } | null {
  const match = /^debughost:\/\/projects\/([^/]+)\/([^/]+)\/(logs|events)$/.exec(uri);
  if (match === null) return null;
  const [, tenant = '', name = '', kind = ''] = match;
  return ACTOR_NAME_PATTERN.test(tenant) && ACTOR_NAME_PATTERN.test(name) ? { tenant, name, kind: kind as 'logs' | 'events' } : null;
}

const renderEvent = (event: ProjectEvent): string =>
  `${event.seq} ${new Date(event.timeMs).toISOString()} ${event.kind} on ${event.node}${event.exitCode !== null ? ` code ${event.exitCode}` : ''}${event.signal !== null ? ` signal ${event.signal}` : ''}${event.detail === '' ? '' : `: ${event.detail}`}`;

function buildServer(options: McpOptions, session: () => Session | undefined): McpServer {
  const server = new McpServer({ name: 'debughost', version: '0.2.0' }, { capabilities: { resources: { subscribe: true, listChanged: false } } });
  admitAndAudit(server, options, identityOf);
  const backend = options.backend;
  const guard =
    <A,>(run: (args: A, extra: Extra) => Promise<CallToolResult>) =>
    async (args: A, extra: Extra): Promise<CallToolResult> => {
      try {
        return await run(args, extra);
      } catch (error) {
        return errorResult(error);
      }
    };
  const out = (response: ActorResponse) => projectOut(expect(response, 'project').project, backend.nowMs(), (node) => backend.hostOf(node));
  const run = (extra: Extra, build: (identity: Identity) => ToolCall, progress = false): Promise<ActorResponse> => {
    const identity = identityOf(extra);
    return backend.call(identity, build(identity), progress ? progressOf(extra) : null);
  };
  const projectResult = (response: ActorResponse): CallToolResult => {
    const view = out(response);
    const settle = response.type === 'project' && response.settleDetail !== null ? `\nnot ready yet: ${response.settleDetail}` : '';
    return ok(`${renderProject(view)}${settle}`, view);
  };

  server.registerTool(
    'project_start',
    {
      title: 'Start a project',
      description:
        'Create or update a project and run it: a shell command (process runtime) or a Docker image. Allocates named ports (PORT, PORT_<NAME>), ' +
        'waits until its health check passes (or it is running) for up to waitMs, reporting progress, and returns its status with URLs. ' +
        'Callable on any node; the owner node runs it. A retry with the same requestId is applied once.',
      inputSchema: startShape,
      outputSchema: projectOutShape,
      annotations: CHANGE,
    },
    guard(async (args, extra) => projectResult(await run(extra, (identity) => toolCalls.project_start(identity, args), true))),
  );
  server.registerTool(
    'project_stop',
    {
      title: 'Stop a project',
      description: "Stop the project's whole process tree or container (SIGTERM, then SIGKILL). Its status and logs stay readable until project_remove.",
      inputSchema: changeShape,
      outputSchema: projectOutShape,
      annotations: DESTRUCTIVE,
    },
    guard(async (args, extra) => projectResult(await run(extra, (identity) => toolCalls.project_stop(identity, args)))),
  );
  server.registerTool(
    'project_restart',
    {
      title: 'Restart a project',
      description: 'Stop and start the project again with its current spec (for example after editing its code), waiting as project_start does.',
      inputSchema: restartShape,
      outputSchema: projectOutShape,
      annotations: { ...DESTRUCTIVE, idempotentHint: false },
    },
    guard(async (args, extra) => projectResult(await run(extra, (identity) => toolCalls.project_restart(identity, args), true))),
  );
  server.registerTool(
    'project_remove',
    {
      title: 'Remove a project',
      description: 'Stop the project if it runs, free its ports, and forget its spec, status, events and logs.',
      inputSchema: changeShape,
      outputSchema: { removed: z.boolean() },
      annotations: DESTRUCTIVE,
    },
    guard(async (args, extra) => {
      const removed = expect(await run(extra, (identity) => toolCalls.project_remove(identity, args)), 'removed');
      return ok(removed.existed ? `removed ${removed.tenant}/${removed.name}` : `${removed.tenant}/${removed.name} did not exist`, { removed: removed.existed });
    }),
  );
  server.registerTool(
    'project_status',
    {
      title: 'Project status',
      description: 'Observed state of one project: running or exited (with exit code), pid or container, ports and URLs, uptime, restarts, health, CPU and memory, owner node.',
      inputSchema: projectRefShape,
      outputSchema: projectOutShape,
      annotations: READ_ONLY,
    },
    guard(async (args, extra) => projectResult(await run(extra, (identity) => toolCalls.project_status(identity, args)))),
  );
  server.registerTool(
    'project_list',
    {
      title: 'List projects',
      description: 'Every project of the tenant with its state, owner node and URLs.',
      inputSchema: { tenant: projectRefShape.tenant },
      outputSchema: { projects: z.array(projectOutSchema), more: z.boolean() },
      annotations: READ_ONLY,
    },
    guard(async (args, extra) => {
      const list = expect(await run(extra, (identity) => toolCalls.project_list(identity, args)), 'list');
      const projects = list.projects.map((view) => projectOut(view, backend.nowMs(), (node) => backend.hostOf(node)));
      const text =
        projects.length === 0
          ? `tenant ${list.tenant} has no projects; start one with project_start`
          : projects.map((p) => `${p.name}: ${p.state} on ${p.owner ?? '-'}${Object.values(p.urls).length > 0 ? ` ${Object.values(p.urls).join(' ')}` : ''}`).join('\n');
      return ok(`${text}${list.more ? '\n(more projects than one answer holds)' : ''}`, { projects, more: list.more });
    }),
  );
  server.registerTool(
    'project_logs',
    {
      title: 'Project logs',
      description:
        'Lines of stdout/stderr with timestamps: the last `tail` lines, or those after a `since` cursor, optionally filtered by a `grep` regex (RE2) and stream. ' +
        'Paginated: pass nextCursor as since for more. Also readable and followable as the resource debughost://projects/{tenant}/{name}/logs.',
      inputSchema: logsShape,
      outputSchema: {
        lines: z.array(z.object({ seq: z.number(), time: z.string(), stream: z.enum(['stdout', 'stderr']), line: z.string() })),
        nextCursor: z.string().describe('pass as since to get the lines after these'),
        more: z.boolean().describe('more lines matched than this page holds'),
      },
      annotations: READ_ONLY,
    },
    guard(async (args, extra) => {
      const logs = expect(await run(extra, (identity) => toolCalls.project_logs(identity, args)), 'logs');
      const lines = logs.lines.map((line) => ({ seq: line.seq, time: new Date(line.timeMs).toISOString(), stream: line.stream, line: line.line }));
      const text = [
        ...lines.map((line) => `${line.time} ${line.stream === 'stderr' ? 'E' : 'O'} ${line.line}`),
        lines.length === 0 ? '(no matching lines)' : '',
        `cursor ${logs.nextCursor}${logs.more ? ' (more lines: call again with since=cursor)' : ''}`,
      ].filter((line) => line !== '');
      return ok(text.join('\n'), { lines, nextCursor: String(logs.nextCursor), more: logs.more });
    }),
  );
  server.registerTool(
    'project_wait',
    {
      title: 'Wait for a project',
      description:
        'Block until a log line matches logRegex, a port accepts connections, or an HTTP path answers — or until timeoutMs. ' +
        'Use this instead of polling. When it times out it returns the last log lines to show why.',
      inputSchema: waitShape,
      outputSchema: { ok: z.boolean(), condition: z.string(), elapsedMs: z.number(), detail: z.string(), lastLines: z.array(z.string()), status: projectOutSchema },
      annotations: READ_ONLY,
    },
    guard(async (args, extra) => {
      const wait = expect(await run(extra, (identity) => toolCalls.project_wait(identity, args), true), 'wait');
      const status = projectOut(wait.project, backend.nowMs(), (node) => backend.hostOf(node));
      const text = [
        wait.ok ? `ready: ${wait.condition} after ${wait.elapsedMs} ms (${wait.detail})` : `not ready after ${wait.elapsedMs} ms: ${wait.condition}; ${wait.detail}`,
        ...(wait.ok ? [] : ['last log lines:', ...wait.lastLines]),
        renderProject(status),
      ];
      return { ...ok(text.join('\n'), { ok: wait.ok, condition: wait.condition, elapsedMs: wait.elapsedMs, detail: wait.detail, lastLines: [...wait.lastLines], status }), isError: !wait.ok };
    }),
  );
  server.registerTool(
    'project_exec',
    {
      title: 'Run a one-off command',
      description: "Run a shell command in the project's environment (its cwd and env, inside its container for Docker) with a timeout; output is capped. Needs the exec right.",
      inputSchema: execShape,
      outputSchema: { exitCode: z.number().nullable(), signal: z.string().nullable(), timedOut: z.boolean(), stdout: z.string(), stderr: z.string(), truncated: z.boolean(), durationMs: z.number() },
      annotations: OPEN,
    },
    guard(async (args, extra) => {
      const exec = expect(await run(extra, (identity) => toolCalls.project_exec(identity, args)), 'exec');
      const head = exec.timedOut ? `timed out after ${exec.durationMs} ms` : `exit ${exec.exitCode ?? `signal ${exec.signal}`} in ${exec.durationMs} ms`;
      const text = [head, exec.stdout !== '' ? `stdout:\n${exec.stdout}` : '', exec.stderr !== '' ? `stderr:\n${exec.stderr}` : '', exec.truncated ? '(output cut at the cap)' : '']
        .filter((part) => part !== '')
        .join('\n');
      const { type: _type, ...structured } = exec;
      return ok(text, structured);
    }),
  );
  server.registerTool(
    'project_http',
    {
      title: 'HTTP request to a project',
      description: "Send an HTTP request to one of the project's ports on its owner node; returns status, headers and a capped body.",
      inputSchema: httpShape,
      outputSchema: { status: z.number(), headers: z.record(z.string(), z.string()), body: z.string(), truncated: z.boolean(), durationMs: z.number() },
      annotations: OPEN,
    },
    guard(async (args, extra) => {
      const http = expect(await run(extra, (identity) => toolCalls.project_http(identity, args)), 'http');
      const text = [`HTTP ${http.status} in ${http.durationMs} ms`, ...Object.entries(http.headers).map(([k, v]) => `${k}: ${v}`), '', http.body, http.truncated ? '(body cut at the cap)' : '']
        .join('\n')
        .trimEnd();
      const { type: _type, ...structured } = http;
      return ok(text, { ...structured, headers: { ...structured.headers } });
    }),
  );
  server.registerTool(
    'project_batch',
    {
      title: 'Many project operations at once',
      description:
        'Start, stop, restart or remove many projects in one call (each item as its own tool call would be; items may live on different nodes). ' +
        'Runs `concurrency` items at a time, reports progress as items finish, and returns one result per item: a failed item says why and never hides the others. ' +
        'Retrying with the same requestId applies each item once.',
      inputSchema: batchShape,
      outputSchema: batchOutShape,
      annotations: { ...DESTRUCTIVE, idempotentHint: false },
    },
    guard(async (args, extra) => {
      const result = await runBatch(backend, identityOf(extra), args, progressOf(extra));
      return ok(renderBatch(result), result);
    }),
  );
  server.registerTool(
    'project_events',
    {
      title: 'Project events',
      description:
        'What happened to a project: started, ready, unhealthy, exited (code or signal), oomKilled, restarted, crashLoop, moved (to another node), stopped. ' +
        'Pass nextCursor as since for newer ones; waitMs long-polls for the next event. Also a subscribable resource: debughost://projects/{tenant}/{name}/events.',
      inputSchema: eventsShape,
      outputSchema: { events: z.array(z.object(eventOutShape)), nextCursor: z.number(), more: z.boolean() },
      annotations: READ_ONLY,
    },
    guard(async (args, extra) => {
      const events = expect(await run(extra, (identity) => toolCalls.project_events(identity, args)), 'events');
      const text = events.events.length === 0 ? `no events after ${args.since ?? 0}; cursor ${events.nextCursor}` : [...events.events.map(renderEvent), `cursor ${events.nextCursor}`].join('\n');
      return ok(text, {
        events: events.events.map((event) => ({ seq: event.seq, time: new Date(event.timeMs).toISOString(), kind: event.kind, node: event.node, exitCode: event.exitCode, signal: event.signal, detail: event.detail })),
        nextCursor: events.nextCursor,
        more: events.more,
      });
    }),
  );
  const usageShape = {
    tenant: z.string(),
    projects: z.number(),
    ports: z.number(),
    memoryMb: z.number(),
    storedMb: z.number(),
    quota: z.object({ projects: z.number(), ports: z.number(), memoryMb: z.number(), storedMb: z.number() }),
  };
  const usageOut = (response: ActorResponse) => {
    const usage = expect(response, 'usage');
    const mb = (bytes: number): number => Math.round((bytes / 1024 / 1024) * 10) / 10;
    return {
      tenant: usage.tenant,
      projects: usage.usage.projects,
      ports: usage.usage.ports,
      memoryMb: mb(usage.usage.memoryBytes),
      storedMb: mb(usage.usage.storedBytes),
      quota: { projects: usage.quota.projects, ports: usage.quota.ports, memoryMb: mb(usage.quota.memoryBytes), storedMb: mb(usage.quota.storedBytes) },
    };
  };
  const renderUsage = (u: ReturnType<typeof usageOut>): string =>
    `tenant ${u.tenant}: ${u.projects}/${u.quota.projects} running projects, ${u.ports}/${u.quota.ports} ports, ${u.memoryMb}/${u.quota.memoryMb} MB memory, ${u.storedMb}/${u.quota.storedMb} MB of stored specs`;
  server.registerTool(
    'tenant_usage',
    { title: 'Tenant usage', description: 'Projects, ports, memory and stored bytes a tenant uses, against its quota.', inputSchema: { tenant: projectRefShape.tenant }, outputSchema: usageShape, annotations: READ_ONLY },
    guard(async (args, extra) => {
      const usage = usageOut(await run(extra, (identity) => toolCalls.tenant_usage(identity, args)));
      return ok(renderUsage(usage), usage);
    }),
  );
  server.registerTool(
    'tenant_quota_set',
    {
      title: 'Set a tenant quota',
      description: "Change a tenant's quota of running projects, ports, memory and stored spec bytes; fields not given stay as they are.",
      inputSchema: quotaSetShape,
      outputSchema: usageShape,
      annotations: CHANGE,
    },
    guard(async (args, extra) => {
      const identity = identityOf(extra);
      const current = expect(await backend.call(identity, toolCalls.tenant_usage(identity, { tenant: args.tenant }), null), 'usage');
      const usage = usageOut(await backend.call(identity, quotaSetCall(identity, args, current.quota), null));
      return ok(`quota set. ${renderUsage(usage)}`, usage);
    }),
  );
  server.registerTool(
    'cluster_status',
    {
      title: 'Cluster status',
      description: 'Members, leader, term, commit and apply index, liveness, ring epoch and which node owns what, as the node you reached sees it.',
      inputSchema: {},
      annotations: READ_ONLY,
    },
    guard(async (_args, extra) => {
      const status = backend.clusterStatus(identityOf(extra));
      return ok(status.text, status.structured);
    }),
  );
  options.extraTools?.(server, { identityOf, progressFor: progressOf, guard, backend });

  registerResources(server, options, session);
  return server;
}

function registerResources(server: McpServer, options: McpOptions, session: () => Session | undefined): void {
  const backend = options.backend;
  const limits = options.limits ?? MCP_LIMITS_DEFAULT;
  const identityOfRequest = (extra: Extra): Identity => identityOf(extra);
  const list = async (extra: Extra): Promise<{ tenant: string; name: string }[]> => {
    const identity = identityOfRequest(extra);
    const response = await backend.call(identity, toolCalls.project_list(identity, {}), null);
    return response.type === 'list' ? response.projects.map((p) => ({ tenant: p.tenant, name: p.name })) : [];
  };
  const readCheck = async (extra: Extra, tenant: string, name: string): Promise<void> => {
    const identity = identityOfRequest(extra);
    // A status read checks the read right on the owner, as a tool call would.
    const response = await backend.call(identity, toolCalls.project_status(identity, { tenant, name }), null);
    if (response.type === 'error') throw new ToolError(response.name, response.message);
  };
  server.registerResource(
    'project-logs',
    new ResourceTemplate('debughost://projects/{tenant}/{name}/logs', {
      list: async (extra) => ({ resources: (await list(extra)).map((p) => ({ uri: logsUri(p.tenant, p.name), name: `${p.tenant}/${p.name} logs`, mimeType: 'text/plain' })) }),
    }),
    { description: 'The last 200 log lines of a project; subscribe to follow new lines.', mimeType: 'text/plain' },
    async (uri, variables, extra) => {
      const ref = parseProjectUri(uri.href);
      if (ref === null) throw new ToolError('InvalidRequestError', `no such project resource ${uri.href}`);
      const identity = identityOfRequest(extra);
      void variables;
      const response = await backend.call(identity, toolCalls.project_logs(identity, { tenant: ref.tenant, name: ref.name, tail: 200 }), null);
      const logs = expect(response, 'logs');
      const text = logs.lines.map((line) => `${new Date(line.timeMs).toISOString()} ${line.stream === 'stderr' ? 'E' : 'O'} ${line.line}`).join('\n');
      return { contents: [{ uri: uri.href, mimeType: 'text/plain', text: capText(text, 'use project_logs with a cursor') }] };
    },
  );
  server.registerResource(
    'project-events',
    new ResourceTemplate('debughost://projects/{tenant}/{name}/events', {
      list: async (extra) => ({ resources: (await list(extra)).map((p) => ({ uri: eventsUri(p.tenant, p.name), name: `${p.tenant}/${p.name} events`, mimeType: 'text/plain' })) }),
    }),
    { description: "A project's events (started, exited, oomKilled, moved, …); subscribe to be told of each new one.", mimeType: 'text/plain' },
    async (uri, _variables, extra) => {
      const ref = parseProjectUri(uri.href);
      if (ref === null) throw new ToolError('InvalidRequestError', `no such project resource ${uri.href}`);
      const identity = identityOfRequest(extra);
      const events = expect(await backend.call(identity, toolCalls.project_events(identity, { tenant: ref.tenant, name: ref.name }), null), 'events');
      return { contents: [{ uri: uri.href, mimeType: 'text/plain', text: capText(events.events.map(renderEvent).join('\n'), 'use project_events with a cursor') }] };
    },
  );
  server.server.setRequestHandler(SubscribeRequestSchema, async (request, extra) => {
    const current = session();
    const ref = parseProjectUri(request.params.uri);
    if (current === undefined || ref === null) throw new ToolError('InvalidRequestError', `cannot subscribe to ${request.params.uri}; subscribe to debughost://projects/{tenant}/{name}/logs or /events`);
    if (current.follows.has(request.params.uri)) return {};
    if (current.follows.size >= limits.subscriptionsPerSessionMax) {
      throw new ToolError('RateLimitedError', `this session follows ${limits.subscriptionsPerSessionMax} resources already; unsubscribe from one first`);
    }
    await readCheck(extra, ref.tenant, ref.name);
    const identity = identityOfRequest(extra);
    // Coalesce log lines: one update notification per 200 ms at most; events are told at once.
    let pending: NodeJS.Timeout | null = null;
    const notify = (): void => void server.server.sendResourceUpdated({ uri: request.params.uri }).catch(() => {});
    const stop = backend.follow(identity, ref.tenant, ref.name, (event) => {
      if (ref.kind === 'events') {
        if (event.type === 'event') notify();
        return;
      }
      if (event.type !== 'line' || pending !== null) return;
      pending = setTimeout(() => {
        pending = null;
        notify();
      }, 200);
    });
    current.follows.set(request.params.uri, () => {
      stop();
      if (pending !== null) clearTimeout(pending);
    });
    return {};
  });
  server.server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
    const current = session();
    current?.follows.get(request.params.uri)?.();
    current?.follows.delete(request.params.uri);
    return {};
  });
}

/** Read the body up to `bytesMax`: refused by Content-Length before reading, and again while reading. */
async function readBody(request: IncomingMessage, bytesMax: number): Promise<unknown> {
  const declared = Number(request.headers['content-length'] ?? Number.NaN);
  if (Number.isFinite(declared) && declared > bytesMax) throw new BodyTooLargeError(bytesMax);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).byteLength;
    if (size > bytesMax) throw new BodyTooLargeError(bytesMax);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/** Bytes of an over-large body read and thrown away so that its sender sees the 413. */
const DISCARD_BYTES_MAX = 64 * 1024 * 1024;

class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
  constructor(bytesMax: number) {
    super(`request body over ${bytesMax} bytes; send less (large data belongs in files the project reads)`);
  }
}

function jsonRpcError(response: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  response.writeHead(status, { 'content-type': 'application/json', ...headers });
  response.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

const identityKey = (identity: Identity): string => `${identity.tokenId}\u0000${identity.tenant}`;

/** Sessions of one node's /mcp endpoint. */
export class McpEndpoint {
  readonly #sessions = new Map<string, Session>();
  readonly #sweeper: NodeJS.Timeout;
  readonly #limits: McpLimits;
  readonly #hosts: Set<string>;
  readonly #origins: Set<string>;

  constructor(
    private readonly options: McpOptions,
    private readonly nowMs: () => number = Date.now,
  ) {
    this.#limits = options.limits ?? MCP_LIMITS_DEFAULT;
    this.#hosts = new Set(options.allowedHosts);
    this.#origins = new Set(options.allowedOrigins);
    this.#sweeper = setInterval(() => this.#sweep(), 60_000);
    this.#sweeper.unref();
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    try {
      // Cheap checks first: nothing is read or kept for a request that fails them.
      const host = request.headers.host ?? '';
      if (!this.#hosts.has(host)) return jsonRpcError(response, 403, `Host ${JSON.stringify(host)} is not one of this node's names; connect to the node by its own address`);
      const origin = request.headers.origin;
      if (origin !== undefined && !this.#origins.has(origin)) return jsonRpcError(response, 403, `Origin ${JSON.stringify(origin)} may not call this node`);
      let auth = this.options.authenticate(request);
      if (!auth.ok && auth.unknownToken === true && this.options.catchUp !== undefined) {
        await this.options.catchUp().catch(() => undefined);
        auth = this.options.authenticate(request);
      }
      if (!auth.ok) {
        const headers: Record<string, string> = auth.status === 401 ? { 'www-authenticate': 'Bearer realm="debughost", error="invalid_token"' } : {};
        return jsonRpcError(response, auth.status, auth.message, headers);
      }
      const identity = auth.identity;
      (request as IncomingMessage & { auth?: unknown }).auth = { token: identity.tokenId, clientId: identity.tokenName, scopes: [identity.role], extra: { identity } };
      const sessionId = request.headers['mcp-session-id'];
      if (typeof sessionId === 'string') {
        const session = this.#sessions.get(sessionId);
        if (session === undefined) return jsonRpcError(response, 404, 'session not found (it expired or the node restarted); start a new session with initialize');
        if (session.identityKey !== identityKey(identity)) return jsonRpcError(response, 403, 'this session belongs to another token; start your own session with initialize');
        session.lastSeenMs = this.nowMs();
        const body = request.method === 'POST' ? await readBody(request, this.#limits.bodyBytesMax) : undefined;
        await session.transport.handleRequest(request, response, body);
        return;
      }
      if (request.method !== 'POST') return jsonRpcError(response, 400, 'no mcp-session-id header; start a session with an initialize POST');
      const body = await readBody(request, this.#limits.bodyBytesMax);
      if (!isInitializeRequest(body)) return jsonRpcError(response, 400, 'no mcp-session-id header; the first request of a session must be initialize');
      if (!this.#makeRoom(identity)) {
        return jsonRpcError(response, 503, `this node holds ${this.#limits.sessionsMax} MCP sessions, all in use; close unused clients or connect to another node`);
      }
      // The transport's callbacks need the session, which needs the transport.
      const holder: { session?: Session } = {};
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          if (holder.session !== undefined) this.#sessions.set(id, holder.session);
        },
        onsessionclosed: (id) => this.#close(id),
      });
      const server = buildServer(this.options, () => holder.session);
      holder.session = { transport, server, identityKey: identityKey(identity), lastSeenMs: this.nowMs(), follows: new Map() };
      transport.onclose = () => {
        if (transport.sessionId !== undefined) this.#close(transport.sessionId);
      };
      await server.connect(transport);
      await transport.handleRequest(request, response, body);
    } catch (error) {
      if (error instanceof BodyTooLargeError) {
        if (!response.headersSent) jsonRpcError(response, 413, error.message);
        // Read the rest without keeping it, so the client gets to see the answer; a sender that will not stop is cut off.
        let discarded = 0;
        request.on('data', (chunk: Buffer) => {
          discarded += chunk.byteLength;
          if (discarded > DISCARD_BYTES_MAX) request.destroy();
        });
        request.resume();
        return;
      }
      this.options.log.warn({ error: (error as Error).message }, 'MCP request failed');
      if (!response.headersSent) jsonRpcError(response, 400, `bad MCP request: ${(error as Error).message.split('\n')[0] ?? ''}`);
    }
  }

  /** Room for one more session of `identity`: closes its least recently used one past its share, or an idle one when all are taken. */
  #makeRoom(identity: Identity): boolean {
    const key = identityKey(identity);
    const mine = [...this.#sessions.entries()].filter(([, session]) => session.identityKey === key).sort((a, b) => a[1].lastSeenMs - b[1].lastSeenMs);
    if (mine.length >= this.#limits.sessionsPerIdentityMax) {
      const oldest = mine[0];
      if (oldest !== undefined) this.#close(oldest[0]);
    }
    if (this.#sessions.size < this.#limits.sessionsMax) return true;
    const now = this.nowMs();
    let idlest: [string, Session] | null = null;
    for (const entry of this.#sessions) if (idlest === null || entry[1].lastSeenMs < idlest[1].lastSeenMs) idlest = entry;
    // Only a session quiet for a minute gives way to a new one: a busy node refuses instead of thrashing.
    if (idlest !== null && now - idlest[1].lastSeenMs > 60_000) {
      this.#close(idlest[0]);
      return true;
    }
    return false;
  }

  #close(id: string): void {
    const session = this.#sessions.get(id);
    if (session === undefined) return;
    this.#sessions.delete(id);
    for (const stop of session.follows.values()) stop();
    session.follows.clear();
    void session.server.close().catch(() => {});
  }

  #sweep(): void {
    const now = this.nowMs();
    for (const [id, session] of this.#sessions) if (now - session.lastSeenMs > this.#limits.sessionIdleMs) this.#close(id);
  }

  close(): void {
    clearInterval(this.#sweeper);
    for (const id of [...this.#sessions.keys()]) this.#close(id);
  }
}
