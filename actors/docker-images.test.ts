// Goal: a node's images against a real engine — list with size, last use and projects (kept across a restart), prune to a budget oldest-used first without touching kept or in-use images, prewarm from a docker save tarball, and one-line errors for bad input.
import test, { type ExecutionContext } from 'ava';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { LogStore } from './logs.ts';
import { DockerRuntime } from './runtime-docker.ts';
import { LABELS } from './docker-container-spec.ts';
import { RuntimeError, type WorkloadSpec } from './runtime.ts';
import { importImage, testDocker } from './testing/dockerd.ts';
import { prerequisites } from './testing/prerequisites.ts';
import { realClock } from './testing/real.ts';

const root = mkdtempSync(join(tmpdir(), 'debughost-docker-images-'));
const node = `itest${process.pid}x${Math.floor(Math.random() * 1e6)}`;
// The runtime manages only this namespace: other test runs share the engine and their images are not ours to prune.
const scope = `debughost-test-${node}`;
const dockerPrerequisites = await prerequisites('docker', 'busybox-static');
const engine = dockerPrerequisites.met ? await testDocker(`${scope}-base/busybox:1`) : null;
const logs = new LogStore({ dir: join(root, 'logs'), wallNowMs: () => Date.now() });
const runtimes: DockerRuntime[] = [];

/** A serial test, or a skipped one that names what to install (a failure under CI=true). */
const dockerTest = (title: string, body: (t: ExecutionContext) => Promise<void>): void => dockerPrerequisites.guard(test.serial)(title, body);

test.after.always(async () => {
  for (const runtime of runtimes) runtime.detach();
  if (engine !== null) {
    const own = await engine.docker.listContainers({ all: true, filters: { label: [`${LABELS.node}=${node}`] } });
    for (const info of own) await engine.docker.getContainer(info.Id).remove({ force: true }).catch(() => undefined);
    for (const image of await engine.docker.listImages({ filters: { reference: [`${scope}/*`] } })) {
      await engine.docker.getImage(image.Id).remove({ force: true }).catch(() => undefined);
    }
    await engine.cleanUp();
  }
  await logs.close();
  rmSync(root, { recursive: true, force: true });
});

const MB = 1024 * 1024;
const ref = (name: string): string => `${scope}/${name}:1`;
const open = async (stateDir: string): Promise<DockerRuntime> => {
  const runtime = await DockerRuntime.open({ node, stateDir, logs, clock: realClock, wallNowMs: () => Date.now(), imageReference: `${scope}/*`, limits: { stopGraceMs: 1000 } });
  runtimes.push(runtime);
  return runtime;
};
const spec = (name: string, image: string, command: string): WorkloadSpec => ({ project: { tenant: 'ti', name }, image, command, env: {}, ports: {}, restart: 'never', node });
const sizeOf = (images: readonly { references: readonly string[]; sizeBytes: number }[], reference: string): number => images.find((image) => image.references.includes(reference))?.sizeBytes ?? Number.NaN;

dockerTest('images of several sizes: listed with last use; prune keeps kept and in-use ones, removes oldest-used first and reaches the budget; prewarm loads a saved one back', async (t) => {
  if (engine === null) return;
  // busybox (~2 MB) plus a file: a 4, b 8, c 12, d 16, e 2 MB.
  const sizes: Record<string, number> = { a: 4, b: 8, c: 12, d: 16, e: 2 };
  for (const [name, mb] of Object.entries(sizes)) importImage(ref(name), mb * MB);
  const stateDir = join(root, 'state');
  const runtime = await open(stateDir);
  // a used first, then b (both containers removed afterwards); c stays in use; d never used; e is kept by the caller.
  for (const name of ['a', 'b', 'c']) {
    await runtime.start(spec(name, ref(name), name === 'c' ? 'exec sleep 600' : 'exit 0'));
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await runtime.remove({ tenant: 'ti', name: 'a' });
  await runtime.remove({ tenant: 'ti', name: 'b' });

  const listed = await runtime.images();
  t.deepEqual(listed.map((image) => image.references[0]).sort(), ['a', 'b', 'c', 'd', 'e'].map(ref));
  for (const [name, mb] of Object.entries(sizes)) {
    const size = sizeOf(listed, ref(name));
    t.true(size >= mb * MB && size < (mb + 4) * MB, `${name}: ${size} bytes`);
  }
  const byName = (name: string) => listed.find((image) => image.references.includes(ref(name)));
  t.is(byName('a')?.repository, `${scope}/a`);
  t.is(byName('a')?.tag, '1');
  t.deepEqual(byName('a')?.usedBy.map((use) => use.project), [{ tenant: 'ti', name: 'a' }]);
  t.true((byName('a')?.lastUsedAtMs ?? 0) < (byName('b')?.lastUsedAtMs ?? 0));
  t.is(byName('d')?.lastUsedAtMs, null);
  t.deepEqual(byName('c')?.inUseBy, [{ tenant: 'ti', name: 'c' }]);
  t.is(byName('c')?.containers, 1);
  t.deepEqual(byName('a')?.inUseBy, []);

  // The ledger survives a node restart.
  runtime.detach();
  const again = await open(stateDir);
  const relisted = await again.images();
  t.deepEqual(
    relisted.map((image) => [image.id, image.lastUsedAtMs]).sort(),
    listed.map((image) => [image.id, image.lastUsedAtMs]).sort(),
  );

  // Keep a tarball of a for prewarm below.
  const tarballDir = join(root, 'tarballs');
  mkdirSync(tarballDir);
  await pipeline((await engine.docker.getImage(ref('a')).get()) as NodeJS.ReadableStream, createWriteStream(join(tarballDir, `${scope}_a_1.tar`)));

  // A budget that needs d (never used) and a (oldest use) gone, but not b.
  const total = listed.reduce((sum, image) => sum + image.sizeBytes, 0);
  const budgetBytes = total - sizeOf(listed, ref('d')) - sizeOf(listed, ref('a')) + MB;
  const pruned = await again.pruneImages({ budgetBytes, keep: [ref('e')] });
  t.deepEqual(
    pruned.removed.map((image) => image.references[0]),
    [ref('d'), ref('a')],
  );
  t.true(pruned.fits);
  t.is(pruned.totalBytesBefore, total);
  t.true(pruned.totalBytesAfter <= budgetBytes);
  t.is(pruned.freedBytes, sizeOf(listed, ref('d')) + sizeOf(listed, ref('a')));
  t.deepEqual(pruned.failed, []);
  t.deepEqual(pruned.kept, []);

  // Budget 0 cannot be reached: b goes, c (in use) and e (kept) stay, and the answer says why.
  const all = await again.pruneImages({ budgetBytes: 0, keep: [`docker.io/${ref('e')}`] });
  t.deepEqual(
    all.removed.map((image) => image.references[0]),
    [ref('b')],
  );
  t.false(all.fits);
  t.deepEqual(all.kept.map((image) => [image.references[0], image.reason]).sort(), [
    [ref('c'), 'inUse'],
    [ref('e'), 'keep'],
  ]);
  t.deepEqual((await again.images()).map((image) => image.references[0]).sort(), [ref('c'), ref('e')]);
  t.true((await engine.docker.getContainer(again.status({ tenant: 'ti', name: 'c' })?.containerId ?? '').inspect()).State.Running);

  // Prewarm: e is there, a comes back from its tarball, f has neither.
  const warmed = await again.prewarm([ref('e'), ref('a'), ref('f')], { tarballDir });
  t.deepEqual(
    warmed.map((result) => result.outcome),
    ['present', 'loaded', 'missing'],
  );
  t.regex(warmed[2]?.outcome === 'missing' ? warmed[2].detail : '', /is not on this node's engine and .*_f_1\.tar does not exist; this runtime never pulls \(no registry is used\)/);
  t.truthy(await engine.docker.getImage(ref('a')).inspect());
  const noDir = await again.prewarm([ref('f')]);
  t.is(noDir[0]?.outcome, 'missing');
  await again.remove({ tenant: 'ti', name: 'c' });
});

dockerTest('bad input to prune and prewarm is refused in one line and changes nothing', async (t) => {
  if (engine === null) return;
  importImage(ref('g'), MB);
  const runtime = await open(join(root, 'state-bad'));
  const before = await runtime.images();
  const cases: [Promise<unknown>, string][] = [
    [runtime.pruneImages({ budgetBytes: -1, keep: [] }), 'image budget -1 must be a whole number of bytes ≥ 0 (--image-budget-mb × 1048576)'],
    [runtime.pruneImages({ budgetBytes: 1.5, keep: [] }), 'image budget 1.5 must be a whole number of bytes ≥ 0 (--image-budget-mb × 1048576)'],
    [runtime.pruneImages({ budgetBytes: 0, keep: ['Not A Ref'] }), 'keep: image reference "Not A Ref" is not valid; give name[:tag] (lowercase, e.g. node:20 or registry.local:5000/team/app:1) or an image id'],
    [runtime.prewarm(['']), 'image reference "" must be a non-empty string such as node:20'],
    [runtime.prewarm([ref('g')], { tarballDir: join(root, 'nowhere') }), `tarball dir ${join(root, 'nowhere')} does not exist; create it and put docker save tarballs in it, or leave it out`],
  ];
  for (const [attempt, message] of cases) {
    const error = await t.throwsAsync(attempt, { instanceOf: RuntimeError });
    t.is(error?.name, 'InvalidSpecError');
    t.is(error?.message, message);
  }
  t.deepEqual(await runtime.images(), before);
});
