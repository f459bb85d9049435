// Issue 16's images on a real node and a real Docker engine: --prewarm loads a missing image from a tarball before
// the node takes projects; image_list shows the node's images with size and use; image_prune removes what no
// desired-running project needs, down to the budget, and never the image a running project uses; both are admin only.
// The node manages only this run's images (--image-scope): the engine is shared with other suites.
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import test from 'ava';
import { importImage, testDocker, type TestDocker } from '../actors/testing/dockerd.ts';
import { prerequisites } from '../actors/testing/prerequisites.ts';
import { LocalCluster, type Member } from './local-cluster.ts';

interface Result {
  readonly isError?: boolean;
  readonly content: { type: string; text: string }[];
  readonly structuredContent?: Record<string, unknown>;
}

interface ImageOut {
  readonly references: string[];
  readonly sizeMb: number;
  readonly inUseBy: string[];
}

const MB = 1024 * 1024;
const scope = `debughost-itest-${process.pid}x${Math.floor(Math.random() * 1e6)}`;
const ref = (name: string): string => `${scope}/${name}:1`;
const root = mkdtempSync(join(tmpdir(), 'debughost-images-'));
const dockerPrerequisites = await prerequisites('docker', 'busybox-static');
const dockerTest = dockerPrerequisites.guard(test.serial);

let engine: TestDocker | null = null;
let cluster: LocalCluster | null = null;
const clients: Client[] = [];

async function connect(member: Member, token: string): Promise<Client> {
  const client = new Client({ name: 'debughost-images-test', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://${member.mcp}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
  clients.push(client);
  return client;
}

const call = async (client: Client, name: string, args: Record<string, unknown>): Promise<Result> =>
  (await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as Result;
const text = (result: Result): string => result.content.map((part) => part.text).join('\n');

test.after.always(async () => {
  for (const client of clients) await client.close().catch(() => {});
  await cluster?.stop();
  if (engine !== null) {
    for (const image of await engine.docker.listImages({ filters: { reference: [`${scope}/*`] } })) await engine.docker.getImage(image.Id).remove({ force: true }).catch(() => undefined);
    await engine.cleanUp();
  }
  rmSync(root, { recursive: true, force: true });
});

dockerTest('prewarm loads a missing image before the node takes projects; image_list and image_prune keep what a running project needs and reach the budget; both admin only', async (t) => {
  engine = await testDocker();
  for (const [name, size] of [['keep', 4], ['old', 8], ['never', 12], ['warm', 2]] as const) importImage(ref(name), size * MB);
  // warm goes to a tarball and off the engine: --prewarm must bring it back from there.
  const tarballs = join(root, 'tarballs');
  mkdirSync(tarballs);
  await pipeline((await engine.docker.getImage(ref('warm')).get()) as NodeJS.ReadableStream, createWriteStream(join(tarballs, `${scope}_warm_1.tar`)));
  await engine.docker.getImage(ref('warm')).remove({ force: true });

  cluster = await LocalCluster.create(1, { extraArgs: ['--image-scope', `${scope}/*`, '--prewarm', ref('warm'), '--prewarm-dir', tarballs, '--image-budget-mb', '100000'] });
  const member = cluster.member('n1');
  cluster.start(member);
  await cluster.waitForLeader(120_000);
  t.truthy(await engine.docker.getImage(ref('warm')).inspect().catch(() => null), 'prewarm loaded the image from its tarball');

  const admin = await connect(member, cluster.adminToken);
  const started = await call(admin, 'project_start', { name: 'uses-keep', image: ref('keep'), command: 'exec sleep 600', ports: [] });
  t.falsy(started.isError, text(started));

  const listed = await call(admin, 'image_list', {});
  t.falsy(listed.isError, text(listed));
  const images = listed.structuredContent?.images as ImageOut[];
  const byName = (name: string): ImageOut | undefined => images.find((image) => image.references.includes(ref(name)));
  t.deepEqual(images.map((image) => image.references[0]).sort(), ['keep', 'never', 'old', 'warm'].map(ref).sort(), 'only the images in scope');
  t.true((byName('never')?.sizeMb ?? 0) >= 12, `never: ${byName('never')?.sizeMb} MB`);
  t.deepEqual(byName('keep')?.inUseBy, ['default/uses-keep']);
  t.regex(text(listed), /4 images/);

  // A developer may not see or prune the node's images.
  const made = await call(admin, 'token_create', { role: 'developer', name: 'images-dev' });
  const developer = await connect(member, String(made.structuredContent?.token));
  const refused = await call(developer, 'image_prune', { budgetMb: 0 });
  t.true(refused.isError);
  t.regex(text(refused), /cluster\.images/);

  // Bad input changes nothing.
  const bad = await call(admin, 'image_prune', { budgetMb: -5 });
  t.true(bad.isError);
  t.regex(text(bad), /budgetMb/);
  t.truthy(await engine.docker.getImage(ref('old')).inspect().catch(() => null), 'a refused prune removed nothing');

  // Budget 0: everything that can go goes; the running project's image stays and the answer says why.
  const pruned = await call(admin, 'image_prune', { budgetMb: 0 });
  t.falsy(pruned.isError, text(pruned));
  const out = pruned.structuredContent as { removed: ImageOut[]; kept: (ImageOut & { reason: string })[]; fits: boolean };
  t.deepEqual(out.removed.map((image) => image.references[0]).sort(), ['never', 'old', 'warm'].map(ref).sort());
  t.deepEqual(out.kept.map((image) => [image.references[0], image.reason]), [[ref('keep'), 'keep']], 'kept because a desired-running project names it');
  t.false(out.fits);
  t.truthy(await engine.docker.getImage(ref('keep')).inspect().catch(() => null), 'the image a running project uses is still there');
  t.is(await engine.docker.getImage(ref('old')).inspect().catch(() => null), null);

  t.falsy((await call(admin, 'project_remove', { name: 'uses-keep' })).isError);
});

test('a bad --image-budget-mb or --prewarm is refused in one line before the node starts', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const { bin } = await import('./local-cluster.ts');
  const base = ['node', '--id', 'x', '--grpc', '127.0.0.1:1', '--mcp', '127.0.0.1:2', '--seeds', '127.0.0.1:1', '--data-dir', join(root, 'never')];
  for (const [flags, message] of [
    [['--image-budget-mb', 'lots'], /^debughost node: --image-budget-mb needs a whole number between 0 and \d+, got 'lots'$/],
    [['--prewarm', ','], /^debughost node: --prewarm needs IMAGE\[,IMAGE…\]/],
  ] as const) {
    const result = spawnSync(process.execPath, [bin, ...base, ...flags], { encoding: 'utf8', timeout: 60_000 });
    t.is(result.status, 2, result.stderr);
    t.regex(result.stderr.trim(), message);
    t.is(result.stderr.trim().split('\n').length, 1);
  }
});
