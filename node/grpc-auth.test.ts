// The gRPC access interceptor on a real in-process server: every method of every service has a rule; peers need the secret's proof and membership; clients need a token with the right; refused calls never reach a handler; --insecure-no-auth makes a tokenless client the anonymous admin.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import type { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import { issueToken, tokenKey, TokenVerifier } from '../actors/tokens.ts';
import { KvStateMachine, encodeCommand } from '../consensus/kv-state-machine.ts';
import type { LogIndex } from '../consensus/types.ts';
import { Actors } from '../proto/gen/actor_pb.ts';
import { Admin, StatusRequestSchema, StatusResponseSchema } from '../proto/gen/admin_pb.ts';
import { KV, PutRequestSchema, PutResponseSchema } from '../proto/gen/kv_pb.ts';
import { Raft, RaftBatchSchema, SendAckSchema } from '../proto/gen/raft_pb.ts';
import { addService, callUnary, makeClientConstructor, type ServiceImplementation } from '../proto/grpc.ts';
import { GrpcAuth, METHOD_ACCESS, type Caller } from './grpc-auth.ts';
import { PeerAuthenticator, peerMetadata, withMetadata } from './peer-auth.ts';
import { codeOf } from './local-cluster.ts';

test('every method of every service a node serves has an access rule; an unknown path is refused', (t) => {
  const services: GenService<GenServiceMethods>[] = [Raft, KV, Admin, Actors];
  for (const service of services) {
    for (const method of Object.values(service.method)) t.true(METHOD_ACCESS.has(`/${service.typeName}/${method.name}`), `${service.typeName}/${method.name}`);
  }
  const auth = new GrpcAuth({ peers: new PeerAuthenticator({ tls: false, secret: () => null, isMember: () => true }), verifier: new TokenVerifier(() => new KvStateMachine(), () => 0), insecureNoAuth: true });
  const decision = auth.decide('/debughost.admin.v1.Admin/NoSuchMethod', { metadata: new grpc.Metadata() });
  t.false(decision.ok, 'a method without a rule is refused, even with --insecure-no-auth');
});

interface Harness {
  address: string;
  reached: string[];
  callers: (Caller | null)[];
  tokens: Record<'viewer' | 'admin', string>;
  secret: Buffer;
  close: () => void;
}

async function harness(insecureNoAuth: boolean): Promise<Harness> {
  const kv = new KvStateMachine();
  let index = 0;
  const tokens = {} as Record<'viewer' | 'admin', string>;
  for (const role of ['viewer', 'admin'] as const) {
    const { token, record } = issueToken({ kind: 'client', tenant: 'alice', role, ttlMs: null, createdBy: 'test' }, randomBytes, 0);
    kv.apply(++index as LogIndex, encodeCommand({ type: 'put', key: tokenKey(record.id), value: JSON.stringify(record) }));
    tokens[role] = token;
  }
  const secret = randomBytes(32);
  const peers = new PeerAuthenticator({ tls: false, secret: () => secret, isMember: (id) => id === 'n1' || id === 'n2' });
  const auth = new GrpcAuth({ peers, verifier: new TokenVerifier(() => kv, () => 0), insecureNoAuth });
  const server = new grpc.Server({ interceptors: [auth.interceptor()] });
  const reached: string[] = [];
  const callers: (Caller | null)[] = [];
  const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<never>): void => callback({ code: grpc.status.UNIMPLEMENTED });
  addService(server, Raft, {
    send: (_call, callback) => callback({ code: grpc.status.UNIMPLEMENTED }),
    sendOne: (call, callback) => {
      reached.push('sendOne');
      callers.push(auth.callerOf('/debughost.raft.v1.Raft/SendOne', call));
      callback(null, create(SendAckSchema, { messages: 0n }));
    },
    join: unimplemented,
  });
  const kvService: ServiceImplementation<typeof KV extends GenService<infer M> ? M : never> = {
    range: unimplemented,
    deleteRange: unimplemented,
    txn: unimplemented,
    watch: (call) => call.end(),
    put: (call, callback) => {
      reached.push('put');
      callers.push(auth.callerOf('/debughost.kv.v1.KV/Put', call));
      callback(null, create(PutResponseSchema, { succeeded: true }));
    },
  };
  addService(server, KV, kvService);
  addService(server, Admin, {
    memberList: unimplemented,
    memberAdd: unimplemented,
    memberPromote: unimplemented,
    memberRemove: unimplemented,
    transferLeadership: unimplemented,
    tokenCreate: unimplemented,
    tokenRevoke: unimplemented,
    tokenList: unimplemented,
    auditQuery: unimplemented,
    auditVerify: unimplemented,
    status: (_call, callback) => {
      reached.push('status');
      callback(null, create(StatusResponseSchema, { id: 'n1' }));
    },
      snapshotSave: (call) => call.emit('error', { code: grpc.status.UNIMPLEMENTED }),
});
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))));
  return { address: `127.0.0.1:${port}`, reached, callers, tokens, secret, close: () => server.forceShutdown() };
}

const RaftClient = makeClientConstructor(Raft);
const KvClient = makeClientConstructor(KV);
const AdminClient = makeClientConstructor(Admin);

test('peers: no proof, another cluster\'s secret and a non-member are refused before the handler; a member gets through as itself', async (t) => {
  const h = await harness(false);
  t.teardown(() => h.close());
  const sendOne = (credentials: grpc.ChannelCredentials) => {
    const client = new RaftClient(h.address, credentials);
    return codeOf(callUnary(client, 'sendOne', create(RaftBatchSchema, {}), { deadline: Date.now() + 5000 })).finally(() => client.close());
  };
  t.is(await sendOne(grpc.credentials.createInsecure()), grpc.status.UNAUTHENTICATED);
  t.is(await sendOne(withMetadata(null, peerMetadata('n1', () => randomBytes(32)))), grpc.status.UNAUTHENTICATED, 'another secret');
  t.is(await sendOne(withMetadata(null, peerMetadata('n7', () => h.secret))), grpc.status.PERMISSION_DENIED, 'the right secret, but no member');
  t.deepEqual(h.reached, [], 'no refused call reached the handler');
  t.is(await sendOne(withMetadata(null, peerMetadata('n2', () => h.secret))), 'ok');
  t.deepEqual(h.callers, [{ kind: 'peer', node: 'n2' }]);
});

test('clients: no token, a viewer token and a bad token are refused for KV; an admin token gets through; status needs nothing', async (t) => {
  const h = await harness(false);
  t.teardown(() => h.close());
  const put = async (header: string | null) => {
    const client = new KvClient(h.address, header === null ? grpc.credentials.createInsecure() : withMetadata(null, () => ({ authorization: header })));
    try {
      return await callUnary(client, 'put', create(PutRequestSchema, { key: 'a', value: 'b' }), { deadline: Date.now() + 5000 }).then(
        () => ({ code: 'ok' as const, details: '' }),
        (error: grpc.ServiceError) => ({ code: error.code, details: error.details }),
      );
    } finally {
      client.close();
    }
  };
  t.is((await put(null)).code, grpc.status.UNAUTHENTICATED);
  t.is((await put('Bearer dht.0000000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')).code, grpc.status.UNAUTHENTICATED);
  const viewer = await put(`Bearer ${h.tokens.viewer}`);
  t.is(viewer.code, grpc.status.PERMISSION_DENIED);
  t.regex(viewer.details, /lacks the right 'cluster\.kv'/);
  t.deepEqual(h.reached, []);
  t.is((await put(`Bearer ${h.tokens.admin}`)).code, 'ok');
  t.like(h.callers[0], { kind: 'client', identity: { tenant: 'alice', role: 'admin' } });
  const admin = new AdminClient(h.address, grpc.credentials.createInsecure());
  t.teardown(() => admin.close());
  t.is(await codeOf(callUnary(admin, 'status', create(StatusRequestSchema, {}), { deadline: Date.now() + 5000 })), 'ok');
});

test('--insecure-no-auth: a client without a token is the anonymous admin; the peer plane still needs the proof', async (t) => {
  const h = await harness(true);
  t.teardown(() => h.close());
  const kv = new KvClient(h.address, grpc.credentials.createInsecure());
  const raft = new RaftClient(h.address, grpc.credentials.createInsecure());
  t.teardown(() => [kv, raft].forEach((c) => c.close()));
  t.is(await codeOf(callUnary(kv, 'put', create(PutRequestSchema, { key: 'a', value: 'b' }), { deadline: Date.now() + 5000 })), 'ok');
  t.like(h.callers[0], { kind: 'client', identity: { tokenId: 'anonymous', role: 'admin' } });
  t.is(await codeOf(callUnary(raft, 'sendOne', create(RaftBatchSchema, {}), { deadline: Date.now() + 5000 })), grpc.status.UNAUTHENTICATED);
});
