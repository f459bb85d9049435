// Actor calls between nodes over gRPC: the Forwarder the actor host uses to
// reach an owner, and the Actors service that serves forwarded calls. The
// payloads are the actor layer's JSON tagged unions; this file only carries
// them, maps transport failures to the host's outcomes, and bounds sizes.
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { ForwardCall, ForwardOutcome, Forwarder, StoreWriteOutcome } from '../actors/components.ts';
import type { ActorResponse } from '../actors/messages.ts';
import {
  Actors,
  ActorCallRequestSchema,
  ActorCallResponseSchema,
  FollowEventSchema,
  FollowRequestSchema,
  ProposeRequestSchema,
  ProposeResponseSchema,
} from '../proto/gen/actor_pb.ts';
import { addService, callUnary, makeClientConstructor } from '../proto/grpc.ts';
import { grpcChannelOptions, MESSAGE_BYTES_MAX } from '../consensus/transport-grpc.ts';

const ActorsClient = makeClientConstructor(Actors);
export type ActorsClientType = InstanceType<typeof ActorsClient>;

/** Forwarded hops of one call: owner changes are followed by the caller, so a node never forwards twice. */
export const FORWARD_HOPS_MAX = 1;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
export const encodeJson = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));
export const decodeJson = <T>(bytes: Uint8Array): T => JSON.parse(decoder.decode(bytes)) as T;

/** Channels of the Actors.Call RPC: actor messages, and I/O against a project on its owner (logs, exec, http, wait). */
export type CallChannel = 'actor' | 'io';

export class ActorClients {
  readonly #clients = new Map<string, ActorsClientType>();

  constructor(private readonly credentials: grpc.ChannelCredentials) {}

  at(address: string): ActorsClientType {
    let client = this.#clients.get(address);
    if (client === undefined) {
      client = new ActorsClient(address, this.credentials, grpcChannelOptions(MESSAGE_BYTES_MAX));
      this.#clients.set(address, client);
    }
    return client;
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }
}

/** The real Forwarder: one unary Actors.Call to the owner's address with the caller's deadline. */
export class GrpcForwarder implements Forwarder {
  constructor(
    private readonly self: string,
    private readonly clients: ActorClients,
    private readonly addressOf: (node: string) => string | null,
  ) {}

  forward(owner: string, call: ForwardCall, callback: (outcome: ForwardOutcome) => void): void {
    const address = this.addressOf(owner);
    if (address === null) {
      callback({ ok: false, reason: 'unreachable', detail: `no address known for node ${owner}` });
      return;
    }
    const request = create(ActorCallRequestSchema, {
      key: call.key,
      requestId: call.requestId,
      deadlineMs: Math.max(1, Math.round(call.deadlineMs)),
      fromNode: this.self,
      hops: 1,
      channel: 'actor',
      payload: encodeJson({ request: call.request, callerEpoch: call.callerEpoch }),
    });
    callUnary(this.clients.at(address), 'call', request, { deadline: new Date(Date.now() + call.deadlineMs) }).then(
      (response) => {
        let parsed: ActorResponse;
        try {
          parsed = decodeJson<ActorResponse>(response.payload);
        } catch (error) {
          callback({ ok: false, reason: 'unreachable', detail: `node ${owner} answered with bytes that are not JSON: ${(error as Error).message}` });
          return;
        }
        callback({ ok: true, response: parsed });
      },
      (error: grpc.ServiceError) => {
        const reason = error.code === grpc.status.DEADLINE_EXCEEDED ? 'deadline' : 'unreachable';
        callback({ ok: false, reason, detail: `node ${owner} at ${address}: ${error.details || error.message}` });
      },
    );
  }

  /** A project I/O request (logs, exec, http, wait) answered by the owner node itself. */
  io<T>(owner: string, key: string, payload: unknown, deadlineMs: number, requestId: string, signal?: AbortSignal): Promise<T> {
    const address = this.addressOf(owner);
    if (address === null) return Promise.reject(new ForwardError('unreachable', `no address known for node ${owner}`));
    const request = create(ActorCallRequestSchema, {
      key,
      requestId,
      deadlineMs: Math.max(1, Math.round(deadlineMs)),
      fromNode: this.self,
      hops: 1,
      channel: 'io',
      payload: encodeJson(payload),
    });
    return callUnary(this.clients.at(address), 'call', request, { deadline: new Date(Date.now() + deadlineMs), ...(signal === undefined ? {} : { signal }) }).then(
      (response) => decodeJson<T>(response.payload),
      (error: grpc.ServiceError) => {
        throw new ForwardError(error.code === grpc.status.DEADLINE_EXCEEDED ? 'deadline' : 'unreachable', `node ${owner} at ${address}: ${error.details || error.message}`);
      },
    );
  }

  /** Propose an encoded KV command on the leader at `address`; a lost answer is 'unknown'. */
  propose(address: string, command: Uint8Array, deadlineMs: number, callback: (outcome: StoreWriteOutcome) => void): void {
    callUnary(this.clients.at(address), 'propose', create(ProposeRequestSchema, { command }), { deadline: new Date(Date.now() + deadlineMs) }).then(
      (response) => {
        try {
          callback(decodeJson<StoreWriteOutcome>(response.outcome));
        } catch (error) {
          callback({ ok: false, reason: 'unknown', detail: `the leader's answer is not JSON: ${(error as Error).message}` });
        }
      },
      (error: grpc.ServiceError) => {
        // Refused before it was sent: certainly not applied. Anything later may have been.
        const reason = error.code === grpc.status.UNAVAILABLE && /ECONNREFUSED|No connection established/.test(error.details) ? 'unavailable' : 'unknown';
        callback({ ok: false, reason, detail: `leader at ${address}: ${error.details || error.message}` });
      },
    );
  }

  /** Follow a project's new log lines on its owner; returns a function that ends the stream. */
  follow(owner: string, key: string, onEvent: (payload: unknown) => void, onEnd: (error: Error | null) => void): () => void {
    const address = this.addressOf(owner);
    if (address === null) {
      onEnd(new ForwardError('unreachable', `no address known for node ${owner}`));
      return () => {};
    }
    const stream = this.clients.at(address).follow(create(FollowRequestSchema, { key }));
    let ended = false;
    const end = (error: Error | null): void => {
      if (ended) return;
      ended = true;
      onEnd(error);
    };
    stream.on('data', (event: { payload: Uint8Array }) => {
      try {
        onEvent(decodeJson(event.payload));
      } catch {
        // A line that is not JSON is dropped; the next one may parse.
      }
    });
    stream.on('error', (error: grpc.ServiceError) => end(error.code === grpc.status.CANCELLED ? null : error));
    stream.on('end', () => end(null));
    return () => {
      ended = true;
      stream.cancel();
    };
  }
}

export class ForwardError extends Error {
  constructor(
    readonly reason: 'unreachable' | 'deadline',
    message: string,
  ) {
    super(message);
  }
  override readonly name = 'ForwardError';
}

export interface ActorsServiceHandlers {
  /** Serve a forwarded actor message on this node (the host checks ownership). */
  actor(call: ForwardCall, callback: (response: ActorResponse) => void): void;
  /** Serve a project I/O request on this node. */
  io(key: string, payload: unknown, deadlineMs: number, signal: AbortSignal): Promise<unknown>;
  /** Stream new log lines of `key`'s project until the returned function is called. */
  follow(key: string, onEvent: (payload: unknown) => void): () => void;
  /** Propose an encoded KV command here (this node should be the leader). */
  propose(command: Uint8Array, callback: (outcome: StoreWriteOutcome) => void): void;
}

/** Register the Actors service: decode, dispatch by channel, encode; errors become gRPC statuses here only. */
export function addActorsService(server: grpc.Server, handlers: ActorsServiceHandlers): void {
  addService(server, Actors, {
    call: (call, callback) => {
      const request = call.request;
      if (request.hops > FORWARD_HOPS_MAX) {
        callback({ code: grpc.status.FAILED_PRECONDITION, details: `call for ${request.key} was forwarded ${request.hops} times; the caller must re-route` });
        return;
      }
      let payload: unknown;
      try {
        payload = decodeJson(request.payload);
      } catch (error) {
        callback({ code: grpc.status.INVALID_ARGUMENT, details: `payload is not JSON: ${(error as Error).message}` });
        return;
      }
      const reply = (value: unknown): void => callback(null, create(ActorCallResponseSchema, { payload: encodeJson(value) }));
      if (request.channel === 'actor') {
        const body = payload as { request: ForwardCall['request']; callerEpoch: number };
        handlers.actor({ key: request.key as ForwardCall['key'], request: body.request, callerEpoch: body.callerEpoch, deadlineMs: request.deadlineMs, requestId: request.requestId }, reply);
        return;
      }
      if (request.channel === 'io') {
        const controller = new AbortController();
        call.on('cancelled', () => controller.abort());
        handlers.io(request.key, payload, request.deadlineMs, controller.signal).then(reply, (error: Error) =>
          callback({ code: grpc.status.UNKNOWN, details: `${error.name}: ${error.message}` }),
        );
        return;
      }
      callback({ code: grpc.status.INVALID_ARGUMENT, details: `unknown channel '${request.channel}'; use actor or io` });
    },
    propose: (call, callback) => {
      handlers.propose(call.request.command, (outcome) => callback(null, create(ProposeResponseSchema, { outcome: encodeJson(outcome) })));
    },
    follow: (call) => {
      const stop = handlers.follow(call.request.key, (payload) => {
        call.write(create(FollowEventSchema, { payload: encodeJson(payload) }));
      });
      call.on('cancelled', stop);
      call.on('close', stop);
    },
  });
}
