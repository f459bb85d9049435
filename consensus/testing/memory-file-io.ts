// A file system in memory for the WAL's tests: what reads see (the page cache)
// and what is on the device are kept apart, so a "power loss" can drop what
// was never synced and tear the write in flight at sector granularity, as a
// real disk may. It also runs out of space on demand. Not for production.
import type { FileIo, WritableFile } from '../file-io.ts';
import type { Prng } from '../../simulator/prng.ts';

const SECTOR_BYTES = 512;

interface MemoryFile {
  /** What a read returns while the machine runs. */
  cached: Uint8Array;
  /** What survives a power loss. */
  device: Uint8Array;
}

interface InFlight {
  readonly file: MemoryFile;
  readonly bytes: Uint8Array;
  readonly position: number;
  readonly done: (error: Error | null) => void;
}

const outOfSpace = (): Error => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });

export class MemoryFileIo implements FileIo {
  private readonly files = new Map<string, MemoryFile>();
  private readonly inflight = new Set<InFlight>();
  /** Bytes that createZeroed may still allocate; null: unlimited. */
  spaceBytes: number | null = null;
  /** Writes completed (their callback ran). */
  writes = 0;

  async list(dir: string): Promise<string[]> {
    const prefix = `${dir}/`;
    return [...this.files.keys()].filter((path) => path.startsWith(prefix) && !path.slice(prefix.length).includes('/')).map((path) => path.slice(prefix.length));
  }

  async mkdirp(): Promise<void> {}

  async read(path: string): Promise<Uint8Array> {
    const file = this.files.get(path);
    if (file === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return file.cached.slice();
  }

  async open(path: string, durable: boolean): Promise<WritableFile> {
    const file = this.files.get(path);
    if (file === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return {
      path,
      write: (bytes, length, position, done) => {
        if (position + length > file.cached.byteLength) {
          // Growing a file needs space, as on a real disk.
          setImmediate(() => done(outOfSpace()));
          return;
        }
        const copy = bytes.slice(0, length);
        file.cached.set(copy, position);
        const write: InFlight = { file, bytes: copy, position, done };
        if (!durable) {
          setImmediate(() => done(null));
          return;
        }
        this.inflight.add(write);
        setImmediate(() => {
          if (!this.inflight.delete(write)) return;
          file.device.set(copy, position);
          this.writes++;
          done(null);
        });
      },
      close: async () => undefined,
    };
  }

  async createZeroed(path: string, bytes: number): Promise<void> {
    if (this.spaceBytes !== null) {
      if (this.spaceBytes < bytes) throw outOfSpace();
      this.spaceBytes -= bytes;
    }
    this.files.set(path, { cached: new Uint8Array(bytes), device: new Uint8Array(bytes) });
  }

  async remove(path: string): Promise<void> {
    const file = this.files.get(path);
    this.files.delete(path);
    if (file !== undefined && this.spaceBytes !== null) this.spaceBytes += file.device.byteLength;
  }

  async syncDir(): Promise<void> {}

  async freeBytes(): Promise<number | null> {
    return this.spaceBytes;
  }

  /**
   * The power goes: each write in flight reaches the device only in part (a
   * random subset of its sectors), its callback gets an error (the process is
   * gone; nothing is acknowledged after this), and reads see the device.
   */
  powerLoss(prng: Prng): void {
    for (const write of this.inflight) {
      const end = write.position + write.bytes.byteLength;
      for (let start = write.position; start < end; ) {
        const pieceEnd = Math.min(end, (Math.floor(start / SECTOR_BYTES) + 1) * SECTOR_BYTES);
        if (prng.chance(0.5)) write.file.device.set(write.bytes.subarray(start - write.position, pieceEnd - write.position), start);
        start = pieceEnd;
      }
    }
    const lost = [...this.inflight];
    this.inflight.clear();
    for (const file of this.files.values()) file.cached = file.device.slice();
    for (const write of lost) write.done(Object.assign(new Error('EIO: the power went'), { code: 'EIO' }));
  }

  /** Flip bits of a file on the device and in the cache (damage, not a crash). */
  damage(path: string, at: number, length: number): void {
    const file = this.files.get(path);
    if (file === undefined) throw new Error(`no file ${path}`);
    for (let i = at; i < at + length; i++) {
      file.device[i] = (file.device[i] as number) ^ 0x5a;
      file.cached[i] = (file.cached[i] as number) ^ 0x5a;
    }
  }

  paths(): string[] {
    return [...this.files.keys()].sort();
  }
}

/**
 * The planted bug: a file system that reports a write done before it is
 * durable (as code acknowledging before fdatasync would). Tests install it to
 * prove that the power-loss check catches lost acknowledged writes.
 */
export class AckBeforeSyncFileIo extends MemoryFileIo {
  override async open(path: string, durable: boolean): Promise<WritableFile> {
    const file = await super.open(path, durable);
    return {
      path,
      write: (bytes, length, position, done) => {
        file.write(bytes, length, position, () => undefined);
        queueMicrotask(() => done(null));
      },
      close: () => file.close(),
    };
  }
}
