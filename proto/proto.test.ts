// Goal: the committed generated code matches the .proto files, every Raft message survives the wire unchanged, and the grpc-js adapter serves real calls.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type { Entry, LogIndex, Message, MessageType, NodeId, Term } from '../consensus/types.ts';
import { fromUint64, MalformedMessageError, messageFromProto, messageToProto, toUint64 } from './convert.ts';
import { Admin, Role, StatusResponseSchema } from './gen/admin_pb.ts';
import { EntryType, Raft, RaftBatchSchema, RaftMessageSchema, SendAckSchema } from './gen/raft_pb.ts';
import type { RaftBatch } from './gen/raft_pb.ts';
import { addService, callUnary, grpcServiceFromDescriptor, makeClientConstructor } from './grpc.ts';

const protoDir = path.dirname(fileURLToPath(import.meta.url));
const repoDir = path.dirname(protoDir);
const execFileAsync = promisify(execFile);

// ---------------------------------------------------------------------------
// (a) generated code is up to date

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const relative = path.join(prefix, entry.name);
    if (entry.isDirectory()) found.push(...(await listFiles(path.join(dir, entry.name), relative)));
    else found.push(relative);
  }
  return found.sort();
}

test('buf generate into a temp dir reproduces proto/gen byte for byte', async (t) => {
  const outputDir = await mkdtemp(path.join(tmpdir(), 'debughost-proto-'));
  try {
    const bin = path.join(repoDir, 'node_modules', '.bin');
    // Same template as `npm run proto`; --output prefixes its `out: gen`.
    await execFileAsync(path.join(bin, 'buf'), ['generate', '--output', outputDir], {
      cwd: protoDir,
      env: { ...process.env, PATH: `${bin}${path.delimiter}${process.env['PATH'] ?? ''}` },
      timeout: 120_000,
    });
    const committedDir = path.join(protoDir, 'gen');
    const regeneratedDir = path.join(outputDir, 'gen');
    const committed = await listFiles(committedDir);
    t.deepEqual(await listFiles(regeneratedDir), committed, 'same files (run `npm run proto`)');
    t.true(committed.length >= 3);
    for (const file of committed) {
      const [want, got] = await Promise.all([readFile(path.join(committedDir, file)), readFile(path.join(regeneratedDir, file))]);
      t.true(want.equals(got), `${file} is stale: run \`npm run proto\``);
    }
  } finally {
    await rm(outputDir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------
// (b) every Message variant round-trips

const a = 'node-a' as NodeId;
const b = 'node-b' as NodeId;
const n = (value: number): LogIndex => value as LogIndex;
const tm = (value: number): Term => value as Term;
const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);
const largest = Number.MAX_SAFE_INTEGER;

const entries: Entry[] = [
  { term: tm(3), index: n(10), type: 'empty', data: new Uint8Array(0) },
  { term: tm(3), index: n(11), type: 'normal', data: bytes(1, 2, 3, 0, 255) },
  { term: tm(4), index: n(12), type: 'confChange', data: new TextEncoder().encode('{"type":"addLearner","node":"node-c"}') },
  { term: tm(largest), index: n(largest), type: 'normal', data: new Uint8Array(0) },
];

const base = { from: a, to: b, term: tm(7) };

// The mapped type makes a new variant of the union fail to compile until it has samples here.
const samples: { readonly [Type in MessageType]: ReadonlyArray<Message & { readonly type: Type }> } = {
  preVote: [{ ...base, type: 'preVote', lastLogIndex: n(12), lastLogTerm: tm(4), transfer: false }],
  vote: [{ ...base, term: tm(0), type: 'vote', lastLogIndex: n(0), lastLogTerm: tm(0), transfer: true }],
  preVoteResp: [{ ...base, type: 'preVoteResp', granted: true }],
  voteResp: [{ ...base, type: 'voteResp', granted: false }],
  append: [
    { ...base, type: 'append', prevLogIndex: n(9), prevLogTerm: tm(3), entries, commit: n(11) },
    { ...base, type: 'append', prevLogIndex: n(0), prevLogTerm: tm(0), entries: [], commit: n(0) },
  ],
  appendResp: [
    { ...base, type: 'appendResp', success: true, index: n(12), rejectHint: n(0), rejectHintTerm: tm(0) },
    { ...base, type: 'appendResp', success: false, index: n(9), rejectHint: n(5), rejectHintTerm: tm(2) },
  ],
  heartbeat: [
    { ...base, type: 'heartbeat', commit: n(11), readContext: null },
    { ...base, type: 'heartbeat', commit: n(11), readContext: 'read-42' },
    { ...base, type: 'heartbeat', commit: n(0), readContext: '' },
  ],
  heartbeatResp: [
    { ...base, type: 'heartbeatResp', readContext: null },
    { ...base, type: 'heartbeatResp', readContext: 'read-42' },
  ],
  snapshotChunk: [
    {
      ...base,
      type: 'snapshotChunk',
      meta: { index: n(100), term: tm(6), conf: { voters: [a, b, 'node-c' as NodeId], learners: ['node-d' as NodeId] } },
      offset: 65536,
      totalBytes: 200000,
      chunk: bytes(9, 8, 7),
      done: false,
    },
    {
      ...base,
      type: 'snapshotChunk',
      meta: { index: n(1), term: tm(1), conf: { voters: [], learners: [] } },
      offset: 0,
      totalBytes: 0,
      chunk: new Uint8Array(0),
      done: true,
    },
  ],
  snapshotChunkResp: [{ ...base, type: 'snapshotChunkResp', snapshotIndex: n(100), nextOffset: 131072, rejected: false }],
  timeoutNow: [{ ...base, type: 'timeoutNow' }],
  readIndex: [{ ...base, type: 'readIndex', requestId: 'r-1' }],
  readIndexResp: [
    { ...base, type: 'readIndexResp', requestId: 'r-1', index: n(11), ok: true },
    { ...base, type: 'readIndexResp', requestId: 'r-2', index: n(0), ok: false },
  ],
};

const allSamples: Message[] = Object.values(samples).flat();

test('every Message variant round-trips through messageToProto, toBinary, fromBinary, messageFromProto', (t) => {
  for (const message of allSamples) {
    const wire = toBinary(RaftMessageSchema, messageToProto(message));
    const back = messageFromProto(fromBinary(RaftMessageSchema, wire));
    t.deepEqual(back, message, message.type);
  }
});

test('the oneof case name of each variant is its Message type', (t) => {
  for (const message of allSamples) t.is(messageToProto(message).body.case, message.type);
});

test('entry data passes into the wire message without a copy', (t) => {
  const proto = messageToProto({ ...base, type: 'append', prevLogIndex: n(9), prevLogTerm: tm(3), entries, commit: n(11) });
  t.true(proto.body.case === 'append' && proto.body.value.entries[1]?.data === entries[1]?.data);
});

test('messageFromProto rejects what the core must not see', (t) => {
  const noBody = create(RaftMessageSchema, { from: 'a', to: 'b', term: 1n });
  t.throws(() => messageFromProto(noBody), { instanceOf: MalformedMessageError });

  const noFrom = create(RaftMessageSchema, { to: 'b', body: { case: 'timeoutNow', value: {} } });
  t.throws(() => messageFromProto(noFrom), { instanceOf: MalformedMessageError });

  const hugeTerm = create(RaftMessageSchema, { from: 'a', to: 'b', term: 2n ** 53n, body: { case: 'timeoutNow', value: {} } });
  t.throws(() => messageFromProto(hugeTerm), { instanceOf: MalformedMessageError, message: /term/ });

  const unknownEntry = create(RaftMessageSchema, {
    from: 'a',
    to: 'b',
    term: 1n,
    body: { case: 'append', value: { entries: [{ term: 1n, index: 1n, type: EntryType.UNSPECIFIED }] } },
  });
  t.throws(() => messageFromProto(unknownEntry), { instanceOf: MalformedMessageError, message: /entry type/ });

  const noMeta = create(RaftMessageSchema, { from: 'a', to: 'b', term: 1n, body: { case: 'snapshotChunk', value: {} } });
  t.throws(() => messageFromProto(noMeta), { instanceOf: MalformedMessageError });
});

test('uint64 helpers keep safe integers and refuse the rest', (t) => {
  t.is(toUint64(largest), 9007199254740991n);
  t.is(fromUint64(9007199254740991n, 'x'), largest);
  t.throws(() => toUint64(-1));
  t.throws(() => toUint64(1.5));
  t.throws(() => fromUint64(2n ** 64n - 1n, 'x'), { instanceOf: MalformedMessageError });
});

// ---------------------------------------------------------------------------
// (c) the adapter against a real grpc-js server and client

test('the adapter maps paths and streaming flags from the descriptor', (t) => {
  const raft = grpcServiceFromDescriptor(Raft);
  t.like(raft.send, { path: '/debughost.raft.v1.Raft/Send', requestStream: true, responseStream: false, originalName: 'Send' });
  t.like(raft.sendOne, { path: '/debughost.raft.v1.Raft/SendOne', requestStream: false, responseStream: false });
  t.deepEqual(Object.keys(grpcServiceFromDescriptor(Admin)), [
    'memberList',
    'memberAdd',
    'memberPromote',
    'memberRemove',
    'transferLeadership',
    'status',
    'snapshotSave',
    'tokenCreate',
    'tokenRevoke',
    'tokenList',
    'auditQuery',
    'auditVerify',
  ]);
  t.like(grpcServiceFromDescriptor(Admin).snapshotSave, { path: '/debughost.admin.v1.Admin/SnapshotSave', requestStream: false, responseStream: true });
});

function bind(server: grpc.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => (error === null ? resolve(port) : reject(error)));
  });
}

function shutdown(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => server.tryShutdown(() => resolve()));
}

test('a client stream carries three batches intact and a unary Admin.Status answers', async (t) => {
  const received: RaftBatch[] = [];
  const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<never>): void => callback({ code: grpc.status.UNIMPLEMENTED });
  const server = new grpc.Server();
  addService(server, Raft, {
    send(call, callback) {
      call.on('data', (batch: RaftBatch) => received.push(batch));
      call.on('error', () => undefined);
      call.on('end', () => callback(null, create(SendAckSchema, { messages: BigInt(received.flatMap((batch) => batch.messages).length) })));
    },
    sendOne: unimplemented,
    join: unimplemented,
  });
  addService(server, Admin, {
    memberList: unimplemented,
    memberAdd: unimplemented,
    memberPromote: unimplemented,
    memberRemove: unimplemented,
    transferLeadership: unimplemented,
    snapshotSave: (call) => call.emit('error', { code: grpc.status.UNIMPLEMENTED }),
    tokenCreate: unimplemented,
    tokenRevoke: unimplemented,
    tokenList: unimplemented,
    auditQuery: unimplemented,
    auditVerify: unimplemented,
    status(_call, callback) {
      callback(
        null,
        create(StatusResponseSchema, {
          id: 'node-a',
          role: Role.LEADER,
          term: 7n,
          leaderId: 'node-a',
          commitIndex: 11n,
          appliedIndex: 11n,
          lastIndex: 12n,
          snapshotIndex: 0n,
          members: [{ id: 'node-a', address: '127.0.0.1:7001', learner: false, mcpUrl: 'http://127.0.0.1:8001/mcp' }],
          clusterId: 'c1',
        }),
      );
    },
  });
  const port = await bind(server);
  const address = `127.0.0.1:${port}`;
  const RaftClient = makeClientConstructor(Raft);
  const AdminClient = makeClientConstructor(Admin);
  const raftClient = new RaftClient(address, grpc.credentials.createInsecure());
  const adminClient = new AdminClient(address, grpc.credentials.createInsecure());
  try {
    const batches = [allSamples.slice(0, 5), allSamples.slice(5, 12), allSamples.slice(12)];
    const ack = await new Promise<bigint>((resolve, reject) => {
      const stream = raftClient.send((error, response) => (error === null && response !== undefined ? resolve(response.messages) : reject(error)));
      for (const messages of batches) stream.write(create(RaftBatchSchema, { clusterId: 'c1', messages: messages.map(messageToProto) }));
      stream.end();
    });

    t.is(ack, BigInt(allSamples.length));
    t.is(received.length, 3);
    t.deepEqual(
      received.map((batch) => batch.clusterId),
      ['c1', 'c1', 'c1'],
    );
    t.deepEqual(
      received.map((batch) => batch.messages.map(messageFromProto)),
      batches,
    );

    const status = await callUnary(adminClient, 'status', create(Admin.method.status.input), { deadline: Date.now() + 5_000 });
    t.like(status, { id: 'node-a', role: Role.LEADER, term: 7n, commitIndex: 11n, lastIndex: 12n, clusterId: 'c1' });
    t.is(status.members[0]?.mcpUrl, 'http://127.0.0.1:8001/mcp');

    const error = await t.throwsAsync(callUnary(adminClient, 'memberList', create(Admin.method.memberList.input)));
    t.is((error as grpc.ServiceError | undefined)?.code, grpc.status.UNIMPLEMENTED);

    const aborted = new AbortController();
    aborted.abort();
    const cancelled = await t.throwsAsync(callUnary(adminClient, 'status', create(Admin.method.status.input), { signal: aborted.signal }));
    t.is((cancelled as grpc.ServiceError | undefined)?.code, grpc.status.CANCELLED);
  } finally {
    raftClient.close();
    adminClient.close();
    await shutdown(server);
  }
});
