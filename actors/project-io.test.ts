// project_exec and project_http on real processes and sockets: caps, timeouts, whole-group kills, clear errors.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { runExec, runHttp, HttpTargetError } from './project-io.ts';

const never = new AbortController().signal;

/** Alive and not a zombie waiting for its (init) parent to reap it. */
function isRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

test('exec returns exit code and output, with env and cwd', async (t) => {
  const result = await runExec({ argv: ['/bin/sh', '-c', 'echo "$GREETING from $(pwd)"; echo oops >&2; exit 3'], cwd: '/tmp', env: { GREETING: 'hello' } }, 10_000, never);
  t.is(result.exitCode, 3);
  t.is(result.stdout, 'hello from /tmp\n');
  t.is(result.stderr, 'oops\n');
  t.false(result.timedOut);
  t.false(result.truncated);
});

test('exec caps output and says so', async (t) => {
  const result = await runExec({ argv: ['/bin/sh', '-c', 'yes line | head -c 100000'], env: {} }, 10_000, never, 1000);
  t.is(result.stdout.length, 1000);
  t.true(result.truncated);
  t.is(result.exitCode, 0);
});

test('exec kills the whole process group at the timeout', async (t) => {
  // The shell starts a child sleeper; after the timeout neither may survive.
  const result = await runExec({ argv: ['/bin/sh', '-c', 'sleep 30 & echo $!; wait'], env: {} }, 300, never);
  t.true(result.timedOut);
  const childPid = Number(result.stdout.trim());
  t.true(childPid > 0);
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.false(isRunning(childPid), 'the background child outlived the timeout');
});

test('exec of a missing cwd gives a clear error', async (t) => {
  const result = await runExec({ argv: ['/bin/sh', '-c', 'true'], cwd: '/no/such/dir', env: {} }, 5_000, never);
  t.is(result.exitCode, null);
  t.regex(result.stderr, /does not exist/);
});

test('http returns status, headers and a capped body', async (t) => {
  const server = createServer((request, response) => {
    response.setHeader('x-path', request.url ?? '');
    response.end('x'.repeat(5000));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const result = await runHttp({ port, method: 'GET', path: '/hello?a=1', headers: {} }, 5_000, never, 1000);
  t.is(result.status, 200);
  t.is(result.headers['x-path'], '/hello?a=1');
  t.is(result.body.length, 1000);
  t.true(result.truncated);
});

test('http to a closed port says nothing listens', async (t) => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  const error = await t.throwsAsync(runHttp({ port, method: 'GET', path: '/', headers: {} }, 2_000, never), { instanceOf: HttpTargetError });
  t.regex(error?.message ?? '', /nothing listens on port/);
});
