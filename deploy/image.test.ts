// The image for real: deploy/Dockerfile builds (on a stand-in Node base image made with debootstrap when the named
// one is not present: images cannot be pulled here), runs as uid 1000 without dev dependencies, turns healthy on
// /ready, and docker-compose.yml starts a 3-node cluster from it that elects one leader and answers MCP.
// Slow (3-8 minutes on 2 cores), so it runs only with DEBUGHOST_IMAGE_TEST=1 (see docs/operations.md).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, until } from '../node/local-cluster.ts';
import test from 'ava';
import { optIn } from '../actors/testing/prerequisites.ts';

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, '..');
const id = randomBytes(4).toString('hex');
const NODE_IMAGE = process.env.NODE_IMAGE ?? 'node:20-bookworm-slim';
const IMAGE = `debughost-test/debughost:${id}`;
const BUILD_STAGE = `debughost-test/debughost-build:${id}`;
/** debootstrap and the two builds took 3 + 3 min on an idle share of this machine, 10 + 10 min under a load of 13: 40 min leaves room. */
const IMAGE_TEST_TIMEOUT_MS = 40 * 60_000;

/** Run a command; stdout on success, an Error with its stderr tail on failure. Nothing goes through a shell. */
async function sh(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { cwd: ROOT, env: options.env ?? process.env, timeout: options.timeoutMs ?? 600_000, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failed = error as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${(failed.stderr ?? failed.message).trim().split('\n').slice(-5).join(' | ')}`);
  }
}

const exists = async (image: string): Promise<boolean> => sh('docker', ['image', 'inspect', image]).then(() => true, () => false);

const imageTest = (await optIn('DEBUGHOST_IMAGE_TEST', 'it builds the image and starts it (8 min idle, over 20 min on a busy 2-core machine)', 'docker', 'debootstrap', 'docker-compose')).guard(test);

imageTest('the image builds, runs non-root without dev dependencies, turns healthy, and compose starts a 3-node cluster from it', async (t) => {
  // Well past the runner's inactivity timeout: a stand-in base image and two builds take minutes on 2 cores.
  t.timeout(IMAGE_TEST_TIMEOUT_MS);
  const cleanups: (() => Promise<unknown>)[] = [];
  t.teardown(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => t.log(`clean-up: ${(error as Error).message}`));
  });
  let base = NODE_IMAGE;
  if (!(await exists(base))) {
    base = `debughost-test/node-base:${id}`;
    const started = performance.now();
    cleanups.push(() => sh('docker', ['rmi', base]));
    await sh(join(import.meta.dirname, 'image', 'make-base-image.sh'), [base], { timeoutMs: 900_000 });
    t.log(`${NODE_IMAGE} is not here: made a stand-in ${base} in ${Math.round((performance.now() - started) / 1000)} s`);
  }
  let started = performance.now();
  cleanups.push(() => sh('docker', ['rmi', IMAGE]));
  await sh('docker', ['build', '-q', '-f', 'deploy/Dockerfile', '--build-arg', `NODE_IMAGE=${base}`, '-t', IMAGE, '.']);
  // Tag the build stage too (all from the cache just made), so that removing both tags removes every layer made here.
  cleanups.push(() => sh('docker', ['rmi', BUILD_STAGE]));
  await sh('docker', ['build', '-q', '-f', 'deploy/Dockerfile', '--build-arg', `NODE_IMAGE=${base}`, '--target', 'build', '-t', BUILD_STAGE, '.']);
  t.log(`docker build: ${Math.round((performance.now() - started) / 1000)} s`);

  const config = JSON.parse(await sh('docker', ['image', 'inspect', '--format', '{{json .Config}}', IMAGE])) as { User: string; Healthcheck?: { Test: string[] } };
  t.is(config.User, '1000:1000');
  t.true(config.Healthcheck?.Test.join(' ').includes('DEBUGHOST_READY_URL'));
  const contents = await sh('docker', ['run', '--rm', '--entrypoint', 'sh', IMAGE, '-c', 'id -u; ls /opt/debughost; ls /opt/debughost/node_modules']);
  const [uid, ...listing] = contents.trim().split('\n');
  t.is(uid, '1000');
  for (const dev of ['typescript', 'esbuild', 'tsx', 'ava', 'eslint']) t.false(listing.includes(dev), `${dev} (a dev dependency) is not in the image`);
  t.true(listing.includes('dist') && listing.includes('@grpc'));

  // One node alone: Docker's own health check turns it healthy, and /ready says so through a loopback port.
  const container = `debughost-test-${id}`;
  cleanups.push(() => sh('docker', ['rm', '-f', '-v', container]));
  started = performance.now();
  await sh('docker', ['run', '-d', '--name', container, '--label', `debughost.test=${id}`, '-p', '127.0.0.1::2601', IMAGE, 'node', '--id', 'n1', '--grpc', '127.0.0.1:2701', '--mcp', '0.0.0.0:2601', '--seeds', '127.0.0.1:2701', '--data-dir', '/var/lib/debughost', '--insecure']);
  await until('the container to turn healthy', 120_000, async () => ((await sh('docker', ['inspect', '--format', '{{.State.Health.Status}}', container])).trim() === 'healthy' ? true : null), 1000);
  t.log(`container healthy after ${Math.round((performance.now() - started) / 1000)} s`);
  const port = (await sh('docker', ['port', container, '2601/tcp'])).trim().split('\n')[0]?.split(':').pop();
  const ready = (await (await fetch(`http://127.0.0.1:${port}/ready`)).json()) as { ready: boolean; leader: string };
  t.deepEqual(ready, { ready: true, leader: 'n1', role: 'leader' });

  // The compose file's three nodes, on free loopback ports, under a project name of their own.
  const ports = [await freePort(), await freePort(), await freePort()];
  const env = { ...process.env, DEBUGHOST_IMAGE: IMAGE, DEBUGHOST_N1_PORT: String(ports[0]), DEBUGHOST_N2_PORT: String(ports[1]), DEBUGHOST_N3_PORT: String(ports[2]) };
  const compose = ['-p', `debughost-test-${id}`, '-f', 'deploy/docker-compose.yml'];
  cleanups.push(() => sh('docker-compose', [...compose, 'down', '-v', '--timeout', '5'], { env }));
  await sh('docker-compose', [...compose, 'up', '-d', '--no-build', 'n1', 'n2', 'n3'], { env });
  const leaders = await until('three ready nodes with one leader', 120_000, async () => {
    const answers = await Promise.all(ports.map((p) => fetch(`http://127.0.0.1:${p}/ready`).then((r) => r.json() as Promise<{ ready: boolean; leader: string }>, () => null)));
    return answers.every((a) => a?.ready === true) ? new Set(answers.map((a) => a?.leader)) : null;
  }, 1000);
  t.is(leaders.size, 1, `one leader: ${[...leaders].join(', ')}`);
  const initialize = await fetch(`http://127.0.0.1:${ports[1]}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'image-test', version: '1' } } }),
  });
  t.is(initialize.status, 200);
  t.regex(await initialize.text(), /"serverInfo":\{"name":"debughost"/);
});
