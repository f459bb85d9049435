// The dashboard's HTTP routes on every node: the page and its two assets
// (open: they hold no data), and two streams that need an identity from the
// injected `authorize` — /ui/api/stream (cluster and projects, pushed as they
// change) and /ui/api/logs (a project's log tail, then its new lines).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { NAME_PATTERN, ProjectApiError, type LogLine } from '../project-api.ts';
import type { DebughostNode } from '../node.ts';
import { APP_CSS, APP_JS, ICON_SVG, INDEX_HTML } from './assets.ts';
import { maySee, permissiveAuthorize, type UiAuthorize, type UiIdentity } from './authorize.ts';
import { DashboardFeed, FeedLimitError, type FeedSource } from './dashboard-feed.ts';
import { EventStream } from './event-stream.ts';

/** Lines of history a log view opens with. */
const LOG_TAIL_LINES = 200;
/** Live lines held while the tail is fetched, before they can be sent in order. */
const LOG_PENDING_LINES_MAX = 1000;

/** Only this node's own script and style; nothing from elsewhere, no inline code. */
const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

export interface UiOptions {
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

/** Handles every path under /ui; the HTTP server sends those here. */
export function uiHandler(node: DebughostNode, options: UiOptions = {}): (request: IncomingMessage, response: ServerResponse, url: URL) => void {
  const authorize = options.authorize ?? permissiveAuthorize;
  const feed = new DashboardFeed(nodeFeedSource(node));

  const withIdentity = (request: IncomingMessage, response: ServerResponse, serve: (identity: UiIdentity) => void): void => {
    Promise.resolve(authorize(request)).then(
      (identity) => {
        if (identity === null) return sendJson(response, 401, { error: 'this node needs a valid token: paste one (it is kept for this browser tab only)' }, { 'www-authenticate': 'Bearer' });
        serve(identity);
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
          stream.onClose(feed.subscribe(identity, (message) => stream.send(message.type, message)));
        });
      case '/ui/api/logs':
        return withIdentity(request, response, (identity) => serveLogs(node, identity, url, response));
      default:
        return sendJson(response, 404, { error: `no such page ${url.pathname}; the dashboard is at /ui` });
    }
  };
}

/** A project's last lines, then each new one as it is written; ends when the viewer goes away. */
function serveLogs(node: DebughostNode, identity: UiIdentity, url: URL, response: ServerResponse): void {
  const tenant = url.searchParams.get('tenant') ?? '';
  const name = url.searchParams.get('name') ?? '';
  if (!NAME_PATTERN.test(tenant) || !NAME_PATTERN.test(name)) return sendJson(response, 400, { error: 'give tenant and name of a project (lower-case letters, digits, ".", "_", "-")' });
  if (!maySee(identity, tenant)) return sendJson(response, 403, { error: `your token does not give access to tenant ${tenant}` });
  const api = node.projects;
  if (api === null) return sendJson(response, 503, { error: `node ${node.id} is still starting; retry in a few seconds` });
  const stream = new EventStream(response);
  // Follow first, then read the tail, so no line falls between the two; lines seen in both are sent once.
  let pending: LogLine[] | null = [];
  const unfollow = api.followLogs({ tenant, name }, (line) => {
    if (pending === null) return stream.send('lines', { lines: [line] });
    if (pending.length < LOG_PENDING_LINES_MAX) pending.push(line);
  });
  stream.onClose(unfollow);
  api.logs({ tenant, name, tail: LOG_TAIL_LINES }).then(
    (page) => {
      const seen = new Set(page.lines.map(lineIdentity));
      const late = (pending ?? []).filter((line) => !seen.has(lineIdentity(line)));
      pending = null;
      stream.send('lines', { lines: [...page.lines, ...late] });
    },
    (error: unknown) => {
      stream.send('error', { message: error instanceof ProjectApiError ? error.message : `reading the logs failed: ${(error as Error).message}` });
      stream.close();
    },
  );
}

const lineIdentity = (line: LogLine): string => `${line.time}\0${line.stream}\0${line.line}`;
