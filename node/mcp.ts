// The MCP front end every node serves at /mcp: Streamable HTTP with sessions
// (SSE for server-to-client messages), the project tools of DESIGN.md with zod
// input and output schemas, logs as subscribable resources. Each result carries
// structuredContent and the same content as text (Claude Code ignores
// structuredContent when the text is empty), capped well below Claude Code's
// 25,000-token limit; longer output is paginated with a cursor.
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
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import {
  execResultShape,
  execShape,
  httpResultShape,
  httpShape,
  logsResultShape,
  logsShape,
  NAME_PATTERN,
  ProjectApiError,
  projectRefShape,
  projectViewShape,
  quotaSetShape,
  startShape,
  usageShape,
  waitResultShape,
  waitShape,
  type ProgressFn,
  type ProjectApi,
  type ProjectView,
} from './project-api.ts';

/** Characters of text in one tool result: about 10,000 tokens, well under Claude Code's 25,000. */
export const RESULT_TEXT_CHARS_MAX = 40_000;
export const SESSIONS_MAX = 512;
export const SESSION_IDLE_MS = 30 * 60_000;
const BODY_BYTES_MAX = 16 * 1024 * 1024;

export interface McpOptions {
  readonly api: ProjectApi;
  /** Answers cluster_status (the node the client reached). */
  readonly clusterStatus: () => { text: string; structured: Record<string, unknown> };
  /** Tenant of calls that name none (loopback clusters need no token). */
  readonly defaultTenant: string;
  readonly allowedHosts: readonly string[];
  readonly allowedOrigins: readonly string[];
  readonly log: { warn(object: object, message: string): void };
}

interface Session {
  readonly transport: StreamableHTTPServerTransport;
  readonly server: McpServer;
  lastSeenMs: number;
  /** Log resources this session follows: uri → stop function. */
  readonly follows: Map<string, () => void>;
}

/** Text form of a result, cut to the cap with a note saying how to get the rest. */
export function capText(text: string, how = 'narrow the query or use the cursor'): string {
  if (text.length <= RESULT_TEXT_CHARS_MAX) return text;
  return `${text.slice(0, RESULT_TEXT_CHARS_MAX)}\n… cut at ${RESULT_TEXT_CHARS_MAX} characters; ${how}`;
}

function ok(text: string, structured: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text: capText(text) }], structuredContent: structured };
}

/** The one place where errors become MCP results: expected ones say what to do; others are reported without a stack. */
export function errorResult(error: unknown): CallToolResult {
  const message =
    error instanceof ProjectApiError || error instanceof z.ZodError
      ? error.message
      : `internal error: ${(error as Error)?.message ?? String(error)}; retry, and if it persists look at the node's log`;
  return { content: [{ type: 'text', text: message.split('\n')[0] ?? message }], isError: true };
}

export function renderProject(view: ProjectView): string {
  const head = `${view.tenant}/${view.name}: ${view.state} (desired ${view.desired}) on ${view.owner ?? 'no node'}; version ${view.version}`;
  const lines = [head];
  const what = view.command !== null ? `command: ${view.command}` : view.image !== null ? `image: ${view.image}` : null;
  if (what !== null) lines.push(what);
  if (view.pid !== null) lines.push(`pid ${view.pid}`);
  if (view.containerId !== null) lines.push(`container ${view.containerId.slice(0, 12)}`);
  for (const [name, url] of Object.entries(view.urls)) lines.push(`port ${name}: ${url}`);
  if (view.uptimeSeconds !== null) lines.push(`up ${view.uptimeSeconds} s, restarts ${view.restarts}`);
  if (view.exitCode !== null || view.signal !== null) lines.push(`exited with ${view.exitCode !== null ? `code ${view.exitCode}` : `signal ${view.signal}`}`);
  if (view.healthy !== null) lines.push(view.healthy ? 'healthy' : 'not healthy');
  if (view.error !== null) lines.push(`error: ${view.error}`);
  return lines.join('\n');
}

const resolveTenant = (tenant: string | undefined, fallback: string): string => tenant ?? fallback;

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

function progressFor(extra: Extra): ProgressFn {
  const token = extra._meta?.progressToken;
  if (token === undefined) return () => {};
  return (message, progress, total) => {
    const params = total === undefined ? { progressToken: token, progress, message } : { progressToken: token, progress, total, message };
    void extra.sendNotification({ method: 'notifications/progress', params }).catch(() => {});
  };
}

function buildServer(options: McpOptions, session: () => Session | undefined): McpServer {
  const server = new McpServer({ name: 'debughost', version: '0.1.0' }, { capabilities: { resources: { subscribe: true, listChanged: false } } });
  const api = options.api;
  const tenantOf = (tenant: string | undefined): string => resolveTenant(tenant, options.defaultTenant);
  const guard =
    <A,>(run: (args: A, extra: Extra) => Promise<CallToolResult>) =>
    async (args: A, extra: Extra): Promise<CallToolResult> => {
      try {
        return await run(args, extra);
      } catch (error) {
        return errorResult(error);
      }
    };

  server.registerTool(
    'project_start',
    {
      title: 'Start a project',
      description:
        'Create or update a project and run it: a shell command (process runtime) or a Docker image. Allocates named ports (PORT, PORT_<NAME>), ' +
        'waits until its health check passes (or it is running) for up to waitMs, reporting progress, and returns its status with URLs. ' +
        'Callable on any node; the owner node runs it.',
      inputSchema: startShape,
      outputSchema: projectViewShape,
    },
    guard(async (args, extra) => {
      const view = await api.start({ ...args, tenant: tenantOf(args.tenant) }, progressFor(extra), extra.signal);
      return ok(renderProject(view), view);
    }),
  );
  server.registerTool(
    'project_stop',
    {
      title: 'Stop a project',
      description: 'Stop the project\'s whole process tree or container (SIGTERM, then SIGKILL). Its status and logs stay readable until project_remove.',
      inputSchema: projectRefShape,
      outputSchema: projectViewShape,
    },
    guard(async (args) => {
      const view = await api.stop({ tenant: tenantOf(args.tenant), name: args.name });
      return ok(renderProject(view), view);
    }),
  );
  server.registerTool(
    'project_restart',
    {
      title: 'Restart a project',
      description: 'Stop and start the project again with its current spec (for example after editing its code), waiting as project_start does.',
      inputSchema: projectRefShape,
      outputSchema: projectViewShape,
    },
    guard(async (args, extra) => {
      const view = await api.restart({ tenant: tenantOf(args.tenant), name: args.name }, progressFor(extra), extra.signal);
      return ok(renderProject(view), view);
    }),
  );
  server.registerTool(
    'project_remove',
    {
      title: 'Remove a project',
      description: 'Stop the project if it runs, free its ports, and forget its spec, status and logs.',
      inputSchema: projectRefShape,
      outputSchema: { removed: z.boolean() },
    },
    guard(async (args) => {
      const result = await api.remove({ tenant: tenantOf(args.tenant), name: args.name });
      const tenant = tenantOf(args.tenant);
      return ok(result.removed ? `removed ${tenant}/${args.name}` : `${tenant}/${args.name} did not exist`, result);
    }),
  );
  server.registerTool(
    'project_status',
    {
      title: 'Project status',
      description: 'Observed state of one project: running or exited (with exit code), pid or container, ports and URLs, uptime, restarts, health, owner node.',
      inputSchema: projectRefShape,
      outputSchema: projectViewShape,
    },
    guard(async (args) => {
      const view = await api.status({ tenant: tenantOf(args.tenant), name: args.name });
      return ok(renderProject(view), view);
    }),
  );
  server.registerTool(
    'project_list',
    {
      title: 'List projects',
      description: 'Every project of the tenant with its state, owner node and URLs.',
      inputSchema: { tenant: projectRefShape.tenant },
      outputSchema: { projects: z.array(z.object(projectViewShape)) },
    },
    guard(async (args) => {
      const tenant = tenantOf(args.tenant);
      const projects = await api.list(tenant);
      const text =
        projects.length === 0
          ? `tenant ${tenant} has no projects; start one with project_start`
          : projects.map((p) => `${p.name}: ${p.state} on ${p.owner ?? '-'}${Object.values(p.urls).length > 0 ? ` ${Object.values(p.urls).join(' ')}` : ''}`).join('\n');
      return ok(text, { projects });
    }),
  );
  server.registerTool(
    'project_logs',
    {
      title: 'Project logs',
      description:
        'Lines of stdout/stderr with timestamps: the last `tail` lines, or those after a `since` cursor, optionally filtered by a `grep` regex and stream. ' +
        'Paginated: pass nextCursor as since for more. Also readable and followable as the resource debughost://projects/{tenant}/{name}/logs.',
      inputSchema: logsShape,
      outputSchema: logsResultShape,
    },
    guard(async (args) => {
      const result = await api.logs({ ...args, tenant: tenantOf(args.tenant) });
      const text = [
        ...result.lines.map((line) => `${line.time} ${line.stream === 'stderr' ? 'E' : 'O'} ${line.line}`),
        result.lines.length === 0 ? '(no matching lines)' : '',
        `cursor ${result.nextCursor}${result.more ? ' (more lines: call again with since=cursor)' : ''}`,
      ].filter((line) => line !== '');
      return ok(text.join('\n'), result);
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
      outputSchema: waitResultShape,
    },
    guard(async (args, extra) => {
      const result = await api.wait({ ...args, tenant: tenantOf(args.tenant) }, progressFor(extra), extra.signal);
      const text = [
        result.ok ? `ready: ${result.condition} after ${result.elapsedMs} ms (${result.detail})` : `not ready after ${result.elapsedMs} ms: ${result.condition}; ${result.detail}`,
        ...(result.ok ? [] : ['last log lines:', ...result.lastLines]),
        renderProject(result.status),
      ];
      return { ...ok(text.join('\n'), result), isError: !result.ok };
    }),
  );
  server.registerTool(
    'project_exec',
    {
      title: 'Run a one-off command',
      description: 'Run a shell command in the project\'s environment (its cwd and env, inside its container for Docker) with a timeout; output is capped.',
      inputSchema: execShape,
      outputSchema: execResultShape,
    },
    guard(async (args, extra) => {
      const result = await api.exec({ ...args, tenant: tenantOf(args.tenant) }, extra.signal);
      const head = result.timedOut ? `timed out after ${result.durationMs} ms` : `exit ${result.exitCode ?? `signal ${result.signal}`} in ${result.durationMs} ms`;
      const text = [head, result.stdout !== '' ? `stdout:\n${result.stdout}` : '', result.stderr !== '' ? `stderr:\n${result.stderr}` : '', result.truncated ? '(output cut at the cap)' : '']
        .filter((part) => part !== '')
        .join('\n');
      return ok(text, result);
    }),
  );
  server.registerTool(
    'project_http',
    {
      title: 'HTTP request to a project',
      description: 'Send an HTTP request to one of the project\'s ports on its owner node; returns status, headers and a capped body.',
      inputSchema: httpShape,
      outputSchema: httpResultShape,
    },
    guard(async (args, extra) => {
      const result = await api.http({ ...args, tenant: tenantOf(args.tenant) }, extra.signal);
      const text = [`HTTP ${result.status} in ${result.durationMs} ms`, ...Object.entries(result.headers).map(([k, v]) => `${k}: ${v}`), '', result.body, result.truncated ? '(body cut at the cap)' : '']
        .join('\n')
        .trimEnd();
      return ok(text, result);
    }),
  );
  server.registerTool(
    'tenant_usage',
    { title: 'Tenant usage', description: 'Projects, ports and memory a tenant uses, against its quota.', inputSchema: { tenant: projectRefShape.tenant }, outputSchema: usageShape },
    guard(async (args) => {
      const usage = await api.usage(tenantOf(args.tenant));
      const q = usage.quota;
      return ok(`tenant ${usage.tenant}: ${usage.projects}/${q.projects} projects, ${usage.ports}/${q.ports} ports, ${usage.memoryMb}/${q.memoryMb} MB`, usage);
    }),
  );
  server.registerTool(
    'tenant_quota_set',
    { title: 'Set a tenant quota', description: 'Change a tenant\'s quota of projects, ports and memory; fields not given stay as they are.', inputSchema: quotaSetShape, outputSchema: usageShape },
    guard(async (args) => {
      const { tenant, ...quota } = args;
      const usage = await api.setQuota(tenantOf(tenant), quota);
      const q = usage.quota;
      return ok(`tenant ${usage.tenant} quota: ${q.projects} projects, ${q.ports} ports, ${q.memoryMb} MB`, usage);
    }),
  );
  server.registerTool(
    'cluster_status',
    {
      title: 'Cluster status',
      description: 'Members, leader, term, commit and apply index, liveness, ring epoch and which node owns what, as the node you reached sees it.',
      inputSchema: {},
    },
    guard(async () => {
      const status = options.clusterStatus();
      return ok(status.text, status.structured);
    }),
  );

  const logsTemplate = new ResourceTemplate('debughost://projects/{tenant}/{name}/logs', {
    list: async () => {
      const projects = await api.list(options.defaultTenant);
      return {
        resources: projects.map((p) => ({ uri: logsUri(p.tenant, p.name), name: `${p.tenant}/${p.name} logs`, mimeType: 'text/plain' })),
      };
    },
  });
  server.registerResource('project-logs', logsTemplate, { description: 'The last 200 log lines of a project; subscribe to follow new lines.', mimeType: 'text/plain' }, async (uri, variables) => {
    const tenant = String(variables.tenant);
    const name = String(variables.name);
    if (!NAME_PATTERN.test(tenant) || !NAME_PATTERN.test(name)) throw new ProjectApiError('InvalidInputError', `no such project resource ${uri.href}`);
    const result = await api.logs({ tenant, name, tail: 200 });
    const text = result.lines.map((line) => `${line.time} ${line.stream === 'stderr' ? 'E' : 'O'} ${line.line}`).join('\n');
    return { contents: [{ uri: uri.href, mimeType: 'text/plain', text: capText(text, 'use project_logs with a cursor') }] };
  });
  server.server.setRequestHandler(SubscribeRequestSchema, async (request) => {
    const current = session();
    const ref = parseLogsUri(request.params.uri);
    if (current === undefined || ref === null) throw new ProjectApiError('InvalidInputError', `cannot subscribe to ${request.params.uri}; subscribe to debughost://projects/{tenant}/{name}/logs`);
    if (!current.follows.has(request.params.uri)) {
      // Coalesce: one update notification per 200 ms at most, however fast lines come.
      let pending: NodeJS.Timeout | null = null;
      const stop = api.followLogs(ref, () => {
        if (pending !== null) return;
        pending = setTimeout(() => {
          pending = null;
          void server.server.sendResourceUpdated({ uri: request.params.uri }).catch(() => {});
        }, 200);
      });
      current.follows.set(request.params.uri, () => {
        stop();
        if (pending !== null) clearTimeout(pending);
      });
    }
    return {};
  });
  server.server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
    const current = session();
    current?.follows.get(request.params.uri)?.();
    current?.follows.delete(request.params.uri);
    return {};
  });
  return server;
}

export const logsUri = (tenant: string, name: string): string => `debughost://projects/${tenant}/${name}/logs`;

function parseLogsUri(uri: string): { tenant: string; name: string } | null {
  const match = /^debughost:\/\/projects\/([^/]+)\/([^/]+)\/logs$/.exec(uri);
  if (match === null) return null;
  const [, tenant = '', name = ''] = match;
  return NAME_PATTERN.test(tenant) && NAME_PATTERN.test(name) ? { tenant, name } : null;
}

async function readBody(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).byteLength;
    if (size > BODY_BYTES_MAX) throw new Error(`request body over ${BODY_BYTES_MAX} bytes; send less`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function jsonRpcError(response: ServerResponse, status: number, message: string): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

/** Sessions of one node's /mcp endpoint. */
export class McpEndpoint {
  readonly #sessions = new Map<string, Session>();
  readonly #sweeper: NodeJS.Timeout;

  constructor(
    private readonly options: McpOptions,
    private readonly nowMs: () => number = Date.now,
  ) {
    this.#sweeper = setInterval(() => this.#sweep(), 60_000);
    this.#sweeper.unref();
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const sessionId = request.headers['mcp-session-id'];
    try {
      if (typeof sessionId === 'string') {
        const session = this.#sessions.get(sessionId);
        if (session === undefined) return jsonRpcError(response, 404, 'session not found (it expired or the node restarted); start a new session with initialize');
        session.lastSeenMs = this.nowMs();
        const body = request.method === 'POST' ? await readBody(request) : undefined;
        await session.transport.handleRequest(request, response, body);
        return;
      }
      if (request.method !== 'POST') return jsonRpcError(response, 400, 'no mcp-session-id header; start a session with an initialize POST');
      const body = await readBody(request);
      if (!isInitializeRequest(body)) return jsonRpcError(response, 400, 'no mcp-session-id header; the first request of a session must be initialize');
      if (this.#sessions.size >= SESSIONS_MAX) return jsonRpcError(response, 503, `this node has ${SESSIONS_MAX} open MCP sessions; close unused clients or connect to another node`);
      // The transport's callbacks need the session, which needs the transport.
      const holder: { session?: Session } = {};
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableDnsRebindingProtection: true,
        allowedHosts: [...this.options.allowedHosts],
        allowedOrigins: [...this.options.allowedOrigins],
        onsessioninitialized: (id) => {
          if (holder.session !== undefined) this.#sessions.set(id, holder.session);
        },
        onsessionclosed: (id) => this.#close(id),
      });
      const server = buildServer(this.options, () => holder.session);
      holder.session = { transport, server, lastSeenMs: this.nowMs(), follows: new Map() };
      transport.onclose = () => {
        if (transport.sessionId !== undefined) this.#close(transport.sessionId);
      };
      await server.connect(transport);
      await transport.handleRequest(request, response, body);
    } catch (error) {
      this.options.log.warn({ error: (error as Error).message }, 'MCP request failed');
      if (!response.headersSent) jsonRpcError(response, 400, `bad MCP request: ${(error as Error).message.split('\n')[0] ?? ''}`);
    }
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
    for (const [id, session] of this.#sessions) if (now - session.lastSeenMs > SESSION_IDLE_MS) this.#close(id);
  }

  close(): void {
    clearInterval(this.#sweeper);
    for (const id of [...this.#sessions.keys()]) this.#close(id);
  }
}
