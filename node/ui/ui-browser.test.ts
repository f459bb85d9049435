// Goal: in a real headless browser, the /ui dashboard of a real 3-node cluster shows a project starting and stopping
// and a leader change pushed, within 100 ms of the node applying them (measured against a gRPC watch of the same node),
// follows a project's log live, and loads nothing from elsewhere; with an injected authorize, it asks for a token once,
// keeps it for the tab, sends it as a bearer header, and shows a tenant's token only that tenant's projects.
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { prerequisites } from '../../actors/testing/prerequisites.ts';
import test, { type ExecutionContext } from 'ava';
import type { Page } from 'playwright-core';
import { countMarked } from '../../chaos/workload-mcp.ts';
import { prefixEnd } from '../../consensus/kv-state-machine.ts';
import { TransferLeadershipRequestSchema } from '../../proto/gen/admin_pb.ts';
import { WatchRequestSchema, type WatchResponse } from '../../proto/gen/kv_pb.ts';
import { callUnary } from '../../proto/grpc.ts';
import { startGrpcServer } from '../grpc-server.ts';
import { startHttpServer } from '../http.ts';
import { freePort, LocalCluster, until, type Member } from '../local-cluster.ts';
import { ensureClusterSecret } from '../cluster-files.ts';
import { createLogger } from '../log.ts';
import { DebughostNode, TICK_MS_DEFAULT } from '../node.ts';
import { browserMissing, launchBrowser, type TestBrowser } from '../testing/browser.ts';
import { McpClients, resultText } from '../testing/mcp-clients.ts';
import type { Identity } from '../../actors/messages.ts';
import type { UiAuthorize } from './authorize.ts';
import { bearerToken } from './authorize.ts';

const MARK = `DH_UI_TEST_${process.pid}`;
/** The dashboard's goal: a change shows within this long of the node applying it. */
const SHOWN_MS_GOAL = 100;
/** What a single change may take on a loaded shared machine before the test calls it broken. */
const SHOWN_MS_MAX = 1_000;

const chromium = await prerequisites('chromium');
const missing = chromium.met ? browserMissing() : chromium.missing.join("; ");
// Skipped with the reason where chromium is missing; failing under CI, which installs it.
const browserTest = chromium.guard(test.serial);

const mcp = new McpClients('ui-browser-test');
let browser: TestBrowser | null = null;

test.before(async () => {
  if (missing === null) browser = await launchBrowser();
});

test.after.always(async () => {
  await mcp.closeAll();
  await browser?.close();
  await until('no workload left', 15_000, () => (countMarked(MARK).size === 0 ? true : null)).catch(() => undefined);
});

interface Shown {
  readonly key: string;
  readonly value: string | null;
  readonly serverAt: number;
  readonly shownAt: number;
}

/** The browser globals the page functions below touch (this file compiles without the DOM library). */
interface PageGlobals {
  dhDashboard: { changes: Shown[] };
  logSeen: { text: string; at: number }[];
  document: {
    querySelectorAll(selector: string): { length: number };
    querySelector(selector: string): { textContent: string | null } | null;
    getElementById(id: string): { hidden: boolean } | null;
    body: { innerText: string };
  };
  sessionStorage: { getItem(key: string): string | null };
  MutationObserver: new (callback: (records: { addedNodes: Iterable<{ textContent: string | null }> }[]) => void) => { observe(target: unknown, options: { childList: boolean }): void };
}

/** Wait until the page has shown `key` becoming `value` (a change recorded after `from`); when it did, by its own clock. */
async function shownChange(page: Page, key: string, value: string, from: number): Promise<Shown> {
  const handle = await page.waitForFunction(
    ([k, v, f]) => (globalThis as unknown as PageGlobals).dhDashboard.changes.slice(f).find((c) => c.key === k && c.value === v) ?? null,
    [key, value, from] as const,
    { timeout: 60_000, polling: 'raf' },
  );
  return (await handle.jsonValue()) as Shown;
}

const changeCount = (page: Page): Promise<number> => page.evaluate(() => (globalThis as unknown as PageGlobals).dhDashboard.changes.length);

/** Every status change the node applies, as a gRPC watch on that node sees it, with the wall-clock time it arrived. */
function watchStatus(cluster: LocalCluster, member: Member): { events: { key: string; state: string; atMs: number }[]; cancel: () => void } {
  const events: { key: string; state: string; atMs: number }[] = [];
  const stream = cluster.kvClient(member).watch(create(WatchRequestSchema, { key: 'status/', rangeEnd: prefixEnd('status/') }));
  stream.on('data', (response: WatchResponse) => {
    const atMs = Date.now();
    for (const event of response.events) {
      if (event.kv === undefined || event.kv.value === '') continue;
      events.push({ key: event.kv.key, state: (JSON.parse(event.kv.value) as { state: string }).state, atMs });
    }
  });
  stream.on('error', () => undefined);
  return { events, cancel: () => stream.cancel() };
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};

browserTest('the dashboard of a real cluster shows starts, stops and a leader change within 100 ms, and follows a log live', async (t) => {
  const cluster = await LocalCluster.create(3, { extraArgs: ['--docker', 'off'] });
  t.teardown(() => cluster.stop());
  for (const member of cluster.members) cluster.start(member);
  await cluster.waitForLeader(60_000);
  const [n1, n2] = cluster.members as [Member, Member, Member];
  const page = await (browser as TestBrowser).context.newPage();
  t.teardown(() => page.close());
  const origin = `http://${n1.mcp}`;
  const requests: string[] = [];
  page.on('request', (request) => requests.push(request.url()));
  const pageErrors: string[] = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));

  await page.goto(`${origin}/ui`);
  // Secure by default: the page asks for a token, and the cluster's admin token sees everything.
  await page.waitForSelector('#token-form:not([hidden])');
  await page.fill('#token-input', cluster.adminToken);
  await page.click('#token-form button[type="submit"]');
  await page.waitForSelector('#connection[data-state="live"]');
  await page.waitForFunction(() => {
    const { document } = globalThis as unknown as PageGlobals;
    return document.querySelectorAll('#members tr[data-member]').length === 3 && document.querySelector('[data-fact="leader"]')?.textContent !== 'none known';
  });
  t.true(await page.isHidden('#token-form'), 'the form is gone once the token is accepted');

  // Starts and stops through another node's MCP; the time from n1 applying each status change to the page showing it.
  const watch = watchStatus(cluster, n1);
  t.teardown(() => watch.cancel());
  const shownMs: number[] = [];
  const pipelineMs: number[] = [];
  for (let round = 0; round < 3; round++) {
    for (const [tool, state] of [['project_start', 'running'], ['project_stop', 'stopped']] as const) {
      const from = await changeCount(page);
      const eventsFrom = watch.events.length;
      const args = tool === 'project_start' ? { name: 'probe', command: 'exec sleep 600', env: { [MARK]: 'probe' }, ports: [] } : { name: 'probe' };
      const result = await mcp.call(n2, tool, args);
      t.falsy(result.isError, resultText(result));
      const shown = await shownChange(page, 'default/probe', state, from);
      const applied = await until(`n1 applying probe ${state}`, 10_000, () => watch.events.slice(eventsFrom).find((e) => e.key === 'status/default/probe' && e.state === state) ?? null);
      shownMs.push(shown.shownAt - applied.atMs);
      pipelineMs.push(shown.shownAt - shown.serverAt);
    }
  }
  t.log(`project state shown after n1 applied it (page clock - gRPC watch arrival), ms: ${shownMs.map((ms) => ms.toFixed(1)).join(', ')}; median ${median(shownMs).toFixed(1)}`);
  t.log(`node saw the change -> page showed it (the page's own stamps), ms: ${pipelineMs.map((ms) => ms.toFixed(1)).join(', ')}; median ${median(pipelineMs).toFixed(1)}`);
  t.true(median(shownMs) < SHOWN_MS_GOAL, `median ${median(shownMs)} ms`);
  t.true(Math.max(...shownMs) < SHOWN_MS_MAX, `max ${Math.max(...shownMs)} ms`);

  // A leader change: shown on n1's page (n1 is a follower or becomes one).
  const leader = await cluster.waitForLeader(10_000);
  const target = cluster.members.find((m) => m !== leader && m !== n1) ?? (cluster.members.find((m) => m !== leader) as Member);
  const from = await changeCount(page);
  const transferAt = Date.now();
  await callUnary(cluster.adminClient(leader), 'transferLeadership', create(TransferLeadershipRequestSchema, { targetId: target.id }), { deadline: Date.now() + 10_000 });
  const answeredAt = Date.now();
  const shownLeader = await shownChange(page, 'leader', target.id, from);
  t.log(
    `leader ${leader.id} -> ${target.id}: shown ${shownLeader.shownAt - transferAt} ms after the transfer began (election included), ` +
      `${(shownLeader.shownAt - answeredAt).toFixed(1)} ms after it was answered, ${(shownLeader.shownAt - shownLeader.serverAt).toFixed(1)} ms after n1 saw it`,
  );
  t.true(shownLeader.shownAt - shownLeader.serverAt < SHOWN_MS_MAX);
  t.is(await page.textContent('[data-fact="leader"]'), target.id);

  // The live log tail: each line carries the time it was printed; the page records when it showed it.
  const chatty = await mcp.call(n2, 'project_start', { name: 'chatty', command: 'while true; do echo "printed $(date +%s%3N)"; sleep 0.2; done', ports: [] });
  t.falsy(chatty.isError, resultText(chatty));
  await page.waitForSelector('tr[data-project="default/chatty"][data-state="running"]');
  await page.evaluate(() => {
    const page = globalThis as unknown as PageGlobals;
    const seen: PageGlobals['logSeen'] = [];
    page.logSeen = seen;
    new page.MutationObserver((records) => {
      const at = performance.timeOrigin + performance.now();
      for (const record of records) for (const node of record.addedNodes) seen.push({ text: node.textContent ?? '', at });
    }).observe(page.document.getElementById('log-lines'), { childList: true });
  });
  await page.click('tr[data-project="default/chatty"]');
  await page.waitForFunction(() => (globalThis as unknown as PageGlobals).logSeen.length >= 25, undefined, { timeout: 30_000 });
  const seen = await page.evaluate(() => (globalThis as unknown as PageGlobals).logSeen);
  // The first lines come with the tail (old); the live ones are those shown after the tail arrived.
  const live = seen.slice(-10).map((line) => line.at - Number(/printed (\d+)/.exec(line.text)?.[1] ?? NaN)).filter((ms) => Number.isFinite(ms));
  t.log(`log line printed -> shown (via the owner's capture and n1's follow), ms: ${live.map((ms) => ms.toFixed(0)).join(', ')}; median ${median(live).toFixed(0)}`);
  t.true(live.length >= 5 && median(live) < SHOWN_MS_MAX);

  const screenshot = process.env.DEBUGHOST_UI_SCREENSHOT;
  if (screenshot !== undefined && screenshot !== '') await page.screenshot({ path: screenshot, fullPage: true });
  t.deepEqual(requests.filter((url) => !url.startsWith(`${origin}/ui`)), [], 'the page loads nothing from elsewhere');
  t.deepEqual(pageErrors, []);
});

// ---- access control, with an authorize function injected into an in-process node ----------------------------------

const TOKENS: Record<string, Identity> = {
  'alpha-token': { tokenId: 't1', tokenName: 'alpha developer', tenant: 'alpha', role: 'developer' },
  'admin-token': { tokenId: 't2', tokenName: 'operator', tenant: 'default', role: 'admin' },
};
const authorize: UiAuthorize = (request) => {
  const identity = TOKENS[bearerToken(request) ?? ''];
  return identity === undefined ? { ok: false, status: 401, message: 'this node needs a valid token' } : { ok: true, identity };
};

async function inProcessNode(t: ExecutionContext): Promise<Member> {
  const [grpcPort, httpPort] = [await freePort(), await freePort()];
  const dataDir = await mkdtemp(join(tmpdir(), 'debughost-ui-'));
  const secretFile = join(dataDir, 'cluster-secret');
  await ensureClusterSecret(secretFile);
  const grpcAddress = `127.0.0.1:${grpcPort}`;
  const node = await DebughostNode.open({
    id: 'solo',
    grpcAddress,
    httpAddress: `127.0.0.1:${httpPort}`,
    seeds: [grpcAddress],
    dataDir,
    tickMs: TICK_MS_DEFAULT,
    fsync: true,
    tls: null,
    log: createLogger('solo', process.env.DEBUGHOST_TEST_LOG_LEVEL ?? 'warn'),
    seedWaitMs: 10_000,
    snapshotEntries: 10_000,
    // The page's tokens are this test's own (authorize above); the node's MCP needs none.
    insecureNoAuth: true,
    clusterSecretFile: secretFile,
    actors: { portRangeStart: 27_100, portRangeEnd: 27_199, docker: 'off' },
  });
  const grpcServer = await startGrpcServer(node, grpc.ServerCredentials.createInsecure());
  const httpServer: Server = await startHttpServer(node, '127.0.0.1', httpPort, { ui: { authorize } });
  t.teardown(async () => {
    await node.stop({ transferLeadership: false });
    grpcServer.forceShutdown();
    httpServer.closeAllConnections();
    httpServer.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  await node.start(new AbortController().signal);
  await until('the node leading itself', 30_000, () => (node.raft?.raft.role === 'leader' && node.actors !== null ? true : null));
  return { id: 'solo', grpc: grpcAddress, mcp: `127.0.0.1:${httpPort}`, dataDir, process: null, mcpHeaders: {}, stderrTail: '' };
}

browserTest('the page asks for a token once, keeps it for the tab, and a tenant token shows only its tenant', async (t) => {
  const solo = await inProcessNode(t);
  for (const [tenant, name] of [['alpha', 'a1'], ['beta', 'b1']] as const) {
    const started = await mcp.call(solo, 'project_start', { tenant, name, command: 'exec sleep 600', env: { [MARK]: name }, ports: [] });
    t.falsy(started.isError, resultText(started));
  }
  const page = await (browser as TestBrowser).context.newPage();
  t.teardown(() => page.close());
  const sentTokens: string[] = [];
  page.on('request', (request) => {
    if (request.url().includes('/ui/api/')) sentTokens.push(request.headers().authorization ?? '(none)');
  });
  await page.goto(`http://${solo.mcp}/ui`);
  await page.waitForSelector('#token-form:not([hidden])');
  t.regex((await page.textContent('#token-message')) ?? '', /needs a valid token/);

  // A wrong token is refused and forgotten; the right one connects.
  await page.fill('#token-input', 'wrong-token');
  await page.click('#token-form button[type="submit"]');
  await page.waitForFunction(() => {
    const { sessionStorage, document } = globalThis as unknown as PageGlobals;
    return sessionStorage.getItem('debughost-token') === null && document.getElementById('token-form')?.hidden === false;
  });
  await page.fill('#token-input', 'alpha-token');
  await page.click('#token-form button[type="submit"]');
  await page.waitForSelector('#connection[data-state="live"]');
  await page.waitForSelector('tr[data-project="alpha/a1"][data-state="running"]');
  t.regex((await page.textContent('#identity')) ?? '', /alpha developer \(tenant alpha\)/);
  t.deepEqual(await page.$$eval('tr[data-project]', (rows) => rows.map((row) => row.getAttribute('data-project'))), ['alpha/a1']);
  const leaked = await page.evaluate(() => {
    const page = globalThis as unknown as PageGlobals;
    return page.document.body.innerText.includes('beta') || page.dhDashboard.changes.some((change) => change.key.startsWith('beta/'));
  });
  t.false(leaked, 'nothing of tenant beta reaches the page');

  // Kept for the tab: a reload connects without asking.
  await page.reload();
  await page.waitForSelector('#connection[data-state="live"]');
  t.true(await page.isHidden('#token-form'));
  t.true(sentTokens.includes('Bearer wrong-token'), 'the refused token was sent as a bearer header');
  t.is(sentTokens.at(-1), 'Bearer alpha-token');

  // The server side refuses what the token may not see, whatever the page does.
  // (No named functions inside page functions: the test runner's transpiler would wrap them in a helper the page lacks.)
  const statuses = await page.evaluate(async (requests) => {
    const answers = await Promise.all(requests.map(([path, token]) => fetch(path, token === null ? {} : { headers: { Authorization: `Bearer ${token}` } })));
    return answers.map((answer) => answer.status);
  }, [['/ui/api/logs?tenant=beta&name=b1', 'alpha-token'], ['/ui/api/stream', null], ['/ui/api/logs?tenant=alpha&name=..%2Fx', 'alpha-token']] as [string, string | null][]);
  t.deepEqual(statuses, [403, 401, 400], 'another tenant\'s logs, no token, a bad project name');

  // An admin token sees every tenant.
  await page.click('#forget-token');
  await page.waitForSelector('#token-form:not([hidden])');
  await page.fill('#token-input', 'admin-token');
  await page.click('#token-form button[type="submit"]');
  await page.waitForSelector('tr[data-project="beta/b1"]');
  t.deepEqual((await page.$$eval('tr[data-project]', (rows) => rows.map((row) => row.getAttribute('data-project')))).sort(), ['alpha/a1', 'beta/b1']);
});
