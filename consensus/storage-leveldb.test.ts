// Goal: LevelStorage gives the same durable state as the simulator's disk for the same batches, keeps every acknowledged batch across SIGKILL, refuses corrupt or locked dirs without touching their files, and group-commits.
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Level } from 'level';
import { SimDisk } from '../simulator/disk.ts';
import { prngFromSeed, type Prng } from '../simulator/prng.ts';
import { Scheduler } from '../simulator/scheduler.ts';
import type { PersistBatch, PersistedState } from './storage.ts';
import { crc32c, encodeEntry, entryKey, LevelStorage, snappyDecompress, StorageCorruptError, StorageLockedError, type LevelStorageOptions } from './storage-leveldb.ts';
import { crashEntryIndexOf, crashTermOf } from './testing/leveldb-crash-child.ts';
import type { Entry, EntryType, HardState, LogIndex, NodeId, Snapshot, Term } from './types.ts';

const CHILD_SCRIPT = fileURLToPath(new URL('./testing/leveldb-crash-child.ts', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const RECOVERY_ADVICE = 'restore the directory from a backup, or move it away and rejoin this node as a new member';

const tempDir = async (t: ExecutionContext): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), 'debughost-leveldb-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
};

const batch = (fields: Partial<PersistBatch>): PersistBatch => ({ hardState: null, snapshot: null, dropEntriesAfterSnapshot: false, entries: [], ...fields });
const entry = (index: number, entryTerm: number, data: Uint8Array = Uint8Array.of(index & 0xff), type: EntryType = 'normal'): Entry => ({
  index: index as LogIndex,
  term: entryTerm as Term,
  type,
  data,
});
const entries = (from: number, to: number, entryTerm: number): Entry[] => Array.from({ length: to - from + 1 }, (_, i) => entry(from + i, entryTerm));

const persist = (storage: LevelStorage, fields: Partial<PersistBatch>): Promise<void> =>
  new Promise((resolve, reject) => storage.persist(batch(fields), (error) => (error === null ? resolve() : reject(error))));

/** Open, run `body`, close. */
async function withStorage<T>(dir: string, body: (storage: LevelStorage) => Promise<T>, options?: LevelStorageOptions): Promise<T> {
  const storage = await LevelStorage.open(dir, options);
  try {
    return await body(storage);
  } finally {
    await storage.close();
  }
}

const reload = (dir: string): Promise<PersistedState> => withStorage(dir, async (storage) => storage.load());
const indexes = (state: PersistedState): number[] => state.entries.map((e) => e.index);

// --- 1. Compliance with the simulator's disk -------------------------------

const NODES = ['n1', 'n2', 'n3', 'n4', 'n5'] as NodeId[];
const ENTRY_TYPES: EntryType[] = ['normal', 'normal', 'normal', 'confChange', 'empty'];

/** The log the generator believes is stored, to draw only valid batches. */
interface Model {
  snapshotIndex: number;
  lastIndex: number;
  term: number;
  terms: Map<number, number>;
}

function randomBytes(prng: Prng, lengthMax: number): Uint8Array {
  const bytes = new Uint8Array(prng.int(lengthMax + 1));
  for (let i = 0; i < bytes.length; i++) bytes[i] = prng.int(256);
  return bytes;
}

function randomEntries(prng: Prng, model: Model, from: number, count: number): Entry[] {
  const list: Entry[] = [];
  for (let index = from; index < from + count; index++) {
    const type = prng.pick(ENTRY_TYPES);
    list.push(entry(index, model.term, type === 'empty' ? new Uint8Array(0) : randomBytes(prng, 40), type));
  }
  for (const key of [...model.terms.keys()]) if (key >= from) model.terms.delete(key);
  for (const e of list) model.terms.set(e.index, e.term);
  model.lastIndex = from + count - 1;
  return list;
}

function randomSnapshot(prng: Prng, index: number, snapshotTerm: number): Snapshot {
  const voters = NODES.filter(() => prng.chance(0.6));
  const learners = NODES.filter((node) => !voters.includes(node) && prng.chance(0.3));
  return { meta: { index: index as LogIndex, term: snapshotTerm as Term, conf: { voters, learners } }, data: randomBytes(prng, 300) };
}

function randomHardState(prng: Prng, model: Model): HardState {
  if (prng.chance(0.3)) model.term++;
  return { term: model.term as Term, vote: prng.chance(0.3) ? null : prng.pick(NODES), commit: prng.int(model.lastIndex + 1) as LogIndex };
}

function dropThrough(model: Model, index: number, dropAfter: boolean): void {
  for (const key of [...model.terms.keys()]) if (key <= index || dropAfter) model.terms.delete(key);
  model.snapshotIndex = index;
  model.lastIndex = dropAfter ? index : Math.max(model.lastIndex, index);
}

/** One valid batch: appends, conflict overwrites, hard state, compaction and installed snapshots. */
function randomBatch(prng: Prng, model: Model): PersistBatch {
  const roll = prng.int(100);
  if (roll < 35) {
    const hardState = prng.chance(0.5) ? randomHardState(prng, model) : null;
    return batch({ hardState, entries: randomEntries(prng, model, model.lastIndex + 1, prng.range(1, 6)) });
  }
  if (roll < 52 && model.lastIndex > model.snapshotIndex) {
    // A new leader's entries replace a suffix, sometimes with fewer entries than it had.
    model.term++;
    const from = prng.range(model.snapshotIndex + 1, model.lastIndex);
    return batch({ hardState: randomHardState(prng, model), entries: randomEntries(prng, model, from, prng.range(1, 6)) });
  }
  if (roll < 62) return batch({ hardState: randomHardState(prng, model) });
  if (roll < 78) {
    // Compaction; now and then past the last entry, which leaves no entries.
    const index = prng.range(model.snapshotIndex, model.lastIndex + (prng.chance(0.1) ? 3 : 0));
    const snapshot = randomSnapshot(prng, index, model.terms.get(index) ?? model.term);
    dropThrough(model, index, false);
    return batch({ snapshot });
  }
  if (roll < 90) {
    // An installed snapshot replaces the log; sometimes entries follow it in the same batch.
    model.term++;
    const index = prng.range(model.snapshotIndex, model.lastIndex + 5);
    const snapshot = randomSnapshot(prng, index, model.term);
    dropThrough(model, index, true);
    const after = prng.chance(0.5) ? randomEntries(prng, model, index + 1, prng.range(1, 4)) : [];
    return batch({ hardState: randomHardState(prng, model), snapshot, dropEntriesAfterSnapshot: true, entries: after });
  }
  return batch({ hardState: randomHardState(prng, model), entries: randomEntries(prng, model, model.lastIndex + 1, prng.range(1, 30)) });
}

for (const seed of [1, 2, 3, 4, 5, 6]) {
  test(`compliance: same batches give the same durable state as SimDisk (seed ${seed})`, async (t) => {
    const dir = await tempDir(t);
    const prng = prngFromSeed(seed);
    const scheduler = new Scheduler();
    const disk = new SimDisk({ node: 'n1' as NodeId, scheduler, prng: prng.fork('disk:n1') });
    const draw = prng.fork('batches');
    const model: Model = { snapshotIndex: 0, lastIndex: 0, term: 1, terms: new Map() };
    let storage = await LevelStorage.open(dir);
    t.teardown(() => storage.close());
    let writes = 0;
    for (let round = 0; round < 12; round++) {
      // A few batches in flight at once, so that some are merged into one write.
      for (let burst = 0; burst < 8; burst++) {
        const inFlight: Promise<void>[] = [];
        const burstSize = draw.range(1, 4);
        for (let i = 0; i < burstSize; i++) {
          const next = randomBatch(draw, model);
          disk.persist(next, (error) => t.is(error, null));
          inFlight.push(persist(storage, next));
          writes++;
        }
        scheduler.runUntil(() => disk.isSynced() && disk.pendingWrites() === 0, 10_000);
        await Promise.all(inFlight);
      }
      await storage.close();
      storage = await LevelStorage.open(dir);
      t.deepEqual(storage.load(), disk.load(), `seed ${seed}, after ${writes} batches`);
    }
    t.true(model.snapshotIndex > 0, 'the sequence took snapshots');
  });
}

test('stale entries at or before the snapshot (a crash before their cleanup) are ignored, then removed', async (t) => {
  const dir = await tempDir(t);
  await withStorage(dir, async (storage) => {
    await persist(storage, { entries: entries(1, 10, 1) });
    await persist(storage, { snapshot: randomSnapshot(prngFromSeed(1), 6, 1) });
  });
  const raw = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  await raw.put(entryKey(3), encodeEntry(entry(3, 1)));
  await raw.close();
  t.deepEqual(indexes(await reload(dir)), [7, 8, 9, 10]);
  const check = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  const leftover = await check.keys({ gte: entryKey(0), lt: entryKey(7) }).all();
  await check.close();
  t.is(leftover.length, 0);
});

test('a malformed batch is a programmer error, thrown at persist', async (t) => {
  const dir = await tempDir(t);
  await withStorage(dir, async (storage) => {
    await persist(storage, { entries: entries(1, 3, 1) });
    t.throws(() => storage.persist(batch({ entries: entries(5, 6, 1) }), () => undefined), { name: 'AssertionError' });
    t.throws(() => storage.persist(batch({ dropEntriesAfterSnapshot: true }), () => undefined), { name: 'AssertionError' });
  });
});

test('meta: written synced, read back after reopen', async (t) => {
  const dir = await tempDir(t);
  await withStorage(dir, async (storage) => {
    t.is(storage.readMeta(), null);
    await storage.writeMeta({ clusterId: 'c-1', nodeId: 'n2' });
    t.deepEqual(storage.readMeta(), { clusterId: 'c-1', nodeId: 'n2' });
  });
  t.deepEqual(await withStorage(dir, async (storage) => storage.readMeta()), { clusterId: 'c-1', nodeId: 'n2' });
});

// --- 2. Durability under SIGKILL ---------------------------------------------

interface Child {
  readonly process: ChildProcessWithoutNullStreams;
  readonly lines: string[];
  readonly exited: Promise<void>;
  /** Resolves with the first line matching. */
  waitFor(pattern: RegExp): Promise<string>;
}

function startChild(t: ExecutionContext, args: readonly string[]): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD_SCRIPT, ...args], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  let partial = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.on('data', (chunk: Buffer) => {
    const text = partial + chunk.toString();
    const complete = text.split('\n');
    // Only whole lines count: a line cut by the kill says nothing.
    partial = complete.pop() ?? '';
    for (const line of complete) {
      lines.push(line);
      for (const waiter of waiters.splice(0)) {
        if (waiter.pattern.test(line)) waiter.resolve(line);
        else waiters.push(waiter);
      }
    }
  });
  // 'close', not 'exit': every line the child wrote before dying has been read by then.
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const waitFor = (pattern: RegExp): Promise<string> =>
    new Promise((resolve, reject) => {
      const seen = lines.find((line) => pattern.test(line));
      if (seen !== undefined) return resolve(seen);
      waiters.push({ pattern, resolve });
      void exited.then(() => reject(new Error(`child exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}: ${stderr.trim()}`)));
    });
  return { process: child, lines, exited, waitFor };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('every acknowledged batch survives SIGKILL, with its term, in a contiguous log', async (t) => {
  const dir = await tempDir(t);
  const prng = prngFromSeed(Date.now() % 1_000_000);
  t.log(`seed ${prng.seed}`);
  /**
   * Every index up to this was durable at a reopen or acknowledged since: each
   * child appends from the last durable index on, and acks come in order.
   */
  let ackedThrough = 0;
  let snapshotAcked = 0;
  for (let kill = 0; kill < 5; kill++) {
    const child = startChild(t, [dir, 'write', String(prng.int(1_000_000))]);
    await child.waitFor(/^ack /);
    await sleep(prng.range(5, 250));
    child.process.kill('SIGKILL');
    await child.exited;
    t.is(child.process.signalCode, 'SIGKILL', 'the child was still writing when killed');
    let expectedFirst = NaN;
    for (const line of child.lines) {
      const [kind, first, last] = line.split(' ').map((word, i) => (i === 0 ? word : Number(word)));
      if (kind === 'ready') expectedFirst = (last as number) + 1;
      if (kind === 'ack') {
        t.is(first, expectedFirst, `acks arrive in order: ${line}`);
        expectedFirst = (last as number) + 1;
        ackedThrough = Math.max(ackedThrough, last as number);
      }
      if (kind === 'snap') snapshotAcked = Math.max(snapshotAcked, first as number);
    }

    const state = await reload(dir);
    const snapshotIndex = state.snapshot?.meta.index ?? 0;
    t.true(snapshotIndex >= snapshotAcked, `acknowledged snapshot ${snapshotAcked} is durable (found ${snapshotIndex})`);
    state.entries.forEach((e, i) => {
      if (e.index !== snapshotIndex + 1 + i) t.fail(`entry ${i} after snapshot ${snapshotIndex} has index ${e.index}`);
    });
    const lastIndex = snapshotIndex + state.entries.length;
    t.true(lastIndex >= ackedThrough, `acknowledged through ${ackedThrough}, durable through ${lastIndex} (kill ${kill})`);
    const wrong = state.entries.filter((e) => e.term !== crashTermOf(e.index) || crashEntryIndexOf(e.data) !== e.index);
    t.deepEqual(wrong, [], 'every entry has the term and data written for its index');
    t.log(`kill ${kill}: acknowledged through ${ackedThrough}, durable ${snapshotIndex + 1}..${lastIndex}`);
  }
  t.true(ackedThrough > 0);
});

// --- 3. Corrupt directories --------------------------------------------------

/** Every file's contents, except LevelDB's text logs, which it rotates on any open attempt. */
async function fileContents(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of (await readdir(dir)).sort()) if (name !== 'LOG' && name !== 'LOG.old') files.set(name, await readFile(join(dir, name)));
  return files;
}

async function assertRefusedUntouched(t: ExecutionContext, dir: string, detail: RegExp): Promise<void> {
  const before = await fileContents(dir);
  const error = await t.throwsAsync(LevelStorage.open(dir), { instanceOf: StorageCorruptError });
  t.is(error?.name, 'StorageCorruptError');
  t.regex(error?.message ?? '', detail);
  t.true(error?.message.includes(dir), 'the message names the directory');
  t.true(error?.message.endsWith(RECOVERY_ADVICE), 'the message says what to do');
  t.false(error?.message.includes('\n'), 'the message is one line');
  t.not(error?.cause, undefined);
  t.deepEqual(await fileContents(dir), before, 'no file was changed');
}

/** A store with data both in a table (.ldb, from the reopen) and in the write-ahead log. */
async function populated(t: ExecutionContext): Promise<string> {
  const dir = await tempDir(t);
  await withStorage(dir, (storage) => persist(storage, { hardState: { term: 1 as Term, vote: null, commit: 0 as LogIndex }, entries: entries(1, 200, 1) }));
  await withStorage(dir, (storage) => persist(storage, { entries: entries(201, 220, 1) }));
  return dir;
}

const fileMatching = async (dir: string, pattern: RegExp): Promise<string> => {
  const name = (await readdir(dir)).find((file) => pattern.test(file));
  if (name === undefined) throw new Error(`no file matching ${pattern} in ${dir}`);
  return join(dir, name);
};

/** Overwrite `length` bytes in the middle of a file with garbage. */
async function scribble(path: string, length = 16): Promise<void> {
  const bytes = await readFile(path);
  const at = Math.floor(bytes.length / 2);
  for (let i = 0; i < length && at + i < bytes.length; i++) bytes[at + i] = (bytes[at + i] as number) ^ 0x5a;
  await writeFile(path, bytes);
}

test('corrupt: garbage in CURRENT', async (t) => {
  const dir = await populated(t);
  await writeFile(join(dir, 'CURRENT'), 'garbage\x00\x01');
  await assertRefusedUntouched(t, dir, /CURRENT does not name a manifest/);
});

test('corrupt: garbage in the MANIFEST', async (t) => {
  const dir = await populated(t);
  await scribble(await fileMatching(dir, /^MANIFEST-/), 8);
  await assertRefusedUntouched(t, dir, /MANIFEST-\d+: /);
});

test('corrupt: garbage in the write-ahead log (.log)', async (t) => {
  const dir = await populated(t);
  await scribble(await fileMatching(dir, /\.log$/));
  await assertRefusedUntouched(t, dir, /\d+\.log: checksum mismatch/);
});

test('corrupt: garbage in a table (.ldb)', async (t) => {
  const dir = await populated(t);
  await scribble(await fileMatching(dir, /\.ldb$/));
  await assertRefusedUntouched(t, dir, /\d+\.ldb: .*checksum mismatch/);
});

test('a log cut mid-record or ending in zeros (a crash mid-write) is not corruption: the cut batch is lost whole', async (t) => {
  const write = async (): Promise<string> => {
    const dir = await tempDir(t);
    await withStorage(dir, async (storage) => {
      await persist(storage, { entries: entries(1, 10, 1) });
      await persist(storage, { entries: entries(11, 20, 1) });
      await persist(storage, { entries: entries(21, 30, 2) });
    });
    return dir;
  };
  const cut = await write();
  const cutLog = await fileMatching(cut, /\.log$/);
  const bytes = await readFile(cutLog);
  await writeFile(cutLog, bytes.subarray(0, bytes.length - 10));
  t.deepEqual(indexes(await reload(cut)), entries(1, 20, 1).map((e) => e.index));

  const zeros = await write();
  const zerosLog = await fileMatching(zeros, /\.log$/);
  await writeFile(zerosLog, Buffer.concat([await readFile(zerosLog), Buffer.alloc(100)]));
  t.deepEqual(indexes(await reload(zeros)), entries(1, 30, 1).map((e) => e.index));
});

test('corrupt: a truncated table', async (t) => {
  const dir = await populated(t);
  const table = await fileMatching(dir, /\.ldb$/);
  await writeFile(table, (await readFile(table)).subarray(0, 100));
  await assertRefusedUntouched(t, dir, /has 100 bytes where MANIFEST-\d+ says/);
});

test('corrupt: a directory that is not a LevelDB database', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'notes.txt'), 'hello');
  await assertRefusedUntouched(t, dir, /no CURRENT file/);
});

test('corrupt: a file where the directory should be', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'file');
  await writeFile(path, 'x');
  const error = await t.throwsAsync(LevelStorage.open(path), { instanceOf: StorageCorruptError });
  t.regex(error?.message ?? '', /not a directory/);
  t.true((await stat(path)).isFile());
});

test('corrupt: a LevelDB database of another program', async (t) => {
  const dir = await tempDir(t);
  const other = new Level(dir);
  await other.put('key', 'value');
  await other.close();
  const error = await t.throwsAsync(LevelStorage.open(dir), { instanceOf: StorageCorruptError });
  t.regex(error?.message ?? '', /without a meta\/format key/);
});

test('corrupt: a gap in the log after the snapshot', async (t) => {
  const dir = await tempDir(t);
  await withStorage(dir, (storage) => persist(storage, { entries: entries(1, 10, 1) }));
  const raw = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  await raw.del(entryKey(5));
  await raw.close();
  const error = await t.throwsAsync(LevelStorage.open(dir), { instanceOf: StorageCorruptError });
  t.regex(error?.message ?? '', /entry 5 is missing but entry 6 is stored/);
});

test('a fresh or empty directory opens as an empty store', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'empty'));
  t.deepEqual(await reload(join(dir, 'empty')), { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] });
  t.deepEqual(indexes(await reload(join(dir, 'new', 'nested'))), []);
});

test('crc32c matches the standard check values', (t) => {
  t.is(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  t.is(crc32c(new Uint8Array(32)), 0x8a9136aa);
});

test('snappy: a literal then an overlapping copy decode; malformed input is refused', (t) => {
  // Length 12, literal "abc", copy of 9 bytes from 3 back (1-byte-offset form).
  const compressed = Uint8Array.of(12, 0x08, 0x61, 0x62, 0x63, 0x15, 3);
  t.is(new TextDecoder().decode(snappyDecompress(compressed) ?? new Uint8Array(0)), 'abcabcabcabc');
  t.is(snappyDecompress(Uint8Array.of(12, 0x08, 0x61, 0x62, 0x63, 0x15, 4)), null, 'copy from before the start');
  t.is(snappyDecompress(Uint8Array.of(13, 0x08, 0x61, 0x62, 0x63, 0x15, 3)), null, 'shorter than announced');
});

// --- 4. The lock -------------------------------------------------------------

test('lock: a second open in the same process is refused', async (t) => {
  const dir = await tempDir(t);
  await withStorage(dir, async () => {
    const error = await t.throwsAsync(LevelStorage.open(dir), { instanceOf: StorageLockedError });
    t.is(error?.name, 'StorageLockedError');
    t.is(error?.message, `data dir ${dir} is in use by another debughost process (LOCK held); stop that process or use another --data-dir`);
  });
  t.deepEqual(indexes(await reload(dir)), [], 'it opens once the first one is closed');
});

test('lock: an open while another process holds the dir is refused', async (t) => {
  const dir = await tempDir(t);
  await withStorage(dir, (storage) => persist(storage, { entries: entries(1, 3, 1) }));
  const child = startChild(t, [dir, 'hold']);
  await child.waitFor(/^ready$/);
  await t.throwsAsync(LevelStorage.open(dir), { instanceOf: StorageLockedError, message: /LOCK held/ });
  child.process.kill('SIGKILL');
  await child.exited;
  t.deepEqual(indexes(await reload(dir)), [1, 2, 3], 'the lock dies with its process');
});

// --- 5. Group commit -----------------------------------------------------------

test('group commit: 100 back-to-back persists take far fewer writes, dones in order', async (t) => {
  const dir = await tempDir(t);
  const syncs: number[] = [];
  const order: number[] = [];
  await withStorage(
    dir,
    async (storage) => {
      await Promise.all(
        Array.from(
          { length: 100 },
          (_, i) =>
            new Promise<void>((resolve, reject) =>
              storage.persist(batch({ entries: [entry(i + 1, 1)] }), (error) => {
                order.push(i);
                if (error === null) resolve();
                else reject(error);
              }),
            ),
        ),
      );
    },
    { onSync: (_ms, count) => syncs.push(count) },
  );
  t.deepEqual(order, Array.from({ length: 100 }, (_, i) => i));
  t.true(syncs.length <= 5, `${syncs.length} writes`);
  t.is(
    syncs.reduce((sum, count) => sum + count, 0),
    100,
  );
  t.deepEqual(indexes(await reload(dir)), Array.from({ length: 100 }, (_, i) => i + 1));
});

// --- What fsync costs ----------------------------------------------------------

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
};

test('fsync cost: median write latency of 1- and 100-entry batches, synced and not', async (t) => {
  const samples = 60;
  for (const fsync of [true, false]) {
    for (const size of [1, 100]) {
      const dir = await tempDir(t);
      const latencies: number[] = [];
      await withStorage(
        dir,
        async (storage) => {
          for (let i = 0; i < samples; i++) {
            const first = i * size + 1;
            await persist(storage, { entries: Array.from({ length: size }, (_, k) => entry(first + k, 1, new Uint8Array(100))) });
          }
        },
        { fsync, onSync: (ms) => latencies.push(ms) },
      );
      t.is(latencies.length, samples);
      t.log(`fsync ${fsync ? 'on ' : 'off'}, ${String(size).padStart(3)} entries of 100 B: median ${median(latencies).toFixed(3)} ms over ${samples} writes`);
    }
  }
});
