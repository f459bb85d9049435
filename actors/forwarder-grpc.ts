// Actor calls between real nodes over gRPC: the Forwarder an ActorHost uses to
// reach an owner (one streaming Actors.Call per call, progress then answer),
// the batched Actors.Propose that carries followers' KV commands to the
// leader, Follow for live log lines and events, and the server side of all
// three. Transport failures map to the host's outcomes here and nowhere else;
// every request from a peer is bounded before it is used.
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { KvCommand } from '../consensus/kv-state-machine.ts';
import { grpcChannelOptions, MESSAGE_BYTES_MAX } from '../consensus/transport-grpc.ts';
import {
  Actors,
  CallEventSchema,
  FollowEventSchema,
  FollowRequestSchema,
  LogLineSchema,
  ProgressSchema,
  ProposeOutcomeSchema,
  ProposeRequestSchema,
  ProposeResponseSchema,
  type CallEvent,
  type FollowEvent,
  type ProposeOutcome,
} from '../proto/gen/actor_pb.ts';
import { addService, callUnary, makeClientConstructor } from '../proto/grpc.ts';
import type { ForwardCall, ForwardOutcome, Forwarder, StoreWriteOutcome } from './components.ts';
import type { ActorResponse, Identity, LogLineView, ProgressFn, ProjectEvent } from './messages.ts';
import { callFromWire, callToWire, eventFromWire, eventToWire, responseFromWire, responseToWire, WireError } from './wire.ts';

const ActorsClient = makeClientConstructor(Actors);
type ActorsClientType = InstanceType<typeof ActorsClient>;

/** Limits of what a peer may send to the Actors service. */
export const ACTORS_LIMITS = Object.freeze({
  /** Commands in one Propose (a batch of one event-loop turn of one follower). */
  proposeCommandsMax: 512,
  /** Proposals from one peer not yet answered: past it, new ones are refused as certainly not applied. */
  proposalsInFlightPerPeerMax: 4096,
  /** Follow streams served at once. */
  followsMax: 1000,
});

/** Clients of the Actors service by address, one channel each. */
export class ActorClients {
  readonly #clients = new Map<string, ActorsClientType>();

  constructor(
    private readonly credentials: grpc.ChannelCredentials,
    /** Metadata that authenticates this node to its peers (the cluster secret or nothing under mutual TLS). */
    private readonly metadata: () => grpc.Metadata = () => new grpc.Metadata(),
  ) {}

  at(address: string): ActorsClientType {
    let client = this.#clients.get(address);
    if (client === undefined) {
      client = new ActorsClient(address, this.credentials, grpcChannelOptions(MESSAGE_BYTES_MAX));
      this.#clients.set(address, client);
    }
    return client;
  }

  peerMetadata(): grpc.Metadata {
    return this.metadata();
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }
}

/** The real Forwarder: Actors.Call to the owner's address with the caller's deadline. */
export class GrpcForwarder implements Forwarder {
  /** Commands waiting for this event-loop turn's Propose, per leader address. */
  readonly #batches = new Map<string, { commands: Uint8Array[]; callbacks: ((outcome: StoreWriteOutcome) => void)[]; deadlineMs: number }>();

  constructor(
    private readonly self: string,
    private readonly clients: ActorClients,
    private readonly addressOf: (node: string) => string | null,
  ) {}

  forward(owner: string, call: ForwardCall, onProgress: ProgressFn | null, callback: (outcome: ForwardOutcome) => void): void {
    const address = this.addressOf(owner);
    if (address === null) return callback({ ok: false, reason: 'unreachable', detail: `no address known for node ${owner}` });
    let wire;
    try {
      wire = callToWire(call);
    } catch (error) {
      return callback({ ok: false, reason: 'unreachable', detail: `the call could not be encoded: ${(error as Error).message}` });
    }
    const stream = this.clients.at(address).call(wire, this.clients.peerMetadata(), { deadline: new Date(Date.now() + call.deadlineMs) });
    let answered = false;
    const answer = (outcome: ForwardOutcome): void => {
      if (answered) return;
      answered = true;
      callback(outcome);
    };
    stream.on('data', (event: CallEvent) => {
      if (event.event.case === 'progress') {
        onProgress?.(event.event.value.message, event.event.value.step, event.event.value.total);
        return;
      }
      if (event.event.case !== 'response') return;
      try {
        answer({ ok: true, response: responseFromWire(event.event.value) });
      } catch (error) {
        answer({ ok: false, reason: 'deadline', detail: `node ${owner} answered with a malformed response: ${(error as Error).message}` });
      }
    });
    stream.on('error', (error: grpc.ServiceError) => {
      // Refused before it was sent: certainly not done. Anything later may have been.
      const reason = error.code === grpc.status.UNAVAILABLE && /ECONNREFUSED|No connection established/.test(error.details) ? 'unreachable' : 'deadline';
      answer({ ok: false, reason, detail: `node ${owner} at ${address}: ${error.details || error.message}` });
    });
    stream.on('end', () => answer({ ok: false, reason: 'deadline', detail: `node ${owner} at ${address} ended the call without an answer` }));
  }

  /**
   * Propose encoded KV commands on the leader at `address`. Commands proposed
   * in one event-loop turn travel in one Propose; a lost answer is 'unknown'.
   */
  propose(address: string, command: Uint8Array, deadlineMs: number, callback: (outcome: StoreWriteOutcome) => void): void {
    let batch = this.#batches.get(address);
    if (batch === undefined) {
      batch = { commands: [], callbacks: [], deadlineMs };
      this.#batches.set(address, batch);
      setImmediate(() => this.sendBatch(address));
    }
    batch.commands.push(command);
    batch.callbacks.push(callback);
    batch.deadlineMs = Math.max(batch.deadlineMs, deadlineMs);
    if (batch.commands.length >= ACTORS_LIMITS.proposeCommandsMax) this.sendBatch(address);
  }

  private sendBatch(address: string): void {
    const batch = this.#batches.get(address);
    if (batch === undefined) return;
    this.#batches.delete(address);
    const request = create(ProposeRequestSchema, { commands: batch.commands });
    callUnary(this.clients.at(address), 'propose', request, { deadline: new Date(Date.now() + batch.deadlineMs), metadata: this.clients.peerMetadata() }).then(
      (response) => {
        batch.callbacks.forEach((callback, index) => {
          const outcome = response.outcomes[index];
          callback(outcome === undefined ? { ok: false, reason: 'unknown', detail: `the leader at ${address} sent no outcome for this command` } : outcomeFromWire(outcome));
        });
      },
      (error: grpc.ServiceError) => {
        const reason = error.code === grpc.status.UNAVAILABLE && /ECONNREFUSED|No connection established/.test(error.details) ? 'unavailable' : 'unknown';
        for (const callback of batch.callbacks) callback({ ok: false, reason, detail: `leader at ${address}: ${error.details || error.message}` });
      },
    );
  }

  /** Follow a project's new log lines and events on its owner; returns a function that ends the stream. */
  follow(owner: string, key: string, identity: Identity, onEvent: (event: FollowedEvent) => void, onEnd: (error: Error | null) => void): () => void {
    const address = this.addressOf(owner);
    if (address === null) {
      onEnd(new Error(`no address known for node ${owner}`));
      return () => {};
    }
    const stream = this.clients.at(address).follow(create(FollowRequestSchema, { key, identity }), this.clients.peerMetadata());
    let ended = false;
    const end = (error: Error | null): void => {
      if (ended) return;
      ended = true;
      onEnd(error);
    };
    stream.on('data', (event: FollowEvent) => {
      try {
        const followed = followedFromWire(event);
        if (followed !== null) onEvent(followed);
      } catch {
        // A malformed event is dropped; the next one may be fine.
      }
    });
    stream.on('error', (error: grpc.ServiceError) => end(error.code === grpc.status.CANCELLED ? null : error));
    stream.on('end', () => end(null));
    return () => {
      ended = true;
      stream.cancel();
    };
  }

  get node(): string {
    return this.self;
  }
}

export type FollowedEvent = { readonly type: 'line'; readonly line: LogLineView } | { readonly type: 'event'; readonly event: ProjectEvent };

function followedFromWire(event: FollowEvent): FollowedEvent | null {
  switch (event.event.case) {
    case 'line': {
      const line = event.event.value;
      return { type: 'line', line: { seq: Number(line.seq), timeMs: Number(line.timeMs), stream: line.stream === 'stderr' ? 'stderr' : 'stdout', line: line.line } };
    }
    case 'projectEvent':
      return { type: 'event', event: eventFromWire(event.event.value) };
    default:
      return null;
  }
}

function followedToWire(event: FollowedEvent): FollowEvent {
  if (event.type === 'line') {
    const line = event.line;
    return create(FollowEventSchema, { event: { case: 'line', value: create(LogLineSchema, { seq: BigInt(line.seq), timeMs: BigInt(line.timeMs), stream: line.stream, line: line.line }) } });
  }
  return create(FollowEventSchema, { event: { case: 'projectEvent', value: eventToWire(event.event) } });
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function outcomeToWire(outcome: StoreWriteOutcome): ProposeOutcome {
  // The KV result is the state machine's own JSON-safe value (revision, compare outcome, op results).
  if (outcome.ok) return create(ProposeOutcomeSchema, { status: 'ok', result: encoder.encode(JSON.stringify(outcome.result)) });
  return create(ProposeOutcomeSchema, { status: outcome.reason, detail: outcome.detail });
}

function outcomeFromWire(outcome: ProposeOutcome): StoreWriteOutcome {
  if (outcome.status === 'ok' && outcome.result !== undefined) {
    try {
      return { ok: true, result: JSON.parse(decoder.decode(outcome.result)) as Extract<StoreWriteOutcome, { ok: true }>['result'] };
    } catch (error) {
      return { ok: false, reason: 'unknown', detail: `the leader's answer does not parse: ${(error as Error).message}` };
    }
  }
  if (outcome.status === 'unavailable') return { ok: false, reason: 'unavailable', detail: outcome.detail };
  return { ok: false, reason: 'unknown', detail: outcome.detail || 'the leader gave no outcome' };
}

export interface ActorsServiceHandlers {
  /** The member id of the peer that made `call`, or null when it is not an authenticated member. */
  peerOf(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): string | null;
  /** Serve a forwarded call on this node (the host checks ownership and rights). */
  call(call: ForwardCall, onProgress: ProgressFn, callback: (response: ActorResponse) => void): void;
  /** Stream new log lines and events of `key`'s project until the returned function is called; null when not allowed. */
  follow(key: string, identity: Identity, onEvent: (event: FollowedEvent) => void): (() => void) | null;
  /** Decode and propose one KV command here (this node should be the leader); null when the bytes are not a command. */
  decode(command: Uint8Array): KvCommand | null;
  propose(command: KvCommand, callback: (outcome: StoreWriteOutcome) => void): void;
}

/** Register the Actors service: authenticate the peer, decode and bound, dispatch, encode; errors become gRPC statuses here only. */
export function addActorsService(server: grpc.Server, handlers: ActorsServiceHandlers): void {
  const inFlight = new Map<string, number>();
  let follows = 0;
  const unauthenticated = { code: grpc.status.UNAUTHENTICATED, details: 'the Actors service answers cluster members only; authenticate as a member (cluster secret or node certificate)' };
  addService(server, Actors, {
    call: (stream) => {
      if (handlers.peerOf(stream) === null) {
        stream.emit('error', unauthenticated);
        return;
      }
      const send = (event: CallEvent): void => {
        if (!stream.writable) return;
        stream.write(event);
      };
      const reply = (response: ActorResponse): void => {
        send(create(CallEventSchema, { event: { case: 'response', value: responseToWire(response) } }));
        stream.end();
      };
      let call: ForwardCall;
      try {
        call = callFromWire(stream.request);
      } catch (error) {
        const message = error instanceof WireError ? error.message : `malformed call: ${(error as Error).message}`;
        return reply({ type: 'error', name: 'InvalidRequestError', message });
      }
      const progress: ProgressFn = (message, step, total) => send(create(CallEventSchema, { event: { case: 'progress', value: create(ProgressSchema, { message: message.slice(0, 1024), step, total }) } }));
      handlers.call(call, progress, reply);
    },
    propose: (unary, callback) => {
      const peer = handlers.peerOf(unary);
      if (peer === null) return callback(unauthenticated);
      const commands = unary.request.commands;
      if (commands.length > ACTORS_LIMITS.proposeCommandsMax) {
        return callback({ code: grpc.status.INVALID_ARGUMENT, details: `a Propose carries at most ${ACTORS_LIMITS.proposeCommandsMax} commands, got ${commands.length}` });
      }
      const outcomes: ProposeOutcome[] = new Array(commands.length);
      let left = commands.length;
      if (left === 0) return callback(null, create(ProposeResponseSchema, { outcomes: [] }));
      const done = (index: number, outcome: StoreWriteOutcome): void => {
        outcomes[index] = outcomeToWire(outcome);
        inFlight.set(peer, (inFlight.get(peer) ?? 1) - 1);
        left -= 1;
        if (left === 0) callback(null, create(ProposeResponseSchema, { outcomes }));
      };
      commands.forEach((bytes, index) => {
        inFlight.set(peer, (inFlight.get(peer) ?? 0) + 1);
        if ((inFlight.get(peer) ?? 0) > ACTORS_LIMITS.proposalsInFlightPerPeerMax) {
          return done(index, { ok: false, reason: 'unavailable', detail: `node ${peer} has ${ACTORS_LIMITS.proposalsInFlightPerPeerMax} proposals in flight here; retry shortly` });
        }
        const command = handlers.decode(bytes);
        if (command === null) return done(index, { ok: false, reason: 'unavailable', detail: 'not a valid KV command within the limits' });
        handlers.propose(command, (outcome) => done(index, outcome));
      });
    },
    follow: (stream) => {
      if (handlers.peerOf(stream) === null) {
        stream.emit('error', unauthenticated);
        return;
      }
      if (follows >= ACTORS_LIMITS.followsMax) {
        stream.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: `this node serves ${ACTORS_LIMITS.followsMax} follows already; retry later` });
        return;
      }
      const request = stream.request;
      const identity: Identity = { tokenId: request.identity?.tokenId ?? '', tokenName: request.identity?.tokenName ?? '', tenant: request.identity?.tenant ?? '', role: request.identity?.role ?? '' };
      const stop = handlers.follow(request.key, identity, (event) => {
        if (stream.writable) stream.write(followedToWire(event));
      });
      if (stop === null) {
        stream.emit('error', { code: grpc.status.PERMISSION_DENIED, details: `not allowed to follow ${request.key}` });
        return;
      }
      follows += 1;
      let stopped = false;
      const end = (): void => {
        if (stopped) return;
        stopped = true;
        follows -= 1;
        stop();
      };
      stream.on('cancelled', end);
      stream.on('close', end);
      stream.on('error', end);
    },
  });
}
