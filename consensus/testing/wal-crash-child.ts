// Child process for consensus/storage-wal.test.ts. Usage:
//   node --import tsx consensus/testing/wal-crash-child.ts DIR write SEED
//     appends entries (term a pure function of the index, data the index) with
//     a few persists in flight and an occasional compaction snapshot, printing
//     `ack FIRST LAST` once a batch's done fires, until it is killed;
//   node --import tsx consensus/testing/wal-crash-child.ts DIR hold
//     opens the storage, prints `ready` and holds the LOCK until killed.
import { pathToFileURL } from 'node:url';
import type { PersistBatch } from '../storage.ts';
import { WalStorage } from '../storage-wal.ts';
import { systemClock } from '../../node/system.ts';
import type { Entry, LogIndex, NodeId, Term } from '../types.ts';
import { Prng } from '../../simulator/prng.ts';

/** The term every run writes at an index, so reruns never conflict and the parent can check it. */
export const crashTermOf = (index: number): number => 1 + Math.floor(index / 37);

/** Entry data: the index as 8 bytes, then padding. */
export function crashEntryData(index: number, paddingBytes: number): Uint8Array {
  const data = new Uint8Array(8 + paddingBytes);
  new DataView(data.buffer).setFloat64(0, index);
  return data;
}

export const crashEntryIndexOf = (data: Uint8Array): number => new DataView(data.buffer, data.byteOffset, data.byteLength).getFloat64(0);

const INFLIGHT_MAX = 3;
/** Small segments, so that kills also land around rotations and segment deletions. */
export const CRASH_SEGMENT_BYTES = 64 * 1024;
const SNAPSHOT_EVERY_ENTRIES = 150;

async function write(dir: string, seed: number): Promise<void> {
  const storage = await WalStorage.open(dir, { clock: systemClock, segmentBytes: CRASH_SEGMENT_BYTES });
  const loaded = storage.load();
  const prng = new Prng(seed);
  let lastIndex = (loaded.snapshot?.meta.index ?? 0) + loaded.entries.length;
  let snapshotIndex = loaded.snapshot?.meta.index ?? 0;
  let inflight = 0;
  process.stdout.write(`ready ${snapshotIndex} ${lastIndex}\n`);

  const next = (): void => {
    while (inflight < INFLIGHT_MAX) {
      const batch = lastIndex - snapshotIndex > SNAPSHOT_EVERY_ENTRIES && prng.chance(0.2) ? compaction() : append();
      inflight++;
      storage.persist(batch.batch, (error) => {
        if (error !== null) {
          process.stderr.write(`persist failed: ${error.message}\n`);
          process.exit(1);
        }
        inflight--;
        process.stdout.write(`${batch.line}\n`);
        next();
      });
    }
  };

  const append = (): { batch: PersistBatch; line: string } => {
    const first = lastIndex + 1;
    const count = prng.range(1, 20);
    const entries: Entry[] = Array.from({ length: count }, (_, i) => ({
      index: (first + i) as LogIndex,
      term: crashTermOf(first + i) as Term,
      type: 'normal',
      data: crashEntryData(first + i, prng.int(200)),
    }));
    lastIndex = first + count - 1;
    const hardState = { term: crashTermOf(lastIndex) as Term, vote: 'n1' as NodeId, commit: lastIndex as LogIndex };
    return { batch: { hardState, snapshot: null, dropEntriesAfterSnapshot: false, entries }, line: `ack ${first} ${lastIndex}` };
  };

  const compaction = (): { batch: PersistBatch; line: string } => {
    const index = lastIndex - prng.int(10);
    snapshotIndex = index;
    const snapshot = { meta: { index: index as LogIndex, term: crashTermOf(index) as Term, conf: { voters: ['n1' as NodeId], learners: [] } }, data: new Uint8Array(1000) };
    return { batch: { hardState: null, snapshot, dropEntriesAfterSnapshot: false, entries: [] }, line: `snap ${index}` };
  };

  next();
}

async function hold(dir: string): Promise<void> {
  await WalStorage.open(dir, { clock: systemClock, segmentBytes: CRASH_SEGMENT_BYTES });
  process.stdout.write('ready\n');
  setInterval(() => undefined, 60_000);
}

function main(): void {
  const [dir, mode = 'write', seed = '1'] = process.argv.slice(2);
  if (dir === undefined) {
    process.stderr.write('usage: wal-crash-child.ts DIR [write SEED | hold]\n');
    process.exit(2);
  }
  (mode === 'hold' ? hold(dir) : write(dir, Number(seed))).catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}\n`);
    process.exit(1);
  });
}

// The test imports the helpers above; only a direct run starts a child.
const script = process.argv[1];
if (script !== undefined && import.meta.url === pathToFileURL(script).href) main();
