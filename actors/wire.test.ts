// What a forwarded call must keep across the wire: the caller's request id, epoch, remaining deadline and
// hop count, and every typed error by its name (an outcome-unknown stays outcome-unknown).
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import test from 'ava';
import { ActorResponseSchema, CallRequestSchema } from '../proto/gen/actor_pb.ts';
import type { ForwardCall } from './components.ts';
import { ACTOR_ERROR_NAMES, errorResponse, projectActorKey, type ActorResponse } from './messages.ts';
import { callFromWire, callToWire, responseFromWire, responseToWire } from './wire.ts';

const overTheWire = (response: ActorResponse): ActorResponse => responseFromWire(fromBinary(ActorResponseSchema, toBinary(ActorResponseSchema, responseToWire(response))));

test('every typed error crosses the wire as itself, with its message', (t) => {
  for (const name of ACTOR_ERROR_NAMES) {
    const sent = errorResponse(name, `${name}: check its status, then retry with the same requestId`);
    t.deepEqual(overTheWire(sent), sent, name);
  }
});

test('an error name the receiver does not know arrives as a retryable UnavailableError, keeping its message', (t) => {
  const sent = { type: 'error', name: 'SomeFutureError', message: 'from a newer node' } as unknown as ActorResponse;
  t.deepEqual(overTheWire(sent), { type: 'error', name: 'UnavailableError', message: 'from a newer node' });
});

test('a forwarded call keeps the caller\'s request id, epoch, remaining deadline and hop count', (t) => {
  const call: ForwardCall = {
    key: projectActorKey('acme', 'web'),
    request: { type: 'restart', waitMs: 0 },
    callerEpoch: 4711,
    deadlineMs: 2345,
    requestId: 'client-chosen-id-1',
    identity: { tokenId: 'tok1', tokenName: 'ci', tenant: 'acme', role: 'developer' },
    hops: 1,
    fromNode: 'n2',
    progress: true,
  };
  const received = callFromWire(fromBinary(CallRequestSchema, toBinary(CallRequestSchema, callToWire(call))));
  t.deepEqual(received, call);
});
