// The file operations the WAL needs, behind an interface so that tests can
// give a file system that loses unsynced writes at a "power loss" (the page
// cache survives a process kill, so only such a model can catch a write
// acknowledged before it was synced). The real one is Node's fs with
// callbacks on the hot path: one thread-pool hop per group commit.
import { constants, close, open, write } from 'node:fs';
import { mkdir, open as openPromise, readdir, readFile, rename, statfs, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

/** A segment file opened for writing. */
export interface WritableFile {
  readonly path: string;
  /**
   * Write `length` bytes of `bytes` at `position`. With a durable file (opened
   * with `durable: true`) the bytes are on the device when `done` runs (as
   * write + fdatasync: O_DSYNC); otherwise they may be only in the page cache.
   */
  write(bytes: Uint8Array, length: number, position: number, done: (error: Error | null) => void): void;
  close(): Promise<void>;
}

export interface FileIo {
  /** Names in `dir`; [] when it does not exist. */
  list(dir: string): Promise<string[]>;
  mkdirp(dir: string): Promise<void>;
  read(path: string): Promise<Uint8Array>;
  open(path: string, durable: boolean): Promise<WritableFile>;
  /**
   * Make `path` a file of `bytes` zeros, durably: written under a temporary
   * name, synced, renamed, the directory synced. Zeros written (not a sparse
   * file) so that later overwrites allocate nothing: no ENOSPC and an
   * fdatasync with no metadata to journal.
   */
  createZeroed(path: string, bytes: number): Promise<void>;
  remove(path: string): Promise<void>;
  /** fsync the directory, so that creations and removals in it are durable. */
  syncDir(dir: string): Promise<void>;
  /** Bytes free for an unprivileged writer on the file system holding `path`, or null when unknown. */
  freeBytes(path: string): Promise<number | null>;
}

/** Zeros are written in pieces of this size: large enough to be fast, small enough not to hog memory. */
const ZERO_CHUNK_BYTES = 1024 * 1024;
let zeroChunk: Uint8Array | null = null;

class NodeWritableFile implements WritableFile {
  constructor(
    readonly path: string,
    private readonly fd: number,
  ) {}

  write(bytes: Uint8Array, length: number, position: number, done: (error: Error | null) => void): void {
    const fd = this.fd;
    const step = (offset: number): void => {
      write(fd, bytes, offset, length - offset, position + offset, (error, written) => {
        if (error !== null) return done(error);
        // A short write (rare, but allowed by POSIX): write the rest.
        if (offset + written < length) return step(offset + written);
        done(null);
      });
    };
    step(0);
  }

  close(): Promise<void> {
    return new Promise((resolveClose, reject) => close(this.fd, (error) => (error === null ? resolveClose() : reject(error))));
  }
}

export const nodeFileIo: FileIo = {
  async list(dir) {
    try {
      return await readdir(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  },
  async mkdirp(dir) {
    await mkdir(dir, { recursive: true });
  },
  async read(path) {
    const bytes = await readFile(path);
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  },
  open(path, durable) {
    // O_DSYNC: the write returns once the data (and what is needed to read it back) is on
    // the device, as write + fdatasync would, in one thread-pool hop instead of two.
    const flags = constants.O_WRONLY | (durable ? constants.O_DSYNC : 0);
    return new Promise((resolveOpen, reject) => open(path, flags, (error, fd) => (error === null ? resolveOpen(new NodeWritableFile(path, fd)) : reject(error))));
  },
  async createZeroed(path, bytes) {
    const temporary = `${path}.tmp`;
    const handle = await openPromise(temporary, 'w');
    try {
      zeroChunk ??= new Uint8Array(ZERO_CHUNK_BYTES);
      for (let at = 0; at < bytes; at += ZERO_CHUNK_BYTES) await handle.write(zeroChunk, 0, Math.min(ZERO_CHUNK_BYTES, bytes - at), at);
      await handle.sync();
    } catch (error) {
      await handle.close().catch(() => undefined);
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
    await handle.close();
    await rename(temporary, path);
    await nodeFileIo.syncDir(dirname(path));
  },
  async remove(path) {
    await unlink(path);
  },
  async syncDir(dir) {
    const handle = await openPromise(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  async freeBytes(path) {
    try {
      const stats = await statfs(path);
      return stats.bavail * stats.bsize;
    } catch {
      return null;
    }
  },
};
