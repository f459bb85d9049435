// The MCP endpoint's edge on a real HTTP server (the cluster behind it is a stub): bearer tokens, Host and body checks before a byte is buffered, sessions bound per token and in all.
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import test from 'ava';
import type { ActorResponse, Identity } from '../actors/messages.ts';
import { McpEndpoint, type McpBackend, type McpLimits } from './mcp.ts';

const alice: Identity = { tokenId: 'tok-alice', tokenName: 'alice laptop', tenant: 'alice', role: 'developer' };
const bob: Identity = { tokenId: 'tok-bob', tokenName: 'bob ci', tenant: 'bob', role: 'developer' };
const tokens = new Map([
  ['secret-alice', alice],
  ['secret-bob', bob],
]);

const backend: McpBackend = {
  call: async (identity, call): Promise<ActorResponse> =>
    call.request.type === 'list' ? { type: 'list', tenant: identity.tenant, projects: [], more: false } : { type: 'error', name: 'NotFoundError', message: 'stub cluster' },
  follow: () => () => undefined,
  clusterStatus: (identity) => ({ text: `status for ${identity.tenant}`, structured: { tenant: identity.tenant } }),
  hostOf: () => '127.0.0.1',
  nowMs: () => Date.now(),
};

interface Harness {
  readonly url: string;
  readonly host: string;
  readonly endpoint: McpEndpoint;
  readonly server: Server;
  clock: number;
}

async function harness(limits: Partial<McpLimits> = {}): Promise<Harness> {
  const state = { clock: 1_000_000 };
  const holder: { endpoint?: McpEndpoint; host?: string } = {};
  const server = createServer((request, response) => void holder.endpoint?.handle(request, response));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const host = `127.0.0.1:${port}`;
  const endpoint = new McpEndpoint(
    {
      backend,
      authenticate: (request) => {
        const header = request.headers.authorization ?? '';
        const identity = tokens.get(header.replace(/^Bearer /, ''));
        return identity === undefined ? { ok: false, status: 401, message: 'missing or unknown bearer token; send Authorization: Bearer <token> (debughost token create)' } : { ok: true, identity };
      },
      allowedHosts: [host],
      allowedOrigins: [`http://${host}`],
      log: { warn: () => undefined },
      limits: { sessionsMax: 4, sessionsPerIdentityMax: 2, sessionIdleMs: 600_000, bodyBytesMax: 64 * 1024, subscriptionsPerSessionMax: 4, ...limits },
    },
    () => state.clock,
  );
  holder.endpoint = endpoint;
  const h: Harness = {
    url: `http://${host}/mcp`,
    host,
    endpoint,
    server,
    get clock() {
      return state.clock;
    },
    set clock(value: number) {
      state.clock = value;
    },
  };
  return h;
}

async function close(h: Harness): Promise<void> {
  h.endpoint.close();
  h.server.closeAllConnections();
  await new Promise<void>((resolve) => h.server.close(() => resolve()));
}

async function client(h: Harness, token: string): Promise<Client> {
  const c = new Client({ name: 'edge-test', version: '1' });
  await c.connect(new StreamableHTTPClientTransport(new URL(h.url), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
  return c;
}

/** A raw POST, to see status codes and headers the SDK client hides. */
function post(h: Harness, headers: Record<string, string>, body: string | Buffer): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(h.url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const initialize = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });

test('no token or an unknown one: 401 with WWW-Authenticate and a line that says what to send', async (t) => {
  const h = await harness();
  try {
    const missing = await post(h, {}, initialize);
    t.is(missing.status, 401);
    t.regex(String(missing.headers['www-authenticate']), /^Bearer /);
    t.regex(missing.body, /send Authorization: Bearer <token>/);
    t.is((await post(h, { authorization: 'Bearer nope' }, initialize)).status, 401);
    t.is(h.endpoint.sessionCount, 0);
  } finally {
    await close(h);
  }
});

test('a foreign Host or Origin, and a body over the limit, are refused before the body is read', async (t) => {
  const h = await harness();
  try {
    const foreign = await post(h, { authorization: 'Bearer secret-alice', host: 'evil.example:80' }, initialize);
    t.is(foreign.status, 403);
    t.regex(foreign.body, /not one of this node's names/);
    const origin = await post(h, { authorization: 'Bearer secret-alice', origin: 'http://evil.example' }, initialize);
    t.is(origin.status, 403);
    // Content-Length says 1 MB: refused with 413 at once.
    const big = await post(h, { authorization: 'Bearer secret-alice' }, Buffer.alloc(1024 * 1024, 32));
    t.is(big.status, 413);
    t.regex(big.body, /request body over 65536 bytes; send less/);
    t.is(h.endpoint.sessionCount, 0);
  } finally {
    await close(h);
  }
});

test('tools see the token\'s identity; a session is bound to the token that opened it', async (t) => {
  const h = await harness();
  try {
    const c = await client(h, 'secret-alice');
    const status = (await c.callTool({ name: 'cluster_status', arguments: {} })) as { content: { text: string }[] };
    t.is(status.content[0]?.text, 'status for alice');
    // Another token on alice's session id is refused.
    const sessionId = (c.transport as StreamableHTTPClientTransport).sessionId ?? '';
    const hijack = await post(h, { authorization: 'Bearer secret-bob', 'mcp-session-id': sessionId }, JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }));
    t.is(hijack.status, 403);
    t.regex(hijack.body, /belongs to another token/);
    await c.close();
  } finally {
    await close(h);
  }
});

test('one token cannot hold more than its share of sessions, nor lock others out', async (t) => {
  const h = await harness();
  try {
    const aliceClients: Client[] = [];
    // Alice opens many sessions: her oldest ones close, she never holds more than 2.
    for (let i = 0; i < 6; i += 1) {
      aliceClients.push(await client(h, 'secret-alice'));
      h.clock += 1;
    }
    t.is(h.endpoint.sessionCount, 2);
    // Bob still gets in.
    const bobClient = await client(h, 'secret-bob');
    t.is(h.endpoint.sessionCount, 3);
    const listed = (await bobClient.callTool({ name: 'cluster_status', arguments: {} })) as { content: { text: string }[] };
    t.is(listed.content[0]?.text, 'status for bob');
    for (const c of [...aliceClients, bobClient]) await c.close().catch(() => undefined);
  } finally {
    await close(h);
  }
});

test('when every slot is taken, only a session idle for a minute gives way; a busy node answers 503', async (t) => {
  const tokensMany = ['a', 'b', 'c', 'd', 'e'].map((name) => `secret-${name}`);
  for (const [i, token] of tokensMany.entries()) tokens.set(token, { tokenId: `tok-${i}`, tokenName: token, tenant: `t${i}`, role: 'viewer' });
  const h = await harness();
  try {
    for (const token of tokensMany.slice(0, 4)) await client(h, token);
    t.is(h.endpoint.sessionCount, 4);
    const refused = await post(h, { authorization: `Bearer ${tokensMany[4]}` }, initialize);
    t.is(refused.status, 503);
    t.regex(refused.body, /close unused clients or connect to another node/);
    h.clock += 61_000;
    await client(h, tokensMany[4] as string);
    t.is(h.endpoint.sessionCount, 4);
  } finally {
    await close(h);
  }
});
