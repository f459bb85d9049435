// The HTTP side of a node: /health, /ready, /status, /metrics (Prometheus) and the MCP endpoint at
// /mcp (Streamable HTTP with sessions; the tools are in mcp.ts). Every node
// serves every project: calls are forwarded to the project's owner.
import { createServer, type Server, type ServerResponse } from 'node:http';
import { McpEndpoint } from './mcp.ts';
import { timedProjectApi } from './project-api-timing.ts';
import { ProjectApiError, type ProjectApi } from './project-api.ts';
import type { DebughostNode } from './node.ts';

/** Tenant of MCP calls that name none: a cluster on loopback needs no token. */
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

/** The project API of a node, or a clear "starting" error until its actor layer runs. */
function projectsOf(node: DebughostNode): ProjectApi {
  const api = (): ProjectApi => {
    if (node.projects === null) throw new ProjectApiError('UnavailableError', `node ${node.id} is still starting (joining the cluster, opening its runtimes); retry in a few seconds`);
    return node.projects;
  };
  return {
    start: (input, progress, signal) => api().start(input, progress, signal),
    stop: (ref) => api().stop(ref),
    restart: (ref, progress, signal) => api().restart(ref, progress, signal),
    remove: (ref) => api().remove(ref),
    status: (ref) => api().status(ref),
    list: (tenant) => api().list(tenant),
    logs: (input) => api().logs(input),
    wait: (input, progress, signal) => api().wait(input, progress, signal),
    exec: (input, signal) => api().exec(input, signal),
    http: (input, signal) => api().http(input, signal),
    usage: (tenant) => api().usage(tenant),
    setQuota: (tenant, quota) => api().setQuota(tenant, quota),
    followLogs: (ref, listener) => api().followLogs(ref, listener),
  };
}

/** cluster_status: Raft's view plus the actor ring (epoch, live members, projects per owner). */
function clusterStatusTool(node: DebughostNode): { text: string; structured: Record<string, unknown> } {
  const status = clusterStatus(node);
  const placement = node.actors?.host.placement() ?? null;
  const owners: Record<string, number> = {};
  if (node.actors !== null && placement !== null) {
    for (const kv of node.actors.store.view().range('projects/', 'projects0')) {
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

export function startHttpServer(node: DebughostNode, host: string, port: number): Promise<Server> {
  const allowedHosts = [`${host}:${port}`, `localhost:${port}`, `127.0.0.1:${port}`, host, 'localhost', '127.0.0.1'];
  const mcp = new McpEndpoint({
    api: timedProjectApi(projectsOf(node), node.metrics.actors, (key) => (node.actors?.host.placement().owner(key) === node.id ? 'local' : 'forwarded')),
    clusterStatus: () => clusterStatusTool(node),
    defaultTenant: DEFAULT_TENANT,
    allowedHosts,
    allowedOrigins: allowedHosts.flatMap((h) => [`http://${h}`, `https://${h}`]),
    log: node.options.log,
  });
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
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
    if (url.pathname !== '/mcp') return sendJson(response, 404, { error: `no such path ${url.pathname}; MCP is served at /mcp` });
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
