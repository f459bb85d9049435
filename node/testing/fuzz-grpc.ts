// Test support for the issue 11 fuzz suite, gRPC side: cases of random and
// mutated messages for every method of every service a node serves (Raft, KV,
// Admin, Actors), sent as raw bytes with a chosen credential, so a mutated
// encoding reaches the server's own decoder. Before sending, a case is tamed
// where honest-looking input would be a legitimate order rather than an
// attack: commands are wrapped in echo, a member's Raft message keeps a stale
// or out-of-bounds term (Raft trusts a member's in-bounds messages by design),
// membership changes go out without the admin's right, and nothing names the
// test's sentinel project.
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type DescService } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { decodeCommand } from '../../consensus/kv-state-machine.ts';
import { systemValueError } from '../../actors/records.ts';
import { Actors } from '../../proto/gen/actor_pb.ts';
import { Admin } from '../../proto/gen/admin_pb.ts';
import { KV } from '../../proto/gen/kv_pb.ts';
import { Raft } from '../../proto/gen/raft_pb.ts';
import { PEER_ID_HEADER, PEER_PROOF_HEADER, peerProof } from '../peer-auth.ts';
import { harmlessCommand, messageInit, mutatedBytes } from './fuzz-arbitraries.ts';

export const FUZZED_SERVICES: readonly DescService[] = [Raft, KV, Admin, Actors];

/** How a case presents itself: nothing, a bearer token, a member's proof, or a forged one. */
export type Credential = 'none' | 'admin' | 'tenant' | 'badToken' | 'peer' | 'badPeer';

export interface GrpcCase {
  readonly service: string;
  readonly method: string;
  /** Index of the member the call goes to. */
  readonly target: number;
  readonly credential: Credential;
  /** Index of the member a peer credential claims to be. */
  readonly peer: number;
  /** The messages (one for a unary or server-streaming call; a few for a client stream), encoded, maybe mutated. */
  readonly payloads: readonly Uint8Array[];
}

export type RawOutcome = { readonly code: grpc.status | 'ok'; readonly detail: string };

/** Highest term a peer may send (consensus/peer-bounds.ts TERM_MAX); a tamed term stays out of [floor, this]. */
const TERM_MAX = 2n ** 48n;
/** A streaming call is cancelled after this long: the fuzz wants the handler's reaction, not a long stream. */
const STREAM_WINDOW_MS = 400;
const CALL_DEADLINE_MS = 15_000;
const CLIENT_STREAM_MESSAGES_MAX = 3;

const methodsOf = (service: DescService): readonly DescMethod[] => service.methods;
const byPath = new Map<string, DescMethod>(FUZZED_SERVICES.flatMap((service) => methodsOf(service).map((method) => [`${service.typeName}/${method.name}`, method] as const)));

export const methodOf = (kase: Pick<GrpcCase, 'service' | 'method'>): DescMethod => {
  const method = byPath.get(`${kase.service}/${kase.method}`);
  if (method === undefined) throw new Error(`no method ${kase.service}/${kase.method}`);
  return method;
};

function encoded(message: DescMessage): fc.Arbitrary<Uint8Array> {
  return messageInit(message).chain((init) => {
    let bytes: Uint8Array;
    try {
      bytes = toBinary(message, create(message, init as never));
    } catch {
      bytes = new Uint8Array();
    }
    return fc.oneof({ weight: 2, arbitrary: fc.constant(bytes) }, { weight: 1, arbitrary: mutatedBytes(bytes) });
  });
}

/** One case: any method, any member, any credential, its message(s) random or mutated. */
export function grpcCase(members: number): fc.Arbitrary<GrpcCase> {
  const methods = FUZZED_SERVICES.flatMap((service) => methodsOf(service).map((method) => ({ service: service.typeName, method })));
  return fc.constantFrom(...methods).chain(({ service, method }) =>
    fc.record({
      service: fc.constant(service),
      method: fc.constant(method.name),
      target: fc.nat({ max: members - 1 }),
      credential: fc.constantFrom<Credential>('none', 'admin', 'tenant', 'badToken', 'peer', 'peer', 'peer', 'badPeer'),
      peer: fc.nat({ max: members - 1 }),
      payloads: fc.array(encoded(method.input), { minLength: 1, maxLength: method.methodKind === 'client_streaming' ? CLIENT_STREAM_MESSAGES_MAX : 1 }),
    }),
  );
}

export interface TameContext {
  /** The lowest current term among the members before the batch: a message below it is stale everywhere. */
  readonly termFloor: bigint;
  /** A string no tamed message may contain: the sentinel project's name. */
  readonly sentinel: string;
}

/** Walk a decoded message: commands become harmless, images go (no engine is used), the sentinel's name is changed. */
function tameFields(value: unknown, sentinel: string): void {
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return;
  const record = value as Record<string, unknown>;
  for (const [key, item] of Object.entries(record)) {
    if (key === 'command' && typeof item === 'string') record[key] = harmlessCommand(item);
    else if (key === 'image' && typeof item === 'string') record[key] = undefined;
    else if (typeof item === 'string' && item.includes(sentinel)) record[key] = item.split(sentinel).join('other');
    else tameFields(item, sentinel);
  }
}

function tameTerm(term: bigint, context: TameContext): bigint {
  if (term < context.termFloor || term > TERM_MAX) return term;
  return context.termFloor > 0n ? term % context.termFloor : TERM_MAX + 1n + term;
}

export interface SendPlan {
  readonly credential: Credential;
  readonly payloads: readonly Uint8Array[];
}

/**
 * The case as it is sent: bytes that decode are tamed and encoded again (the
 * unknown fields a mutation made are kept); bytes that do not decode go as
 * they are, for the server's decoder to refuse. Null: nothing safe to send.
 */
export function tame(kase: GrpcCase, context: TameContext): SendPlan | null {
  const method = methodOf(kase);
  let credential = kase.credential;
  const path = `${kase.service}/${kase.method}`;
  const asMember = credential === 'peer';
  // Joining as a member's own id or on its word adds a learner: a membership change, which only the fuzz of refusals covers.
  if (path === `${Raft.typeName}/Join` && asMember) credential = 'none';
  const membership = ['MemberAdd', 'MemberPromote', 'MemberRemove'].includes(kase.method) && kase.service === Admin.typeName;
  if (membership && (credential === 'admin' || asMember)) credential = 'tenant';
  const payloads: Uint8Array[] = [];
  for (const bytes of kase.payloads) {
    let message: Record<string, unknown>;
    try {
      message = fromBinary(method.input, bytes) as Record<string, unknown>;
    } catch {
      payloads.push(bytes);
      continue;
    }
    tameFields(message, context.sentinel);
    if (kase.service === Raft.typeName && Array.isArray(message.messages)) {
      for (const raft of message.messages as { term: bigint }[]) raft.term = tameTerm(raft.term, context);
    }
    if (path === `${Actors.typeName}/Propose` && Array.isArray(message.commands)) {
      // A decodable command that writes a well-formed project record would run what it names.
      const commands = message.commands as Uint8Array[];
      if (commands.some((command) => writesRunnableRecord(command))) return null;
    }
    payloads.push(toBinary(method.input, message as never));
  }
  return { credential, payloads };
}

function writesRunnableRecord(bytes: Uint8Array): boolean {
  const command = decodeCommand(bytes);
  if (command === null) return false;
  const ops = command.type === 'txn' ? [...command.success, ...command.failure] : [command];
  return ops.some((op) => op.type === 'put' && op.key.startsWith('projects/') && systemValueError(op.key, op.value) === null);
}

export interface Credentials {
  readonly adminToken: string;
  readonly tenantToken: string;
  readonly secret: Uint8Array;
  readonly memberIds: readonly string[];
}

export function metadataFor(credential: Credential, peer: number, credentials: Credentials): grpc.Metadata {
  const metadata = new grpc.Metadata();
  const id = credentials.memberIds[peer] ?? 'n1';
  switch (credential) {
    case 'none':
      break;
    case 'admin':
      metadata.set('authorization', `Bearer ${credentials.adminToken}`);
      break;
    case 'tenant':
      metadata.set('authorization', `Bearer ${credentials.tenantToken}`);
      break;
    case 'badToken':
      metadata.set('authorization', `Bearer ${credentials.adminToken.slice(0, -4)}AAAA`);
      break;
    case 'peer':
      metadata.set(PEER_ID_HEADER, id);
      metadata.set(PEER_PROOF_HEADER, peerProof(credentials.secret, id).toString('hex'));
      break;
    case 'badPeer':
      metadata.set(PEER_ID_HEADER, id);
      metadata.set(PEER_PROOF_HEADER, peerProof(new Uint8Array(32), id).toString('hex'));
      break;
    default: {
      const never: never = credential;
      return never;
    }
  }
  return metadata;
}

const serialize = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
const deserialize = (bytes: Buffer): Buffer => bytes;

const outcomeOf = (error: grpc.ServiceError | null): RawOutcome => (error === null ? { code: 'ok', detail: '' } : { code: error.code, detail: error.details ?? error.message });

/** Raw-bytes gRPC calls to one address: any method path, any payload, any metadata. */
export class RawGrpcClient {
  readonly #client: grpc.Client;

  constructor(address: string) {
    this.#client = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 64 * 1024 * 1024 });
  }

  call(method: DescMethod, payloads: readonly Uint8Array[], metadata: grpc.Metadata): Promise<RawOutcome> {
    const path = `/${method.parent.typeName}/${method.name}`;
    const deadline = Date.now() + CALL_DEADLINE_MS;
    switch (method.methodKind) {
      case 'unary':
        return new Promise((resolve) => {
          this.#client.makeUnaryRequest(path, serialize, deserialize, payloads[0] ?? new Uint8Array(), metadata, { deadline }, (error) => resolve(outcomeOf(error)));
        });
      case 'client_streaming':
        return new Promise((resolve) => {
          const stream = this.#client.makeClientStreamRequest(path, serialize, deserialize, metadata, { deadline }, (error) => resolve(outcomeOf(error)));
          for (const payload of payloads) stream.write(payload);
          stream.end();
        });
      case 'server_streaming':
      case 'bidi_streaming':
        return new Promise((resolve) => {
          const stream =
            method.methodKind === 'server_streaming'
              ? this.#client.makeServerStreamRequest(path, serialize, deserialize, payloads[0] ?? new Uint8Array(), metadata, { deadline })
              : this.#client.makeBidiStreamRequest(path, serialize, deserialize, metadata, { deadline });
          let settled = false;
          const settle = (outcome: RawOutcome): void => {
            if (settled) return;
            settled = true;
            clearTimeout(window);
            resolve(outcome);
          };
          const window = setTimeout(() => {
            stream.cancel();
            settle({ code: 'ok', detail: 'open after the window' });
          }, STREAM_WINDOW_MS);
          stream.on('data', () => undefined);
          stream.on('error', (error: grpc.ServiceError) => settle(outcomeOf(error)));
          stream.on('end', () => settle({ code: 'ok', detail: '' }));
          stream.on('status', (status: grpc.StatusObject) => settle(status.code === grpc.status.OK ? { code: 'ok', detail: '' } : { code: status.code, detail: status.details }));
        });
    }
  }

  close(): void {
    this.#client.close();
  }
}
