// docker-compose.yml is valid for the real tool (`docker-compose config`, Debian's 1.29) and, resolved, forms a
// 3-node cluster that Prometheus scrapes and Grafana shows; a typo and a broken seed list are both caught.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { composeProblems, prometheusTargets } from './testing/compose-checks.ts';
import { testWith } from './testing/tools.ts';

const run = promisify(execFile);
const COMPOSE = join(import.meta.dirname, 'docker-compose.yml');
const withCompose = await testWith('docker-compose');
const targets = prometheusTargets(await readFile(join(import.meta.dirname, 'prometheus', 'prometheus.yml'), 'utf8'));

/** `docker-compose config` of a compose file: its exit code, the resolved YAML, and its errors. */
async function composeConfig(file: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    // The project directory stays deploy/, so relative mounts resolve as for the real file.
    const { stdout, stderr } = await run('docker-compose', ['-f', file, '--project-directory', import.meta.dirname, 'config'], { env: { ...process.env, DEBUGHOST_IMAGE: '', NODE_IMAGE: '' } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

withCompose('docker-compose config accepts the file and the resolved cluster holds together', async (t) => {
  const { code, stdout, stderr } = await composeConfig(COMPOSE);
  t.is(code, 0, stderr);
  t.deepEqual(composeProblems(stdout, targets), []);
  t.deepEqual(targets, ['n1:2601', 'n2:2602', 'n3:2603']);
});

withCompose('a planted typo is refused by docker-compose, a planted broken seed list by the checks', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'debughost-compose-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const original = await readFile(COMPOSE, 'utf8');
  const typo = original.replace('  stop_grace_period: 20s', '  stop_grace_periood: 20s');
  t.not(typo, original);
  await writeFile(join(dir, 'typo.yml'), typo);
  const refused = await composeConfig(join(dir, 'typo.yml'));
  t.not(refused.code, 0);
  t.regex(refused.stderr, /stop_grace_periood/);
  const seeds = original.replace('--seeds, "n1:2701,n2:2701,n3:2701", --data-dir, /var/lib/debughost, --insecure]\n    environment:\n      DEBUGHOST_READY_URL: "http://127.0.0.1:${DEBUGHOST_N3_PORT', '--seeds, "n1:2701,n2:2701", --data-dir, /var/lib/debughost, --insecure]\n    environment:\n      DEBUGHOST_READY_URL: "http://127.0.0.1:${DEBUGHOST_N3_PORT');
  t.not(seeds, original);
  await writeFile(join(dir, 'seeds.yml'), seeds);
  const resolved = await composeConfig(join(dir, 'seeds.yml'));
  t.is(resolved.code, 0, 'valid for docker-compose: only the checks can catch it');
  t.deepEqual(composeProblems(resolved.stdout, targets), ['n3: --seeds is n1:2701,n2:2701, not n1:2701,n2:2701,n3:2701']);
});

test('the checks name a node whose port is published beyond loopback or remapped', (t) => {
  const node = (name: string, port: number, published: string): string =>
    `  ${name}:\n    command: [node, --id, ${name}, --grpc, "${name}:2701", --mcp, "0.0.0.0:${port}", --seeds, "n1:2701,n2:2701,n3:2701", --data-dir, /d]\n    environment: {DEBUGHOST_READY_URL: "http://127.0.0.1:${port}/ready"}\n    ports: ["${published}"]\n    volumes: ["${name}-data:/d"]\n`;
  const config = `services:\n${node('n1', 2601, '127.0.0.1:2601:2601/tcp')}${node('n2', 2602, '0.0.0.0:2602:2602/tcp')}${node('n3', 2603, '127.0.0.1:9999:2603/tcp')}`;
  t.deepEqual(composeProblems(config, targets).filter((p) => /^n[23]:/.test(p)), [
    'n2: MCP port 2602 is not published on 127.0.0.1 under the same number (MCP refuses other Host headers)',
    'n2: a port is published beyond 127.0.0.1',
    'n3: MCP port 2603 is not published on 127.0.0.1 under the same number (MCP refuses other Host headers)',
  ]);
});
