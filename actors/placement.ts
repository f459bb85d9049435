// Placement: which node owns an actor key. A consistent-hash ring over the
// live members as committed in the Raft log (members minus those marked down),
// tagged with the ring epoch (the modRevision of `ring/epoch`), so every node
// computes the same owner for a key at the same applied index. Pure.
import HashRing from 'hashring';
import { RING_EPOCH_KEY } from '../consensus/kv-machine.ts';
import { prefixEnd, type KeyValue } from '../consensus/kv-state-machine.ts';
import { LIVENESS_PREFIX, MEMBERS_PREFIX } from './messages.ts';

/** The part of the applied KV state placement reads. */
export interface KvView {
  get(key: string): KeyValue | null;
  range(start: string, end: string, limit?: number): KeyValue[];
}

/** Virtual nodes per member: more points spread keys more evenly (ketama uses 40 x 4). */
export const RING_VNODES = 40;
/** Lookups the ring's LRU cache keeps (the library breaks with 0). */
const RING_CACHE_KEYS_MAX = 10_000;

/** Values of `liveness/<id>`: marked down by the leader's failure detector, or draining on a graceful shutdown. */
export type LivenessMark = 'down' | 'draining';

export interface RingInputs {
  readonly epoch: number;
  readonly members: readonly string[];
  /** Members the leader marked down (it marks them up again when it hears them). */
  readonly down: readonly string[];
  /** Members handing their actors off before they shut down. */
  readonly draining: readonly string[];
}

/** Read the ring inputs from applied state. Epoch 0 means no member was ever recorded. */
export function readRingInputs(kv: KvView): RingInputs {
  const epoch = kv.get(RING_EPOCH_KEY)?.modRevision ?? 0;
  const members = kv.range(MEMBERS_PREFIX, prefixEnd(MEMBERS_PREFIX)).map((entry) => entry.key.slice(MEMBERS_PREFIX.length));
  const marks = kv.range(LIVENESS_PREFIX, prefixEnd(LIVENESS_PREFIX));
  const marked = (mark: LivenessMark): string[] => marks.filter((entry) => entry.value === mark).map((entry) => entry.key.slice(LIVENESS_PREFIX.length));
  return { epoch, members, down: marked('down'), draining: marked('draining') };
}

export class Placement {
  readonly epoch: number;
  readonly members: readonly string[];
  /** Members that own keys: members minus those marked down or draining, sorted. */
  readonly live: readonly string[];
  /** Members the leader marked down. */
  readonly down: ReadonlySet<string>;
  private readonly ring: HashRing | null;

  constructor(inputs: RingInputs) {
    this.epoch = inputs.epoch;
    this.members = [...inputs.members].sort();
    this.down = new Set(inputs.down);
    const out = new Set([...inputs.down, ...inputs.draining]);
    this.live = this.members.filter((member) => !out.has(member));
    this.ring = this.live.length === 0 ? null : new HashRing([...this.live], 'md5', { 'vnode count': RING_VNODES, 'max cache size': RING_CACHE_KEYS_MAX });
  }

  /** The owner of `key`, or null while no member is live. */
  owner(key: string): string | null {
    if (this.ring === null) return null;
    return this.live.length === 1 ? (this.live[0] as string) : this.ring.get(key);
  }
}

/** Keeps one Placement per epoch: the ring is rebuilt only when the epoch changes. */
export class PlacementCache {
  private current: Placement | null = null;

  /** The placement for the applied state `kv`. */
  at(kv: KvView): Placement {
    const epoch = kv.get(RING_EPOCH_KEY)?.modRevision ?? 0;
    if (this.current === null || this.current.epoch !== epoch) this.current = new Placement(readRingInputs(kv));
    return this.current;
  }
}
