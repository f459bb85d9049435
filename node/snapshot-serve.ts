// Admin.SnapshotSave on the server: a linearizable read (ReadIndex, confirmed
// by a quorum) picks the index, the state machine is serialised the moment
// this node has applied it, and the snapshot file's bytes are streamed in
// chunks, waiting for the client to read (no unbounded buffering).
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { SnapshotSaveResponseSchema, type SnapshotSaveRequest, type SnapshotSaveResponse } from '../proto/gen/admin_pb.ts';
import type { DebughostNode } from './node.ts';
import { encodeSnapshotFile } from './snapshot-file.ts';

export interface SnapshotServeLimits {
  /** Bytes per streamed message: far below the 16 MiB gRPC cap, small enough not to hold up Raft traffic on a shared link. */
  readonly chunkBytes: number;
  /** Saves served at once: each holds a full copy of the state in memory until it is sent. */
  readonly savesInFlightMax: number;
}

export const snapshotServeLimitsDefault: SnapshotServeLimits = Object.freeze({ chunkBytes: 1024 * 1024, savesInFlightMax: 2 });

export function validateSnapshotServeLimits(limits: SnapshotServeLimits): SnapshotServeLimits {
  if (!Number.isSafeInteger(limits.chunkBytes) || limits.chunkBytes < 1024 || limits.chunkBytes > 8 * 1024 * 1024) {
    throw new RangeError(`snapshot chunkBytes is ${limits.chunkBytes}; give 1 KiB to 8 MiB`);
  }
  if (!Number.isSafeInteger(limits.savesInFlightMax) || limits.savesInFlightMax < 1) throw new RangeError(`snapshot savesInFlightMax is ${limits.savesInFlightMax}; give at least 1`);
  return limits;
}

type Call = grpc.ServerWritableStream<SnapshotSaveRequest, SnapshotSaveResponse>;

export function snapshotSaveHandler(node: DebughostNode, limits: SnapshotServeLimits = snapshotServeLimitsDefault, now: () => Date = () => new Date()): (call: Call) => void {
  validateSnapshotServeLimits(limits);
  let inFlight = 0;
  return (call) => {
    const fail = (code: grpc.status, details: string): void => {
      call.emit('error', { code, details, message: details });
    };
    const raft = node.raft;
    if (raft === null) return fail(grpc.status.UNAVAILABLE, `node ${node.id} is still starting; retry shortly`);
    if (inFlight >= limits.savesInFlightMax) {
      return fail(grpc.status.RESOURCE_EXHAUSTED, `node ${node.id} is already sending ${inFlight} snapshots (the most it allows at once); retry when they are done, or save through another node`);
    }
    inFlight += 1;
    raft.read((outcome) => {
      if (!outcome.ok) {
        inFlight -= 1;
        return fail(grpc.status.UNAVAILABLE, `the snapshot index could not be confirmed by a quorum (${outcome.reason}); retry shortly, or save through another node`);
      }
      // Serialised here, in the read's callback: nothing else is applied in between.
      const machine = outcome.machine;
      let bytes: Uint8Array;
      try {
        bytes = encodeSnapshotFile(
          {
            clusterId: node.clusterId,
            takenBy: node.id,
            appliedIndex: machine.appliedIndex,
            revision: machine.kv.revision,
            keys: machine.kv.size,
            createdAt: now().toISOString(),
            members: node.members().map((member) => ({ id: member.id, address: member.address })),
          },
          machine.snapshot(),
        );
      } catch (error) {
        // This runs inside the Raft driver's loop: a failure here fails this call, never the node.
        inFlight -= 1;
        return fail(grpc.status.INTERNAL, `the snapshot could not be encoded: ${(error as Error).message}`);
      }
      node.options.log.info({ index: machine.appliedIndex, bytes: bytes.byteLength }, 'sending a snapshot');
      void streamBytes(call, bytes, limits.chunkBytes, machine.appliedIndex).finally(() => {
        inFlight -= 1;
      });
    });
  };
}

async function streamBytes(call: Call, bytes: Uint8Array, chunkBytes: number, appliedIndex: number): Promise<void> {
  let gone = false;
  const stop = (): void => {
    gone = true;
  };
  call.once('cancelled', stop);
  call.once('close', stop);
  call.once('error', stop);
  for (let offset = 0; offset < bytes.byteLength && !gone; offset += chunkBytes) {
    const head = offset === 0 ? { totalBytes: BigInt(bytes.byteLength), appliedIndex: BigInt(appliedIndex) } : {};
    const accepted = call.write(create(SnapshotSaveResponseSchema, { data: bytes.subarray(offset, offset + chunkBytes), ...head }));
    if (!accepted && !gone) await drainedOrGone(call);
  }
  if (!gone) call.end();
}

/** Resolves when the client has read what is buffered, or has gone away. */
function drainedOrGone(call: Call): Promise<void> {
  return new Promise((resolve) => {
    const events = ['drain', 'cancelled', 'close', 'error'] as const;
    const done = (): void => {
      for (const event of events) call.off(event, done);
      resolve();
    };
    for (const event of events) call.on(event, done);
  });
}
