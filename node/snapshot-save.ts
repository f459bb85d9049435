// The client side of `debughost snapshot save`: stream Admin.SnapshotSave
// into a private temporary file beside FILE, sync it, check every byte of it
// read back (SHA-256, then the state machine decodes), and only then publish
// it under FILE with link(2), which never replaces an existing file.
import { randomBytes } from 'node:crypto';
import { link, open, readFile, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { Admin, SnapshotSaveRequestSchema, type SnapshotSaveResponse } from '../proto/gen/admin_pb.ts';
import type { ServiceClient } from '../proto/grpc.ts';
import { syncDir } from './data-dir.ts';
import { decodeSnapshotFile, type SnapshotFileHeader } from './snapshot-file.ts';

/** FILE already exists: a backup is never overwritten. */
export class SnapshotTargetExistsError extends Error {
  override readonly name = 'SnapshotTargetExistsError';
  constructor(readonly file: string) {
    super(`${file} already exists; give a new file name (a backup is never overwritten)`);
  }
}

/** The stream ended before the size its first message announced. */
export class SnapshotTruncatedError extends Error {
  override readonly name = 'SnapshotTruncatedError';
  constructor(
    readonly received: number,
    readonly expected: number,
  ) {
    super(`the snapshot stream ended after ${received} of ${expected} bytes; nothing was written; retry`);
  }
}

export interface SavedSnapshot {
  readonly file: string;
  readonly header: SnapshotFileHeader;
  readonly bytes: number;
  readonly digest: string;
}

export interface SaveInit {
  readonly metadata: grpc.Metadata;
  readonly deadline: grpc.Deadline;
}

export async function saveSnapshot(client: ServiceClient<(typeof Admin)['method']>, file: string, init: SaveInit): Promise<SavedSnapshot> {
  const partial = join(dirname(file), `.${basename(file)}.part-${process.pid}-${randomBytes(4).toString('hex')}`);
  const handle = await open(partial, 'wx', 0o600);
  let published = false;
  try {
    let expected: number | null = null;
    let received = 0;
    try {
      const stream = client.snapshotSave(create(SnapshotSaveRequestSchema, {}), init.metadata, { deadline: init.deadline });
      for await (const message of stream as AsyncIterable<SnapshotSaveResponse>) {
        if (expected === null) expected = Number(message.totalBytes);
        await handle.write(message.data);
        received += message.data.byteLength;
      }
      if (expected === null || received !== expected) throw new SnapshotTruncatedError(received, expected ?? 0);
      await handle.sync();
    } finally {
      await handle.close();
    }
    // Pair check: what is on disk is a whole, valid snapshot before it gets its name.
    const decoded = decodeSnapshotFile(file, await readFile(partial));
    try {
      await link(partial, file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new SnapshotTargetExistsError(file);
      throw error;
    }
    published = true;
    await unlink(partial);
    await syncDir(dirname(file));
    return { file, header: decoded.header, bytes: received, digest: decoded.digest };
  } finally {
    if (!published) await unlink(partial).catch(() => undefined);
  }
}
