// Goal: `debughost up` supervises its nodes with real processes: kill -9 of one node leaves the other two serving and
// the dead one is back within seconds with its data; SIGTERM to up stops every node and every project; a node that dies
// before the cluster ever came up stops the rest with one line; the test-only --no-fsync is refused without the test variable.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { countMarked } from '../chaos/workload-mcp.ts';
import { adminTokenPath, readAdminToken } from './cluster-files.ts';
import { withMetadata } from './peer-auth.ts';
import { Admin, StatusRequestSchema } from '../proto/gen/admin_pb.ts';
import { KV, PutRequestSchema } from '../proto/gen/kv_pb.ts';
import { callUnary, makeClientConstructor } from '../proto/grpc.ts';
import { bin, sleep, until } from './local-cluster.ts';

const AdminClient = makeClientConstructor(Admin);
const KvClient = makeClientConstructor(KV);
const MARK = `DH_UP_TEST_${process.pid}`;
/** A node that cannot start stops the others within their stop grace (20 s); far more than that is a hang. */
const UP_EXIT_WAIT_MS = 90_000;

const roots: string[] = [];
const ups: ChildProcess[] = [];
test.after.always(async () => {
  for (const up of ups) if (up.exitCode === null && up.signalCode === null) up.kill('SIGKILL');
  // A test that failed half-way left up's nodes behind it (SIGKILL of up cannot stop them): stop them by pid.
  for (const root of roots) for (const pid of processesUnder(root)) process.kill(pid, 'SIGKILL');
  await sleep(200);
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A base port P with P+1..P+3 (MCP) and P+101..P+103 (gRPC) free, away from the 2600 default other clusters use. */
async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const base = 30_000 + Math.floor(Math.random() * 300) * 100;
    const ports = [1, 2, 3, 101, 102, 103].map((offset) => base + offset);
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error('no free base port');
}

interface Up {
  readonly child: ChildProcess;
  readonly base: number;
  readonly dataDir: string;
  output: string;
  readonly exited: Promise<number | null>;
}

function startUp(args: string[], env: NodeJS.ProcessEnv = process.env): Up {
  const root = mkdtempSync(join(tmpdir(), 'debughost-up-'));
  roots.push(root);
  const dataDir = join(root, 'data');
  const base = Number(args[args.indexOf('--base-port') + 1]);
  const child = spawn(process.execPath, [bin, 'up', '--data-dir', dataDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  ups.push(child);
  const up: Up = { child, base, dataDir, output: '', exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
  child.stdout?.on('data', (chunk: Buffer) => (up.output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (up.output += chunk.toString()));
  return up;
}

/** The node processes up runs now, by node id, read from /proc (up's children and their --id). */
function nodePids(up: Up): Map<string, number> {
  const pids = new Map<string, number>();
  const children = readFileSync(`/proc/${up.child.pid}/task/${up.child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  for (const pid of children) {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const id = argv[argv.indexOf('--id') + 1];
    if (id !== undefined) pids.set(id, Number(pid));
  }
  return pids;
}

/** Live processes whose command line names a path under up's data dir: its nodes, if any outlived it. */
function processesUnder(dataDir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(dataDir) && alive(Number(entry))) pids.push(Number(entry));
    } catch {
      // ended while we looked
    }
  }
  return pids;
}

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));

async function put(address: string, key: string, value: string, token: string): Promise<void> {
  const client = new KvClient(address, withMetadata(null, () => ({ authorization: `Bearer ${token}` })));
  try {
    await callUnary(client, 'put', create(PutRequestSchema, { key, value }), { deadline: Date.now() + 5000 });
  } finally {
    client.close();
  }
}

async function answers(address: string): Promise<boolean> {
  const client = new AdminClient(address, grpc.credentials.createInsecure());
  try {
    const status = await callUnary(client, 'status', create(StatusRequestSchema, {}), { deadline: Date.now() + 1000 });
    return status.leaderId !== '';
  } catch {
    return false;
  } finally {
    client.close();
  }
}

test.serial('kill -9 of one node: the other two keep serving, the dead one is back within seconds; SIGTERM leaves no node and no project behind', async (t) => {
  const base = await freeBasePort();
  const up = startUp(['--nodes', '3', '--base-port', String(base)]);
  await until('the cluster up', 90_000, () => (/cluster up/.test(up.output) ? true : null), 100).catch((error: Error) => {
    throw new Error(`${error.message}\n${up.output}`);
  });
  const grpcOf = (i: number): string => `127.0.0.1:${base + 100 + i}`;
  // Secure by default: up made an admin token in its data dir, as it printed.
  const token = await readAdminToken(adminTokenPath(up.dataDir));
  t.true(up.output.includes(`Authorization: Bearer ${token}`), 'up prints the claude mcp add line with the token');
  const mcp = new Client({ name: 'up-test', version: '1' });
  await mcp.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${base + 1}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
  try {
    // A project, so that the final stop has a workload to take down.
    const started = (await mcp.callTool({ name: 'project_start', arguments: { name: 'sleeper', command: 'exec sleep 600', env: { [MARK]: 'sleeper' }, ports: [], restart: 'always' } }, undefined, { timeout: 60_000 })) as { isError?: boolean };
    t.falsy(started.isError);
    await until('the project running', 30_000, () => (countMarked(MARK).get('sleeper') === 1 ? true : null));
  } finally {
    await mcp.close();
  }

  const before = nodePids(up);
  t.deepEqual([...before.keys()].sort(), ['n1', 'n2', 'n3']);
  const victim = before.get('n2') as number;
  const killedAt = performance.now();
  process.kill(victim, 'SIGKILL');
  await until('up to notice', 10_000, () => (/node n2 killed by SIGKILL; the others keep serving; restarting it/.test(up.output) ? true : null));
  // While n2 is down (or restarting), n1 and n3 take writes: a quorum of two. If n2 led, the first writes
  // wait out the election of a new leader (UNAVAILABLE meanwhile; the margin is for a loaded machine).
  const putSoon = (address: string, key: string): Promise<boolean> =>
    until(`a write through ${address}`, 30_000, () => put(address, key, 'x', token).then(() => true, () => null), 200);
  for (let i = 0; i < 5; i += 1) {
    await putSoon(grpcOf(1), `up-test/n1-${i}`);
    await putSoon(grpcOf(3), `up-test/n3-${i}`);
  }
  t.true(up.child.exitCode === null, 'up is still running');
  await until('n2 back', 60_000, async () => ((await answers(grpcOf(2))) && /node n2 is back/.test(up.output) ? true : null), 200);
  const backSeconds = (performance.now() - killedAt) / 1000;
  t.log(`n2 answered again ${backSeconds.toFixed(1)} s after kill -9 (load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]})`);
  // "Within seconds": a node start takes a few seconds here; the margin is for a loaded machine.
  t.true(backSeconds < 45, `back after ${backSeconds.toFixed(1)} s`);
  const after = nodePids(up);
  t.not(after.get('n2'), victim, 'n2 runs as a new process');
  t.is(after.get('n1'), before.get('n1'), 'n1 was not restarted');
  t.is(after.get('n3'), before.get('n3'), 'n3 was not restarted');
  // It rejoined with the same id and data dir, and takes writes again.
  await put(grpcOf(2), 'up-test/n2', 'x', token);

  up.child.kill('SIGTERM');
  t.is(await up.exited, 0, up.output);
  for (const pid of after.values()) t.false(alive(pid), `node pid ${pid} left running`);
  await until('no workload left', 10_000, () => (countMarked(MARK).size === 0 ? true : null)).catch(() => undefined);
  t.deepEqual([...countMarked(MARK).entries()], [], 'a project outlived its cluster');
  t.true(existsSync(join(up.dataDir, 'n2')), 'the data dirs stay');
});

test.serial('a node that dies before the cluster ever came up stops the others, with one line saying which', async (t) => {
  const base = await freeBasePort();
  // n2's MCP port is taken: n2 cannot start, so there is no cluster to supervise.
  const blocker = createServer().listen(base + 2, '127.0.0.1');
  try {
    const up = startUp(['--nodes', '3', '--base-port', String(base)]);
    // Bounded: a CI run once saw up never exit here (not reproduced in 15 runs since); fail with what was alive then.
    const code = await Promise.race([up.exited, sleep(UP_EXIT_WAIT_MS).then(() => 'hung' as const)]);
    if (code === 'hung') {
      const left = processesUnder(up.dataDir).map((pid) => `${pid}: ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').slice(0, 200)}`);
      up.child.kill('SIGKILL');
      for (const pid of processesUnder(up.dataDir)) process.kill(pid, 'SIGKILL');
      return t.fail(`up did not exit within ${UP_EXIT_WAIT_MS / 1000} s of n2's failure; alive under its data dir:\n${left.join('\n')}\nits output:\n${up.output}`);
    }
    t.is(code, 1, up.output);
    t.regex(up.output, /debughost up: node n2 exited with code \d+ before it was ready; stopping the others/);
    t.notRegex(up.output, /restarting/);
    t.deepEqual(processesUnder(up.dataDir), [], 'every node up started has exited with it');
  } finally {
    blocker.close();
  }
});

test('--no-fsync is refused without DEBUGHOST_TEST_FAULTS=1, in one line, before anything starts', async (t) => {
  const { DEBUGHOST_TEST_FAULTS: _faults, ...env } = process.env;
  const up = startUp(['--nodes', '1', '--base-port', String(await freeBasePort()), '--no-fsync'], env);
  t.is(await up.exited, 2);
  t.is(up.output, 'debughost up: --no-fsync is a test-only fault (acknowledged writes can be lost when the machine crashes); a production node refuses it: set DEBUGHOST_TEST_FAULTS=1 to use it in a test\n');
  t.false(existsSync(up.dataDir));
  const node = spawn(process.execPath, [bin, 'node', '--id', 'x', '--grpc', '127.0.0.1:1', '--mcp', '127.0.0.1:2', '--seeds', '127.0.0.1:1', '--data-dir', up.dataDir, '--unsafe-ack-before-commit'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  node.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  t.is(await new Promise((resolve) => node.once('exit', resolve)), 2);
  t.regex(stderr, /^debughost node: --unsafe-ack-before-commit is a test-only fault \(writes are acknowledged before they commit and WILL be lost\); a production node refuses it: set DEBUGHOST_TEST_FAULTS=1 to use it in a test\n$/);
});
