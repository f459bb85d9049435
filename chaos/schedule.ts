// The nemesis schedule: which faults strike when, drawn from one seed so a run
// can be replayed. Pure: no clock, no I/O; the executor (nemesis.ts) resolves
// runtime targets such as "the leader" when a window opens.
import { Prng } from '../simulator/prng.ts';

export const NEMESIS_KINDS = ['partition', 'loss', 'kill', 'pause', 'restart', 'member', 'skew', 'poison'] as const;
export type NemesisKind = (typeof NEMESIS_KINDS)[number];

export type PartitionShape = 'isolate-leader' | 'halves' | 'bridge' | 'ring' | 'one-way';
export const PARTITION_SHAPES: readonly PartitionShape[] = ['isolate-leader', 'halves', 'bridge', 'ring', 'one-way'];

/** A node named by its slot (index into the founding members) or the leader at the time the window opens. */
export type Target = { readonly type: 'slot'; readonly slot: number } | { readonly type: 'leader' };

export type Fault =
  /** `order` is a permutation of the slots; each shape cuts along it (see partitionDrops). */
  | { readonly kind: 'partition'; readonly shape: PartitionShape; readonly order: readonly number[] }
  /** Every node drops this fraction of packets from its peers. */
  | { readonly kind: 'loss'; readonly probability: number }
  /** SIGKILL, restarted with the same data dir when the window closes. */
  | { readonly kind: 'kill'; readonly targets: readonly Target[] }
  /** SIGSTOP for the whole window (longer than the 400–800 ms election timeout), then SIGCONT. */
  | { readonly kind: 'pause'; readonly target: Target }
  /** Graceful restart (SIGTERM, leadership hand-off) of every node, one after another. */
  | { readonly kind: 'restart'; readonly order: readonly number[] }
  /** `debughost leave` for one member under load; a fresh node joins through the seeds when the window closes. */
  | { readonly kind: 'member'; readonly target: Target }
  /** Restart one node under libfaketime with its wall clock off by `offsetSeconds`, back to true time at the end. */
  | { readonly kind: 'skew'; readonly target: Target; readonly offsetSeconds: number }
  /** Malformed entries, records and peer messages sent to the target for the whole window (chaos/nemesis-poison.ts); `seed` draws them. */
  | { readonly kind: 'poison'; readonly target: Target; readonly seed: number };

export interface Window {
  readonly startMs: number;
  readonly endMs: number;
  readonly faults: readonly Fault[];
}

export interface ScheduleOptions {
  readonly seed: number;
  readonly durationMs: number;
  readonly kinds: readonly NemesisKind[];
  readonly nodeCount: number;
}

/** Quiet time before the first fault, so the workload has a baseline. */
export const LEAD_IN_MS = 3_000;
/** Quiet time after the last fault, before the final checks. */
export const TAIL_MS = 3_000;
const WINDOW_MS_MIN = 2_500;
const WINDOW_MS_MAX = 6_000;
const GAP_MS_MIN = 2_000;
const GAP_MS_MAX = 4_000;
/** Chance that a window with two or more kinds to choose from strikes with two at once. */
const COMBINED_CHANCE = 0.3;

export class ScheduleError extends Error {
  override readonly name = 'ScheduleError';
}

/** Parse `partition,kill,pause` into kinds, or throw a ScheduleError listing the valid ones. */
export function parseKinds(text: string): NemesisKind[] {
  const kinds: NemesisKind[] = [];
  for (const part of text.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    if (!(NEMESIS_KINDS as readonly string[]).includes(part)) {
      throw new ScheduleError(`unknown nemesis '${part}'; choose from ${NEMESIS_KINDS.join(', ')}`);
    }
    if (!kinds.includes(part as NemesisKind)) kinds.push(part as NemesisKind);
  }
  if (kinds.length === 0) throw new ScheduleError(`--nemesis needs at least one of ${NEMESIS_KINDS.join(', ')}`);
  return kinds;
}

/** Fault windows separated by quiet gaps, all inside [LEAD_IN_MS, durationMs - TAIL_MS]. */
export function planSchedule(options: ScheduleOptions): Window[] {
  const { seed, durationMs, kinds, nodeCount } = options;
  if (kinds.length === 0) throw new ScheduleError('a schedule needs at least one nemesis kind');
  if (nodeCount < 1) throw new ScheduleError('a schedule needs at least one node');
  const random = new Prng(seed).fork('chaos:schedule');
  const windows: Window[] = [];
  const lastEndMs = durationMs - TAIL_MS;
  let at = LEAD_IN_MS;
  while (at + WINDOW_MS_MIN <= lastEndMs) {
    const lengthMs = Math.min(random.range(WINDOW_MS_MIN, WINDOW_MS_MAX), lastEndMs - at);
    const first = random.pick(kinds);
    const faults = [drawFault(first, random, nodeCount)];
    if (kinds.length > 1 && random.chance(COMBINED_CHANCE)) {
      const partners = kinds.filter((kind) => kind !== first && combinable(first, kind));
      if (partners.length > 0) faults.push(drawFault(random.pick(partners), random, nodeCount));
    }
    windows.push({ startMs: at, endMs: at + lengthMs, faults });
    at += lengthMs + random.range(GAP_MS_MIN, GAP_MS_MAX);
  }
  return windows;
}

/** Restarts and membership changes restart or replace processes: they only go alone. */
function combinable(a: NemesisKind, b: NemesisKind): boolean {
  const alone: readonly NemesisKind[] = ['restart', 'member', 'skew'];
  return !alone.includes(a) && !alone.includes(b);
}

function drawTarget(random: Prng, nodeCount: number): Target {
  return random.chance(0.5) ? { type: 'leader' } : { type: 'slot', slot: random.int(nodeCount) };
}

function drawFault(kind: NemesisKind, random: Prng, nodeCount: number): Fault {
  switch (kind) {
    case 'partition':
      return { kind, shape: random.pick(PARTITION_SHAPES), order: random.shuffle(range(nodeCount)) };
    case 'loss':
      return { kind, probability: Math.round(random.floatRange(0.05, 0.3) * 100) / 100 };
    case 'kill': {
      // Up to a minority at once, so most windows leave a quorum to measure availability against.
      const minority = Math.max(1, Math.floor((nodeCount - 1) / 2));
      const count = random.range(1, minority);
      if (count === 1) return { kind, targets: [drawTarget(random, nodeCount)] };
      return { kind, targets: random.shuffle(range(nodeCount)).slice(0, count).map((slot) => ({ type: 'slot', slot }) as const) };
    }
    case 'pause':
      return { kind, target: drawTarget(random, nodeCount) };
    case 'restart':
      return { kind, order: random.shuffle(range(nodeCount)) };
    case 'member':
      return { kind, target: drawTarget(random, nodeCount) };
    case 'skew':
      return { kind, target: drawTarget(random, nodeCount), offsetSeconds: (random.chance(0.5) ? -1 : 1) * random.range(5, 120) };
    case 'poison':
      return { kind, target: drawTarget(random, nodeCount), seed: random.int(2 ** 31) };
    default: {
      const never: never = kind;
      throw new ScheduleError(`unknown nemesis ${String(never)}`);
    }
  }
}

const range = (count: number): number[] => Array.from({ length: count }, (_, i) => i);

/**
 * The directed pairs [from, to] whose packets a partition drops, in slots.
 * - isolate-leader: `leader` against everyone (both ways).
 * - halves: the first ⌊n/2⌋ of `order` against the rest.
 * - bridge: two halves that both still reach one bridge node (order[0]); only it sees a quorum.
 * - ring: each node reaches only its two neighbours in `order`.
 * - one-way: packets from order[0] to everyone else are dropped; the other direction flows.
 */
export function partitionDrops(shape: PartitionShape, order: readonly number[], leader: number | null): [number, number][] {
  const drops: [number, number][] = [];
  const both = (a: number, b: number): void => {
    drops.push([a, b], [b, a]);
  };
  const n = order.length;
  switch (shape) {
    case 'isolate-leader': {
      const alone = leader ?? order[0] ?? 0;
      for (const other of order) if (other !== alone) both(alone, other);
      break;
    }
    case 'halves': {
      const cut = Math.floor(n / 2);
      for (const a of order.slice(0, cut)) for (const b of order.slice(cut)) both(a, b);
      break;
    }
    case 'bridge': {
      const rest = order.slice(1);
      const cut = Math.floor(rest.length / 2);
      for (const a of rest.slice(0, cut)) for (const b of rest.slice(cut)) both(a, b);
      break;
    }
    case 'ring': {
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          const distance = Math.min(j - i, n - (j - i));
          if (distance > 1) both(order[i] as number, order[j] as number);
        }
      }
      break;
    }
    case 'one-way': {
      const from = order[0] ?? 0;
      for (const to of order) if (to !== from) drops.push([from, to]);
      break;
    }
    default: {
      const never: never = shape;
      throw new ScheduleError(`unknown partition shape ${String(never)}`);
    }
  }
  return drops;
}

export function describeFault(fault: Fault): string {
  const target = (t: Target): string => (t.type === 'leader' ? 'leader' : `slot ${t.slot}`);
  switch (fault.kind) {
    case 'partition':
      return `partition ${fault.shape} [${fault.order.join(' ')}]`;
    case 'loss':
      return `loss ${Math.round(fault.probability * 100)}%`;
    case 'kill':
      return `kill ${fault.targets.map(target).join(', ')}`;
    case 'pause':
      return `pause ${target(fault.target)}`;
    case 'restart':
      return `rolling restart [${fault.order.join(' ')}]`;
    case 'member':
      return `remove ${target(fault.target)}, then join a fresh node`;
    case 'skew':
      return `clock skew ${fault.offsetSeconds > 0 ? '+' : ''}${fault.offsetSeconds} s on ${target(fault.target)}`;
    case 'poison':
      return `poison (malformed entries, records and peer messages) through ${target(fault.target)}`;
    default: {
      const never: never = fault;
      return String(never);
    }
  }
}
