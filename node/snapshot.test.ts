// Goal: a snapshot file refuses every torn or altered byte; a restore or a forced new cluster keeps all desired state,
// names only the restored members, and writes a data dir the storage loads back; an existing data dir is never touched.
import test, { type ExecutionContext } from 'ava';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kvMachineFactory, RING_EPOCH_KEY } from '../consensus/kv-machine.ts';
import { encodeCommand, KvStateMachine, type KvCommand } from '../consensus/kv-state-machine.ts';
import { encodeConfChange } from '../consensus/raft.ts';
import { bootstrapState, type PersistedState } from '../consensus/storage.ts';
import type { Entry, LogIndex, NodeId, Term } from '../consensus/types.ts';
import { openRaftStorage } from './data-dir.ts';
import { decodeSnapshotFile, encodeSnapshotFile, SnapshotFileCorruptError } from './snapshot-file.ts';
import { forcedState, restoredState } from './snapshot-rebuild.ts';
import { DataDirNotEmptyError, restoreSnapshot } from './snapshot-restore.ts';
import { dirListing } from './testing/dir-listing.ts';

const tempDir = async (t: ExecutionContext): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), 'debughost-snapshot-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
};

const OLD_MEMBERS = [
  { id: 'n1', address: '127.0.0.1:2701' },
  { id: 'n2', address: '127.0.0.1:2702' },
  { id: 'n3', address: '127.0.0.1:2703' },
];

/** The state a 3-node cluster with two projects might hold, including the old cluster's members and a down mark. */
function clusterState(): KvStateMachine {
  const kv = new KvStateMachine();
  const commands: KvCommand[] = [
    ...OLD_MEMBERS.map((m): KvCommand => ({ type: 'put', key: `members/${m.id}`, value: m.address })),
    { type: 'put', key: RING_EPOCH_KEY, value: 'join n3' },
    { type: 'put', key: 'projects/default/web', value: JSON.stringify({ desired: 'running', generation: 1 }) },
    { type: 'put', key: 'projects/default/batch', value: JSON.stringify({ desired: 'stopped', generation: 2 }) },
    { type: 'put', key: 'status/default/web', value: JSON.stringify({ state: 'running', node: 'n2' }) },
    { type: 'put', key: 'liveness/n3', value: 'down' },
    { type: 'put', key: 'tenants/default/usage', value: '{"projects":1}' },
  ];
  commands.forEach((command, i) => kv.apply((i + 1) as LogIndex, encodeCommand(command)));
  return kv;
}

const fileOf = (kv: KvStateMachine): Uint8Array =>
  encodeSnapshotFile({ clusterId: 'c0ffee', takenBy: 'n2', appliedIndex: kv.appliedIndex, revision: kv.revision, keys: kv.size, createdAt: '2026-01-01T00:00:00.000Z', members: OLD_MEMBERS }, kv.snapshot());

test('a snapshot file decodes to the state it was made from', (t) => {
  const kv = clusterState();
  const decoded = decodeSnapshotFile('backup.snap', fileOf(kv));
  t.is(decoded.header.appliedIndex, kv.appliedIndex);
  t.is(decoded.header.keys, kv.size);
  t.is(decoded.machine.digest(), kv.digest());
  t.deepEqual(decoded.machine.range('', ''), kv.range('', ''));
});

test('every flipped byte, a cut at any length and a foreign file are refused with one line naming the file', (t) => {
  const bytes = fileOf(clusterState());
  for (let at = 0; at < bytes.byteLength; at++) {
    const altered = bytes.slice();
    altered[at] = (altered[at] as number) ^ 0x01;
    const error = t.throws(() => decodeSnapshotFile('backup.snap', altered), { instanceOf: SnapshotFileCorruptError });
    t.false(error?.message.includes('\n') ?? true);
  }
  for (const length of [0, 7, 12, 40, bytes.byteLength - 33, bytes.byteLength - 1]) {
    t.throws(() => decodeSnapshotFile('backup.snap', bytes.subarray(0, length)), { instanceOf: SnapshotFileCorruptError });
  }
  const error = t.throws(() => decodeSnapshotFile('notes.txt', new TextEncoder().encode('not a snapshot at all, just some text here')), { instanceOf: SnapshotFileCorruptError });
  t.regex(error?.message ?? '', /^notes\.txt is not a debughost snapshot or is corrupt \(.*\); use another backup/);
});

test('a restored state keeps all desired state and names only the restored members, all voters, with a new ring epoch', (t) => {
  const kv = clusterState();
  const members = [
    { id: 'n2', address: '10.0.0.2:2701' },
    { id: 'n1', address: '10.0.0.1:2701' },
  ];
  const state = restoredState(kv.snapshot(), members);
  const snapshot = state.persisted.snapshot;
  if (snapshot === null) return t.fail('no snapshot');
  t.deepEqual(snapshot.meta.conf, { voters: ['n1', 'n2'], learners: [] });
  t.is(snapshot.meta.index as number, kv.appliedIndex + 1);
  t.deepEqual(state.persisted.hardState, { term: 1, vote: null, commit: kv.appliedIndex + 1 });
  t.deepEqual(state.batch.snapshot, snapshot);
  t.true(state.batch.dropEntriesAfterSnapshot);
  const restored = kvMachineFactory.restore(snapshot).kv;
  t.deepEqual(
    restored.range('members/', 'members0').map((e) => [e.key, e.value]),
    [
      ['members/n1', '10.0.0.1:2701'],
      ['members/n2', '10.0.0.2:2701'],
    ],
  );
  t.deepEqual(restored.range('liveness/', 'liveness0'), []);
  t.true((restored.get(RING_EPOCH_KEY)?.modRevision ?? 0) > (kv.get(RING_EPOCH_KEY)?.modRevision ?? 0));
  for (const key of ['projects/default/web', 'projects/default/batch', 'status/default/web', 'tenants/default/usage']) {
    t.deepEqual(restored.get(key), kv.get(key), key);
  }
  // Every member restored with the same file and list lands in the same cluster; another list is another cluster.
  t.is(restoredState(kv.snapshot(), [...members].reverse()).clusterId, state.clusterId);
  t.not(restoredState(kv.snapshot(), [members[0] as (typeof members)[0]]).clusterId, state.clusterId);
});

test('a forced new cluster applies the whole surviving log, also entries beyond its recorded commit, and keeps its term', (t) => {
  const founding = bootstrapState(['n1', 'n2', 'n3'] as NodeId[], new Map(OLD_MEMBERS.map((m) => [m.id as NodeId, m.address])));
  const base = founding.entries.length;
  const later: Entry[] = [
    { index: (base + 1) as LogIndex, term: 4 as Term, type: 'normal', data: encodeCommand({ type: 'put', key: 'projects/default/web', value: '{"desired":"running"}' }) },
    { index: (base + 2) as LogIndex, term: 4 as Term, type: 'empty', data: new Uint8Array() },
    { index: (base + 3) as LogIndex, term: 4 as Term, type: 'confChange', data: encodeConfChange({ type: 'addLearner', node: 'n4' as NodeId, address: '127.0.0.1:2704' }) },
    { index: (base + 4) as LogIndex, term: 4 as Term, type: 'normal', data: encodeCommand({ type: 'put', key: 'acknowledged', value: 'yes' }) },
  ];
  const persisted: PersistedState = { hardState: { term: 5 as Term, vote: 'n2' as NodeId, commit: (base + 1) as LogIndex }, snapshot: null, entries: [...founding.entries, ...later] };
  const state = forcedState(persisted, 'c0ffee', { id: 'n1', address: '127.0.0.1:2701' });
  const snapshot = state.persisted.snapshot;
  if (snapshot === null) return t.fail('no snapshot');
  t.is(snapshot.meta.index as number, base + 5);
  t.deepEqual(snapshot.meta.conf, { voters: ['n1'], learners: [] });
  t.deepEqual(state.persisted.hardState, { term: 5, vote: null, commit: base + 5 });
  const kv = kvMachineFactory.restore(snapshot).kv;
  t.is(kv.get('acknowledged')?.value, 'yes');
  t.is(kv.get('projects/default/web')?.value, '{"desired":"running"}');
  t.deepEqual(kv.range('members/', 'members0').map((e) => e.key), ['members/n1']);
  t.not(state.clusterId, 'c0ffee');
});

test('restore writes a data dir the storage loads back; a corrupt file or a non-empty dir changes nothing', async (t) => {
  const root = await tempDir(t);
  const file = join(root, 'backup.snap');
  await writeFile(file, fileOf(clusterState()));
  const members = [{ id: 'n1', address: '127.0.0.1:2701' }];
  const dataDir = join(root, 'n1');
  const result = await restoreSnapshot({ file, dataDir, id: 'n1', members });
  const storage = await openRaftStorage(dataDir, {});
  try {
    t.deepEqual(storage.readMeta(), { clusterId: result.clusterId, nodeId: 'n1' });
    t.is(storage.load().snapshot?.meta.index as number | undefined, result.index);
    t.is(kvMachineFactory.restore(storage.load().snapshot as NonNullable<PersistedState['snapshot']>).kv.get('projects/default/web')?.version, 1);
  } finally {
    await storage.close();
  }
  t.deepEqual(JSON.parse(await readFile(join(dataDir, 'identity.json'), 'utf8')), { clusterId: result.clusterId, nodeId: 'n1' });

  // Into an existing data dir: refused, and its files are exactly as they were.
  const before = await dirListing(dataDir);
  await t.throwsAsync(restoreSnapshot({ file, dataDir, id: 'n1', members }), { instanceOf: DataDirNotEmptyError });
  t.deepEqual(await dirListing(dataDir), before);

  // A torn file: refused before any directory is made; an empty target directory is fine.
  const torn = join(root, 'torn.snap');
  await writeFile(torn, (await readFile(file)).subarray(0, 100));
  await t.throwsAsync(restoreSnapshot({ file: torn, dataDir: join(root, 'n2'), id: 'n2', members: [{ id: 'n2', address: '127.0.0.1:2702' }] }), { instanceOf: SnapshotFileCorruptError });
  await t.throwsAsync(stat(join(root, 'n2')), { code: 'ENOENT' });
  await mkdir(join(root, 'n3'));
  await restoreSnapshot({ file, dataDir: join(root, 'n3'), id: 'n3', members: [{ id: 'n3', address: '127.0.0.1:2703' }] });
  // Nothing of the building dirs is left beside the targets.
  t.deepEqual((await readdir(root)).sort(), ['backup.snap', 'n1', 'n3', 'torn.snap']);
});
