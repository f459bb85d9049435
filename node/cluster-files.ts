// The two secrets a cluster starts from, each in a file only its owner may
// read (0600): the cluster secret (every member holds it; peers prove with it
// who they are) and the first admin token (its hash enters the replicated
// state at bootstrap). `debughost up` makes both in its data dir; separately
// started founders get them from `debughost init DIR`.
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { issueToken, parseToken } from '../actors/tokens.ts';

export const CLUSTER_SECRET_FILE = 'cluster-secret';
export const ADMIN_TOKEN_FILE = 'admin-token';
/** Bytes of a cluster secret: 256 bits. */
export const CLUSTER_SECRET_BYTES = 32;
/** Name of the bootstrap admin token in audit records and token lists. */
export const BOOTSTRAP_TOKEN_NAME = 'admin (bootstrap)';

/** A secret file that cannot be read, is readable by others, or holds something else. */
export class SecretFileError extends Error {
  override readonly name = 'SecretFileError';
}

export const clusterSecretPath = (dir: string): string => join(dir, CLUSTER_SECRET_FILE);
export const adminTokenPath = (dir: string): string => join(dir, ADMIN_TOKEN_FILE);

/** Write `text` to `path` readable by its owner only, atomically (temp file, fsync, rename). */
export async function writePrivateFile(path: string, text: string): Promise<void> {
  const temporary = `${path}.tmp`;
  const handle = await open(temporary, 'w', 0o600);
  try {
    await handle.chmod(0o600);
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new SecretFileError(`cannot read ${path}: ${(error as Error).message}`);
  }
}

/** The trimmed content of a secret file, refused (as ssh does) when group or others may read it. */
export async function readPrivateFile(path: string): Promise<string> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new SecretFileError(code === 'ENOENT' ? `${path} does not exist` : `cannot read ${path} (${code ?? 'error'})`);
  }
  if ((mode & 0o077) !== 0) throw new SecretFileError(`${path} may be read by other users (mode ${(mode & 0o777).toString(8)}); run chmod 600 ${path}`);
  return (await readFile(path, 'utf8')).trim();
}

const SECRET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export const newClusterSecret = (): string => randomBytes(CLUSTER_SECRET_BYTES).toString('base64url');

/** The cluster secret's bytes from its file. */
export async function readClusterSecret(path: string): Promise<Buffer> {
  const text = await readPrivateFile(path);
  if (!SECRET_PATTERN.test(text)) throw new SecretFileError(`${path} does not hold a debughost cluster secret (43 base64url characters); make one with debughost init`);
  return Buffer.from(text, 'base64url');
}

export const encodeClusterSecret = (secret: Uint8Array): string => `${Buffer.from(secret).toString('base64url')}\n`;

/** Read the cluster secret at `path`, or make one there first. */
export async function ensureClusterSecret(path: string): Promise<Buffer> {
  if (!(await exists(path))) await writePrivateFile(path, `${newClusterSecret()}\n`);
  return readClusterSecret(path);
}

/** The admin token in a file. */
export async function readAdminToken(path: string): Promise<string> {
  const text = await readPrivateFile(path);
  const parsed = parseToken(text);
  if (parsed === null || parsed.kind !== 'client') throw new SecretFileError(`${path} does not hold a debughost token (dht.<id>.<secret>)`);
  return text;
}

/** Read the admin token at `path`, or make a new one there first. */
export async function ensureAdminToken(path: string, nowMs: number): Promise<{ token: string; created: boolean }> {
  if (await exists(path)) return { token: await readAdminToken(path), created: false };
  const { token } = issueToken({ kind: 'client', tenant: 'default', role: 'admin', name: BOOTSTRAP_TOKEN_NAME, ttlMs: null, createdBy: 'bootstrap' }, randomBytes, nowMs);
  await writePrivateFile(path, `${token}\n`);
  return { token, created: true };
}
