// Claude Code's view, end to end: a real MCP client against a 3-node cluster of real processes drives a project through
// a node that does not own it (start, wait, HTTP, logs, exec, restart, stop, remove), bad input gets isError and changes
// nothing, the same flow runs a Docker container, and the independent MCP Inspector CLI works as a second client.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import test from 'ava';
import Docker from 'dockerode';
import { testDocker, TEST_IMAGE, type TestDocker } from '../actors/testing/dockerd.ts';
import { prerequisites } from '../actors/testing/prerequisites.ts';
import { TOOL_RIGHTS } from '../actors/identity.ts';
import { bin, LocalCluster, type Member } from './local-cluster.ts';

const run = promisify(execFile);
type Result = { isError?: boolean; content: { type: string; text: string }[]; structuredContent?: Record<string, unknown> };

let cluster: LocalCluster;
const clients: Client[] = [];
/** The tests' own tag of the busybox image, so that another test file removing its tag cannot take it away. */
const IMAGE = 'debughost-test/mcp-busybox:1';
let docker: TestDocker | null = null;
const dockerPrerequisites = await prerequisites('docker', 'busybox-static');
const dockerTest = dockerPrerequisites.guard(test.serial);
// The dev server of the first flow is python3's http.server.
const pythonTest = (await prerequisites('python3')).guard(test.serial);
const workDir = mkdtempSync(join(tmpdir(), 'debughost-mcp-'));

async function connect(member: Member): Promise<Client> {
  const client = new Client({ name: 'debughost-test', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://${member.mcp}/mcp`), { requestInit: { headers: { ...member.mcpHeaders } } }));
  clients.push(client);
  return client;
}

async function call(client: Client, name: string, args: Record<string, unknown>, progress?: string[]): Promise<Result> {
  const started = performance.now();
  const result = (await client.callTool({ name, arguments: args }, undefined, {
    timeout: 120_000,
    ...(progress === undefined ? {} : { onprogress: (p: { message?: string }) => progress.push(p.message ?? '') }),
  })) as Result;
  const ms = performance.now() - started;
  if (ms > 5_000) process.stderr.write(`slow call ${name} ${JSON.stringify(args).slice(0, 100)}: ${Math.round(ms)} ms\n`);
  return result;
}

const text = (result: Result): string => result.content.map((part) => part.text).join('\n');

test.before(async () => {
  if (dockerPrerequisites.met) docker = await testDocker();
  if (docker !== null) await new Docker({ socketPath: docker.socketPath }).getImage(TEST_IMAGE).tag({ repo: 'debughost-test/mcp-busybox', tag: '1' });
  // Six ports per node: enough for the flows, few enough to exhaust on purpose.
  cluster = await LocalCluster.create(3, { extraArgs: ['--ports', '24100-24105'] });
  for (const member of cluster.members) cluster.start(member);
  await cluster.waitForLeader(30_000);
});

test.after.always(async () => {
  for (const client of clients) await client.close().catch(() => {});
  await cluster?.stop();
  if (docker !== null) {
    await new Docker({ socketPath: docker.socketPath }).getImage(IMAGE).remove().catch(() => {});
    await docker.cleanUp();
  }
  rmSync(workDir, { recursive: true, force: true });
});

/** A client on a node that does not own `name`'s project (the owner is known once it exists). */
async function nonOwnerClient(owner: string): Promise<Client> {
  const other = cluster.members.find((member) => member.id !== owner);
  if (other === undefined) throw new Error('no other member');
  return connect(other);
}

pythonTest('a dev server runs through a node that does not own it: start, wait, http, logs, exec, restart, stop, remove', async (t) => {
  const first = await connect(cluster.members[0] as Member);
  const tools = (await first.listTools()).tools.map((tool) => tool.name);
  for (const name of ['project_start', 'project_stop', 'project_restart', 'project_remove', 'project_status', 'project_list', 'project_logs', 'project_wait', 'project_exec', 'project_http', 'cluster_status']) {
    t.true(tools.includes(name), `tool ${name} is listed`);
  }
  // The live tool list and the role table agree both ways: a new tool cannot skip its row (and so its check).
  t.deepEqual([...tools].sort(), Object.keys(TOOL_RIGHTS).sort(), 'every live tool has a row in TOOL_RIGHTS, and every row a live tool');
  const progress: string[] = [];
  const started = await call(first, 'project_start', { name: 'web', command: 'echo booting; exec python3 -m http.server $PORT', cwd: workDir, healthCheck: { type: 'http', path: '/' } }, progress);
  t.falsy(started.isError, text(started));
  const owner = started.structuredContent?.owner as string;
  t.is(started.structuredContent?.state, 'running');
  t.is(started.structuredContent?.healthy, true);
  t.true(progress.length > 0, 'progress notifications while starting');
  t.true(text(started).length > 0, 'the text rendering is never empty');
  const client = await nonOwnerClient(owner);
  const status = await call(client, 'project_status', { name: 'web' });
  t.is(status.structuredContent?.owner, owner, 'every node reports the same owner');
  t.is(typeof status.structuredContent?.pid, 'number', 'the pid comes from the owner');

  const waited = await call(client, 'project_wait', { name: 'web', httpPath: '/', timeoutMs: 10_000 });
  t.falsy(waited.isError, text(waited));
  const http = await call(client, 'project_http', { name: 'web', path: '/' });
  t.is(http.structuredContent?.status, 200);
  const logs = await call(client, 'project_logs', { name: 'web', grep: 'GET /', stream: 'stderr' });
  t.true((logs.structuredContent?.lines as unknown[]).length >= 1, text(logs));
  const booting = await call(client, 'project_logs', { name: 'web', since: '0' });
  t.regex(text(booting), /booting/);
  const exec = await call(client, 'project_exec', { name: 'web', command: 'echo "port=$PORT"; pwd' });
  t.is(exec.structuredContent?.exitCode, 0);
  t.regex(exec.structuredContent?.stdout as string, new RegExp(`port=\\d+\\n${workDir}`));

  const pidBefore = status.structuredContent?.pid;
  const restarted = await call(client, 'project_restart', { name: 'web' });
  t.falsy(restarted.isError, text(restarted));
  t.not(restarted.structuredContent?.pid, pidBefore, 'a restart runs a new process');
  t.is((restarted.structuredContent?.version as number) > (started.structuredContent?.version as number), true);

  const stopped = await call(client, 'project_stop', { name: 'web' });
  t.is(stopped.structuredContent?.desired, 'stopped');
  const port = (started.structuredContent?.ports as Record<string, number>).default as number;
  const refused = await call(client, 'project_http', { name: 'web', path: '/' });
  t.true(refused.isError === true, `port ${port} is closed after stop`);
  const afterStop = await call(client, 'project_logs', { name: 'web', since: '0' });
  t.regex(text(afterStop), /booting/, 'logs stay readable after stop');
  const removed = await call(client, 'project_remove', { name: 'web' });
  t.is(removed.structuredContent?.removed, true);
  const gone = await call(client, 'project_status', { name: 'web' });
  t.true(gone.isError === true);
  t.regex(text(gone), /project_start/);
});

test.serial('bad input gets a clear isError result and changes nothing', async (t) => {
  const client = await connect(cluster.members[1] as Member);
  const expectError = async (name: string, args: Record<string, unknown>, pattern: RegExp): Promise<void> => {
    const result = await call(client, name, args);
    t.true(result.isError === true, `${name} ${JSON.stringify(args).slice(0, 80)} should fail`);
    t.regex(text(result), pattern);
    t.false(text(result).includes('    at '), 'no stack trace');
  };
  await expectError('project_status', { name: 'nope' }, /no project nope/);
  await expectError('project_start', { name: 'a/b', command: 'true' }, /lower-case letters/);
  await expectError('project_start', { name: '..', command: 'true' }, /lower-case letters/);
  await expectError('project_start', { name: 'missing', command: 'definitely-not-a-command --flag', waitMs: 10_000 }, /command not found: definitely-not-a-command/);
  await expectError('project_start', { name: 'big', command: 'true', env: { BIG: 'x'.repeat(1024 * 1024) } }, /Too big|too_big|65536|characters/i);
  // A body past the endpoint's limit is refused before it is buffered, with a status and a line that says so.
  const huge = await call(client, 'project_start', { name: 'huge', command: 'true', env: { BIG: 'x'.repeat(10 * 1024 * 1024) } }).catch((error: unknown) => error as Error);
  t.true(huge instanceof Error);
  t.regex((huge as Error).message, /request body over \d+ bytes; send less/);
  await expectError('project_wait', { name: 'nope', timeoutMs: -5 }, /timeoutMs|greater|>=/i);
  await expectError('project_start', { name: 'greedy', command: 'sleep 60', ports: ['a', 'b', 'c', 'd', 'e', 'f', 'g'] }, /no free port/);
  await expectError('project_start', { name: 'neither' }, /give command .* or image/);
  // Nothing of the refused starts was recorded (the command-not-found one is kept, failed, to show why).
  const list = await call(client, 'project_list', {});
  const names = (list.structuredContent?.projects as { name: string }[]).map((p) => p.name).sort();
  t.deepEqual(names, ['missing']);
  // A pattern that backtracks for ever in a backtracking engine answers at once.
  const started = performance.now();
  const grep = await call(client, 'project_logs', { name: 'missing', grep: '(a+)+$' });
  t.falsy(grep.isError, text(grep));
  t.true(performance.now() - started < 10_000);
  await call(client, 'project_remove', { name: 'missing' });
});

test.serial('project_batch: 50 starts with 3 bad items run 47 projects on their owners, fail 3 with reasons, and report progress', async (t) => {
  const client = await connect(cluster.members[0] as Member);
  const items: Record<string, unknown>[] = Array.from({ length: 50 }, (_, i) => ({ op: 'start', name: `batch-${i}`, command: 'sleep 300', ports: [], waitMs: 0 }));
  items[7] = { op: 'start', name: 'Bad/Name', command: 'true' };
  items[21] = { op: 'start', name: 'batch-21' };
  items[33] = { op: 'start', name: 'batch-33', command: 'true', restart: 'sometimes' };
  const progress: string[] = [];
  const result = await call(client, 'project_batch', { items, concurrency: 16, requestId: 'batch-test-1' }, progress);
  t.falsy(result.isError, text(result).slice(0, 500));
  const out = result.structuredContent as { items: { index: number; ok: boolean; error: string | null; project: { state: string; owner: string } | null }[]; succeeded: number; failed: number };
  t.is(out.succeeded, 47);
  t.is(out.failed, 3);
  t.deepEqual(out.items.filter((item) => !item.ok).map((item) => item.index), [7, 21, 33]);
  t.regex(out.items[7]?.error ?? '', /lower-case letters/);
  t.regex(out.items[21]?.error ?? '', /give command/);
  t.regex(out.items[33]?.error ?? '', /restart/);
  t.true(new Set(out.items.flatMap((item) => (item.project === null ? [] : [item.project.owner]))).size > 1, 'items ran on several owners');
  t.true(progress.length >= 10, `progress as items finish (${progress.length} notifications)`);
  // The same batch again is applied once: every item answers from what is recorded, nothing starts twice.
  const again = await call(client, 'project_batch', { items, concurrency: 16, requestId: 'batch-test-1' });
  t.is((again.structuredContent as { succeeded: number }).succeeded, 47);
  const removal = await call(client, 'project_batch', { items: Array.from({ length: 50 }, (_, i) => ({ op: 'remove', name: `batch-${i}` })) });
  t.is((removal.structuredContent as { succeeded: number }).succeeded, 50);
});

test.serial('debughost project batch FILE: one line per item, exit 1 when one failed; a bad file is refused in one line and changes nothing', async (t) => {
  const member = cluster.members[1] as Member;
  const cli = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    run(process.execPath, [bin, 'project', ...args, '--url', `http://${member.mcp}/mcp`], { timeout: 120_000, env: { ...process.env, DEBUGHOST_TOKEN: cluster.adminToken, DEBUGHOST_LOG_LEVEL: 'warn' } }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
    );
  const starts = join(workDir, 'starts.json');
  writeFileSync(starts, JSON.stringify({ items: [
    { op: 'start', name: 'cli-a', command: 'exec sleep 300', ports: [] },
    { op: 'start', name: 'cli-b', command: 'exec sleep 300', ports: [] },
    { op: 'start', name: 'cli-c' },
  ] }));
  const started = await cli(['batch', starts]);
  t.is(started.code, 1, started.stderr);
  t.regex(started.stdout, /^ok {3}start cli-a: running on n\d$/m);
  t.regex(started.stdout, /^ok {3}start cli-b: running on n\d$/m);
  t.regex(started.stdout, /^FAIL start cli-c: .*command/m);
  t.regex(started.stderr, /2 succeeded, 1 failed/);
  t.regex(started.stderr, /^\d+\/3 /m, 'progress as items finish');

  const bad = join(workDir, 'bad.json');
  writeFileSync(bad, '[{"op": "start", "name": "cli-d", "command": "true"}, {"op": "explode", "name": "cli-a"}]');
  const refused = await cli(['batch', bad]);
  t.is(refused.code, 2);
  t.regex(refused.stderr, /^debughost project: .*bad\.json at 1\.op: .*"op" \(start, stop, restart or remove\)/);
  t.is(refused.stderr.trim().split('\n').length, 1, 'one line, no stack trace');
  const client = await connect(member);
  t.true((await call(client, 'project_status', { name: 'cli-d' })).isError, 'nothing of a refused file ran');
  writeFileSync(bad, '{"items": [');
  t.regex((await cli(['batch', bad])).stderr, /is not JSON/);

  const removes = join(workDir, 'removes.json');
  writeFileSync(removes, JSON.stringify([{ op: 'remove', name: 'cli-a' }, { op: 'remove', name: 'cli-b' }]));
  const removed = await cli(['batch', removes, '--json']);
  t.is(removed.code, 0, removed.stderr);
  t.like(JSON.parse(removed.stdout), { succeeded: 2, failed: 0 });
});

dockerTest('the same flow with the Docker runtime', async (t) => {
  if (docker === null) return t.fail('no engine: the before hook failed');
  const client = await connect(cluster.members[2] as Member);
  const missing = await call(client, 'project_start', { name: 'noimage', image: 'debughost-test/absent:1' });
  t.true(missing.isError === true);
  t.regex(text(missing), /not present on this node's Docker engine/);
  const started = await call(client, 'project_start', {
    name: 'box',
    image: IMAGE,
    // busybox httpd serves the container's / on the allocated port (published on the same host port).
    // As PID 1 the shell must handle SIGTERM itself, or a stop waits for the SIGKILL after the grace period.
    command: "echo box-up; trap 'exit 0' TERM; httpd -f -p $PORT -h / & wait",
    env: { GREETING: 'hello' },
    healthCheck: { type: 'tcp' },
    memoryMb: 64,
  });
  t.falsy(started.isError, text(started));
  t.is(started.structuredContent?.healthy, true, text(started));
  const owner = started.structuredContent?.owner as string;
  const other = await nonOwnerClient(owner);
  t.is(typeof (await call(other, 'project_status', { name: 'box' })).structuredContent?.containerId, 'string');
  const exec = await call(other, 'project_exec', { name: 'box', command: 'echo $GREETING from $PORT' });
  t.regex(exec.structuredContent?.stdout as string, /hello from \d+/);
  t.regex(text(await call(other, 'project_logs', { name: 'box', since: '0' })), /box-up/);
  const http = await call(other, 'project_http', { name: 'box', path: '/' });
  t.true((http.structuredContent?.status as number) < 500, text(http));
  const stopped = await call(other, 'project_stop', { name: 'box' });
  t.is(stopped.structuredContent?.desired, 'stopped');
  t.is((await call(other, 'project_remove', { name: 'box' })).structuredContent?.removed, true);
  const containers = await new Docker({ socketPath: docker.socketPath }).listContainers({ all: true, filters: { label: ['debughost.project=box'] } });
  t.is(containers.length, 0, 'remove leaves no container');
});

test.serial('the MCP Inspector CLI, a client nobody here wrote, drives the same tools', async (t) => {
  const url = `http://${(cluster.members[0] as Member).mcp}/mcp`;
  const inspector = async (...args: string[]): Promise<string> => {
    const { stdout } = await run(process.execPath, ['node_modules/.bin/mcp-inspector', '--cli', url, '--header', `Authorization: Bearer ${cluster.adminToken}`, ...args], { timeout: 120_000, env: { ...process.env, MCP_CATALOG_PATH: join(workDir, 'catalog.json') } });
    return stdout;
  };
  const tools = await inspector('--method', 'tools/list');
  t.regex(tools, /project_start/);
  const started = await inspector('--method', 'tools/call', '--tool-name', 'project_start', '--tool-arg', 'name=insp', '--tool-arg', 'command=echo inspector-was-here; sleep 60');
  t.regex(started, /running/);
  const logs = await inspector('--method', 'tools/call', '--tool-name', 'project_logs', '--tool-arg', 'name=insp');
  t.regex(logs, /inspector-was-here/);
  const removed = await inspector('--method', 'tools/call', '--tool-name', 'project_remove', '--tool-arg', 'name=insp');
  t.regex(removed, /removed/);
});
