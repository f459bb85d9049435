// Plays a schedule against a real cluster: opens each window at its time,
// resolves targets (the leader at that moment), strikes, and heals when the
// window closes. Records when each window really opened and closed, and what
// it hit, for the checks and the report.
import { existsSync } from 'node:fs';
import { FAKETIME_LIBRARY, type ChaosCluster } from './cluster.ts';
import type { Hosts } from './hosts.ts';
import { describePoison, startPoison, type PoisonCounts } from './nemesis-poison.ts';
import { describeFault, partitionDrops, type Fault, type Target, type Window } from './schedule.ts';
import type { Now } from './workload.ts';

export interface WindowRecord {
  readonly plannedStartMs: number;
  readonly plannedEndMs: number;
  startMs: number;
  endMs: number;
  readonly faults: readonly Fault[];
  /** What each fault hit, resolved at run time. */
  readonly details: string[];
  /** What a poison fault sent and how the cluster answered it (none of it may be applied or accepted). */
  poison?: PoisonCounts;
}

export interface TimelineEvent {
  readonly atMs: number;
  readonly text: string;
}

export interface NemesisContext {
  readonly cluster: ChaosCluster;
  readonly hosts: Hosts;
  readonly now: Now;
  readonly signal: AbortSignal;
  readonly event: (text: string) => void;
}

/** The iptables state the nemeses share, so a partition and packet loss can overlap. */
class Net {
  readonly drops = new Map<number, Set<number>>();
  loss = 0;

  constructor(private readonly hosts: Hosts) {}

  async apply(slots: readonly number[]): Promise<void> {
    for (const slot of slots) await this.hosts.setInputRules(slot, [...(this.drops.get(slot) ?? [])], this.loss);
  }
}

export const faketimeAvailable = (): boolean => existsSync(FAKETIME_LIBRARY);

export async function runNemesis(windows: readonly Window[], context: NemesisContext): Promise<{ records: WindowRecord[]; timeline: TimelineEvent[] }> {
  const { cluster, hosts, now, signal } = context;
  const net = new Net(hosts);
  const timeline: TimelineEvent[] = [];
  const event = (text: string): void => {
    timeline.push({ atMs: now(), text });
    context.event(text);
  };
  const records: WindowRecord[] = [];
  // Restarts can run past a window's planned end; later windows shift by that lag so each keeps its length and gap.
  let lagMs = 0;
  for (const window of windows) {
    await sleepUntil(window.startMs + lagMs, now, signal);
    if (signal.aborted) break;
    lagMs = Math.max(lagMs, now() - window.startMs);
    const record: WindowRecord = { plannedStartMs: window.startMs, plannedEndMs: window.endMs, startMs: now(), endMs: now(), faults: window.faults, details: [] };
    records.push(record);
    const heals: (() => Promise<void>)[] = [];
    for (const fault of window.faults) {
      const struck = await strike(fault, cluster, net, event, record);
      record.details.push(struck.detail);
      heals.unshift(struck.heal);
    }
    await sleepUntil(window.endMs + lagMs, now, signal);
    // Heal even when aborted: the cluster must be whole for the final checks or for teardown to be clean.
    for (const heal of heals) await heal();
    record.endMs = now();
    lagMs = Math.max(lagMs, record.endMs - window.endMs);
  }
  return { records, timeline };
}

async function resolve(target: Target, cluster: ChaosCluster): Promise<number> {
  if (target.type === 'slot') return target.slot;
  const leader = await cluster.leaderSlot();
  // No leader known (an election under way): strike a running member instead.
  return leader ?? cluster.members.find((node) => node.state === 'running')?.slot ?? 0;
}

interface Struck {
  readonly detail: string;
  readonly heal: () => Promise<void>;
}

async function strike(fault: Fault, cluster: ChaosCluster, net: Net, event: (text: string) => void, record: WindowRecord): Promise<Struck> {
  const slots = cluster.nodes.map((node) => node.slot);
  const name = (slot: number): string => cluster.node(slot).id;
  switch (fault.kind) {
    case 'partition': {
      const leader = fault.shape === 'isolate-leader' ? await cluster.leaderSlot() : null;
      const drops = partitionDrops(fault.shape, fault.order, leader);
      for (const [from, to] of drops) {
        const set = net.drops.get(to) ?? new Set<number>();
        set.add(from);
        net.drops.set(to, set);
      }
      await net.apply(slots);
      const detail = `${describeFault(fault)}: drops ${drops.map(([from, to]) => `${name(from)}→${name(to)}`).join(' ')}`;
      event(`start ${detail}`);
      return {
        detail,
        heal: async () => {
          net.drops.clear();
          await net.apply(slots);
          event(`heal partition ${fault.shape}`);
        },
      };
    }
    case 'loss': {
      net.loss = fault.probability;
      await net.apply(slots);
      event(`start ${describeFault(fault)}`);
      return {
        detail: describeFault(fault),
        heal: async () => {
          net.loss = 0;
          await net.apply(slots);
          event('heal loss');
        },
      };
    }
    case 'kill': {
      const targets: number[] = [];
      for (const target of fault.targets) targets.push(await resolve(target, cluster));
      const unique = [...new Set(targets)].filter((slot) => cluster.node(slot).state !== 'removed');
      await Promise.all(unique.map((slot) => cluster.kill(slot)));
      const detail = `kill ${unique.map(name).join(', ')}`;
      event(detail);
      return {
        detail,
        heal: async () => {
          await Promise.all(
            unique.map(async (slot) => {
              if (cluster.node(slot).state === 'killed') await cluster.start(slot);
              event(`restarted ${name(slot)}`);
            }),
          );
        },
      };
    }
    case 'pause': {
      const slot = await resolve(fault.target, cluster);
      cluster.signal(slot, 'SIGSTOP');
      const detail = `pause ${name(slot)}`;
      event(detail);
      return {
        detail,
        heal: async () => {
          cluster.signal(slot, 'SIGCONT');
          event(`resume ${name(slot)}`);
        },
      };
    }
    case 'restart': {
      for (const slot of fault.order) {
        if (cluster.node(slot).state === 'removed') continue;
        event(`rolling restart: stop ${name(slot)}`);
        await cluster.stopGracefully(slot);
        await cluster.start(slot);
        event(`rolling restart: ${name(slot)} ready`);
      }
      return { detail: `rolling restart ${fault.order.map(name).join(' → ')}`, heal: async () => undefined };
    }
    case 'member': {
      const slot = await resolve(fault.target, cluster);
      const old = name(slot);
      if (cluster.members.length <= 1) return { detail: 'member change skipped: only one member', heal: async () => undefined };
      event(`leave ${old}`);
      await cluster.removeMember(slot);
      event(`${old} removed`);
      return {
        detail: `remove ${old}, join a fresh node in its place`,
        heal: async () => {
          await cluster.joinFresh(slot);
          event(`${name(slot)} joined through the seeds`);
        },
      };
    }
    case 'skew': {
      if (!faketimeAvailable()) {
        event('clock skew skipped: libfaketime is not installed (apt-get install -y faketime)');
        return { detail: 'clock skew skipped: libfaketime not installed', heal: async () => undefined };
      }
      const slot = await resolve(fault.target, cluster);
      await cluster.stopGracefully(slot);
      await cluster.start(slot, fault.offsetSeconds);
      const detail = `${name(slot)} restarted with its wall clock ${fault.offsetSeconds > 0 ? '+' : ''}${fault.offsetSeconds} s`;
      event(detail);
      return {
        detail,
        heal: async () => {
          await cluster.stopGracefully(slot);
          await cluster.start(slot, 0);
          event(`${name(slot)} back on true time`);
        },
      };
    }
    case 'poison': {
      const slot = await resolve(fault.target, cluster);
      const stop = await startPoison(cluster, slot, fault.seed);
      event(`poison through ${name(slot)}`);
      return {
        detail: `poison through ${name(slot)}`,
        heal: async () => {
          record.poison = await stop();
          event(describePoison(record.poison));
        },
      };
    }
    default: {
      const never: never = fault;
      throw new Error(`unknown fault ${String(never)}`);
    }
  }
}

async function sleepUntil(atMs: number, now: Now, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    const left = atMs - now();
    if (left <= 0) return;
    await new Promise((resolve) => setTimeout(resolve, Math.min(left, 100)));
  }
}
