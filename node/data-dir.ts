// The one place that knows how a node's data dir is laid out: where the Raft
// storage lives and how the identity is recorded (in the storage and in
// identity.json, which the node checks before the storage is opened). The
// node and `snapshot restore` both go through here, so a change of storage
// changes both.
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { PersistBatch, RaftStorage } from '../consensus/storage.ts';
import { WalStorage, type WalStorageOptions } from '../consensus/storage-wal.ts';
import { systemClock } from './system.ts';

export const IDENTITY_FILE = 'identity.json';

export interface NodeIdentity {
  readonly clusterId: string;
  readonly nodeId: string;
}

/** The Raft storage of a data dir (its WAL and snapshot store); the clock defaults to the system's. */
export function openRaftStorage(dataDir: string, options: Omit<WalStorageOptions, 'clock'> & { readonly clock?: WalStorageOptions['clock'] }): Promise<WalStorage> {
  return WalStorage.open(dataDir, { clock: systemClock, ...options });
}

/** Persist one batch and wait until it is durable. */
export function persistSynced(storage: RaftStorage, batch: PersistBatch): Promise<void> {
  return new Promise((resolve, reject) => storage.persist(batch, (error) => (error === null ? resolve() : reject(error))));
}

/** Record which cluster and node the dir belongs to: in the storage, then identity.json (written whole, synced, renamed). */
export async function writeIdentity(storage: WalStorage, dataDir: string, identity: NodeIdentity): Promise<void> {
  await storage.writeMeta(identity);
  const path = join(dataDir, IDENTITY_FILE);
  const handle = await open(`${path}.tmp`, 'w');
  try {
    await handle.writeFile(`${JSON.stringify({ clusterId: identity.clusterId, nodeId: identity.nodeId })}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(`${path}.tmp`, path);
}

/** Make a rename or link inside `dir` durable: sync the directory itself. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
