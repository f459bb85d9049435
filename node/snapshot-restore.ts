// `debughost snapshot restore`: a fresh data dir for one member of a new
// cluster, built from a snapshot file. The file is checked whole first; the
// dir is built beside the target under a private name, written only through
// the storage interface (one synced batch: snapshot + hard state, then the
// identity), read back, and renamed into place. An existing non-empty dir is
// never touched.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { openRaftStorage, persistSynced, syncDir, writeIdentity } from './data-dir.ts';
import { decodeSnapshotFile, type SnapshotFileHeader } from './snapshot-file.ts';
import { restoredState, type RestoredMember } from './snapshot-rebuild.ts';

/** The target data dir exists and holds something. */
export class DataDirNotEmptyError extends Error {
  override readonly name = 'DataDirNotEmptyError';
  constructor(readonly dataDir: string) {
    super(`data dir ${dataDir} exists and is not empty; restore into a new directory (nothing was changed)`);
  }
}

/** The snapshot file could not be read at all. */
export class SnapshotReadError extends Error {
  override readonly name = 'SnapshotReadError';
  constructor(
    readonly file: string,
    cause: unknown,
  ) {
    super(`cannot read ${file} (${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}); check the path and its permissions`, { cause });
  }
}

export interface RestoreOptions {
  readonly file: string;
  readonly dataDir: string;
  /** This member's id; it must be one of `members`. */
  readonly id: string;
  /** Every member of the new cluster (each restored from the same file with the same list). */
  readonly members: readonly RestoredMember[];
}

export interface RestoreResult {
  readonly dataDir: string;
  readonly clusterId: string;
  /** The index the restored node starts from (the file's index + 1: the membership entry). */
  readonly index: number;
  readonly header: SnapshotFileHeader;
}

export async function readSnapshotFile(file: string): Promise<Uint8Array> {
  try {
    return await readFile(file);
  } catch (error) {
    throw new SnapshotReadError(file, error);
  }
}

async function emptyOrAbsent(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw error;
  }
}

export async function restoreSnapshot(options: RestoreOptions): Promise<RestoreResult> {
  if (!options.members.some((member) => member.id === options.id)) throw new RangeError(`member ${options.id} is not in the restored membership`);
  const decoded = decodeSnapshotFile(options.file, await readSnapshotFile(options.file));
  const dataDir = resolve(options.dataDir);
  if (!(await emptyOrAbsent(dataDir))) throw new DataDirNotEmptyError(dataDir);
  const state = restoredState(decoded.kv, options.members);
  const parent = dirname(dataDir);
  await mkdir(parent, { recursive: true });
  const building = join(parent, `.${basename(dataDir)}.restoring-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(building);
    const storage = await openRaftStorage(building, { fsync: true });
    try {
      await persistSynced(storage, state.batch);
      await writeIdentity(storage, building, { clusterId: state.clusterId, nodeId: options.id });
    } finally {
      await storage.close();
    }
    await checkWritten(building, state.clusterId, options.id, state.index);
    try {
      // Replaces only an empty directory; one that filled up meanwhile fails with ENOTEMPTY.
      await rename(building, dataDir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR') throw new DataDirNotEmptyError(dataDir);
      throw error;
    }
    await syncDir(parent);
  } finally {
    await rm(building, { recursive: true, force: true });
  }
  return { dataDir, clusterId: state.clusterId, index: state.index, header: decoded.header };
}

/** Pair check: the storage gives back what was written before the dir gets its name. */
async function checkWritten(dir: string, clusterId: string, nodeId: string, index: number): Promise<void> {
  const storage = await openRaftStorage(dir, { fsync: true });
  try {
    const meta = storage.readMeta();
    const loaded = storage.load();
    if (meta?.clusterId !== clusterId || meta.nodeId !== nodeId || loaded.snapshot?.meta.index !== index || loaded.hardState.commit !== index) {
      throw new Error(`restore: the data dir read back does not hold what was written (identity ${JSON.stringify(meta)}, snapshot at ${loaded.snapshot?.meta.index ?? 'none'})`);
    }
  } finally {
    await storage.close();
  }
}
