// The dashboard's HTTP routes on every node: the page and its two assets
// (open: they hold no data), and two streams that need an identity from the
// injected `authorize` — /ui/api/stream (cluster and projects, pushed as they
// change) and /ui/api/logs (a project's log tail, then its new lines).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FollowedEvent } from '../../actors/forwarder-grpc.ts';
import { ACTOR_NAME_PATTERN, type ActorResponse, type Identity, type LogLineView } from '../../actors/messages.ts';
import { toolCalls } from '../../actors/tools.ts';
import type { McpBackend } from '../mcp.ts';
import type { DebughostNode } from '../node.ts';
import { APP_CSS, APP_JS, ICON_SVG, INDEX_HTML } from './assets.ts';
import { maySee, uiIdentityOf, type UiAuthorize } from './authorize.ts';
import { DashboardFeed, FeedLimitError, type FeedSource } from './dashboard-feed.ts';
import { EventStream } from './event-stream.ts';

/** Lines of history a log view opens with. */
const LOG_TAIL_LINES = 200;
/** Live lines held while the tail is fetched, before they can be sent in order. */
const LOG_PENDING_LINES_MAX = 1000;

/** Only this node's own script and style; nothing from elsewhere, no inline code. */
const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

export interface UiOptions {
  /** Default: the node's own token check (NodeAuth.authenticate). */
  readonly authorize?: UiAuthorize;
}

function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  response.end(JSON.stringify(body));
}

function sendAsset(response: ServerResponse, type: string, body: string): void {
  response.writeHead(200, { 'content-type': `${type}; charset=utf-8`, 'cache-control': 'no-cache', 'content-security-policy': CONTENT_SECURITY_POLICY, 'x-content-type-options': 'nosniff' });
  response.end(body);
}

export function nodeFeedSource(node: DebughostNode): FeedSource {
  return {
    hub: node.watches,
    raftListeners: node.raftListeners,
    cluster: () => {
      const raft = node.raft;
      if (raft === null) return null;
      const status = raft.raft.status();
      const kv = raft.machine.kv;
      return { node: node.id, clusterId: node.clusterId, role: status.role, term: status.term, leader: status.leader, members: node.members(), get: (key) => kv.get(key) };
    },
    store: () => {
      const kv = node.raft?.machine.kv;
      return kv === undefined ? null : { get: (key) => kv.get(key), range: (start, end) => kv.range(start, end) };
    },
  };
}

/** Handles every path under /ui; the HTTP server sends those here. `backend` is the MCP endpoint's (logs go the same way as project_logs). */
export function uiHandler(node: DebughostNode, backend: McpBackend, options: UiOptions = {}): (request: IncomingMessage, response: ServerResponse, url: URL) => void {
  const authorize: UiAuthorize = options.authorize ?? ((request) => node.auth.authenticate(request.headers.authorization));
  const feed = new DashboardFeed(nodeFeedSource(node));

  const withIdentity = (request: IncomingMessage, response: ServerResponse, serve: (identity: Identity) => void): void => {
    Promise.resolve(authorize(request)).then(
      (outcome) => {
        if (!outcome.ok) {
          const message = outcome.status === 401 ? `${outcome.message} (paste a token; it is kept for this browser tab only)` : outcome.message;
          return sendJson(response, outcome.status, { error: message }, outcome.status === 401 ? { 'www-authenticate': 'Bearer' } : {});
        }
        serve(outcome.identity);
      },
      (error: unknown) => sendJson(response, 500, { error: `checking the token failed: ${(error as Error).message}` }),
    );
  };

  return (request, response, url) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return sendJson(response, 405, { error: 'the dashboard only answers GET' }, { allow: 'GET, HEAD' });
    switch (url.pathname) {
      case '/ui':
      case '/ui/':
        return sendAsset(response, 'text/html', INDEX_HTML);
      case '/ui/app.js':
        return sendAsset(response, 'text/javascript', APP_JS);
      case '/ui/app.css':
        return sendAsset(response, 'text/css', APP_CSS);
      case '/ui/icon.svg':
        return sendAsset(response, 'image/svg+xml', ICON_SVG);
      case '/ui/api/stream':
        return withIdentity(request, response, (identity) => {
          if (feed.isFull) return sendJson(response, 503, { error: new FeedLimitError(feed.limitMessage()).message });
          const stream = new EventStream(response);
          stream.onClose(feed.subscribe(uiIdentityOf(identity), (message) => stream.send(message.type, message)));
        });
      case '/ui/api/logs':
        return withIdentity(request, response, (identity) => serveLogs(backend, identity, url, response));
      default:
        return sendJson(response, 404, { error: `no such page ${url.pathname}; the dashboard is at /ui` });
    }
  };
}

/** A project's last lines, then each new one as it is written; ends when the viewer goes away. */
function serveLogs(backend: McpBackend, identity: Identity, url: URL, response: ServerResponse): void {
  const tenant = url.searchParams.get('tenant') ?? '';
  const name = url.searchParams.get('name') ?? '';
  if (!ACTOR_NAME_PATTERN.test(tenant) || !ACTOR_NAME_PATTERN.test(name)) return sendJson(response, 400, { error: 'give tenant and name of a project (lower-case letters, digits, ".", "_", "-")' });
  if (!maySee(uiIdentityOf(identity), tenant)) return sendJson(response, 403, { error: `your token does not give access to tenant ${tenant}` });
  const stream = new EventStream(response);
  const send = (lines: readonly LogLineView[]): void => stream.send('lines', { lines: lines.map((line) => ({ time: new Date(line.timeMs).toISOString(), stream: line.stream, line: line.line })) });
  // Follow first, then read the tail (as project_logs does, checked on the owner), so no line falls between the two; lines seen in both are sent once.
  let pending: LogLineView[] | null = [];
  const unfollow = backend.follow(identity, tenant, name, (event: FollowedEvent) => {
    if (event.type !== 'line') return;
    if (pending === null) return send([event.line]);
    if (pending.length < LOG_PENDING_LINES_MAX) pending.push(event.line);
  });
  stream.onClose(unfollow);
  // A refused tool input (another tenant, a bad name) throws: the promise turns it into a rejection.
  const tail = new Promise<ActorResponse>((resolve) => resolve(backend.call(identity, toolCalls.project_logs(identity, { tenant, name, tail: LOG_TAIL_LINES }), null)));
  tail.then(
    (answer) => {
      if (answer.type !== 'logs') {
        stream.send('error', { message: answer.type === 'error' ? answer.message : `the logs could not be read (${answer.type}); retry` });
        return stream.close();
      }
      const seen = new Set(answer.lines.map(lineIdentity));
      const late = (pending ?? []).filter((line) => !seen.has(lineIdentity(line)));
      pending = null;
      send([...answer.lines, ...late]);
    },
    (error: unknown) => {
      stream.send('error', { message: `reading the logs failed: ${(error as Error).message}` });
      stream.close();
    },
  );
}

const lineIdentity = (line: LogLineView): string => `${line.timeMs}\0${line.stream}\0${line.line}`;
