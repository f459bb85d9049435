// Goal: the Docker runtime's pure parts without an engine — the create request (hardening, labels), limits validation, usage arithmetic, event parsing and back-off, image references, the prune plan, the image ledger and container records on disk, and the start/prune lock.
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dockerLimits } from './docker-config.ts';
import { CAPABILITIES_KEPT, createOptions, LABELS } from './docker-container-spec.ts';
import { parseContainerEvent, reconnectDelayMs } from './docker-events.ts';
import { ImageLedger } from './docker-image-ledger.ts';
import { imageMatches, normalizeReference, planPrune, referenceProblem, StartPruneLock, tarballCandidates, type PruneCandidate } from './docker-images.ts';
import { ContainerRecords } from './docker-state.ts';
import { cpuPercentBetween, cpuPointOf, memoryBytesOf } from './docker-usage.ts';
import type { WorkloadSpec } from './runtime.ts';

const root = mkdtempSync(join(tmpdir(), 'debughost-docker-pure-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

const spec: WorkloadSpec = {
  project: { tenant: 'acme', name: 'web' },
  image: 'node:20',
  command: 'npm run dev',
  env: { API_TOKEN: 'secret-value', MODE: 'dev' },
  ports: { default: 20001 },
  restart: 'on-failure',
  node: 'n1',
};

test('the create request: labels name only project and node, env stays in Env, hardening on every container', (t) => {
  const options = createOptions(spec, { node: 'n1', publishHost: '127.0.0.1', pidsDefault: 1024 });
  t.deepEqual(options.Labels, { [LABELS.project]: 'projects/acme/web', [LABELS.tenant]: 'acme', [LABELS.name]: 'web', [LABELS.node]: 'n1' });
  t.false(JSON.stringify(options.Labels).includes('secret-value'));
  t.deepEqual(options.Env, ['API_TOKEN=secret-value', 'MODE=dev', 'PORT=20001']);
  t.deepEqual(options.Cmd, ['/bin/sh', '-c', 'npm run dev']);
  t.is(options.HostConfig?.PidsLimit, 1024);
  t.deepEqual(options.HostConfig?.CapDrop, ['ALL']);
  t.deepEqual(options.HostConfig?.CapAdd, [...CAPABILITIES_KEPT]);
  t.deepEqual(options.HostConfig?.SecurityOpt, ['no-new-privileges']);
  t.false(CAPABILITIES_KEPT.some((name) => ['NET_RAW', 'MKNOD', 'SYS_ADMIN', 'SYS_CHROOT', 'SETFCAP', 'SETPCAP', 'NET_ADMIN', 'SYS_PTRACE'].includes(name)));
  t.deepEqual(options.HostConfig?.PortBindings, { '20001/tcp': [{ HostIp: '127.0.0.1', HostPort: '20001' }] });
  t.is(createOptions({ ...spec, limits: { pids: 64 } }, { node: 'n1', publishHost: '127.0.0.1', pidsDefault: 1024 }).HostConfig?.PidsLimit, 64);
});

test('limits are validated once, naming the key to fix', (t) => {
  t.is(dockerLimits().usageIntervalMs, 2000);
  t.is(dockerLimits({ usageIntervalMs: 500 }).usageIntervalMs, 500);
  t.throws(() => dockerLimits({ pidsDefault: 0 }), { message: 'docker runtime config: pidsDefault must be a positive whole number, got 0' });
  t.throws(() => dockerLimits({ stopGraceMs: 1.5 }), { message: 'docker runtime config: stopGraceMs must be a positive whole number, got 1.5' });
  t.throws(() => dockerLimits({ eventsReconnectMsMin: 9000 }), { message: 'docker runtime config: eventsReconnectMsMin (9000) must not exceed eventsReconnectMsMax (5000)' });
});

test('usage: CPU is percent of one core between two samples, memory excludes inactive page cache (cgroup v1 and v2)', (t) => {
  const first = cpuPointOf({ read: '2026-01-01T00:00:00.000000000Z', cpu_stats: { cpu_usage: { total_usage: 1_000_000_000 } } });
  const second = cpuPointOf({ read: '2026-01-01T00:00:02.000000000Z', cpu_stats: { cpu_usage: { total_usage: 3_000_000_000 } } });
  if (first === null || second === null) return t.fail('points not read');
  t.is(cpuPercentBetween(first, second), 100);
  t.is(cpuPercentBetween(first, { cpuNs: 4_000_000_000, atMs: second.atMs }), 150);
  t.is(cpuPercentBetween(first, first), null);
  t.is(cpuPercentBetween(second, { cpuNs: 0, atMs: second.atMs + 1000 }), 0, 'a reset counter (new run) never goes negative');
  t.is(cpuPointOf({ read: '0001-01-01T00:00:00Z' }), null);
  t.is(memoryBytesOf({ memory_stats: { usage: 10_000, stats: { total_inactive_file: 4_000 } } }), 6_000);
  t.is(memoryBytesOf({ memory_stats: { usage: 10_000, stats: { inactive_file: 1_000 } } }), 9_000);
  t.is(memoryBytesOf({ memory_stats: {} }), null);
});

test('events: only container start/die/oom lines with a container id are acted on; back-off doubles to its cap', (t) => {
  const line = (fields: object): string => JSON.stringify({ Type: 'container', Action: 'die', Actor: { ID: 'a'.repeat(64), Attributes: { exitCode: '137', 'debughost.node': 'n1' } }, timeNano: 5, ...fields });
  t.deepEqual(parseContainerEvent(line({})), { action: 'die', containerId: 'a'.repeat(64), attributes: { exitCode: '137', 'debughost.node': 'n1' }, timeNano: 5 });
  t.is(parseContainerEvent(line({ Action: 'destroy' })), null);
  t.is(parseContainerEvent(line({ Type: 'image' })), null);
  t.is(parseContainerEvent(line({ Actor: { ID: '../etc' } })), null);
  t.is(parseContainerEvent('{"Type":"container","Action":"di'), null);
  t.is(parseContainerEvent('null'), null);
  t.deepEqual(
    [0, 1, 2, 3, 10, 100].map((attempt) => reconnectDelayMs(attempt, 100, 5000)),
    [100, 200, 400, 800, 5000, 5000],
  );
});

test('image references: validation, the familiar form, and matching by name, digest, id or id prefix', (t) => {
  for (const good of ['node:20', 'busybox', 'registry.local:5000/team/app:1', 'team/app@sha256:' + 'b'.repeat(64), 'sha256:' + 'c'.repeat(64), 'c'.repeat(12)]) t.is(referenceProblem(good), null, good);
  for (const bad of ['', 'Node:20', 'a b', 'x:', '../x', 42]) t.truthy(referenceProblem(bad), String(bad));
  t.is(normalizeReference('busybox'), 'busybox:latest');
  t.is(normalizeReference('docker.io/library/node:20'), 'node:20');
  t.is(normalizeReference('registry.local:5000/app'), 'registry.local:5000/app:latest');
  const image = { id: `sha256:${'d'.repeat(64)}`, references: ['node:20', 'team/app:1'], digests: [`node@sha256:${'e'.repeat(64)}`] };
  t.true(imageMatches(image, 'docker.io/library/node:20'));
  t.true(imageMatches(image, 'team/app:1'));
  t.false(imageMatches(image, 'team/app'));
  t.true(imageMatches(image, 'd'.repeat(12)));
  t.true(imageMatches(image, `node@sha256:${'e'.repeat(64)}`));
  t.false(imageMatches(image, `node@sha256:${'f'.repeat(64)}`));
  t.deepEqual(tarballCandidates('team/app:1'), ['team_app_1.tar', 'team_app_1.tar.gz', 'team_app_1.tgz']);
});

const candidate = (name: string, sizeBytes: number, lastUsedAtMs: number | null, extra: Partial<PruneCandidate> = {}): PruneCandidate => ({
  id: `sha256:${name.padEnd(64, '0')}`,
  references: [`${name}:1`],
  digests: [],
  sizeBytes,
  createdAtMs: 0,
  lastUsedAtMs,
  inUse: false,
  ...extra,
});

test('the prune plan: never-used first, then oldest use, only until the budget fits; kept and in-use images never', (t) => {
  const images = [candidate('a', 10, 300), candidate('b', 20, 100), candidate('c', 30, null), candidate('d', 40, 50, { inUse: true }), candidate('e', 50, null)];
  // Total 150, budget 100, e kept, d in use: c (never used) goes first, then b (oldest use); then it fits.
  const plan = planPrune(images, 100, ['e:1']);
  t.is(plan.totalBytes, 150);
  t.deepEqual(
    plan.remove.map((image) => image.references[0]),
    ['c:1', 'b:1'],
  );
  t.deepEqual(plan.blocked, []);
  t.deepEqual(planPrune(images, 150, []).remove, [], 'nothing goes while the budget fits');
  const tight = planPrune(images, 0, ['docker.io/library/e:1']);
  t.deepEqual(
    tight.remove.map((image) => image.references[0]),
    ['c:1', 'b:1', 'a:1'],
  );
  t.deepEqual(
    tight.blocked.map((image) => [image.references[0], image.reason]),
    [
      ['d:1', 'inUse'],
      ['e:1', 'keep'],
    ],
  );
  // Against a dumb reference: for random inputs, nothing kept or in use is removed, the order is by last use, and it stops as soon as it fits.
  let seed = 7;
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let round = 0; round < 300; round += 1) {
    const set = Array.from({ length: 1 + Math.floor(next() * 8) }, (_, index) => candidate(`i${index}`, 1 + Math.floor(next() * 100), next() < 0.3 ? null : Math.floor(next() * 1000), { inUse: next() < 0.2 }));
    const keep = set.filter(() => next() < 0.2).map((image) => image.references[0] as string);
    const budget = Math.floor(next() * 400);
    const result = planPrune(set, budget, keep);
    const removable = set.filter((image) => !image.inUse && !keep.includes(image.references[0] as string));
    t.true(result.remove.every((image) => removable.includes(image)));
    const used = result.remove.map((image) => image.lastUsedAtMs ?? -1);
    t.deepEqual(used, [...used].sort((a, b) => a - b));
    const left = result.totalBytes - result.remove.reduce((sum, image) => sum + image.sizeBytes, 0);
    const withoutLast = left + (result.remove.at(-1)?.sizeBytes ?? 0);
    t.true(result.remove.length === 0 || withoutLast > budget, 'no image removed after the budget was met');
    t.true(left <= budget || result.remove.length === removable.length, 'stops short only when nothing removable is left');
  }
});

test('the image ledger keeps last use per image and project across a reopen, bounded, and ignores a corrupt file', (t) => {
  const dir = mkdtempSync(join(root, 'ledger-'));
  const id = (n: number): string => `sha256:${String(n).padStart(64, '0')}`;
  const ledger = new ImageLedger(dir, { imageProjectsMax: 2, imagesTrackedMax: 3 });
  ledger.recordStart(id(1), { tenant: 't', name: 'a' }, 100);
  ledger.recordStart(id(1), { tenant: 't', name: 'b' }, 200);
  ledger.recordStart(id(1), { tenant: 't', name: 'c' }, 300);
  ledger.recordStart(id(1), { tenant: 't', name: 'b' }, 400);
  t.deepEqual(ledger.get(id(1)), {
    lastUsedAtMs: 400,
    projects: [
      { project: { tenant: 't', name: 'b' }, lastUsedAtMs: 400 },
      { project: { tenant: 't', name: 'c' }, lastUsedAtMs: 300 },
    ],
  });
  for (const n of [2, 3, 4]) ledger.recordStart(id(n), { tenant: 't', name: 'x' }, 500 + n);
  t.is(ledger.get(id(1)), null, 'the least recently used image is dropped over the bound');
  const reopened = new ImageLedger(dir, { imageProjectsMax: 2, imagesTrackedMax: 3 });
  t.is(reopened.get(id(4))?.lastUsedAtMs, 504);
  t.is(statSync(join(dir, 'images.json')).mode & 0o777, 0o600);
  reopened.forget([id(4)]);
  t.is(new ImageLedger(dir, { imageProjectsMax: 2, imagesTrackedMax: 3 }).get(id(4)), null);
  writeFileSync(join(dir, 'images.json'), '{"version":1,"images":{"sha256:zz":{}}}');
  t.is(new ImageLedger(dir, { imageProjectsMax: 2, imagesTrackedMax: 3 }).get(id(2)), null);
});

test('container records: the spec is read back only for the same container id and a valid shape; files are 0600', (t) => {
  const dir = mkdtempSync(join(root, 'records-'));
  const records = new ContainerRecords(dir);
  const containerId = 'f'.repeat(64);
  records.write('debughost-n1-acme-web-1234', { containerId, spec });
  t.deepEqual(records.read('debughost-n1-acme-web-1234', containerId), { containerId, spec });
  t.is(records.read('debughost-n1-acme-web-1234', 'e'.repeat(64)), null, 'a record of an earlier container with that name');
  const path = join(dir, 'containers', 'debughost-n1-acme-web-1234.json');
  t.is(statSync(path).mode & 0o777, 0o600);
  writeFileSync(path, JSON.stringify({ containerId, spec: { ...spec, restart: 'sometimes' } }));
  t.is(records.read('debughost-n1-acme-web-1234', containerId), null);
  records.write('keep-me', { containerId, spec });
  records.removeAllBut(new Set(['keep-me']));
  t.is(records.read('debughost-n1-acme-web-1234', containerId), null);
  t.truthy(JSON.parse(readFileSync(join(dir, 'containers', 'keep-me.json'), 'utf8')));
});

test('the start/prune lock: starts run together, a prune waits for them and starts wait for the prune', async (t) => {
  const lock = new StartPruneLock();
  const order: string[] = [];
  let releaseStart = (): void => undefined;
  const slowStart = lock.whileStarting(async () => {
    order.push('start1 begin');
    await new Promise<void>((resolve) => {
      releaseStart = resolve;
    });
    order.push('start1 end');
  });
  const second = lock.whileStarting(async () => {
    order.push('start2');
  });
  await second;
  const prune = lock.whilePruning(async () => {
    order.push('prune');
  });
  const third = lock.whileStarting(async () => {
    order.push('start3');
  });
  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(order, ['start1 begin', 'start2']);
  releaseStart();
  await Promise.all([slowStart, prune, third]);
  t.deepEqual(order, ['start1 begin', 'start2', 'start1 end', 'prune', 'start3']);
});
