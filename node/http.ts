// The HTTP side of a node: /health, /ready, /status, /metrics (Prometheus), the dashboard at /ui
// (node/ui/), and the MCP endpoint at
// /mcp (Streamable HTTP with sessions; the tools are in mcp.ts). Every node
// serves every project: calls are forwarded to the project's owner.
import { randomUUID } from 'node:crypto';
import { prefixEnd } from '../consensus/kv-state-machine.ts';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { errorResponse, type ActorResponse, type Identity } from '../actors/messages.ts';
import type { ToolCall } from '../actors/tools.ts';
import { isRole } from '../actors/identity.ts';
import { RuntimeError } from '../actors/runtime.ts';
import { McpEndpoint, type McpBackend } from './mcp.ts';
import { registerImageTools } from './mcp-image-tools.ts';
import { registerTrustTools } from './mcp-trust-tools.ts';
import { timedBackend } from './mcp-call-timing.ts';
import type { DebughostNode } from './node.ts';
import { uiHandler, type UiOptions } from './ui/routes.ts';

/** Tenant of calls on a node started with --insecure-no-auth (loopback only). */
export const DEFAULT_TENANT = 'default';

export interface ClusterStatus {
  /** The node that answered. */
  readonly node: string;
  readonly clusterId: string;
  readonly role: string;
  readonly term: number;
  readonly leader: string | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  readonly snapshotIndex: number;
  readonly members: readonly { id: string; address: string; learner: boolean }[];
}

export function clusterStatus(node: DebughostNode): ClusterStatus {
  const raft = node.raft;
  const status = raft?.raft.status();
  return {
    node: node.id,
    clusterId: node.clusterId,
    role: status?.role ?? 'starting',
    term: status?.term ?? 0,
    leader: status?.leader ?? null,
    commitIndex: status?.commit ?? 0,
    appliedIndex: raft?.machine.appliedIndex ?? 0,
    lastIndex: status?.lastIndex ?? 0,
    snapshotIndex: status?.snapshotIndex ?? 0,
    members: node.members(),
  };
}

/** The MCP endpoint's view of a node: every tool call is one ActorHost.call, checked at the edge first. */
export function mcpBackend(node: DebughostNode): McpBackend {
  return {
    call: (identity: Identity, call: ToolCall, progress) =>
      new Promise<ActorResponse>((resolve) => {
        const actors = node.actors;
        if (actors === null) return resolve(errorResponse('UnavailableError', `node ${node.id} is still starting (joining the cluster, opening its runtimes); retry in a few seconds`));
        const refusal = node.auth.authorizer.check(identity, call.key, call.request);
        if (refusal !== null) return resolve(refusal);
        actors.host.call(call.key, call.request, { deadlineMs: call.deadlineMs, requestId: call.requestId ?? randomUUID(), identity, progress }, resolve);
      }),
    follow: (identity, tenant, name, onEvent) => node.actors?.follow(tenant, name, identity, onEvent) ?? (() => {}),
    clusterStatus: (identity) => clusterStatusTool(node, identity),
    hostOf: (id) => hostOf(node.addressOf(id)),
    nowMs: () => Date.now(),
  };
}

/** The host part of HOST:PORT (brackets of an IPv6 address removed). */
function hostOf(address: string | null): string | null {
  if (address === null) return null;
  const host = address.slice(0, address.lastIndexOf(':'));
  return host.startsWith('[') ? host.slice(1, -1) : host;
}

/** cluster_status: Raft's view plus the actor ring (epoch, live members, projects per owner: all of them for an admin, the caller's tenant's otherwise). */
function clusterStatusTool(node: DebughostNode, identity: Identity): { text: string; structured: Record<string, unknown> } {
  const status = clusterStatus(node);
  const placement = node.actors?.host.placement() ?? null;
  const owners: Record<string, number> = {};
  const prefix = identity.role === 'admin' ? 'projects/' : `projects/${identity.tenant}/`;
  if (node.actors !== null && placement !== null) {
    for (const kv of node.actors.store.view().range(prefix, prefixEnd(prefix))) {
      const owner = placement.owner(kv.key) ?? 'none';
      owners[owner] = (owners[owner] ?? 0) + 1;
    }
  }
  const ring = placement === null ? null : { epoch: placement.epoch, live: [...placement.live], projectsByOwner: owners };
  const lines = [
    `node ${status.node} (${status.role}) of cluster ${status.clusterId || '(not formed yet)'}; leader ${status.leader ?? 'unknown'}, term ${status.term}`,
    `commit ${status.commitIndex}, applied ${status.appliedIndex}, last ${status.lastIndex}, snapshot ${status.snapshotIndex}`,
    ...status.members.map((m) => `  ${m.id} ${m.address}${m.learner ? ' (learner)' : ''}${m.id === status.leader ? ' (leader)' : ''}${ring !== null && !ring.live.includes(m.id) ? ' (not live)' : ''}`),
    ring === null ? 'actor ring: starting' : `actor ring epoch ${ring.epoch}; projects by owner: ${Object.entries(owners).map(([n, c]) => `${n} ${c}`).join(', ') || 'none'}`,
  ];
  return { text: lines.join('\n'), structured: { ...status, ring } };
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}

export interface HttpServerOptions {
  /** The dashboard's authorize function (default: the node's own token check). */
  readonly ui?: UiOptions;
}

export function startHttpServer(node: DebughostNode, host: string, port: number, options: HttpServerOptions = {}): Promise<Server> {
  const allowedHosts = [`${host}:${port}`, `localhost:${port}`, `127.0.0.1:${port}`, host, 'localhost', '127.0.0.1'];
  const backend = timedBackend(mcpBackend(node), node.metrics.actors, (key) => (node.actors?.host.placement().owner(key) === node.id ? 'local' : 'forwarded'));
  const mcp = new McpEndpoint({
    backend,
    authenticate: (request) => node.auth.authenticate(request.headers.authorization),
    catchUp: () => node.catchUp(),
    allowedHosts,
    allowedOrigins: allowedHosts.flatMap((h) => [`http://${h}`, `https://${h}`]),
    log: node.options.log,
    // Tenants' tokens are rate limited; the operator's admin tokens are not (benchmarks, the chaos workload and
    // an operator's scripts run on them), so a runaway agent is stopped without locking out whoever must fix it.
    admit: async (identity) => {
      if (!isRole(identity.role) || identity.role === 'admin') return { ok: true };
      const taken = await node.trust.rateLimiter.take({ ...identity, role: identity.role });
      return taken.ok ? { ok: true } : { ok: false, message: taken.message };
    },
    audit: (entry) => {
      if (!isRole(entry.identity.role)) return;
      const actor = { tokenId: entry.identity.tokenId, tokenName: entry.identity.tokenName, tenant: entry.identity.tenant, role: entry.identity.role };
      void node.trust.audit.record({ actor, action: entry.tool, tenant: entry.tenant, target: entry.target, args: entry.args, outcome: entry.outcome, detail: entry.detail }).catch(() => undefined);
    },
    extraTools: (server, context) => {
      registerTrustTools(server, context, { tokens: node.trust.tokens, audit: node.trust.audit, view: () => node.store.view() });
      registerImageTools(server, context, {
        node: node.id,
        budgetBytes: () => node.actors?.imageBudgetBytes ?? null,
        images: async () => {
          const docker = node.actors?.docker ?? null;
          if (docker === null) throw new RuntimeError('RuntimeUnavailableError', `node ${node.id} has no Docker engine (started with --docker off, or none answered)`);
          return docker.images();
        },
        prune: async (budgetBytes) => {
          if (node.actors === null) throw new RuntimeError('RuntimeUnavailableError', `node ${node.id} has not started its actors yet; retry in a moment`);
          return node.actors.pruneImages(budgetBytes);
        },
      });
    },
  });
  const ui = uiHandler(node, backend, options.ui);
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname === '/ui' || url.pathname.startsWith('/ui/')) return ui(request, response, url);
    if (url.pathname === '/health') return sendJson(response, 200, { ok: true, node: node.id });
    if (url.pathname === '/ready') {
      const status = clusterStatus(node);
      const ready = status.leader !== null && status.appliedIndex > 0;
      return sendJson(response, ready ? 200 : 503, { ready, leader: status.leader, role: status.role });
    }
    if (url.pathname === '/status') return sendJson(response, 200, clusterStatus(node));
    if (url.pathname === '/metrics') {
      void node.metrics.scrape().then(
        ({ contentType, body }) => {
          response.writeHead(200, { 'content-type': contentType });
          response.end(body);
        },
        (error: unknown) => sendJson(response, 500, { error: `collecting metrics failed: ${(error as Error).message}` }),
      );
      return;
    }
    if (url.pathname !== '/mcp') return sendJson(response, 404, { error: `no such path ${url.pathname}; MCP is served at /mcp, the dashboard at /ui` });
    void mcp.handle(request, response);
  });
  server.on('close', () => mcp.close());
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'EADDRINUSE'
          ? new Error(`cannot listen on ${host}:${port} for MCP/HTTP: the port is in use; stop what holds it or pick another --mcp`)
          : new Error(`cannot listen on ${host}:${port} for MCP/HTTP: ${error.message}`),
      );
    });
    server.listen(port, host, () => resolve(server));
  });
}
