// The build (bin/build.js): concurrent first starts build dist/ once-consistent, a changed source is rebuilt before
// it runs (never stale code), the packed package carries the build and not the sources, and an install without dev
// dependencies starts a node that turns ready.
import { execFile, spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { adminTokenPath, clusterSecretPath } from './cluster-files.ts';
import { freePort, until } from './local-cluster.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..');
/** What bin/build.js reads: the entry's import graph lives in these folders. */
const SOURCES = ['bin', 'node', 'proto', 'consensus', 'actors', 'simulator', 'chaos', 'package.json'];

/** A copy of the sources (not of dist/) with the repository's node_modules, in a temp dir. */
async function sourceCopy(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'debughost-build-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const entry of SOURCES) await cp(join(ROOT, entry), join(dir, entry), { recursive: true, filter: (path) => !path.endsWith('.test.ts') });
  await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

test('four first starts at once build dist/ and all run; a changed source is built again before it runs', async (t) => {
  const dir = await sourceCopy(t);
  const help = () => run(process.execPath, [join(dir, 'bin', 'debughost.js'), '--help']).then((r) => r.stdout);
  const outputs = await Promise.all([help(), help(), help(), help()]);
  for (const output of outputs) t.regex(output, /^usage: debughost <command>/);
  const manifest = JSON.parse(await readFile(join(dir, 'dist', 'manifest.json'), 'utf8')) as { entry: string; files: string[]; inputs: Record<string, unknown> };
  t.true(manifest.files.includes(manifest.entry));
  t.true(Object.hasOwn(manifest.inputs, 'node/cli.ts') && Object.hasOwn(manifest.inputs, 'bin/build.js'));
  t.deepEqual((await readdir(join(dir, 'dist'))).filter((name) => name.endsWith('.tmp')), [], 'no half-written file is left');

  const cli = join(dir, 'node', 'cli.ts');
  await writeFile(cli, (await readFile(cli, 'utf8')).replace("'usage: debughost <command> [options]'", "'usage: debughost <command> [options] (rebuilt)'"));
  t.regex(await help(), /\(rebuilt\)/);
});

test('without esbuild and without dist/, the entry point says what to run instead of failing obscurely', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'debughost-build-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await cp(join(ROOT, 'bin'), join(dir, 'bin'), { recursive: true });
  await cp(join(ROOT, 'node', 'main.ts'), join(dir, 'node', 'main.ts'));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  const failed = await run(process.execPath, [join(dir, 'bin', 'debughost.js'), '--help']).then(() => null, (error: unknown) => error as { code: number; stderr: string });
  t.is(failed?.code, 1);
  t.is(failed?.stderr, 'debughost: dist/ has not been built, and esbuild is not installed (dev dependencies were left out); run `npm install` (with dev dependencies), or start from a packed release or the Docker image\n');
});

test('a source that does not compile stops the start with the file, line and error', async (t) => {
  const dir = await sourceCopy(t);
  await writeFile(join(dir, 'node', 'usage-error.ts'), `${await readFile(join(dir, 'node', 'usage-error.ts'), 'utf8')}\nexport const broken = ;\n`);
  const failed = await run(process.execPath, [join(dir, 'bin', 'debughost.js'), '--help']).then(() => null, (error: unknown) => error as { code: number; stderr: string });
  t.is(failed?.code, 1);
  t.regex(failed?.stderr ?? '', /^debughost: dist\/ has not been built, and the build failed: node\/usage-error\.ts:\d+: Unexpected ";"; fix it \(`npm run build` shows every error\)\n$/);
});

test('npm pack carries bin/ and the build, not the TypeScript sources', async (t) => {
  await run(process.execPath, [join(ROOT, 'bin', 'build.js')]);
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
  const files = ((JSON.parse(stdout) as { files: { path: string }[] }[])[0]?.files ?? []).map((file) => file.path);
  t.true(files.includes('bin/debughost.js') && files.includes('bin/build.js') && files.includes('dist/manifest.json'));
  t.false(files.some((path) => path.endsWith('.ts')), files.filter((path) => path.endsWith('.ts')).join(', '));
});

test('an install without dev dependencies starts a node from the build', async (t) => {
  t.timeout(240_000);
  await run(process.execPath, [join(ROOT, 'bin', 'build.js')]);
  const dir = await mkdtemp(join(tmpdir(), 'debughost-prod-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const file of ['package.json', 'package-lock.json']) await cp(join(ROOT, file), join(dir, file));
  // From npm's cache (filled by this checkout's own install); the registry only for what it lacks.
  await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: dir, timeout: 200_000 });
  const modules = await readdir(join(dir, 'node_modules'));
  for (const dev of ['esbuild', 'tsx', 'typescript', 'ava']) t.false(modules.includes(dev), `${dev} is a dev dependency`);
  await cp(join(ROOT, 'bin'), join(dir, 'bin'), { recursive: true });
  await mkdir(join(dir, 'dist'));
  await cp(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
  const grpc = `127.0.0.1:${await freePort()}`;
  const http = `127.0.0.1:${await freePort()}`;
  // Secure by default: the cluster secret and the first admin token, made by the built CLI.
  const trust = join(dir, 'trust');
  await run(process.execPath, [join(dir, 'bin', 'debughost.js'), 'init', trust], { cwd: dir });
  const trustArgs = ['--cluster-secret-file', clusterSecretPath(trust), '--admin-token-file', adminTokenPath(trust)];
  const child = spawn(process.execPath, [join(dir, 'bin', 'debughost.js'), 'node', '--id', 'p1', '--grpc', grpc, '--mcp', http, '--seeds', grpc, '--data-dir', join(dir, 'data'), '--docker', 'off', ...trustArgs], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, DEBUGHOST_LOG_LEVEL: 'warn' },
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  t.teardown(() => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : (child.once('exit', () => resolve()), child.kill('SIGKILL')))));
  const ready = await until('the node to be ready', 60_000, async () => {
    if (child.exitCode !== null) throw new Error(`the node exited: ${stderr}`);
    const response = await fetch(`http://${http}/ready`).catch(() => null);
    return response?.ok === true ? ((await response.json()) as { ready: boolean }) : null;
  });
  t.true(ready.ready);
});
