// LevelDB beside the WAL: the node's identity and the state machine's
// snapshots, keyed by index (the design card's "LevelDB snapshots"). A snapshot
// is put and synced here before the WAL records its mark, and the WAL decides
// which one is current: one without a mark (a crash between the two) is
// ignored and deleted. The directory is checked read-only before LevelDB may
// rewrite it (leveldb-check.ts). A directory of format 1 (the whole Raft log in
// LevelDB, before the WAL) is read once, through `legacyState`, to migrate it.
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { Level } from 'level';
import { checkBeforeOpen, corrupt, holdsDatabase, openError } from './leveldb-check.ts';
import { DecodeError, decodeEntry, decodeHardState, decodeMeta, decodeSnapshot, encodeSnapshot, textEncoder, writeUint64, type StorageMeta } from './storage-codec.ts';
import { emptyPersistedState, type PersistedState } from './storage.ts';
import { StorageClosedError, StorageCorruptError, StorageWriteError } from './storage-errors.ts';
import type { Entry, Snapshot } from './types.ts';

type Database = Level<Uint8Array, Uint8Array>;

/** 2: the log in the WAL, snapshots here. 1: everything here (LevelStorage, migrated on open). */
const FORMAT_VERSION = 2;
const FORMAT_LEGACY = 1;
const KEY_META_FORMAT = textEncoder.encode('meta/format');
const KEY_META_IDENTITY = textEncoder.encode('meta/identity');
const SNAPSHOT_KEY_PREFIX = 0x73; // 's'
const SNAPSHOT_KEY_END = Uint8Array.of(SNAPSHOT_KEY_PREFIX + 1);
// Format 1's keys.
const LEGACY_KEY_HARD_STATE = textEncoder.encode('hardstate');
const LEGACY_KEY_SNAPSHOT = textEncoder.encode('snapshot');
const LEGACY_ENTRY_PREFIX = 0x65; // 'e'
/** Entries read per LevelDB iterator call while migrating. */
const LOAD_PAGE_ENTRIES = 1024;

function indexKey(prefix: number, index: number): Uint8Array {
  const key = new Uint8Array(9);
  key[0] = prefix;
  writeUint64(new DataView(key.buffer), 1, index);
  return key;
}

export class SnapshotStore {
  private closed = false;

  private constructor(
    readonly dir: string,
    private readonly db: Database,
    private identity: StorageMeta | null,
    private legacyFormat: boolean,
  ) {}

  /** True when the directory still holds format 1 and must be migrated. */
  get legacy(): boolean {
    return this.legacyFormat;
  }

  /** Check an existing directory read-only (and that no process holds it); nothing when absent or empty. */
  static async verify(dir: string): Promise<void> {
    const path = resolve(dir);
    if (await holdsDatabase(path)) await checkBeforeOpen(path);
  }

  /**
   * Open (creating if absent or empty); `verify` first, or pass `verified: false`.
   * Throws StorageCorruptError, StorageLockedError or StorageOpenError.
   */
  static async open(dir: string, verified = true): Promise<SnapshotStore> {
    const path = resolve(dir);
    if (!verified) await SnapshotStore.verify(path);
    const db: Database = new Level<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' });
    try {
      await db.open({ createIfMissing: true });
    } catch (error) {
      throw openError(path, error);
    }
    try {
      const format = await db.get(KEY_META_FORMAT);
      if (format === undefined) {
        const anyKey = await db.keys({ limit: 1 }).all();
        if (anyKey.length > 0) throw corrupt(path, 'LevelDB database without a meta/format key: written by another program');
        await db.put(KEY_META_FORMAT, Uint8Array.of(FORMAT_VERSION), { sync: true });
      } else if (format.byteLength !== 1 || (format[0] !== FORMAT_VERSION && format[0] !== FORMAT_LEGACY)) {
        throw corrupt(path, `stored format ${Array.from(format).join('.')}, while this build reads formats ${FORMAT_LEGACY} and ${FORMAT_VERSION}`);
      }
      const identityValue = await db.get(KEY_META_IDENTITY);
      return new SnapshotStore(path, db, identityValue === undefined ? null : decodeMeta(identityValue), format?.[0] === FORMAT_LEGACY);
    } catch (error) {
      await db.close().catch(() => undefined);
      if (error instanceof StorageCorruptError) throw error;
      if (error instanceof DecodeError) throw new StorageCorruptError(path, error.message, error);
      throw openError(path, error);
    }
  }

  readMeta(): StorageMeta | null {
    return this.identity;
  }

  async writeMeta(meta: StorageMeta): Promise<void> {
    assert.ok(meta.clusterId.length > 0 && meta.nodeId.length > 0, 'storage: clusterId and nodeId must not be empty');
    if (this.closed) throw new StorageClosedError(this.dir);
    const identity: StorageMeta = { clusterId: meta.clusterId, nodeId: meta.nodeId };
    try {
      await this.db.put(KEY_META_IDENTITY, textEncoder.encode(JSON.stringify(identity)), { sync: true });
    } catch (error) {
      throw new StorageWriteError(this.dir, error);
    }
    this.identity = identity;
  }

  /** The snapshot stored at `index`, or null. */
  async get(index: number): Promise<Snapshot | null> {
    const value = await this.db.get(indexKey(SNAPSHOT_KEY_PREFIX, index));
    if (value === undefined) return null;
    try {
      return decodeSnapshot(value);
    } catch (error) {
      throw new StorageCorruptError(this.dir, `snapshot ${index}: ${(error as Error).message}`, error);
    }
  }

  /** Store and sync a snapshot; rejects with LevelDB's error (the caller tells a full disk from others). */
  async put(snapshot: Snapshot): Promise<void> {
    if (this.closed) throw new StorageClosedError(this.dir);
    await this.db.put(indexKey(SNAPSHOT_KEY_PREFIX, snapshot.meta.index), encodeSnapshot(snapshot), { sync: true });
  }

  /** Delete every snapshot but the one at `keep` (older ones, and newer ones a crash left without a mark). */
  async deleteExcept(keep: number): Promise<void> {
    if (this.closed) return;
    const keys = await this.db.keys({ gte: indexKey(SNAPSHOT_KEY_PREFIX, 0), lt: SNAPSHOT_KEY_END }).all();
    const keepKey = indexKey(SNAPSHOT_KEY_PREFIX, keep);
    const batch = this.db.batch();
    for (const key of keys) if (!sameBytes(key, keepKey)) batch.del(key);
    await batch.write();
  }

  /** Format 1's durable state, read-only: the input of a migration. */
  async legacyState(): Promise<PersistedState> {
    assert.ok(this.legacy, 'storage: legacyState of a current-format store');
    try {
      const hardValue = await this.db.get(LEGACY_KEY_HARD_STATE);
      const snapshotValue = await this.db.get(LEGACY_KEY_SNAPSHOT);
      const hardState = hardValue === undefined ? emptyPersistedState().hardState : decodeHardState(hardValue);
      const snapshot = snapshotValue === undefined ? null : decodeSnapshot(snapshotValue);
      const snapshotIndex = snapshot?.meta.index ?? 0;
      const entries: Entry[] = [];
      const iterator = this.db.iterator({ gt: indexKey(LEGACY_ENTRY_PREFIX, snapshotIndex), lt: Uint8Array.of(LEGACY_ENTRY_PREFIX + 1) });
      try {
        for (;;) {
          const page = await iterator.nextv(LOAD_PAGE_ENTRIES);
          if (page.length === 0) break;
          for (const [, value] of page) {
            const entry = decodeEntry(value);
            if (entry.index !== snapshotIndex + 1 + entries.length) throw corrupt(this.dir, `format 1: entry ${snapshotIndex + 1 + entries.length} is missing`);
            entries.push(entry);
          }
        }
      } finally {
        await iterator.close();
      }
      return { hardState, snapshot, entries };
    } catch (error) {
      if (error instanceof DecodeError) throw new StorageCorruptError(this.dir, `format 1: ${error.message}`, error);
      throw error;
    }
  }

  /** After the migrated state is durable in the WAL: mark format 2, then drop format 1's keys. */
  async finishMigration(): Promise<void> {
    await this.db.put(KEY_META_FORMAT, Uint8Array.of(FORMAT_VERSION), { sync: true });
    await this.db.del(LEGACY_KEY_HARD_STATE);
    await this.db.del(LEGACY_KEY_SNAPSHOT);
    await this.db.clear({ gte: indexKey(LEGACY_ENTRY_PREFIX, 0), lt: Uint8Array.of(LEGACY_ENTRY_PREFIX + 1) });
    this.legacyFormat = false;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.db.close();
  }

  /** Close and open LevelDB again: after a failed write it refuses every later one until reopened. */
  async reopen(): Promise<SnapshotStore> {
    await this.close().catch(() => undefined);
    return SnapshotStore.open(this.dir, false);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
