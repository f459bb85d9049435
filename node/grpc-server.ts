// The gRPC services one node serves: Raft (peer streams, join), KV (etcd-like)
// and Admin. Writes reaching a follower are forwarded to the leader; reads are
// linearizable through ReadIndex on any node. Outcomes map to gRPC status codes
// here and nowhere else.
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { encodeCommand, validateCommand, type Compare, type KeyValue, type KvCommand, type KvOp, type KvResult, type OpResult } from '../consensus/kv-state-machine.ts';
import type { KvMachine } from '../consensus/kv-machine.ts';
import type { ReadOutcome, WriteOutcome } from '../consensus/raft-node.ts';
import { raftStreamHandler } from '../consensus/transport-grpc.ts';
import { addActorsService } from '../actors/forwarder-grpc.ts';
import { actorsServiceHandlers } from './node-actors.ts';
import type { NodeId } from '../consensus/types.ts';
import {
  Admin,
  MemberAddResponseSchema,
  MemberListResponseSchema,
  MemberPromoteResponseSchema,
  MemberRemoveResponseSchema,
  Role,
  StatusResponseSchema,
  TransferLeadershipResponseSchema,
  type StatusResponse,
} from '../proto/gen/admin_pb.ts';
import {
  CompareOp,
  CompareTarget,
  DeleteRangeResponseSchema,
  KV,
  KeyValueSchema,
  PutResponseSchema,
  RangeResponseSchema,
  ResponseOpSchema,
  TxnResponseSchema,
  ResponseHeaderSchema,
  type Compare as ProtoCompare,
  type KeyValue as ProtoKeyValue,
  type RangeRequest,
  type RequestOp,
  type ResponseOp,
} from '../proto/gen/kv_pb.ts';
import { JoinResponseSchema, MemberSchema, Raft, SendAckSchema, type JoinRequest, type JoinResponse } from '../proto/gen/raft_pb.ts';
import { addService, callUnary } from '../proto/grpc.ts';
import { MESSAGE_BYTES_MAX } from '../consensus/transport-grpc.ts';
import { type DebughostNode, waitUntil } from './node.ts';
import { deadlineIn } from './peer-clients.ts';
import { serveWatch } from './watch-service.ts';
import { snapshotSaveHandler } from './snapshot-serve.ts';
import { RpcError, unary } from './grpc-unary.ts';
import { adminTrustHandlers, type Audited } from './admin-trust-service.ts';
import { methodPath, type Caller } from './grpc-auth.ts';
import type { PeerCall } from './peer-auth.ts';
import { commandWritesSystemKey } from '../actors/system-keys.ts';
import type { Message } from '../consensus/types.ts';

export { RpcError };

const RAFT_SEND = methodPath(Raft, 'send');
const RAFT_SEND_ONE = methodPath(Raft, 'sendOne');
const KV_PUT = methodPath(KV, 'put');
const KV_DELETE_RANGE = methodPath(KV, 'deleteRange');
const KV_TXN = methodPath(KV, 'txn');
const ADMIN_MEMBER_ADD = methodPath(Admin, 'memberAdd');
const ADMIN_MEMBER_PROMOTE = methodPath(Admin, 'memberPromote');
const ADMIN_MEMBER_REMOVE = methodPath(Admin, 'memberRemove');
const ADMIN_TRANSFER = methodPath(Admin, 'transferLeadership');

const FORWARD_TIMEOUT_MS = 10_000;
/** Characters of an error message kept in an audit record. */
const AUDIT_DETAIL_CHARS_MAX = 300;

/** The one place write outcomes become results or gRPC errors. */
function writeResult(outcome: WriteOutcome<KvResult>): KvResult & { ok: true } {
  if (outcome.ok) {
    if (!outcome.result.ok) {
      // Out of space is the cluster's condition, not the request's fault.
      const code = outcome.result.error.name === 'NoSpaceError' ? grpc.status.RESOURCE_EXHAUSTED : grpc.status.INVALID_ARGUMENT;
      throw new RpcError(code, outcome.result.error.message);
    }
    return outcome.result;
  }
  switch (outcome.reason) {
    case 'notLeader':
      throw new RpcError(grpc.status.UNAVAILABLE, 'no leader is known yet (an election is under way); retry shortly');
    case 'rejected':
      throw new RpcError(grpc.status.UNAVAILABLE, `the write was not applied: ${outcome.detail}`);
    case 'unknown':
      throw new RpcError(grpc.status.DEADLINE_EXCEEDED, `the write may or may not have been applied (${outcome.detail}); read the key to find out before retrying`);
    default: {
      const never: never = outcome;
      return never;
    }
  }
}

const toBig = (value: number): bigint => BigInt(value);

function kvToProto(kv: KeyValue): ProtoKeyValue {
  return create(KeyValueSchema, {
    key: kv.key,
    value: kv.value,
    version: toBig(kv.version),
    createRevision: toBig(kv.createRevision),
    modRevision: toBig(kv.modRevision),
  });
}

const OPS: Record<CompareOp, Compare['op'] | null> = {
  [CompareOp.UNSPECIFIED]: null,
  [CompareOp.EQUAL]: '==',
  [CompareOp.NOT_EQUAL]: '!=',
  [CompareOp.LESS]: '<',
  [CompareOp.GREATER]: '>',
};
const TARGETS: Record<CompareTarget, Compare['target'] | null> = {
  [CompareTarget.UNSPECIFIED]: null,
  [CompareTarget.VERSION]: 'version',
  [CompareTarget.CREATE_REVISION]: 'createRevision',
  [CompareTarget.MOD_REVISION]: 'modRevision',
  [CompareTarget.VALUE]: 'value',
};

function compareFromProto(compare: ProtoCompare): Compare {
  const op = OPS[compare.op];
  const target = TARGETS[compare.target];
  if (op === null || op === undefined || target === null || target === undefined) {
    throw new RpcError(grpc.status.INVALID_ARGUMENT, `compare on '${compare.key}' needs a target and an operator`);
  }
  const operand = compare.operand.case === 'text' ? compare.operand.value : compare.operand.case === 'number' ? Number(compare.operand.value) : target === 'value' ? '' : 0;
  return { key: compare.key, target, op, operand };
}

/** etcd's range convention: empty end = one key; "\0" = every key from `key` on. */
function rangeOp(key: string, rangeEnd: string, limit: number): KvOp {
  if (rangeEnd === '') return { type: 'get', key };
  return { type: 'range', start: key, end: rangeEnd === '\0' ? '' : rangeEnd, limit };
}

function opFromProto(op: RequestOp): KvOp {
  switch (op.request.case) {
    case 'requestPut':
      return { type: 'put', key: op.request.value.key, value: op.request.value.value };
    case 'requestDeleteRange': {
      const { key, rangeEnd } = op.request.value;
      return rangeEnd === '' ? { type: 'delete', key } : { type: 'deleteRange', start: key, end: rangeEnd === '\0' ? '' : rangeEnd };
    }
    case 'requestRange': {
      const { key, rangeEnd, limit } = op.request.value;
      return rangeOp(key, rangeEnd, Number(limit));
    }
    default:
      throw new RpcError(grpc.status.INVALID_ARGUMENT, 'a transaction op needs one of put, deleteRange or range');
  }
}

export function startGrpcServer(node: DebughostNode, credentials: grpc.ServerCredentials): Promise<grpc.Server> {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MESSAGE_BYTES_MAX,
    'grpc.max_send_message_length': MESSAGE_BYTES_MAX,
    'grpc.keepalive_permit_without_calls': 1,
    // Channelz bookkeeping costs several percent of CPU per call; nothing reads it.
    'grpc.enable_channelz': 0,
    // The metrics interceptor is the inner one, so that it counts the calls the access check refuses.
    interceptors: [node.metrics.grpcInterceptor(), node.trust.grpc.interceptor()],
  });
  const trust = node.trust;
  /** The verified caller of a call (the interceptor has already refused anyone without the access the method needs). */
  const callerOf = (path: string, call: PeerCall): Caller | null => trust.grpc.callerOf(path, call);
  /**
   * Run a mutating call and record it in the audit trail when a client made
   * it here (a call a member forwarded was recorded where the client made it).
   */
  const audited: Audited = async (caller, action, scope, run) => {
    if (caller?.kind !== 'client') return run();
    const record = (outcome: 'ok' | 'denied' | 'error', detail: string | null): void => {
      void trust.audit.record({ actor: caller.identity, action, tenant: scope.tenant, target: scope.target, args: scope.args, outcome, detail });
    };
    try {
      const result = await run();
      record('ok', null);
      return result;
    } catch (error) {
      const code = error instanceof RpcError ? error.code : (error as Partial<grpc.ServiceError>).code;
      const detail = `${grpc.status[code ?? grpc.status.UNKNOWN] ?? 'UNKNOWN'}: ${(error as Error).message}`.slice(0, AUDIT_DETAIL_CHARS_MAX);
      record(code === grpc.status.PERMISSION_DENIED ? 'denied' : 'error', detail);
      throw error;
    }
  };
  /** Client KV writes may not touch the system prefixes: those records change only through the paths that validate them. */
  const refuseSystemWrite = (command: KvCommand): void => {
    const prefix = commandWritesSystemKey(command);
    if (prefix !== null) {
      throw new RpcError(
        grpc.status.PERMISSION_DENIED,
        `keys under '${prefix}' belong to the cluster and change only through its own paths (project tools, membership, tokens); the KV API may read them but not write them`,
      );
    }
  };
  const log = node.options.log;
  const header = () =>
    create(ResponseHeaderSchema, {
      revision: toBig(node.raft?.machine.kv.revision ?? 0),
      raftTerm: toBig(node.raft?.raft.term ?? 0),
      memberId: node.id,
    });
  const membersResponse = () => node.members().map((m) => create(MemberSchema, { id: m.id, address: m.address, learner: m.learner }));
  const raftNode = () => {
    const raft = node.raft;
    if (raft === null) throw new RpcError(grpc.status.UNAVAILABLE, `node ${node.id} is still starting; retry shortly`);
    return raft;
  };
  const leaderAddress = (): string => {
    const raft = raftNode();
    const leader = raft.raft.leader;
    if (leader === null) throw new RpcError(grpc.status.UNAVAILABLE, 'no leader is known yet (an election is under way); retry shortly');
    const address = node.addressOf(leader);
    if (address === null) throw new RpcError(grpc.status.UNAVAILABLE, `the address of leader ${leader} is not known yet; retry shortly`);
    return address;
  };
  const isLeader = (): boolean => raftNode().raft.role === 'leader';

  /** Propose on the leader (here, when this node leads). */
  const proposeLocal = (command: KvCommand): Promise<KvResult & { ok: true }> => {
    const valid = validateCommand(command);
    if (!valid.ok) return Promise.reject(new RpcError(grpc.status.INVALID_ARGUMENT, valid.message));
    return new Promise((resolve, reject) => {
      raftNode().propose(encodeCommand(valid.command), (outcome) => {
        try {
          resolve(writeResult(outcome));
        } catch (error) {
          reject(error);
        }
      });
    });
  };

  const read = (serializable: boolean): Promise<KvMachine> => {
    const raft = raftNode();
    if (serializable) return Promise.resolve(raft.machine);
    return new Promise((resolve, reject) =>
      raft.read((outcome: ReadOutcome<KvMachine>) => {
        if (outcome.ok) resolve(outcome.machine);
        else reject(new RpcError(grpc.status.UNAVAILABLE, `the read could not be confirmed by a quorum (${outcome.reason}); retry shortly`));
      }),
    );
  };

  const rangeOf = (kvs: readonly KeyValue[], count: number, more: boolean) =>
    create(RangeResponseSchema, { header: header(), kvs: kvs.map(kvToProto), count: toBig(count), more });
  const rangeResponse = (machine: KvMachine, request: RangeRequest) => {
    const op = rangeOp(request.key, request.rangeEnd, Number(request.limit));
    if (op.type === 'get') {
      const kv = machine.kv.get(op.key);
      return rangeOf(kv === null ? [] : [kv], kv === null ? 0 : 1, false);
    }
    if (op.type !== 'range') throw new RpcError(grpc.status.INTERNAL, 'range op expected');
    const all = machine.kv.range(op.start, op.end, 0);
    const limited = op.limit !== undefined && op.limit > 0 ? all.slice(0, op.limit) : all;
    return rangeOf(limited, all.length, limited.length < all.length);
  };

  const responseOp = (result: OpResult): ResponseOp => {
    switch (result.type) {
      case 'put':
        return create(ResponseOpSchema, {
          response: { case: 'responsePut', value: create(PutResponseSchema, { header: header(), ...(result.prev === null ? {} : { prevKv: kvToProto(result.prev) }), succeeded: true }) },
        });
      case 'delete':
      case 'deleteRange':
        return create(ResponseOpSchema, { response: { case: 'responseDeleteRange', value: create(DeleteRangeResponseSchema, { header: header(), deleted: toBig(result.deleted) }) } });
      case 'get':
        return create(ResponseOpSchema, { response: { case: 'responseRange', value: rangeOf(result.kv === null ? [] : [result.kv], result.kv === null ? 0 : 1, false) } });
      case 'range':
        return create(ResponseOpSchema, { response: { case: 'responseRange', value: rangeOf(result.kvs, result.count, result.more) } });
      default: {
        const never: never = result;
        return never;
      }
    }
  };
  const refuseJoin = (error: string) => create(JoinResponseSchema, { ok: false, error });
  /**
   * Who may join: a member forwarding a join it admitted, a node proving the
   * id it joins as (the cluster secret, or a certificate naming it), or a
   * node presenting an admin-issued join token.
   */
  const admit = (request: JoinRequest, call: PeerCall): { ok: true; by: 'member' | 'secret' | 'certificate' | 'joinToken' } | { ok: false; message: string } => {
    const credential = trust.peers.credential(call);
    if (credential.ok && credential.node !== request.nodeId && node.isKnownMember(credential.node)) return { ok: true, by: 'member' };
    if (credential.ok && credential.node === request.nodeId) return { ok: true, by: node.options.tls === null ? 'secret' : 'certificate' };
    if (credential.ok && node.options.tls !== null) return { ok: false, message: `the certificate names node '${credential.node}', not '${request.nodeId}'; start with --id ${credential.node}` };
    if (request.joinToken === '') {
      return { ok: false, message: 'joining needs a join token (an admin makes one: debughost token create --join; then debughost node --join-token …) or the cluster secret' };
    }
    const verified = trust.verifier.verifyJoinToken(request.joinToken);
    return verified.ok ? { ok: true, by: 'joinToken' } : { ok: false, message: verified.message };
  };

  addActorsService(
    server,
    actorsServiceHandlers(
      node,
      (call) => node.auth.peerOf(call),
      (identity, key) => node.auth.mayFollow(identity, key),
    ),
  );

  /** Deliver a peer's Raft messages, dropping (and counting) any whose sender is not the authenticated peer. */
  const deliverFrom =
    (peer: string | null) =>
    (message: Message): void => {
      if (message.from !== peer) {
        node.metrics.raftMessageSpoofed();
        log.warn({ peer, claimed: message.from }, 'dropped a Raft message whose sender is not the authenticated peer');
        return;
      }
      node.receiveRaft(message);
    };
  const peerNode = (path: string, call: PeerCall): string | null => {
    const caller = callerOf(path, call);
    return caller?.kind === 'peer' ? caller.node : null;
  };

  addService(server, Raft, {
    send: (call, callback) => {
      const handle = raftStreamHandler(
        () => node.clusterId,
        deliverFrom(peerNode(RAFT_SEND, call)),
        (error) => log.debug({ error: error.message }, 'bad peer message'),
      );
      let count = 0;
      call.on('data', (batch) => {
        count += batch.messages.length;
        handle(batch);
      });
      call.on('end', () => callback(null, create(SendAckSchema, { messages: BigInt(count) })));
      call.on('error', () => undefined);
    },
    sendOne: unary(async (batch, call) => {
      raftStreamHandler(() => node.clusterId, deliverFrom(peerNode(RAFT_SEND_ONE, call)), () => undefined)(batch);
      return create(SendAckSchema, { messages: BigInt(batch.messages.length) });
    }),
    join: unary(async (request, call) => {
      if (node.clusterId !== '' && request.clusterId !== node.clusterId) {
        return refuseJoin(`refused: this cluster is ${node.clusterId}, the request names ${request.clusterId}`);
      }
      const admission = admit(request, call);
      if (!admission.ok) return refuseJoin(`refused: ${admission.message}`);
      if (admission.by !== 'member') {
        void trust.audit.record({ actor: { node: request.nodeId }, action: 'member join', tenant: null, target: request.nodeId, args: { nodeId: request.nodeId, address: request.address, by: admission.by }, outcome: 'ok', detail: admission.by });
      }
      // A node admitted by a join token gets the cluster secret (and only such a node: the others hold it or use TLS).
      const withSecret = (response: JoinResponse): JoinResponse => {
        const secret = trust.clusterSecret();
        if (admission.by === 'joinToken' && response.ok && secret !== null && node.options.tls === null) response.clusterSecret = new Uint8Array(secret);
        return response;
      };
      if (!isLeader()) return withSecret(await callUnary(node.peers.raftAt(leaderAddress()), 'join', request, { deadline: deadlineIn(FORWARD_TIMEOUT_MS) }));
      const existing = node.members().find((member) => member.id === request.nodeId);
      if (existing !== undefined && existing.address !== request.address) {
        return refuseJoin(`refused: node id ${request.nodeId} is already a member at ${existing.address}; pick another --id or remove it first`);
      }
      if (existing === undefined) {
        const outcome = await node.changeMembership({ type: 'addLearner', node: request.nodeId as NodeId, address: request.address });
        if (!outcome.ok) return refuseJoin(outcome.reason === 'notLeader' ? 'leadership moved; retry' : outcome.detail);
      }
      return withSecret(create(JoinResponseSchema, { ok: true, leaderId: node.id, leaderAddress: node.options.grpcAddress, members: membersResponse() }));
    }),
  });

  addService(server, KV, {
    range: unary(async (request) => rangeResponse(await read(request.serializable), request)),
    put: unary(async (request, call) => {
      const scope = { tenant: null, target: request.key, args: { key: request.key, valueBytes: request.value.length, ifVersion: request.ifVersion?.toString() ?? null } };
      return audited(callerOf(KV_PUT, call), 'kv put', scope, async () => {
        refuseSystemWrite({ type: 'put', key: request.key, value: request.value });
        if (!isLeader()) return callUnary(node.peers.kvAt(leaderAddress()), 'put', request, { deadline: deadlineIn(FORWARD_TIMEOUT_MS) });
        const ifVersion = request.ifVersion;
        const command: KvCommand =
          ifVersion === undefined
            ? { type: 'put', key: request.key, value: request.value }
            : {
                type: 'txn',
                compare: [{ key: request.key, target: 'version', op: '==', operand: Number(ifVersion) }],
                success: [{ type: 'put', key: request.key, value: request.value }],
                failure: [{ type: 'get', key: request.key }],
              };
        const result = await proposeLocal(command);
        const kv = raftNode().machine.kv.get(request.key);
        const succeeded = ifVersion === undefined ? true : result.succeeded === true;
        let prev: KeyValue | null = result.prev ?? null;
        if (ifVersion !== undefined) {
          const first = result.results?.[0];
          prev = first?.type === 'put' ? first.prev : first?.type === 'get' ? first.kv : null;
        }
        return create(PutResponseSchema, {
          header: header(),
          ...(prev === null ? {} : { prevKv: kvToProto(prev) }),
          succeeded,
          version: toBig(succeeded ? (kv?.version ?? 0) : (prev?.version ?? 0)),
        });
      });
    }),
    deleteRange: unary(async (request, call) => {
      const op = request.rangeEnd === '' ? ({ type: 'delete', key: request.key } as const) : ({ type: 'deleteRange', start: request.key, end: request.rangeEnd === '\0' ? '' : request.rangeEnd } as const);
      const command: KvCommand = { type: 'txn', compare: [], success: [op], failure: [] };
      return audited(callerOf(KV_DELETE_RANGE, call), 'kv del', { tenant: null, target: request.key, args: { key: request.key, rangeEnd: request.rangeEnd } }, async () => {
        refuseSystemWrite(command);
        if (!isLeader()) return callUnary(node.peers.kvAt(leaderAddress()), 'deleteRange', request, { deadline: deadlineIn(FORWARD_TIMEOUT_MS) });
        const result = await proposeLocal(command);
        const first = result.results?.[0];
        const deleted = first?.type === 'delete' || first?.type === 'deleteRange' ? first.deleted : 0;
        return create(DeleteRangeResponseSchema, { header: header(), deleted: toBig(deleted) });
      });
    }),
    txn: unary(async (request, call) => {
      const command: KvCommand = {
        type: 'txn',
        compare: request.compare.map(compareFromProto),
        success: request.success.map(opFromProto),
        failure: request.failure.map(opFromProto),
      };
      // Keys only: values may be anyone's data.
      const keysOf = (ops: readonly KvOp[]) => ops.map((op) => op.type === 'deleteRange' || op.type === 'range' ? `${op.type} ${op.start}..${op.end}` : `${op.type} ${op.key}`);
      const args = { compare: command.compare.map((c) => `${c.key} ${c.target} ${c.op}`), success: keysOf(command.success), failure: keysOf(command.failure) };
      return audited(callerOf(KV_TXN, call), 'kv txn', { tenant: null, target: null, args }, async () => {
        refuseSystemWrite(command);
        if (!isLeader()) return callUnary(node.peers.kvAt(leaderAddress()), 'txn', request, { deadline: deadlineIn(FORWARD_TIMEOUT_MS) });
        const result = await proposeLocal(command);
        return create(TxnResponseSchema, { header: header(), succeeded: result.succeeded === true, responses: (result.results ?? []).map(responseOp) });
      });
    }),
    watch: (call) => serveWatch(node, call),
  });

  const statusResponse = (): StatusResponse => {
    const raft = node.raft;
    const roles: Record<string, Role> = { follower: Role.FOLLOWER, preCandidate: Role.PRE_CANDIDATE, candidate: Role.CANDIDATE, leader: Role.LEADER };
    if (raft === null) return create(StatusResponseSchema, { id: node.id, clusterId: node.clusterId });
    const status = raft.raft.status();
    return create(StatusResponseSchema, {
      id: node.id,
      role: roles[status.role] ?? Role.UNSPECIFIED,
      term: toBig(status.term),
      leaderId: status.leader ?? '',
      commitIndex: toBig(status.commit),
      appliedIndex: toBig(raft.machine.appliedIndex),
      lastIndex: toBig(status.lastIndex),
      snapshotIndex: toBig(status.snapshotIndex),
      members: membersResponse(),
      clusterId: node.clusterId,
    });
  };
  const changeAtLeader = async (change: Parameters<DebughostNode['changeMembership']>[0]): Promise<void> => {
    const outcome = await node.changeMembership(change);
    if (!outcome.ok) {
      if (outcome.reason === 'notLeader') throw new RpcError(grpc.status.UNAVAILABLE, 'leadership moved during the change; retry');
      throw new RpcError(grpc.status.FAILED_PRECONDITION, outcome.detail);
    }
  };

  addService(server, Admin, {
    status: unary(async () => statusResponse()),
    snapshotSave: snapshotSaveHandler(node),
    memberList: unary(async () => create(MemberListResponseSchema, { members: membersResponse() })),
    memberAdd: unary(async (request, call) =>
      audited(callerOf(ADMIN_MEMBER_ADD, call), 'member add', { tenant: null, target: request.id, args: { id: request.id, address: request.address } }, async () => {
        if (!isLeader()) return callUnary(node.peers.adminAt(leaderAddress()), 'memberAdd', request, { deadline: deadlineIn(FORWARD_TIMEOUT_MS) });
        await changeAtLeader({ type: 'addLearner', node: request.id as NodeId, address: request.address });
        return create(MemberAddResponseSchema, { member: create(MemberSchema, { id: request.id, address: request.address, learner: true }), members: membersResponse() });
      }),
    ),
    memberPromote: unary(async (request, call) =>
      audited(callerOf(ADMIN_MEMBER_PROMOTE, call), 'member promote', { tenant: null, target: request.id, args: { id: request.id, force: request.force } }, async () => {
        if (!isLeader()) return callUnary(node.peers.adminAt(leaderAddress()), 'memberPromote', request, { deadline: deadlineIn(FORWARD_TIMEOUT_MS) });
        await changeAtLeader({ type: 'promote', node: request.id as NodeId, force: request.force });
        return create(MemberPromoteResponseSchema, { members: membersResponse() });
      }),
    ),
    memberRemove: unary(async (request, call) =>
      audited(callerOf(ADMIN_MEMBER_REMOVE, call), 'member remove', { tenant: null, target: request.id, args: { id: request.id, force: request.force } }, async () => {
        if (!isLeader()) return callUnary(node.peers.adminAt(leaderAddress()), 'memberRemove', request, { deadline: deadlineIn(FORWARD_TIMEOUT_MS) });
        if (request.id === node.id) {
          // The leader leaving: hand leadership over first, then let the new leader remove it.
          const target = node.members().find((m) => m.id !== node.id && !m.learner);
          if (target === undefined) throw new RpcError(grpc.status.FAILED_PRECONDITION, 'cannot remove the last voter');
          raftNode().transferLeadership(target.id as NodeId);
          // Until the new leader's first message arrives, this node knows no leader to forward to.
          if (!(await waitUntil(() => !isLeader() && raftNode().raft.leader !== null, 3000))) {
            throw new RpcError(grpc.status.UNAVAILABLE, 'could not hand leadership over before leaving; retry');
          }
          return callUnary(node.peers.adminAt(leaderAddress()), 'memberRemove', request, { deadline: deadlineIn(FORWARD_TIMEOUT_MS) });
        }
        await changeAtLeader({ type: 'remove', node: request.id as NodeId, force: request.force });
        return create(MemberRemoveResponseSchema, { members: membersResponse() });
      }),
    ),
    transferLeadership: unary(async (request, call) =>
      audited(callerOf(ADMIN_TRANSFER, call), 'leadership transfer', { tenant: null, target: request.targetId, args: { targetId: request.targetId } }, async () => {
        if (!isLeader()) return callUnary(node.peers.adminAt(leaderAddress()), 'transferLeadership', request, { deadline: deadlineIn(FORWARD_TIMEOUT_MS) });
        const result = raftNode().transferLeadership(request.targetId as NodeId);
        if (!result.ok) throw new RpcError(grpc.status.FAILED_PRECONDITION, result.detail);
        await waitUntil(() => raftNode().raft.leader === request.targetId, 3000);
        return create(TransferLeadershipResponseSchema, { leaderId: raftNode().raft.leader ?? '' });
      }),
    ),
    ...adminTrustHandlers(node, callerOf, audited),
  });

  return new Promise((resolve, reject) => {
    server.bindAsync(node.options.grpcAddress, credentials, (error) => {
      if (error !== null) {
        server.forceShutdown();
        const inUse = /EADDRINUSE|address already in use|No address added/i.test(error.message);
        reject(
          inUse
            ? new Error(`cannot listen on ${node.options.grpcAddress} for gRPC: the port is in use; stop what holds it or pick another --grpc`)
            : new Error(`cannot listen on ${node.options.grpcAddress} for gRPC: ${error.message.split('\n')[0] ?? ''}`),
        );
        return;
      }
      resolve(server);
    });
  });
}
