// The alert rules and the Prometheus config pass promtool (check rules, check config, and the unit tests in
// alerts.test.yml), and promtool catches a planted bug: an alert whose threshold no longer fires fails its unit test.
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { testWith } from './testing/tools.ts';

const run = promisify(execFile);
const DIR = join(import.meta.dirname, 'prometheus');
const withPromtool = await testWith('promtool');

/** promtool's exit code and output (it exits 1 on a failed check). */
async function promtool(args: string[], cwd = DIR): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run('promtool', args, { cwd });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, output: failed.stdout + failed.stderr };
  }
}

withPromtool('promtool check rules: every alert parses', async (t) => {
  const { code, output } = await promtool(['check', 'rules', 'alerts.yml']);
  t.is(code, 0, output);
  t.regex(output, /SUCCESS: 12 rules found/);
});

withPromtool('promtool check config: the compose Prometheus config and the rules it loads', async (t) => {
  const { code, output } = await promtool(['check', 'config', 'prometheus.yml']);
  t.is(code, 0, output);
  t.regex(output, /SUCCESS: 1 rule files found/);
});

withPromtool('promtool test rules: each alert fires on its failure, after its for, with its labels and text', async (t) => {
  const { code, output } = await promtool(['test', 'rules', 'alerts.test.yml']);
  t.is(code, 0, output);
  t.regex(output, /SUCCESS/);
});

withPromtool('a planted bug in a rule (no-leader threshold inverted) fails the unit tests, naming the alert', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'debughost-alerts-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const rules = await readFile(join(DIR, 'alerts.yml'), 'utf8');
  const planted = rules.replace('expr: debughost_raft_has_leader == 0', 'expr: debughost_raft_has_leader == 1');
  t.not(planted, rules, 'the plant applies');
  await writeFile(join(dir, 'alerts.yml'), planted);
  await copyFile(join(DIR, 'alerts.test.yml'), join(dir, 'alerts.test.yml'));
  t.is((await promtool(['check', 'rules', 'alerts.yml'], dir)).code, 0, 'still valid PromQL: only the unit tests can catch it');
  const { code, output } = await promtool(['test', 'rules', 'alerts.test.yml'], dir);
  t.is(code, 1);
  t.regex(output, /alertname: DebughostNoLeader/);
});
