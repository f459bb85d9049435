// gRPC clients to other nodes by address, cached, for the calls a node makes
// itself: asking seeds who they are, joining, forwarding writes to the leader.
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { Admin, StatusRequestSchema, type StatusResponse } from '../proto/gen/admin_pb.ts';
import { KV } from '../proto/gen/kv_pb.ts';
import { JoinRequestSchema, Raft, type JoinResponse } from '../proto/gen/raft_pb.ts';
import { callUnary, makeClientConstructor } from '../proto/grpc.ts';
import { MESSAGE_BYTES_MAX, grpcChannelOptions } from '../consensus/transport-grpc.ts';

const AdminClient = makeClientConstructor(Admin);
const RaftClient = makeClientConstructor(Raft);
const KvClient = makeClientConstructor(KV);

export type AdminClientType = InstanceType<typeof AdminClient>;
export type RaftClientType = InstanceType<typeof RaftClient>;
export type KvClientType = InstanceType<typeof KvClient>;

export const deadlineIn = (ms: number): Date => new Date(Date.now() + ms);

export class PeerClients {
  private readonly admin = new Map<string, AdminClientType>();
  private readonly raft = new Map<string, RaftClientType>();
  private readonly kv = new Map<string, KvClientType>();

  constructor(private readonly credentials: grpc.ChannelCredentials) {}

  adminAt(address: string): AdminClientType {
    return cached(this.admin, address, () => new AdminClient(address, this.credentials, grpcChannelOptions(MESSAGE_BYTES_MAX)));
  }

  raftAt(address: string): RaftClientType {
    return cached(this.raft, address, () => new RaftClient(address, this.credentials, grpcChannelOptions(MESSAGE_BYTES_MAX)));
  }

  kvAt(address: string): KvClientType {
    return cached(this.kv, address, () => new KvClient(address, this.credentials, grpcChannelOptions(MESSAGE_BYTES_MAX)));
  }

  status(address: string, timeoutMs: number): Promise<StatusResponse> {
    return callUnary(this.adminAt(address), 'status', create(StatusRequestSchema, {}), { deadline: deadlineIn(timeoutMs) });
  }

  join(address: string, request: { nodeId: string; address: string; clusterId: string; joinToken: string }, timeoutMs: number): Promise<JoinResponse> {
    return callUnary(this.raftAt(address), 'join', create(JoinRequestSchema, request), { deadline: deadlineIn(timeoutMs) });
  }

  close(): void {
    for (const map of [this.admin, this.raft, this.kv] as Map<string, grpc.Client>[]) {
      for (const client of map.values()) client.close();
      map.clear();
    }
  }
}

function cached<T>(map: Map<string, T>, address: string, make: () => T): T {
  let client = map.get(address);
  if (client === undefined) {
    client = make();
    map.set(address, client);
  }
  return client;
}
