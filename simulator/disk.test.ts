// Goal: the simulated disk makes batches durable in order after a drawn fsync latency, loses exactly the unsynced ones on a crash, and honours PersistBatch snapshot and truncation semantics.
import test from 'ava';
import type { PersistBatch } from '../consensus/storage.ts';
import { logIndex, nodeId, term, type Entry, type HardState, type Snapshot } from '../consensus/types.ts';
import { SimDisk, type DiskLatency } from './disk.ts';
import { Prng } from './prng.ts';
import { Scheduler } from './scheduler.ts';

const n1 = nodeId('n1');

const entry = (index: number, entryTerm = 1, bytes = 4): Entry => ({ index: logIndex(index), term: term(entryTerm), type: 'normal', data: new Uint8Array(bytes) });
const entries = (from: number, to: number, entryTerm = 1): Entry[] => Array.from({ length: to - from + 1 }, (_, i) => entry(from + i, entryTerm));
const hard = (hardTerm: number, commit: number): HardState => ({ term: term(hardTerm), vote: n1, commit: logIndex(commit) });
const snapshot = (index: number, snapshotTerm = 1): Snapshot => ({
  meta: { index: logIndex(index), term: term(snapshotTerm), conf: { voters: [n1], learners: [] } },
  data: new Uint8Array(100),
});
const batch = (fields: Partial<PersistBatch>): PersistBatch => ({ hardState: null, snapshot: null, dropEntriesAfterSnapshot: false, entries: [], ...fields });

const setup = (latency?: DiskLatency) => {
  const scheduler = new Scheduler();
  const disk = new SimDisk({ node: n1, scheduler, prng: new Prng(1).fork('disk:n1'), latency });
  const acks: number[] = [];
  const persist = (label: number, fields: Partial<PersistBatch>): void =>
    disk.persist(batch(fields), (error) => {
      if (error !== null) throw error;
      acks.push(label);
    });
  return { scheduler, disk, acks, persist };
};

const indexes = (list: readonly Entry[]): number[] => list.map((e) => e.index);

test('a batch becomes durable and is acknowledged only after its sync', (t) => {
  const { scheduler, disk, acks, persist } = setup({ syncMsBase: 2, syncMsJitter: 0, slowSyncProbability: 0, slowSyncMsMax: 0 });
  persist(1, { hardState: hard(1, 0), entries: entries(1, 3) });
  t.deepEqual(acks, []);
  t.deepEqual(indexes(disk.load().entries), []);
  t.deepEqual(indexes(disk.loadPending().entries), [1, 2, 3]);
  t.false(disk.isSynced());
  scheduler.runUntil(1.9, 10);
  t.deepEqual(acks, []);
  scheduler.runUntil(2, 10);
  t.deepEqual(acks, [1]);
  t.deepEqual(indexes(disk.load().entries), [1, 2, 3]);
  t.is(Number(disk.load().hardState.term), 1);
  t.true(disk.isSynced());
  t.is(disk.pendingWrites(), 0);
});

test('completions are in persist order even when a later sync draws a shorter latency', (t) => {
  const { scheduler, acks, persist } = setup({ syncMsBase: 0, syncMsJitter: 10, slowSyncProbability: 0.3, slowSyncMsMax: 100 });
  for (let i = 1; i <= 50; i++) {
    persist(i, { entries: [entry(i)] });
    scheduler.runUntil(scheduler.nowMs() + 0.5, 100);
  }
  scheduler.runUntil(10_000, 1000);
  t.deepEqual(acks, Array.from({ length: 50 }, (_, i) => i + 1));
});

test('a crash keeps the synced batches and a prefix of the unsynced records, and never calls their done', (t) => {
  const seen = new Set<string>();
  for (let seed = 1; seed <= 60; seed++) {
    const scheduler = new Scheduler();
    const disk = new SimDisk({ node: n1, scheduler, prng: new Prng(seed).fork('disk:n1'), latency: { syncMsBase: 5, syncMsJitter: 0, slowSyncProbability: 0, slowSyncMsMax: 0 } });
    const acks: number[] = [];
    const persist = (label: number, fields: Partial<PersistBatch>): void => disk.persist(batch(fields), (error) => (error === null ? acks.push(label) : t.fail(error.message)));
    persist(1, { hardState: hard(1, 0), entries: entries(1, 2) });
    scheduler.runUntil(5, 10);
    // Records in write order: 3, 4, hard state (term 2), 5.
    persist(2, { hardState: hard(2, 2), entries: entries(3, 4, 2) });
    persist(3, { entries: entries(5, 5, 2) });
    scheduler.runUntil(7, 10);
    const lost = disk.crash();
    scheduler.runUntil(100, 10);
    t.deepEqual(acks, [1]);
    const state = disk.load();
    const kept = indexes(state.entries);
    t.deepEqual(kept.slice(0, 2), [1, 2]);
    t.deepEqual(kept, [1, 2, 3, 4, 5].slice(0, kept.length), 'a prefix, in order');
    // The hard state of batch 2 is its last record: durable only with all of its entries.
    t.is(Number(state.hardState.term), kept.length >= 4 && (kept.length === 5 || lost < 2) ? 2 : 1);
    t.is(lost, kept.length === 5 ? 0 : kept.length >= 4 && state.hardState.term === 2 ? 1 : 2);
    seen.add(`${kept.length}/${Number(state.hardState.term)}`);
    // After the crash the disk continues from the durable state.
    persist(4, { entries: entries(kept.length + 1, kept.length + 1, 3) });
    scheduler.runUntil(200, 10);
    t.deepEqual(acks, [1, 4]);
    t.deepEqual(indexes(disk.load().entries), [1, 2, 3, 4, 5, 6].slice(0, kept.length + 1));
  }
  // Every cut: nothing, after 3, after 4, after the hard state, everything.
  t.deepEqual([...seen].sort(), ['2/1', '3/1', '4/1', '4/2', '5/2']);
});

test('entries replace stored entries at and after the first new index', (t) => {
  const { scheduler, disk, persist } = setup();
  persist(1, { entries: entries(1, 5, 1) });
  persist(2, { entries: entries(3, 4, 2) });
  scheduler.runUntil(100, 10);
  const stored = disk.load().entries;
  t.deepEqual(indexes(stored), [1, 2, 3, 4]);
  t.deepEqual(
    stored.map((e) => e.term),
    [1, 1, 2, 2],
  );
});

test('a compaction snapshot drops entries at or before its index and keeps the rest', (t) => {
  const { scheduler, disk, persist } = setup();
  persist(1, { entries: entries(1, 10) });
  persist(2, { snapshot: snapshot(6) });
  scheduler.runUntil(100, 10);
  const state = disk.load();
  t.is(Number(state.snapshot?.meta.index), 6);
  t.deepEqual(indexes(state.entries), [7, 8, 9, 10]);
  // A compaction past the end of the log leaves no entries; the next must follow the snapshot.
  persist(3, { snapshot: snapshot(12) });
  persist(4, { entries: entries(13, 14) });
  scheduler.runUntil(200, 10);
  t.deepEqual(indexes(disk.load().entries), [13, 14]);
});

test('an installed snapshot with dropEntriesAfterSnapshot replaces the whole log', (t) => {
  const { scheduler, disk, persist } = setup();
  persist(1, { entries: entries(1, 10) });
  persist(2, { hardState: hard(3, 5), snapshot: snapshot(5, 3), dropEntriesAfterSnapshot: true, entries: entries(6, 7, 3) });
  scheduler.runUntil(100, 10);
  const state = disk.load();
  t.is(Number(state.snapshot?.meta.index), 5);
  t.deepEqual(indexes(state.entries), [6, 7]);
  t.deepEqual(
    state.entries.map((e) => e.term),
    [3, 3],
  );
  t.is(Number(state.hardState.commit), 5);
});

test('batches that would leave a gap, overwrite the snapshot or go back are refused at persist', (t) => {
  const { scheduler, persist } = setup();
  persist(1, { entries: entries(1, 3) });
  t.throws(() => persist(2, { entries: entries(5, 6) }), { message: /gap/ });
  t.throws(() => persist(3, { entries: [entry(4), entry(6)] }), { message: /expected 5/ });
  persist(4, { snapshot: snapshot(2) });
  t.throws(() => persist(5, { entries: entries(2, 3) }), { message: /overwrite the snapshot/ });
  t.throws(() => persist(6, { snapshot: snapshot(1) }), { message: /behind/ });
  t.throws(() => persist(7, { entries: [entry(4, 2), entry(5, 1)] }), { message: /term goes down/ });
  scheduler.runUntil(100, 10);
});

test('durableBytes grows with synced entries and shrinks with compaction', (t) => {
  const { scheduler, disk, persist } = setup();
  const empty = disk.durableBytes();
  persist(1, { entries: Array.from({ length: 100 }, (_, i) => entry(i + 1, 1, 1000)) });
  t.is(disk.durableBytes(), empty, 'nothing is durable before the sync');
  scheduler.runUntil(100, 10);
  const full = disk.durableBytes();
  t.true(full >= empty + 100_000);
  persist(2, { snapshot: snapshot(90) });
  scheduler.runUntil(200, 10);
  t.true(disk.durableBytes() < full - 80_000);
});

test('a paused node learns of durable syncs only after resume, still in order', (t) => {
  const { scheduler, disk, acks, persist } = setup({ syncMsBase: 1, syncMsJitter: 0, slowSyncProbability: 0, slowSyncMsMax: 0 });
  persist(1, { entries: entries(1, 1) });
  persist(2, { entries: entries(2, 2) });
  scheduler.pause(n1);
  // The resume and a later sync fall due at the same instant, the resume first:
  // that sync must not overtake the acknowledgements the resume releases.
  scheduler.schedule(10, () => scheduler.resume(n1));
  disk.setLatency({ syncMsBase: 10, syncMsJitter: 0, slowSyncProbability: 0, slowSyncMsMax: 0 });
  persist(3, { entries: entries(3, 3) });
  scheduler.runUntil(9, 10);
  t.deepEqual(acks, []);
  t.deepEqual(indexes(disk.load().entries), [1, 2], 'durable while paused');
  scheduler.runUntil(20, 10);
  t.deepEqual(acks, [1, 2, 3]);
});

test('a crash while acknowledgements are held drops them too', (t) => {
  const { scheduler, disk, acks, persist } = setup({ syncMsBase: 1, syncMsJitter: 0, slowSyncProbability: 0, slowSyncMsMax: 0 });
  persist(1, { entries: entries(1, 1) });
  scheduler.pause(n1);
  scheduler.runUntil(10, 10);
  t.is(disk.crash(), 0, 'the batch was synced, so nothing is lost');
  scheduler.resume(n1);
  scheduler.runUntil(20, 10);
  t.deepEqual(acks, []);
  t.deepEqual(indexes(disk.load().entries), [1]);
});

test('the same seed draws the same sync times', (t) => {
  const latency: DiskLatency = { syncMsBase: 0.5, syncMsJitter: 2, slowSyncProbability: 0.1, slowSyncMsMax: 50 };
  const run = (): number[] => {
    const { scheduler, persist } = setup(latency);
    const times: number[] = [];
    for (let i = 1; i <= 30; i++) persist(i, { entries: [entry(i)] });
    scheduler.runUntil(() => {
      times.push(scheduler.nowMs());
      return false;
    }, 100);
    return times;
  };
  t.deepEqual(run(), run());
});

test('many small persists stay linear (no whole-log copies)', (t) => {
  const { scheduler, disk, persist } = setup({ syncMsBase: 0, syncMsJitter: 0, slowSyncProbability: 0, slowSyncMsMax: 0 });
  const started = process.hrtime.bigint();
  for (let i = 1; i <= 100_000; i++) {
    persist(i, { entries: [entry(i)] });
    if (i % 1000 === 0) {
      scheduler.runUntil(scheduler.nowMs(), 10_000);
      if (i % 10_000 === 0) persist(-i, { snapshot: snapshot(i - 500) });
    }
  }
  scheduler.runUntil(scheduler.nowMs() + 1, 10_000);
  const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
  t.log(`100k persists in ${elapsedMs.toFixed(0)} ms`);
  t.true(elapsedMs < 5000);
  const state = disk.load();
  t.is(Number(state.snapshot?.meta.index), 99_500);
  t.is(state.entries.length, 500);
});
