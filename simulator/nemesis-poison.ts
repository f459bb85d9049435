// The poison-pill nemesis (issue 11): malformed entries and values proposed
// straight to the leader's Raft log during faults, as a broken or hostile
// member could through the peer plane (Actors.Propose), bypassing the client
// KV API's guard on system keys. What the cluster must do with them: apply
// each as a recorded rejection, the same on every replica, and go on; no node
// stops, no half-formed record reaches an actor, and every other checker
// (exactly-once, fencing, quota, linearizability, equal state machines) stays
// green. Its own check: a write the apply-time value check refuses is never
// acknowledged as applied and never found in the state.
import { encodeCommand, type KvCommand } from '../consensus/kv-state-machine.ts';
import type { WriteOutcome } from '../consensus/raft-node.ts';
import type { KvResult } from '../consensus/kv-state-machine.ts';
import type { SimCluster } from './cluster.ts';
import type { Prng } from './prng.ts';

/** Virtual ms between two injections, drawn per seed from this range. */
const INTERVAL_MS_RANGE: readonly [number, number] = [50, 400];
/** Longest run of random bytes proposed as one entry. */
const RANDOM_BYTES_MAX = 64;
/** Poison puts remembered for the end-of-run check (the oldest beyond it are not checked). */
const REMEMBERED_MAX = 2000;

/**
 * Values that fit no record of ours: not JSON, JSON of the wrong shape, and
 * the issue's original pill (a project record without a spec), which once
 * killed the nodes that owned it.
 */
export const MALFORMED_VALUES: readonly string[] = [
  '',
  'not json',
  '{',
  'null',
  '[]',
  '42',
  '"running"',
  '{}',
  '{"desired":"running","generation":1}',
  '{"spec":null,"desired":"running","generation":1}',
  '{"spec":{"command":7},"desired":"running","generation":1}',
  '{"desired":"running","generation":-1,"spec":{}}',
  '{"state":"running","node":7}',
  '{"projects":"many","ports":-1}',
  '{"events":"none"}',
  `{"generation":${Number.MAX_SAFE_INTEGER}0}`,
];

export type PoisonKind = 'randomBytes' | 'truncated' | 'flippedByte' | 'malformedValue';
const KINDS: readonly PoisonKind[] = ['randomBytes', 'truncated', 'flippedByte', 'malformedValue'];

export interface PoisonStats {
  injected: Record<PoisonKind, number>;
  /** Entries that the leader's log took (the rest met no leader, a crash or a full pipeline). */
  committed: number;
  /** Committed entries whose command the state machine refused (undecodable or failing its value check). */
  refused: number;
}

export class PoisonNemesis {
  readonly stats: PoisonStats = { injected: { randomBytes: 0, truncated: 0, flippedByte: 0, malformedValue: 0 }, committed: 0, refused: 0 };
  private active = false;
  private readonly intervalMs: number;
  /** Malformed puts proposed: key and value, for the end-of-run check. */
  private readonly puts: { readonly key: string; readonly value: string }[] = [];

  constructor(
    private readonly cluster: SimCluster,
    private readonly prng: Prng,
    /** The system keys to aim at (the workload's records first of all); read each time, as the workload grows. */
    private readonly keys: () => readonly string[],
    /** Why the state machine refuses `value` under `key` (the same check the nodes apply); null when it would take it. */
    private readonly valueCheck: (key: string, value: string) => string | null,
  ) {
    this.intervalMs = prng.range(INTERVAL_MS_RANGE[0], INTERVAL_MS_RANGE[1]);
  }

  start(): void {
    this.active = true;
    this.next();
  }

  stop(): void {
    this.active = false;
  }

  /** Problems found at the end: a refused poison value that is in the state anyway. */
  finalProblems(): string[] {
    const leader = this.cluster.leader();
    if (leader === null) return [];
    const problems: string[] = [];
    for (const { key, value } of this.puts) {
      if (leader.machine.kv.get(key)?.value === value) problems.push(`poison: the malformed value ${JSON.stringify(value)} is stored under ${key}`);
    }
    return problems;
  }

  private next(): void {
    this.cluster.scheduler.schedule(this.prng.range(1, this.intervalMs * 2), () => {
      if (!this.active) return;
      this.inject();
      this.next();
    }, 'poison');
  }

  private inject(): void {
    const leader = this.cluster.leader();
    if (leader === null) return;
    const kind = this.prng.pick(KINDS);
    this.stats.injected[kind] += 1;
    const { data, put } = this.poison(kind);
    const mustRefuse = put !== null && this.valueCheck(put.key, put.value) !== null;
    if (mustRefuse && this.puts.length < REMEMBERED_MAX) this.puts.push(put);
    this.cluster.record(leader.id, 'poison', `${kind}${put === null ? '' : ` ${put.key}`}`);
    this.cluster.callNode(leader.id, (node) => node.propose(data, (outcome) => this.answered(outcome, put, mustRefuse)), () => undefined);
  }

  private answered(outcome: WriteOutcome<KvResult>, put: { key: string; value: string } | null, mustRefuse: boolean): void {
    if (!outcome.ok) return;
    this.stats.committed += 1;
    if (!outcome.result.ok) {
      this.stats.refused += 1;
      return;
    }
    if (mustRefuse && put !== null) this.cluster.checker.violation(`poison: the malformed write of ${JSON.stringify(put.value)} under ${put.key} was applied (index ${outcome.index})`);
  }

  /** One poison entry; `put` is the key and value it writes when it decodes to a put. */
  private poison(kind: PoisonKind): { data: Uint8Array; put: { key: string; value: string } | null } {
    const keys = this.keys();
    const key = keys.length === 0 ? 'projects/x/y' : this.prng.pick(keys);
    const value = this.prng.pick(MALFORMED_VALUES);
    const command: KvCommand = { type: 'put', key, value };
    const encoded = encodeCommand(command);
    switch (kind) {
      case 'randomBytes': {
        const data = new Uint8Array(this.prng.int(RANDOM_BYTES_MAX + 1));
        for (let i = 0; i < data.length; i += 1) data[i] = this.prng.int(256);
        return { data, put: null };
      }
      case 'truncated':
        return { data: encoded.subarray(0, this.prng.int(encoded.length)), put: null };
      case 'flippedByte': {
        // A flipped byte may still decode (a key or value with one byte changed): the value check decides it, as for any put.
        const data = Uint8Array.from(encoded);
        const at = this.prng.int(data.length);
        data[at] = (data[at] ?? 0) ^ (1 << this.prng.int(8));
        return { data, put: null };
      }
      case 'malformedValue':
        return { data: encoded, put: { key, value } };
      default: {
        const never: never = kind;
        return never;
      }
    }
  }
}
