// Every write an owner makes is a txn that also compares the ring epoch (the
// modRevision of `ring/epoch`) with the epoch it owns the key at: once the
// ring moved, the state machine rejects the write, on every replica alike.
import { RING_EPOCH_KEY } from '../consensus/kv-machine.ts';
import type { Compare, KeyValue, KvOp } from '../consensus/kv-state-machine.ts';
import type { ActorStore } from './components.ts';

export type FencedOutcome =
  | { readonly type: 'applied'; readonly revision: number }
  /** The ring moved on: this node no longer owns the key at `epoch`. */
  | { readonly type: 'fenced'; readonly epoch: number; readonly revision: number }
  /** The caller's own compares failed; `current` holds the keys it asked to see, in order. */
  | { readonly type: 'conflict'; readonly revision: number; readonly current: readonly (KeyValue | null)[] }
  | { readonly type: 'unavailable'; readonly detail: string }
  | { readonly type: 'unknown'; readonly detail: string };

export const epochCompare = (epoch: number): Compare => ({ key: RING_EPOCH_KEY, target: 'modRevision', op: '==', operand: epoch });

export interface FencedWrite {
  readonly epoch: number;
  readonly compare: readonly Compare[];
  readonly success: readonly KvOp[];
  /** Keys to read back when a compare fails, to tell the caller which one did. */
  readonly inspect: readonly string[];
}

/** Propose `write` fenced by its epoch. */
export function fencedWrite(store: ActorStore, write: FencedWrite, callback: (outcome: FencedOutcome) => void): void {
  const compare = [epochCompare(write.epoch), ...write.compare];
  const failure: KvOp[] = [{ type: 'get', key: RING_EPOCH_KEY }, ...write.inspect.map((key): KvOp => ({ type: 'get', key }))];
  store.propose({ type: 'txn', compare, success: [...write.success], failure }, (outcome) => {
    if (!outcome.ok) return callback(outcome.reason === 'unknown' ? { type: 'unknown', detail: outcome.detail } : { type: 'unavailable', detail: outcome.detail });
    const result = outcome.result;
    if (result.succeeded === true) return callback({ type: 'applied', revision: result.revision });
    const gets = (result.results ?? []).map((op) => (op.type === 'get' ? op.kv : null));
    const epoch = gets[0]?.modRevision ?? 0;
    if (epoch !== write.epoch) return callback({ type: 'fenced', epoch, revision: result.revision });
    callback({ type: 'conflict', revision: result.revision, current: gets.slice(1) });
  });
}
