#!/usr/bin/env node
// Builds dist/: the CLI bundled by esbuild (the transform tsx applied at run time
// before, so the same JavaScript), our code in a few chunks, packages left as
// imports of node_modules. `npm install` runs it (prepare), and bin/debughost.js
// runs it again when a source changed since the last build.
//
// Safe while other processes start from dist/ or build it at the same moment
// (tests spawn three nodes at once): chunk names carry a hash of their content,
// every file is written under a temporary name and renamed into place, and
// dist/manifest.json, renamed last, is the one pointer to the entry file.
import { readdir, readFile, rename, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
export const DIST = join(ROOT, 'dist');
export const MANIFEST = join(DIST, 'manifest.json');
/** The build's entry; a source checkout has it, a packed release or an image does not. */
export const ENTRY = 'node/main.ts';
/** Files the code reads next to itself (import.meta.dirname), copied into dist/ as they are. */
const ASSETS = ['actors/spawner.pl', 'actors/lease-beats-thread.js'];
/** The oldest Node line we support (package.json engines). */
const TARGET = 'node20';
/** A temporary file this old belongs to a builder that died: a build takes well under a second. */
const ABANDONED_TMP_MS = 60_000;

/** Size and mtime of a file, or null when it is missing. */
async function fingerprint(path) {
  try {
    const info = await stat(path);
    return [info.size, info.mtimeMs];
  } catch {
    return null;
  }
}

/**
 * Why dist/ must be built again, or null when it is current. Without sources
 * (a packed release, the Docker image) dist/ is what there is: never stale.
 */
export async function staleReason(manifest) {
  if (manifest === null) return 'dist/ has not been built';
  if ((await fingerprint(join(ROOT, ENTRY))) === null) return null;
  for (const [path, recorded] of Object.entries(manifest.inputs)) {
    const now = await fingerprint(join(ROOT, path));
    if (now === null || now[0] !== recorded[0] || now[1] !== recorded[1]) return `${path} changed since the last build`;
  }
  return null;
}

export async function readManifest() {
  try {
    return JSON.parse(await readFile(MANIFEST, 'utf8'));
  } catch {
    return null;
  }
}

/** Write `data` to `path` through a temporary file and a rename, so no reader sees half a file. */
async function writeAtomically(path, data) {
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, data);
  await rename(temporary, path);
}

/**
 * Build dist/ from the sources; returns the new manifest. Throws EsbuildMissingError
 * without dev dependencies. `logLevel` 'silent' leaves reporting errors to the caller.
 */
export async function buildDist({ logLevel = 'warning' } = {}) {
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch (error) {
    throw Object.assign(new Error('esbuild is not installed (dev dependencies were left out)', { cause: error }), { name: 'EsbuildMissingError' });
  }
  const previous = await readManifest();
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: [ENTRY],
    outdir: DIST,
    entryNames: '[name]-[hash]',
    chunkNames: 'chunk-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: TARGET,
    packages: 'external',
    metafile: true,
    write: false,
    logLevel,
  });
  await mkdir(DIST, { recursive: true });
  const files = [];
  for (const output of result.outputFiles) {
    files.push(basename(output.path));
    if ((await fingerprint(output.path)) === null) await writeAtomically(output.path, output.contents);
  }
  for (const asset of ASSETS) {
    const name = basename(asset);
    const content = await readFile(join(ROOT, asset));
    const current = await readFile(join(DIST, name)).catch(() => null);
    if (current === null || !current.equals(content)) await writeAtomically(join(DIST, name), content);
    files.push(name);
  }
  const entry = Object.entries(result.metafile.outputs).find(([, output]) => output.entryPoint === ENTRY)?.[0];
  if (entry === undefined) throw new Error(`esbuild produced no output for ${ENTRY}`);
  const inputs = {};
  // This script shapes the output too: a change to it is a change to the build.
  for (const path of [...Object.keys(result.metafile.inputs), ...ASSETS, relative(ROOT, fileURLToPath(import.meta.url))]) {
    const now = await fingerprint(join(ROOT, path));
    if (now !== null) inputs[path] = now;
  }
  const manifest = { entry: basename(entry), files, esbuild: esbuild.version, inputs };
  await writeAtomically(MANIFEST, `${JSON.stringify(manifest, null, 1)}\n`);
  // Keep this build's files and the previous build's (a process that read the old
  // manifest a moment ago may still be importing them); remove older ones.
  const keep = new Set(['manifest.json', ...files, ...(previous?.files ?? [])]);
  for (const name of await readdir(DIST)) {
    if (keep.has(name)) continue;
    // A .tmp file is another builder's write in flight, unless it is old enough to be a crashed builder's.
    if (name.endsWith('.tmp') && Date.now() - ((await fingerprint(join(DIST, name)))?.[1] ?? 0) < ABANDONED_TMP_MS) continue;
    await rm(join(DIST, name), { force: true });
  }
  return manifest;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    const manifest = await buildDist();
    process.stdout.write(`debughost: built dist/${manifest.entry} (${manifest.files.length} files from ${Object.keys(manifest.inputs).length} sources)\n`);
  } catch (error) {
    if (error.name !== 'EsbuildMissingError') throw error;
    // npm runs this as `prepare` also for `npm install --omit=dev`: that install is not broken, it just cannot build.
    process.stdout.write('debughost: build skipped: esbuild is not installed (an install without dev dependencies); start from a packed release or the Docker image, which carry dist/\n');
  }
}
