// The HTTP side of a node: /health, /ready, /metrics and the MCP endpoint at
// /mcp (Streamable HTTP). Until the project tools arrive, MCP serves
// `cluster_status`, which answers from whichever node the client reached.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import type { DebughostNode } from './node.ts';

const BODY_BYTES_MAX = 1024 * 1024;

const memberShape = z.object({ id: z.string(), address: z.string(), learner: z.boolean() });
const clusterStatusShape = {
  node: z.string().describe('the node that answered'),
  clusterId: z.string(),
  role: z.string(),
  term: z.number(),
  leader: z.string().nullable(),
  commitIndex: z.number(),
  appliedIndex: z.number(),
  lastIndex: z.number(),
  snapshotIndex: z.number(),
  members: z.array(memberShape),
};

export function clusterStatus(node: DebughostNode): z.infer<z.ZodObject<typeof clusterStatusShape>> {
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

function mcpServerFor(node: DebughostNode): McpServer {
  const server = new McpServer({ name: 'debughost', version: '0.1.0' });
  server.registerTool(
    'cluster_status',
    {
      title: 'Cluster status',
      description: 'Members, leader, term, commit and apply index of the debughost cluster, as the node you reached sees it.',
      inputSchema: {},
      outputSchema: clusterStatusShape,
    },
    async () => {
      const status = clusterStatus(node);
      const lines = [
        `node ${status.node} (${status.role}) of cluster ${status.clusterId || '(not formed yet)'}; leader ${status.leader ?? 'unknown'}, term ${status.term}`,
        `commit ${status.commitIndex}, applied ${status.appliedIndex}, last ${status.lastIndex}, snapshot ${status.snapshotIndex}`,
        ...status.members.map((m) => `  ${m.id} ${m.address}${m.learner ? ' (learner)' : ''}${m.id === status.leader ? ' (leader)' : ''}`),
      ];
      return { content: [{ type: 'text', text: lines.join('\n') }], structuredContent: status };
    },
  );
  return server;
}

async function readBody(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).byteLength;
    if (size > BODY_BYTES_MAX) throw new Error(`request body over ${BODY_BYTES_MAX} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}

export function startHttpServer(node: DebughostNode, host: string, port: number): Promise<Server> {
  const allowedHosts = [`${host}:${port}`, `localhost:${port}`, `127.0.0.1:${port}`, host, 'localhost', '127.0.0.1'];
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname === '/health') return sendJson(response, 200, { ok: true, node: node.id });
    if (url.pathname === '/ready') {
      const status = clusterStatus(node);
      const ready = status.leader !== null && status.appliedIndex > 0;
      return sendJson(response, ready ? 200 : 503, { ready, leader: status.leader, role: status.role });
    }
    if (url.pathname === '/status') return sendJson(response, 200, clusterStatus(node));
    if (url.pathname !== '/mcp') return sendJson(response, 404, { error: `no such path ${url.pathname}; MCP is served at /mcp` });
    if (request.method !== 'POST') {
      // Stateless mode: no server-initiated stream to open, no session to end.
      return sendJson(response, 405, { jsonrpc: '2.0', error: { code: -32000, message: 'use POST for MCP requests' }, id: null });
    }
    void (async () => {
      const mcp = mcpServerFor(node);
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableDnsRebindingProtection: true, allowedHosts });
      response.on('close', () => {
        void transport.close();
        void mcp.close();
      });
      try {
        const body = await readBody(request);
        await mcp.connect(transport);
        await transport.handleRequest(request, response, body);
      } catch (error) {
        if (!response.headersSent) sendJson(response, 400, { jsonrpc: '2.0', error: { code: -32700, message: (error as Error).message }, id: null });
      }
    })();
  });
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
