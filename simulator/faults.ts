// Swarm fault configuration: which faults a run injects, and how hard, drawn
// from the seed so that different seeds explore different mixes (swarm testing).
import { DISK_LATENCY_DEFAULT, type DiskLatency } from './disk.ts';
import type { NetworkFaults } from './network.ts';
import type { AimAction, AimConfig } from './nemesis-aimed.ts';
import type { Prng } from './prng.ts';

export type FaultKind =
  | 'drop'
  | 'duplicate'
  | 'delay'
  | 'reorder'
  | 'partition'
  | 'asymmetric'
  | 'isolateLeader'
  | 'bridge'
  | 'majoritiesRing'
  | 'crash'
  | 'restart'
  | 'pause'
  | 'clockDrift'
  | 'slowDisk'
  | 'aimedCrash'
  | 'aimedIsolate'
  | 'priority';

export const ALL_FAULTS: readonly FaultKind[] = [
  'drop',
  'duplicate',
  'delay',
  'reorder',
  'partition',
  'asymmetric',
  'isolateLeader',
  'bridge',
  'majoritiesRing',
  'crash',
  'restart',
  'pause',
  'clockDrift',
  'slowDisk',
  'aimedCrash',
  'aimedIsolate',
  'priority',
];

/** Faults that change who can talk to whom; the nemesis picks one of the enabled ones each time. */
export type TopologyFault = 'partition' | 'asymmetric' | 'isolateLeader' | 'bridge' | 'majoritiesRing';
const TOPOLOGY_FAULTS: readonly TopologyFault[] = ['partition', 'asymmetric', 'isolateLeader', 'bridge', 'majoritiesRing'];

/** Stated bound on simulated clock drift: |drift| <= 200 ppm for every node. */
export const CLOCK_DRIFT_PPM_BOUND = 200;

/** Chance that an allowed kind is switched on for a seed. */
export const SWARM_KIND_PROBABILITY = 0.5;

export interface FaultConfig {
  /** Kinds switched on for this seed. */
  readonly enabled: ReadonlySet<FaultKind>;
  /** Give to `SimNetwork.setFaults` (no drops, duplicates or jitter when those kinds are off). */
  readonly network: NetworkFaults;
  /** Give to `SimDisk.setLatency` (slow outliers only with 'slowDisk'). */
  readonly disk: DiskLatency;
  /** Enabled topology faults, in ALL_FAULTS order; empty when none. */
  readonly topology: readonly TopologyFault[];
  /** Mean virtual time between topology changes, and most time one lasts before healing, ms. */
  readonly topologyIntervalMs: number;
  readonly topologyDurationMsMax: number;
  /** kill -9 a node every ~intervalMs (unsynced writes lost); it restarts after up to downtimeMsMax. */
  readonly crash: { readonly intervalMs: number; readonly downtimeMsMax: number } | null;
  /** Graceful restart every ~intervalMs: stop after pending syncs complete, start from disk. */
  readonly restart: { readonly intervalMs: number } | null;
  /** SIGSTOP a node every ~intervalMs for up to durationMsMax. */
  readonly pause: { readonly intervalMs: number; readonly durationMsMax: number } | null;
  /** Each node's drift is drawn in [-max, +max] ppm; 0 when off. Never above CLOCK_DRIFT_PPM_BOUND. */
  readonly clockDriftPpmMax: number;
  /** Crashes and isolations aimed at weak moments of the protocol (nemesis-aimed.ts); null when both kinds are off. */
  readonly aim: AimConfig | null;
  /**
   * Randomized priorities (after PCT): each node's incoming messages wait
   * rank × stepMs, ranks a random order of the nodes, drawn anew at `changes`
   * random points of the run, so some nodes systematically lag behind others.
   */
  readonly priority: { readonly stepMs: number; readonly changes: number } | null;
}

/**
 * Draw a configuration. Each kind uses its own fork (`fault:<kind>`) of
 * `prng`, so the parent stream is not advanced and a kind's settings for a
 * seed do not depend on which other kinds are allowed. A kind is on when
 * allowed and its coin (p = kindProbability) comes up.
 */
export function drawFaultConfig(prng: Prng, allowed: ReadonlySet<FaultKind>, kindProbability = SWARM_KIND_PROBABILITY): FaultConfig {
  const streams = new Map<FaultKind, Prng>();
  const enabled = new Set<FaultKind>();
  for (const kind of ALL_FAULTS) {
    const stream = prng.fork(`fault:${kind}`);
    streams.set(kind, stream);
    // Flip every coin, allowed or not, so the stream's later draws stay put.
    if (stream.chance(kindProbability) && allowed.has(kind)) enabled.add(kind);
  }
  const draw = (kind: FaultKind): Prng => streams.get(kind) as Prng;
  const on = (kind: FaultKind): boolean => enabled.has(kind);
  const base = prng.fork('fault:base');

  const network: NetworkFaults = {
    dropProbability: on('drop') ? roundTo(draw('drop').floatRange(0, 0.2), 4) : 0,
    duplicateProbability: on('duplicate') ? roundTo(draw('duplicate').floatRange(0, 0.1), 4) : 0,
    latencyMsBase: roundTo(base.floatRange(0.1, 2), 3),
    latencyMsJitter: on('delay') ? draw('delay').range(1, 50) : 0,
    longDelayProbability: on('reorder') ? roundTo(draw('reorder').floatRange(0.001, 0.05), 4) : 0,
    longDelayMsMax: on('reorder') ? draw('reorder').range(20, 2000) : 0,
  };
  const disk: DiskLatency = {
    syncMsBase: roundTo(base.floatRange(0.05, 2), 3),
    syncMsJitter: roundTo(base.floatRange(0, 1), 3),
    slowSyncProbability: on('slowDisk') ? roundTo(draw('slowDisk').floatRange(0.005, 0.1), 4) : DISK_LATENCY_DEFAULT.slowSyncProbability,
    slowSyncMsMax: on('slowDisk') ? draw('slowDisk').range(20, 1000) : DISK_LATENCY_DEFAULT.slowSyncMsMax,
  };
  const topology = TOPOLOGY_FAULTS.filter(on);
  const topologyStream = prng.fork('fault:topology');
  return {
    enabled,
    network,
    disk,
    topology,
    topologyIntervalMs: topology.length > 0 ? topologyStream.range(200, 5000) : 0,
    topologyDurationMsMax: topology.length > 0 ? topologyStream.range(100, 5000) : 0,
    crash: on('crash') ? { intervalMs: draw('crash').range(500, 10_000), downtimeMsMax: draw('crash').range(10, 5000) } : null,
    restart: on('restart') ? { intervalMs: draw('restart').range(1000, 20_000) } : null,
    pause: on('pause') ? { intervalMs: draw('pause').range(500, 10_000), durationMsMax: draw('pause').range(50, 3000) } : null,
    clockDriftPpmMax: on('clockDrift') ? draw('clockDrift').range(1, CLOCK_DRIFT_PPM_BOUND) : 0,
    aim: drawAim(draw('aimedCrash'), on('aimedCrash'), on('aimedIsolate')),
    priority: on('priority') ? { stepMs: draw('priority').range(1, 20), changes: draw('priority').range(1, 8) } : null,
  };
}

function drawAim(stream: Prng, crash: boolean, isolate: boolean): AimConfig | null {
  const actions: AimAction[] = [...(crash ? (['crash'] as const) : []), ...(isolate ? (['isolate', 'deafen'] as const) : [])];
  if (actions.length === 0) return null;
  return {
    intervalMs: stream.range(100, 3000),
    actions,
    // Long enough, often, for the others to elect a new leader (an election takes 0.5 to 1 s here).
    durationMsMax: stream.range(200, 4000),
    strikeDelayMsMax: roundTo(stream.floatRange(0, 10), 3),
    concurrentMax: stream.range(1, 2),
    successorProbability: roundTo(stream.float(), 3),
  };
}

/** One line, deterministic, for logs and reports. */
export function describeFaultConfig(config: FaultConfig): string {
  const kinds = ALL_FAULTS.filter((kind) => config.enabled.has(kind));
  const n = config.network;
  const d = config.disk;
  const parts = [
    `faults=${kinds.length > 0 ? kinds.join(',') : 'none'}`,
    `net(drop=${n.dropProbability} dup=${n.duplicateProbability} latency=${n.latencyMsBase}+${n.latencyMsJitter}ms long=${n.longDelayProbability}x${n.longDelayMsMax}ms)`,
    `disk(sync=${d.syncMsBase}+${d.syncMsJitter}ms slow=${d.slowSyncProbability}x${d.slowSyncMsMax}ms)`,
  ];
  if (config.topology.length > 0) parts.push(`topology(every ${config.topologyIntervalMs}ms for <=${config.topologyDurationMsMax}ms)`);
  if (config.crash !== null) parts.push(`crash(every ${config.crash.intervalMs}ms down <=${config.crash.downtimeMsMax}ms)`);
  if (config.restart !== null) parts.push(`restart(every ${config.restart.intervalMs}ms)`);
  if (config.pause !== null) parts.push(`pause(every ${config.pause.intervalMs}ms for <=${config.pause.durationMsMax}ms)`);
  if (config.clockDriftPpmMax > 0) parts.push(`drift(<=${config.clockDriftPpmMax}ppm)`);
  if (config.aim !== null) {
    const aim = config.aim;
    parts.push(`aim(${aim.actions.join('+')} every ${aim.intervalMs}ms for <=${aim.durationMsMax}ms after <=${aim.strikeDelayMsMax}ms, <=${aim.concurrentMax} at once, successor ${aim.successorProbability})`);
  }
  if (config.priority !== null) parts.push(`priority(step ${config.priority.stepMs}ms, ${config.priority.changes} changes)`);
  return parts.join(' ');
}

export type ParseFaultsResult = { readonly ok: true; readonly faults: Set<FaultKind> } | { readonly ok: false; readonly error: string };

const isFaultKind = (name: string): name is FaultKind => (ALL_FAULTS as readonly string[]).includes(name);

/**
 * Parse a list such as "drop,crash pause", "all", "none" or "all,-crash"
 * (separators: commas and spaces; `-kind` removes). Empty text means none.
 */
export function parseFaultList(text: string): ParseFaultsResult {
  const faults = new Set<FaultKind>();
  for (const token of text.split(/[\s,]+/)) {
    if (token === '' || token === 'none') continue;
    if (token === 'all') {
      for (const kind of ALL_FAULTS) faults.add(kind);
      continue;
    }
    const remove = token.startsWith('-');
    const name = remove ? token.slice(1) : token;
    if (!isFaultKind(name)) return { ok: false, error: `unknown fault '${name}'; known: all, none, ${ALL_FAULTS.join(', ')}` };
    if (remove) faults.delete(name);
    else faults.add(name);
  }
  return { ok: true, faults };
}

const roundTo = (value: number, digits: number): number => {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
};
