// Goal: Admin.SnapshotSave streams the state machine as of a confirmed read in bounded chunks, and the client publishes
// the file only when every byte arrived and checks out: a short stream, a refused read or an existing FILE leave nothing.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import test, { type ExecutionContext } from 'ava';
import { kvMachineFactory } from '../consensus/kv-machine.ts';
import { encodeCommand } from '../consensus/kv-state-machine.ts';
import type { LogIndex, Term } from '../consensus/types.ts';
import { Admin, SnapshotSaveResponseSchema } from '../proto/gen/admin_pb.ts';
import { addService, makeClientConstructor } from '../proto/grpc.ts';
import { waitUntil, type DebughostNode } from './node.ts';
import { decodeSnapshotFile } from './snapshot-file.ts';
import { SnapshotTargetExistsError, SnapshotTruncatedError, saveSnapshot } from './snapshot-save.ts';
import { snapshotSaveHandler } from './snapshot-serve.ts';

const AdminClient = makeClientConstructor(Admin);
type SaveHandler = ReturnType<typeof snapshotSaveHandler>;

const tempDir = async (t: ExecutionContext): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), 'debughost-snapshot-save-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
};

/** A state machine of `keys` keys behind a node whose linearizable read answers with it (or refuses). */
function fakeNode(keys: number, readOk = true, held = false): { node: DebughostNode; reads: () => number; release: () => void } {
  const machine = kvMachineFactory.empty();
  for (let i = 1; i <= keys; i++) {
    machine.applyEntry({ index: i as LogIndex, term: 1 as Term, type: 'normal', data: encodeCommand({ type: 'put', key: `projects/t/p${i}`, value: 'x'.repeat(200) }) });
  }
  let reads = 0;
  const waiting: (() => void)[] = [];
  const raft = {
    read: (callback: (outcome: unknown) => void) => {
      reads += 1;
      const answer = (): void => callback(readOk ? { ok: true, index: machine.appliedIndex, machine } : { ok: false, reason: 'notLeader', leaderHint: null });
      if (held) waiting.push(answer);
      else setImmediate(answer);
    },
  };
  const node = { id: 'n1', clusterId: 'c0ffee', raft, members: () => [{ id: 'n1', address: '127.0.0.1:1', learner: false }], options: { log: { info: () => undefined } } };
  return { node: node as unknown as DebughostNode, reads: () => reads, release: () => waiting.splice(0).forEach((answer) => answer()) };
}

async function serve(t: ExecutionContext, snapshotSave: SaveHandler): Promise<InstanceType<typeof AdminClient>> {
  const server = new grpc.Server();
  const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<never>): void => callback({ code: grpc.status.UNIMPLEMENTED });
  addService(server, Admin, { memberList: unimplemented, memberAdd: unimplemented, memberPromote: unimplemented, memberRemove: unimplemented, transferLeadership: unimplemented, status: unimplemented, tokenCreate: unimplemented, tokenRevoke: unimplemented, tokenList: unimplemented, auditQuery: unimplemented, auditVerify: unimplemented, snapshotSave });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))));
  const client = new AdminClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.teardown(() => {
    client.close();
    server.forceShutdown();
  });
  return client;
}

const init = () => ({ metadata: new grpc.Metadata(), deadline: Date.now() + 30_000 });

test('a save streams in bounded chunks and writes the state as of the confirmed read, checked, under FILE only', async (t) => {
  const dir = await tempDir(t);
  const { node } = fakeNode(500);
  const client = await serve(t, snapshotSaveHandler(node, { chunkBytes: 4096, savesInFlightMax: 1 }, () => new Date('2026-01-01T00:00:00Z')));
  const file = join(dir, 'backup.snap');
  const saved = await saveSnapshot(client, file, init());
  t.true(saved.bytes > 100_000, `${saved.bytes} bytes: many chunks of 4 KiB`);
  const decoded = decodeSnapshotFile(file, await readFile(file));
  t.is(decoded.header.appliedIndex, 500);
  t.is(decoded.header.keys, 500);
  t.is(decoded.header.createdAt, '2026-01-01T00:00:00.000Z');
  t.is(decoded.machine.get('projects/t/p250')?.value, 'x'.repeat(200));
  t.deepEqual(await readdir(dir), ['backup.snap'], 'no temporary file is left');
  // An existing FILE is never replaced.
  await t.throwsAsync(saveSnapshot(client, file, init()), { instanceOf: SnapshotTargetExistsError });
  t.deepEqual(await readdir(dir), ['backup.snap']);
});

test('a stream cut short, a read no quorum confirmed, and a full node leave no file', async (t) => {
  const dir = await tempDir(t);
  // A server that announces more bytes than it sends.
  const short = await serve(t, (call) => {
    call.write(create(SnapshotSaveResponseSchema, { data: new Uint8Array(100), totalBytes: 1000n, appliedIndex: 1n }));
    call.end();
  });
  await t.throwsAsync(saveSnapshot(short, join(dir, 'short.snap'), init()), { instanceOf: SnapshotTruncatedError });
  // All the bytes, but not a snapshot: refused by the read-back check.
  const garbage = await serve(t, (call) => {
    call.write(create(SnapshotSaveResponseSchema, { data: new Uint8Array(1000).fill(7), totalBytes: 1000n, appliedIndex: 1n }));
    call.end();
  });
  await t.throwsAsync(saveSnapshot(garbage, join(dir, 'garbage.snap'), init()), { name: 'SnapshotFileCorruptError' });
  const refused = await serve(t, snapshotSaveHandler(fakeNode(3, false).node));
  const error = await t.throwsAsync(saveSnapshot(refused, join(dir, 'refused.snap'), init()));
  t.is((error as grpc.ServiceError).code, grpc.status.UNAVAILABLE);
  t.regex((error as grpc.ServiceError).details, /could not be confirmed by a quorum/);
  t.deepEqual(await readdir(dir), []);

  // One save at a time on this node: a second one while the first waits for its read is refused; the first completes.
  const busy = fakeNode(20, true, true);
  const limited = await serve(t, snapshotSaveHandler(busy.node, { chunkBytes: 1024, savesInFlightMax: 1 }));
  const first = saveSnapshot(limited, join(dir, 'first.snap'), init());
  t.true(await waitUntil(() => busy.reads() === 1, 10_000));
  const second = await t.throwsAsync(saveSnapshot(limited, join(dir, 'second.snap'), init()));
  t.is((second as grpc.ServiceError).code, grpc.status.RESOURCE_EXHAUSTED);
  busy.release();
  t.is((await first).header.keys, 20);
  t.deepEqual(await readdir(dir), ['first.snap']);
});

