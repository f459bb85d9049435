// Goal: a missing prerequisite skips its test with a reason that names what to install, fails it under
// CI=true instead, and `npm test`'s wrapper (run-ava.ts) lists the skips and counts honestly.
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { Implementation } from 'ava';
import { executableOnPath, isStaticElf, missingPrerequisites, prerequisitesIn, PREREQUISITES, SKIP_MARKER, strictPrerequisites, type Declare } from './prerequisites.ts';
import { renderSummary, TapReader } from './tap-summary.ts';

const root = mkdtempSync(join(tmpdir(), 'debughost-prerequisites-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

/** A declare function that records what was declared instead of declaring it. */
function recorder(): { declare: Declare<unknown>; declared: { title: string; skip: boolean; implementation: Implementation<[], unknown> }[] } {
  const declared: { title: string; skip: boolean; implementation: Implementation<[], unknown> }[] = [];
  const declare = Object.assign((title: string, implementation: Implementation<[], unknown>) => void declared.push({ title, skip: false, implementation }), {
    skip: (title: string, implementation: Implementation<[], unknown>) => void declared.push({ title, skip: true, implementation }),
  });
  return { declare, declared };
}

test('a tool is found on PATH only where it is executable', (t) => {
  writeFileSync(join(root, 'tool'), '#!/bin/sh\n');
  chmodSync(join(root, 'tool'), 0o755);
  writeFileSync(join(root, 'plain'), 'not executable');
  t.is(executableOnPath('tool', `/nonexistent:${root}`), join(root, 'tool'));
  t.is(executableOnPath('plain', root), null);
  t.is(executableOnPath('tool', ''), null);
});

test('a static ELF has no PT_INTERP header; a dynamic one (node itself) has', (t) => {
  // A minimal 64-bit little-endian ELF header with one program header of the given type.
  const elf = (type: number): string => {
    const file = Buffer.alloc(64 + 56);
    file.writeUInt32BE(0x7f454c46, 0);
    file[4] = 2;
    file[5] = 1;
    file.writeBigUInt64LE(64n, 32);
    file.writeUInt16LE(56, 54);
    file.writeUInt16LE(1, 56);
    file.writeUInt32LE(type, 64);
    const path = join(root, `elf-${type}`);
    writeFileSync(path, file);
    return path;
  };
  t.true(isStaticElf(elf(1)), 'PT_LOAD only');
  t.false(isStaticElf(elf(3)), 'PT_INTERP');
  t.false(isStaticElf(process.execPath));
});

test('a missing tool is named with the apt-get line that installs it; a pretended one too', async (t) => {
  const bare = { PATH: join(root, 'empty') };
  const lines = await missingPrerequisites(['python3', 'openssl', 'redis-server', 'etcd', 'promtool', 'chromium'], bare);
  t.deepEqual(lines, [
    'needs python3: python3 is not on PATH (apt-get install -y python3)',
    'needs openssl: openssl is not on PATH (apt-get install -y openssl)',
    'needs redis-server: redis-server is not on PATH (apt-get install -y redis-server)',
    'needs etcd: etcd is not on PATH (apt-get install -y etcd-server)',
    'needs promtool: promtool is not on PATH (apt-get install -y prometheus)',
    'needs chromium: chromium is not on PATH (apt-get install -y chromium)',
  ]);
  const pretended = await missingPrerequisites(['root', 'docker'], { ...process.env, DEBUGHOST_TEST_WITHOUT: 'root,docker' });
  t.is(pretended.length, 2);
  t.regex(pretended[1] ?? '', /^needs docker: pretended missing by DEBUGHOST_TEST_WITHOUT \(apt-get install -y docker\.io/);
  // Every prerequisite has a check that answers without throwing.
  for (const name of PREREQUISITES) t.true(Array.isArray(await missingPrerequisites([name], bare)), name);
});

test('CI=true (or any non-empty CI but false and 0) makes missing prerequisites fail', (t) => {
  t.true(strictPrerequisites({ CI: 'true' }));
  t.true(strictPrerequisites({ CI: '1' }));
  t.false(strictPrerequisites({}));
  t.false(strictPrerequisites({ CI: 'false' }));
  t.false(strictPrerequisites({ CI: '0' }));
});

test('guard: met declares the test as is; missing skips it with the reason in its title; under CI declares it failing', async (t) => {
  const met = recorder();
  (await prerequisitesIn({ PATH: process.env.PATH ?? '' }, [])).guard(met.declare)('runs', () => undefined);
  t.deepEqual(met.declared.map(({ title, skip }) => ({ title, skip })), [{ title: 'runs', skip: false }]);

  const bare = { PATH: join(root, 'empty') };
  const skipped = recorder();
  const missing = await prerequisitesIn(bare, ['redis-server']);
  t.false(missing.met);
  missing.guard(skipped.declare)('uses redis', () => undefined);
  t.deepEqual(skipped.declared.map(({ title, skip }) => ({ title, skip })), [
    { title: `uses redis${SKIP_MARKER}needs redis-server: redis-server is not on PATH (apt-get install -y redis-server)]`, skip: true },
  ]);

  const strict = recorder();
  (await prerequisitesIn({ ...bare, CI: 'true' }, ['redis-server'])).guard(strict.declare)('uses redis', () => undefined);
  t.is(strict.declared[0]?.title, 'uses redis');
  t.false(strict.declared[0]?.skip);
  let failed = '';
  const failing = strict.declared[0]?.implementation as (t: unknown) => void;
  failing({ fail: (message: string) => void (failed = message) });
  t.regex(failed, /^missing prerequisite under CI=true \(\.ci\/run installs it\): needs redis-server/);
});

const TAP = `TAP version 13
ok 1 - a › passes
#   a log line
not ok 2 - a › fails
  ---
    name: AssertionError
    message: boom
  ...
ok 3 - b › needs redis${SKIP_MARKER}needs redis-server: redis-server is not on PATH (apt-get install -y redis-server)] # SKIP
ok 4 - b › skipped by hand # SKIP
# b › after.always hook

1..4
# tests 4
# pass 1
# skip 2
# fail 1
`;

test('the TAP reader renders each test, counts, and keeps each skip with its reason', (t) => {
  const reader = new TapReader();
  const shown = TAP.split('\n').map((line) => reader.line(line)).filter((line) => line !== null);
  t.deepEqual(shown.slice(0, 3), ['  ✔ a › passes', '      a log line', '  ✘ a › fails']);
  t.true(shown.includes('    message: boom'));
  const summary = reader.summary();
  t.like(summary, { passed: 1, failed: 1, skipped: 2, complete: true, problem: null });
  t.deepEqual(summary.skips, [
    { title: 'b › needs redis', reason: 'needs redis-server: redis-server is not on PATH (apt-get install -y redis-server)' },
    { title: 'b › skipped by hand', reason: null },
  ]);
  const rendered = renderSummary(summary);
  t.is(rendered.at(-1), 'tests: 1 passed, 1 failed, 2 skipped');
  t.true(rendered.includes('  1 for: needs redis-server: redis-server is not on PATH (apt-get install -y redis-server)'));
  t.true(rendered.some((line) => line.startsWith('  1 for: no reason given')));
});

test("planted: a run cut off before ava's summary, or a summary that disagrees with the lines, is not complete", (t) => {
  const cut = new TapReader();
  for (const line of TAP.split('\n').slice(0, 9)) cut.line(line);
  t.like(cut.summary(), { complete: false, problem: 'ava ended without its summary (it crashed or was killed)' });
  const disagrees = new TapReader();
  for (const line of TAP.replace('# pass 1', '# pass 3').split('\n')) disagrees.line(line);
  t.like(disagrees.summary(), { complete: false, problem: 'ava counted pass 3, the lines say 1' });
  // A crashed file counts as a failure without a test line of its own: more failures than lines is the truth, not a mismatch.
  const crashed = new TapReader();
  for (const line of TAP.replace('# fail 1', '# fail 2').split('\n')) crashed.line(line);
  t.like(crashed.summary(), { failed: 2, complete: true });
});

/** run-ava.ts on the fixture, with redis-server pretended missing. */
function runAva(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string }> {
  const wrapper = new URL('run-ava.ts', import.meta.url).pathname;
  const fixture = new URL('prerequisites.fixture.ts', import.meta.url).pathname;
  const child = spawn(process.execPath, ['--import', 'tsx', wrapper, fixture], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...env, DEBUGHOST_TEST_WITHOUT: 'redis-server' } });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.resume();
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout })));
}

test('run-ava: a missing prerequisite is a named skip and exit 0; under CI=true a failure and exit 1', async (t) => {
  const { CI: _ci, ...withoutCi } = process.env;
  const [local, ci] = await Promise.all([runAva(withoutCi), runAva({ ...withoutCi, CI: 'true' })]);
  t.is(local.code, 0, local.stdout);
  t.regex(local.stdout, /Skipped 1 test\(s\)[^\n]*\n {2}1 for: needs redis-server: pretended missing by DEBUGHOST_TEST_WITHOUT \(apt-get install -y redis-server\)\n {6}needs redis-server\n/);
  t.regex(local.stdout, /\ntests: 1 passed, 0 failed, 1 skipped\n$/);
  t.is(ci.code, 1, ci.stdout);
  t.regex(ci.stdout, /missing prerequisite under CI=true/);
  t.regex(ci.stdout, /\ntests: 1 passed, 1 failed, 0 skipped\n$/);
});
