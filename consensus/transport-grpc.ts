// Raft peer traffic over gRPC: one long-lived client stream per peer carrying
// batches of messages. Messages sent in one turn of the event loop travel in
// one batch. A broken stream is reopened with exponential back-off; while it is
// down (or its buffer is full) messages are dropped, which Raft tolerates.
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { messageFromProto, messageToProto } from '../proto/convert.ts';
import { RaftBatchSchema, Raft as RaftService, type RaftMessage } from '../proto/gen/raft_pb.ts';
import { makeClientConstructor, type ServiceClient } from '../proto/grpc.ts';
import type { RaftTransport } from './raft-node.ts';
import type { Message, NodeId } from './types.ts';

/** Largest gRPC message between nodes: above any append (1 MiB) or snapshot chunk (512 KiB). */
export const MESSAGE_BYTES_MAX = 16 * 1024 * 1024;

/** gRPC channel options shared by every peer and client connection. */
export const grpcChannelOptions = (messageBytesMax: number): grpc.ChannelOptions => ({
  'grpc.max_send_message_length': messageBytesMax,
  'grpc.max_receive_message_length': messageBytesMax,
  // Find dead peers without waiting for TCP: ping every 10 s, give up after 5 s.
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 2_000,
  // Channelz bookkeeping (call counters, traces) costs several percent of CPU per call; nothing reads it.
  'grpc.enable_channelz': 0,
});

export interface GrpcTransportOptions {
  readonly self: NodeId;
  readonly clusterId: string;
  /** Where a member listens; null while unknown. */
  readonly resolve: (id: NodeId) => string | null;
  readonly credentials: grpc.ChannelCredentials;
  readonly messageBytesMax: number;
  /** Most messages queued for one peer between flushes; more are dropped. */
  readonly queuedMessagesMax: number;
  readonly onError?: (peer: NodeId, error: Error) => void;
}

const RaftClient = makeClientConstructor(RaftService);
type RaftClientType = ServiceClient<typeof RaftService.method>;

interface Peer {
  readonly id: NodeId;
  address: string;
  client: RaftClientType;
  stream: grpc.ClientWritableStream<unknown> | null;
  queue: RaftMessage[];
  backoffMs: number;
  retryAt: number;
  dropped: number;
}

const BACKOFF_MS_MIN = 50;
const BACKOFF_MS_MAX = 2_000;

export class GrpcTransport implements RaftTransport {
  private readonly peers = new Map<NodeId, Peer>();
  private flushScheduled = false;
  private closed = false;
  /** Messages dropped because a peer was unreachable or its queue full (for metrics). */
  droppedTotal = 0;

  constructor(private readonly options: GrpcTransportOptions) {}

  send(message: Message): void {
    if (this.closed) return;
    const peer = this.peer(message.to);
    if (peer === null) {
      this.droppedTotal += 1;
      return;
    }
    if (peer.queue.length >= this.options.queuedMessagesMax) {
      peer.dropped += 1;
      this.droppedTotal += 1;
      return;
    }
    peer.queue.push(messageToProto(message));
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  close(): void {
    this.closed = true;
    for (const peer of this.peers.values()) {
      peer.stream?.end();
      peer.client.close();
    }
    this.peers.clear();
  }

  private peer(id: NodeId): Peer | null {
    const address = this.options.resolve(id);
    if (address === null || address === '') return null;
    let peer = this.peers.get(id);
    if (peer !== undefined && peer.address !== address) {
      peer.stream?.end();
      peer.client.close();
      peer = undefined;
    }
    if (peer === undefined) {
      peer = {
        id,
        address,
        client: new RaftClient(address, this.options.credentials, grpcChannelOptions(this.options.messageBytesMax)),
        stream: null,
        queue: [],
        backoffMs: BACKOFF_MS_MIN,
        retryAt: 0,
        dropped: 0,
      };
      this.peers.set(id, peer);
    }
    return peer;
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    const now = Date.now();
    for (const peer of this.peers.values()) {
      if (peer.queue.length === 0) continue;
      const stream = this.streamFor(peer, now);
      const messages = peer.queue;
      peer.queue = [];
      if (stream === null) {
        this.droppedTotal += messages.length;
        continue;
      }
      const batch = create(RaftBatchSchema, { messages, clusterId: this.options.clusterId });
      stream.write(batch);
    }
  }

  private streamFor(peer: Peer, now: number): grpc.ClientWritableStream<unknown> | null {
    if (peer.stream !== null) return peer.stream;
    if (now < peer.retryAt) return null;
    const openedAt = now;
    const stream = peer.client.send((error) => {
      if (peer.stream === stream) peer.stream = null;
      if (error !== null && !this.closed) {
        // A stream that stayed up a while was healthy: start the back-off over.
        const failedAt = Date.now();
        if (failedAt - openedAt > BACKOFF_MS_MAX) peer.backoffMs = BACKOFF_MS_MIN;
        peer.retryAt = failedAt + peer.backoffMs;
        peer.backoffMs = Math.min(peer.backoffMs * 2, BACKOFF_MS_MAX);
        this.options.onError?.(peer.id, error);
      }
    }) as unknown as grpc.ClientWritableStream<unknown>;
    stream.on('error', () => {
      if (peer.stream === stream) peer.stream = null;
    });
    peer.stream = stream;
    return stream;
  }
}

/** Server side: decode each batch and hand its messages to the local node. */
export function raftStreamHandler(
  clusterId: () => string,
  deliver: (message: Message) => void,
  onError: (error: Error) => void,
): (batch: { messages: RaftMessage[]; clusterId: string }) => void {
  return (batch) => {
    const expected = clusterId();
    if (expected !== '' && batch.clusterId !== expected) {
      onError(new Error(`dropped a batch from cluster '${batch.clusterId}': this node belongs to '${expected}'`));
      return;
    }
    for (const proto of batch.messages) {
      let message: Message;
      try {
        message = messageFromProto(proto);
      } catch (error) {
        onError(error as Error);
        continue;
      }
      deliver(message);
    }
  };
}
