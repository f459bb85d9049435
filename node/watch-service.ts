// KV.Watch over gRPC: one server stream per watch, fed by the node's WatchHub.
// Events of one turn of the event loop go out in one response per revision
// group; a client that stops reading is cut off with a clear error instead of
// growing the node's memory.
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import type { KeyValue } from '../consensus/kv-state-machine.ts';
import { EventSchema, EventType, KeyValueSchema, ResponseHeaderSchema, WatchResponseSchema, type WatchRequest, type WatchResponse } from '../proto/gen/kv_pb.ts';
import type { DebughostNode } from './node.ts';
import { WatchCompactedError, WatchLimitError, type RevisionEvents, type WatchEvent } from './watch-hub.ts';

/** Responses buffered for one slow watcher before it is cut off. */
const WATCH_BUFFERED_RESPONSES_MAX = 1024;

const kvToProto = (kv: KeyValue) =>
  create(KeyValueSchema, { key: kv.key, value: kv.value, version: BigInt(kv.version), createRevision: BigInt(kv.createRevision), modRevision: BigInt(kv.modRevision) });

function eventToProto(event: WatchEvent, withPrev: boolean) {
  const type = event.type === 'put' ? EventType.PUT : EventType.DELETE;
  return create(EventSchema, { type, kv: kvToProto(event.kv), ...(withPrev && event.prevKv !== null ? { prevKv: kvToProto(event.prevKv) } : {}) });
}

export function serveWatch(node: DebughostNode, call: grpc.ServerWritableStream<WatchRequest, WatchResponse>): void {
  const request = call.request;
  const header = (revision: number) => create(ResponseHeaderSchema, { revision: BigInt(revision), raftTerm: BigInt(node.raft?.raft.term ?? 0), memberId: node.id });
  const fail = (code: grpc.status, details: string): void => {
    call.emit('error', { code, details, message: details });
  };
  if (node.raft === null) return fail(grpc.status.UNAVAILABLE, `node ${node.id} is still starting; retry shortly`);
  if (request.startRevision < 0n) return fail(grpc.status.INVALID_ARGUMENT, `start_revision ${request.startRevision} is negative; give 0 (from now) or a store revision`);
  if (request.startRevision > BigInt(Number.MAX_SAFE_INTEGER)) return fail(grpc.status.INVALID_ARGUMENT, `start_revision ${request.startRevision} is beyond any revision`);
  const hub = node.watches;
  let pending: RevisionEvents[] = [];
  let flushQueued = false;
  let closed = false;
  let cancel: (() => void) | null = null;
  const close = (): void => {
    closed = true;
    cancel?.();
  };
  const flush = (): void => {
    flushQueued = false;
    if (closed) return;
    const batches = pending;
    pending = [];
    for (const batch of batches) {
      call.write(create(WatchResponseSchema, { header: header(batch.revision), events: batch.events.map((event) => eventToProto(event, request.prevKv)) }));
    }
    if (call.writableLength > WATCH_BUFFERED_RESPONSES_MAX) {
      close();
      fail(grpc.status.RESOURCE_EXHAUSTED, `the watcher fell more than ${WATCH_BUFFERED_RESPONSES_MAX} responses behind; read faster, or watch again from revision ${hub.revision + 1}`);
    }
  };
  const deliver = (batch: RevisionEvents): void => {
    if (closed) return;
    pending.push(batch);
    if (!flushQueued) {
      flushQueued = true;
      queueMicrotask(flush);
    }
  };
  const compacted = (error: WatchCompactedError): void => {
    close();
    // As etcd: one last response names the oldest revision still available, then the stream ends.
    call.write(create(WatchResponseSchema, { header: header(hub.revision), compactRevision: BigInt(error.oldestRevision) }));
    fail(grpc.status.OUT_OF_RANGE, error.message);
  };
  call.on('cancelled', close);
  call.on('close', close);
  call.on('error', close);
  try {
    const opened = hub.watch({ key: request.key, end: request.rangeEnd }, Number(request.startRevision), deliver, compacted);
    cancel = opened.cancel;
    // An empty first response tells the client the watch is open and from which revision it runs.
    call.write(create(WatchResponseSchema, { header: header(opened.startRevision - 1) }));
  } catch (error) {
    if (error instanceof WatchCompactedError) return compacted(error);
    if (error instanceof WatchLimitError) return fail(grpc.status.RESOURCE_EXHAUSTED, error.message);
    throw error;
  }
}
