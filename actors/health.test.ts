// Goal: HTTP, TCP and log-regex checks against real sockets and a real log store, and waitFor's outcomes (ready, timeout with last lines, gave up, aborted).
import test from 'ava';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkHttp, checkTcp, logProbe, probeFor, waitFor } from './health.ts';
import { LogQueryError, LogStore } from './logs.ts';
import { realClock, sleep } from './testing/real.ts';

const root = mkdtempSync(join(tmpdir(), 'debughost-health-'));
const servers: (Server | HttpServer)[] = [];
const stores: LogStore[] = [];
test.after.always(async () => {
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  for (const store of stores) await store.close();
  rmSync(root, { recursive: true, force: true });
});

const project = { tenant: 't', name: 'h' };
const newStore = (name: string): LogStore => {
  const store = new LogStore({ dir: join(root, name), wallNowMs: () => Date.now() });
  stores.push(store);
  return store;
};

function httpServer(port: number): Promise<HttpServer> {
  return new Promise((resolve) => {
    const server = createHttpServer((req, res) => {
      res.statusCode = req.url === '/ok' ? 200 : req.url === '/moved' ? 302 : 503;
      res.end();
    });
    servers.push(server);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

test('HTTP: 2xx and 3xx pass, 5xx and a closed port fail with what was seen', async (t) => {
  await httpServer(24000);
  t.deepEqual(await checkHttp(24000, '/ok'), { ok: true, detail: 'GET /ok on port 24000 answered 200' });
  t.true((await checkHttp(24000, '/moved')).ok);
  t.deepEqual(await checkHttp(24000, '/down'), { ok: false, detail: 'GET /down on port 24000 answered 503' });
  const closed = await checkHttp(24001, '/');
  t.false(closed.ok);
  t.regex(closed.detail, /ECONNREFUSED/);
});

test('TCP: a listening port passes, a closed one fails', async (t) => {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(24010, '127.0.0.1', resolve));
  t.true((await checkTcp(24010)).ok);
  t.false((await checkTcp(24011)).ok);
});

test('waitFor resolves as soon as a port starts to listen', async (t) => {
  const logs = newStore('a');
  setTimeout(() => void httpServer(24020), 300);
  const result = await waitFor(probeFor({ kind: 'http', port: 24020, path: '/ok' }, { logs, project }), { timeoutMs: 10_000, clock: realClock, intervalMs: 50 });
  t.true(result.ok);
  t.true(result.elapsedMs >= 250 && result.elapsedMs < 5000, String(result.elapsedMs));
});

test('log regex: only lines after the cursor count; the probe sees lines that arrive later', async (t) => {
  const logs = newStore('b');
  logs.append(project, 'stdout', 'Listening on 3000 (old run)');
  const cursor = logs.cursor(project);
  const probe = logProbe(logs, project, 'Listening on \\d+', cursor);
  t.false(probe().ok);
  setTimeout(() => logs.append(project, 'stdout', 'Listening on 4000'), 200);
  const result = await waitFor(() => Promise.resolve(probe()), { timeoutMs: 10_000, clock: realClock, intervalMs: 20 });
  t.true(result.ok);
  t.regex(result.ok ? result.detail : '', /matches .*Listening on 4000/);
  t.throws(() => logProbe(logs, project, '(', 0), { instanceOf: LogQueryError });
});

test('waitFor times out with the last log lines, gives up when the workload ends, and stops on abort', async (t) => {
  const logs = newStore('c');
  logs.append(project, 'stderr', 'Error: EADDRINUSE');
  const never = probeFor({ kind: 'tcp', port: 24031 }, { logs, project });
  const timedOut = await waitFor(never, { timeoutMs: 300, clock: realClock, intervalMs: 50, lastLines: () => logs.lastLines(project, 3) });
  t.false(timedOut.ok);
  if (!timedOut.ok) {
    t.is(timedOut.reason, 'timeout');
    t.deepEqual(timedOut.lastLines, ['Error: EADDRINUSE']);
    t.regex(timedOut.detail, /^not ready after 300 ms: port 24031: .*ECONNREFUSED/);
    t.true(timedOut.elapsedMs >= 300);
  }
  let checks = 0;
  const gaveUp = await waitFor(
    () => {
      checks += 1;
      return never();
    },
    { timeoutMs: 10_000, clock: realClock, intervalMs: 20, giveUp: () => (checks >= 3 ? 'the workload exited with code 1' : null) },
  );
  t.false(gaveUp.ok);
  if (!gaveUp.ok) t.is(gaveUp.reason, 'workloadEnded');
  const controller = new AbortController();
  const started = performance.now();
  const pending = waitFor(never, { timeoutMs: 10_000, clock: realClock, intervalMs: 5000, signal: controller.signal });
  await sleep(100);
  controller.abort();
  const aborted = await pending;
  t.false(aborted.ok);
  if (!aborted.ok) t.is(aborted.reason, 'aborted');
  t.true(performance.now() - started < 3000);
});
