// Converts the core's Raft `Message` to and from the wire's `RaftMessage`.
// protobuf-es gives 64-bit fields as bigint; the core uses safe-integer
// numbers, so each index, term and byte count is converted here and a peer's
// value beyond 2^53 is rejected rather than rounded. Entry and chunk bytes
// pass through without copying.
import { create } from '@bufbuild/protobuf';
import type { Entry, EntryType, LogIndex, Message, NodeId, SnapshotMeta, Term } from '../consensus/types.ts';
import {
  AppendRespSchema,
  AppendSchema,
  ConfStateSchema,
  EntrySchema,
  EntryType as WireEntryType,
  HeartbeatRespSchema,
  HeartbeatSchema,
  RaftMessageSchema,
  ReadIndexRespSchema,
  ReadIndexSchema,
  SnapshotChunkRespSchema,
  SnapshotChunkSchema,
  SnapshotMetaSchema,
  TimeoutNowSchema,
  VoteRespSchema,
  VoteSchema,
} from './gen/raft_pb.ts';
import type { Entry as WireEntry, RaftMessage, SnapshotMeta as WireSnapshotMeta } from './gen/raft_pb.ts';

/** A peer sent a RaftMessage the core cannot take: missing body, unknown entry type, unsafe integer. */
export class MalformedMessageError extends Error {
  override readonly name = 'MalformedMessageError';
}

/** A number the core handed over is not a safe non-negative integer: a programmer error. */
export class ConvertAssertionError extends Error {
  override readonly name = 'ConvertAssertionError';
}

/** A safe non-negative integer as a protobuf 64-bit value. */
export function toUint64(value: number): bigint {
  if (!Number.isSafeInteger(value) || value < 0) throw new ConvertAssertionError(`not a safe non-negative integer: ${value}`);
  return BigInt(value);
}

/** A protobuf 64-bit value as a number; `field` names it in the error. */
export function fromUint64(value: bigint, field: string): number {
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < 0) throw new MalformedMessageError(`${field} ${value} is not a safe non-negative integer`);
  return number;
}

// ---------------------------------------------------------------------------
// Message -> RaftMessage

export function messageToProto(message: Message): RaftMessage {
  return create(RaftMessageSchema, {
    from: message.from,
    to: message.to,
    term: toUint64(message.term),
    body: bodyToProto(message),
  });
}

function bodyToProto(message: Message): RaftMessage['body'] {
  switch (message.type) {
    case 'preVote':
    case 'vote':
      return {
        case: message.type,
        value: create(VoteSchema, {
          lastLogIndex: toUint64(message.lastLogIndex),
          lastLogTerm: toUint64(message.lastLogTerm),
          transfer: message.transfer,
        }),
      };
    case 'preVoteResp':
    case 'voteResp':
      return { case: message.type, value: create(VoteRespSchema, { granted: message.granted }) };
    case 'append':
      return {
        case: 'append',
        value: create(AppendSchema, {
          prevLogIndex: toUint64(message.prevLogIndex),
          prevLogTerm: toUint64(message.prevLogTerm),
          entries: message.entries.map(entryToProto),
          commit: toUint64(message.commit),
        }),
      };
    case 'appendResp':
      return {
        case: 'appendResp',
        value: create(AppendRespSchema, {
          success: message.success,
          index: toUint64(message.index),
          rejectHint: toUint64(message.rejectHint),
          rejectHintTerm: toUint64(message.rejectHintTerm),
        }),
      };
    case 'heartbeat':
      return {
        case: 'heartbeat',
        value: create(HeartbeatSchema, { commit: toUint64(message.commit), readContext: message.readContext ?? undefined }),
      };
    case 'heartbeatResp':
      return { case: 'heartbeatResp', value: create(HeartbeatRespSchema, { readContext: message.readContext ?? undefined }) };
    case 'snapshotChunk':
      return {
        case: 'snapshotChunk',
        value: create(SnapshotChunkSchema, {
          meta: snapshotMetaToProto(message.meta),
          offset: toUint64(message.offset),
          totalBytes: toUint64(message.totalBytes),
          chunk: message.chunk,
          done: message.done,
        }),
      };
    case 'snapshotChunkResp':
      return {
        case: 'snapshotChunkResp',
        value: create(SnapshotChunkRespSchema, {
          snapshotIndex: toUint64(message.snapshotIndex),
          nextOffset: toUint64(message.nextOffset),
          rejected: message.rejected,
        }),
      };
    case 'timeoutNow':
      return { case: 'timeoutNow', value: create(TimeoutNowSchema) };
    case 'readIndex':
      return { case: 'readIndex', value: create(ReadIndexSchema, { requestId: message.requestId }) };
    case 'readIndexResp':
      return {
        case: 'readIndexResp',
        value: create(ReadIndexRespSchema, { requestId: message.requestId, index: toUint64(message.index), ok: message.ok }),
      };
    default:
      return unreachable(message);
  }
}

function entryToProto(entry: Entry): WireEntry {
  return create(EntrySchema, {
    term: toUint64(entry.term),
    index: toUint64(entry.index),
    type: entryTypeToProto(entry.type),
    data: entry.data,
  });
}

function entryTypeToProto(type: EntryType): WireEntryType {
  switch (type) {
    case 'normal':
      return WireEntryType.NORMAL;
    case 'confChange':
      return WireEntryType.CONF_CHANGE;
    case 'empty':
      return WireEntryType.EMPTY;
    default:
      return unreachable(type);
  }
}

function snapshotMetaToProto(meta: SnapshotMeta): WireSnapshotMeta {
  return create(SnapshotMetaSchema, {
    index: toUint64(meta.index),
    term: toUint64(meta.term),
    conf: create(ConfStateSchema, { voters: [...meta.conf.voters], learners: [...meta.conf.learners] }),
  });
}

// ---------------------------------------------------------------------------
// RaftMessage -> Message

/** Throws MalformedMessageError for anything the core must not see. */
export function messageFromProto(proto: RaftMessage): Message {
  if (proto.from === '' || proto.to === '') throw new MalformedMessageError('RaftMessage without from or to');
  const base = { from: proto.from as NodeId, to: proto.to as NodeId, term: fromUint64(proto.term, 'term') as Term };
  const body = proto.body;
  switch (body.case) {
    case 'preVote':
    case 'vote':
      return {
        ...base,
        type: body.case,
        lastLogIndex: index(body.value.lastLogIndex, 'lastLogIndex'),
        lastLogTerm: term(body.value.lastLogTerm, 'lastLogTerm'),
        transfer: body.value.transfer,
      };
    case 'preVoteResp':
    case 'voteResp':
      return { ...base, type: body.case, granted: body.value.granted };
    case 'append':
      return {
        ...base,
        type: 'append',
        prevLogIndex: index(body.value.prevLogIndex, 'prevLogIndex'),
        prevLogTerm: term(body.value.prevLogTerm, 'prevLogTerm'),
        entries: body.value.entries.map(entryFromProto),
        commit: index(body.value.commit, 'commit'),
      };
    case 'appendResp':
      return {
        ...base,
        type: 'appendResp',
        success: body.value.success,
        index: index(body.value.index, 'index'),
        rejectHint: index(body.value.rejectHint, 'rejectHint'),
        rejectHintTerm: term(body.value.rejectHintTerm, 'rejectHintTerm'),
      };
    case 'heartbeat':
      return { ...base, type: 'heartbeat', commit: index(body.value.commit, 'commit'), readContext: body.value.readContext ?? null };
    case 'heartbeatResp':
      return { ...base, type: 'heartbeatResp', readContext: body.value.readContext ?? null };
    case 'snapshotChunk': {
      const { meta } = body.value;
      if (meta === undefined) throw new MalformedMessageError('snapshotChunk without meta');
      return {
        ...base,
        type: 'snapshotChunk',
        meta: snapshotMetaFromProto(meta),
        offset: fromUint64(body.value.offset, 'offset'),
        totalBytes: fromUint64(body.value.totalBytes, 'totalBytes'),
        chunk: body.value.chunk,
        done: body.value.done,
      };
    }
    case 'snapshotChunkResp':
      return {
        ...base,
        type: 'snapshotChunkResp',
        snapshotIndex: index(body.value.snapshotIndex, 'snapshotIndex'),
        nextOffset: fromUint64(body.value.nextOffset, 'nextOffset'),
        rejected: body.value.rejected,
      };
    case 'timeoutNow':
      return { ...base, type: 'timeoutNow' };
    case 'readIndex':
      return { ...base, type: 'readIndex', requestId: body.value.requestId };
    case 'readIndexResp':
      return { ...base, type: 'readIndexResp', requestId: body.value.requestId, index: index(body.value.index, 'index'), ok: body.value.ok };
    case undefined:
      throw new MalformedMessageError(`RaftMessage from ${proto.from} without a body (an unknown variant?)`);
    default:
      return unreachable(body);
  }
}

function entryFromProto(proto: WireEntry): Entry {
  return { term: term(proto.term, 'entry term'), index: index(proto.index, 'entry index'), type: entryTypeFromProto(proto.type), data: proto.data };
}

function entryTypeFromProto(type: WireEntryType): EntryType {
  switch (type) {
    case WireEntryType.NORMAL:
      return 'normal';
    case WireEntryType.CONF_CHANGE:
      return 'confChange';
    case WireEntryType.EMPTY:
      return 'empty';
    default:
      // UNSPECIFIED, or a number from a newer peer (proto3 enums are open).
      throw new MalformedMessageError(`entry type ${type} is not one this node knows`);
  }
}

function snapshotMetaFromProto(proto: WireSnapshotMeta): SnapshotMeta {
  if (proto.conf === undefined) throw new MalformedMessageError('snapshot meta without conf');
  return {
    index: index(proto.index, 'snapshot index'),
    term: term(proto.term, 'snapshot term'),
    conf: { voters: proto.conf.voters as NodeId[], learners: proto.conf.learners as NodeId[] },
  };
}

function index(value: bigint, field: string): LogIndex {
  return fromUint64(value, field) as LogIndex;
}

function term(value: bigint, field: string): Term {
  return fromUint64(value, field) as Term;
}

function unreachable(value: never): never {
  throw new ConvertAssertionError('unexpected variant', { cause: value });
}
