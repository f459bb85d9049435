// Simulated network: delivers messages between nodes through the scheduler,
// with drops, duplicates, delays and reordering drawn from its own PRNG, and a
// connectivity matrix for partitions (symmetric, one-way, bridge, ring).
import assert from 'node:assert/strict';
import type { NodeId } from '../consensus/types.ts';
import type { Prng } from './prng.ts';
import type { Scheduler } from './scheduler.ts';

/** Per-message fault settings; change them at any time with `setFaults`. */
export interface NetworkFaults {
  /** Probability that a message is lost. */
  readonly dropProbability: number;
  /** Probability that a message is delivered twice (each copy with its own delay). */
  readonly duplicateProbability: number;
  /** Every message takes at least this long, ms. */
  readonly latencyMsBase: number;
  /** Plus a uniform extra in [0, jitter), ms. Zero jitter keeps each link FIFO. */
  readonly latencyMsJitter: number;
  /** Probability of an occasional long delay (reorders past later messages). */
  readonly longDelayProbability: number;
  /** A long delay adds a uniform extra in [0, longDelayMsMax), ms. */
  readonly longDelayMsMax: number;
}

export const NETWORK_FAULTS_NONE: NetworkFaults = {
  dropProbability: 0,
  duplicateProbability: 0,
  latencyMsBase: 1,
  latencyMsJitter: 0,
  longDelayProbability: 0,
  longDelayMsMax: 0,
};

export type DropReason = 'random' | 'partition' | 'down';
export type NetworkEventKind = 'send' | 'duplicate' | 'deliver' | 'drop';

export interface MessageCounters {
  /** `send` calls. */
  sent: number;
  /** Handler invocations (duplicates included). */
  delivered: number;
  /** Copies lost, for any reason. At quiescence: delivered + dropped = sent + duplicated. */
  dropped: number;
  /** Extra copies created. */
  duplicated: number;
}

export interface NetworkStats {
  readonly totals: Readonly<MessageCounters>;
  readonly byType: ReadonlyMap<string, Readonly<MessageCounters>>;
  readonly droppedBy: Readonly<Record<DropReason, number>>;
  /** Copies scheduled and not yet delivered or dropped. */
  readonly inFlight: number;
}

/** Optional observer; `reason` is set for 'drop' only. Called synchronously. */
export type NetworkObserver<M> = (kind: NetworkEventKind, from: NodeId, to: NodeId, message: M, reason: DropReason | null) => void;

export interface SimNetworkOptions<M> {
  readonly scheduler: Scheduler;
  /** The network's own stream, e.g. `root.fork('network')`. */
  readonly prng: Prng;
  /** Message type name for the per-type counters (e.g. `m => m.type`). */
  readonly typeOf: (message: M) => string;
  readonly faults?: NetworkFaults;
  readonly observer?: NetworkObserver<M>;
  /** Bound on distinct node ids ever seen (size of the connectivity matrix). Default 64. */
  readonly nodesMax?: number;
}

export type MessageHandler<M> = (message: M, from: NodeId) => void;

class Endpoint<M> {
  handler: MessageHandler<M> | null = null;
  down = false;
  /** Extra delay of every message to this node (randomized priorities), ms. */
  receiveDelayMs = 0;
  constructor(
    readonly node: NodeId,
    readonly index: number,
  ) {}
}

class InFlight<M> {
  constructor(
    readonly from: Endpoint<M>,
    readonly to: Endpoint<M>,
    readonly message: M,
    readonly counters: MessageCounters,
  ) {}
}

const newCounters = (): MessageCounters => ({ sent: 0, delivered: 0, dropped: 0, duplicated: 0 });

/**
 * Messages are checked against the connectivity matrix twice: when sent (a
 * cut link drops at once, costing no event) and when they arrive (a partition
 * made while a message was in flight also drops it). A down node drops what
 * arrives. Nodes must not message themselves (the driver handles that).
 */
export class SimNetwork<M> {
  private readonly scheduler: Scheduler;
  private readonly prng: Prng;
  private readonly typeOf: (message: M) => string;
  private readonly observer: NetworkObserver<M> | null;
  private readonly nodesMax: number;
  private faults: NetworkFaults;
  private readonly endpoints = new Map<NodeId, Endpoint<M>>();
  private readonly ordered: Endpoint<M>[] = [];
  /** cut[from * nodesMax + to] = 1 when from→to is blocked. */
  private readonly cut: Uint8Array;
  private readonly totals = newCounters();
  private readonly byType = new Map<string, MessageCounters>();
  private readonly droppedBy: Record<DropReason, number> = { random: 0, partition: 0, down: 0 };
  private inFlight = 0;
  private readonly deliverBound: (flight: InFlight<M>) => void;

  constructor(options: SimNetworkOptions<M>) {
    this.scheduler = options.scheduler;
    this.prng = options.prng;
    this.typeOf = options.typeOf;
    this.observer = options.observer ?? null;
    this.nodesMax = options.nodesMax ?? 64;
    assert.ok(Number.isInteger(this.nodesMax) && this.nodesMax > 0 && this.nodesMax <= 1024, 'network: nodesMax must be in [1, 1024]');
    this.faults = NETWORK_FAULTS_NONE;
    this.setFaults(options.faults ?? NETWORK_FAULTS_NONE);
    this.cut = new Uint8Array(this.nodesMax * this.nodesMax);
    this.deliverBound = (flight) => this.deliver(flight);
  }

  setFaults(faults: NetworkFaults): void {
    const probability = (p: number): boolean => p >= 0 && p <= 1;
    assert.ok(probability(faults.dropProbability) && probability(faults.duplicateProbability) && probability(faults.longDelayProbability), 'network: probabilities must be in [0, 1]');
    assert.ok(faults.latencyMsBase >= 0 && faults.latencyMsJitter >= 0 && faults.longDelayMsMax >= 0, 'network: latencies must be >= 0');
    this.faults = { ...faults };
  }

  getFaults(): NetworkFaults {
    return this.faults;
  }

  /** Attach the node's receive handler (replaces any earlier one, e.g. after a restart). */
  register(node: NodeId, handler: MessageHandler<M>): void {
    this.endpoint(node).handler = handler;
  }

  /** A down (crashed) node drops every message that arrives; it must not send. */
  setDown(node: NodeId, down: boolean): void {
    this.endpoint(node).down = down;
  }

  isDown(node: NodeId): boolean {
    return this.endpoints.get(node)?.down ?? false;
  }

  /** Send one message. Fault decisions are drawn here, in a fixed order. */
  send(from: NodeId, to: NodeId, message: M): void {
    if (from === to) assert.fail(`network: ${from} sent a message to itself`);
    const source = this.endpoint(from);
    const target = this.endpoint(to);
    if (source.down) assert.fail(`network: down node ${from} sent a message`);
    const counters = this.countersFor(this.typeOf(message));
    counters.sent++;
    this.totals.sent++;
    if (this.observer !== null) this.observer('send', from, to, message, null);
    if (this.cut[source.index * this.nodesMax + target.index] === 1) {
      this.dropped(counters, 'partition', from, to, message);
      return;
    }
    const faults = this.faults;
    if (this.prng.chance(faults.dropProbability)) {
      this.dropped(counters, 'random', from, to, message);
      return;
    }
    this.dispatch(new InFlight(source, target, message, counters));
    if (this.prng.chance(faults.duplicateProbability)) {
      counters.duplicated++;
      this.totals.duplicated++;
      if (this.observer !== null) this.observer('duplicate', from, to, message, null);
      this.dispatch(new InFlight(source, target, message, counters));
    }
  }

  /** Whether from→to currently passes. */
  connected(from: NodeId, to: NodeId): boolean {
    return this.cut[this.endpoint(from).index * this.nodesMax + this.endpoint(to).index] === 0;
  }

  // --- Topology. `partition`, `bridge` and `majoritiesRing` describe the whole
  // topology and start from a healed network; `cutLink`, `isolate` and `oneWay`
  // add cuts to the current one.

  /** Reconnect everything. */
  heal(): void {
    this.cut.fill(0);
  }

  /** Reconnect every link (both ways) among `nodes`; other cuts stay. */
  healAmong(nodes: readonly NodeId[]): void {
    for (const a of nodes) for (const b of nodes) if (a !== b) this.setCut(a, b, 0);
  }

  /** Symmetric partition into `groups`; nodes in no group keep all their links. */
  partition(groups: readonly (readonly NodeId[])[]): void {
    const groupOf = new Map<NodeId, number>();
    groups.forEach((group, index) => {
      for (const node of group) {
        assert.ok(!groupOf.has(node), `network.partition: ${node} is in two groups`);
        groupOf.set(node, index);
      }
    });
    this.heal();
    for (const [a, groupA] of groupOf) for (const [b, groupB] of groupOf) if (groupA !== groupB) this.setCut(a, b, 1);
  }

  /** Cut every link into `node`; what it sends still arrives (a one-way partition). */
  deafen(node: NodeId): void {
    for (const other of this.ordered) if (other.node !== node) this.setCut(other.node, node, 1);
  }

  /** Undo `isolate` or `deafen`: restore every link of `node` (both directions) except to `stillCut`; other cuts stay. */
  reconnect(node: NodeId, stillCut: ReadonlySet<NodeId> = new Set()): void {
    for (const other of this.ordered) {
      if (other.node === node || stillCut.has(other.node)) continue;
      this.setCut(node, other.node, 0);
      this.setCut(other.node, node, 0);
    }
  }

  /** Every message to `node` takes `delayMs` longer (priorities: a low-priority node hears everything late). */
  setReceiveDelay(node: NodeId, delayMs: number): void {
    assert.ok(delayMs >= 0 && delayMs < Infinity, `network: receive delay must be finite and >= 0, got ${delayMs}`);
    this.endpoint(node).receiveDelayMs = delayMs;
  }

  /** Cut both directions between a and b. */
  cutLink(a: NodeId, b: NodeId): void {
    this.setCut(a, b, 1);
    this.setCut(b, a, 1);
  }

  /** Cut `node` off from every node known now (both directions). */
  isolate(node: NodeId): void {
    const self = this.endpoint(node);
    for (const other of this.ordered) if (other !== self) this.cutLink(node, other.node);
  }

  /** Asymmetric: from→to is dropped, to→from still passes. */
  oneWay(from: NodeId, to: NodeId): void {
    this.setCut(from, to, 1);
  }

  /** Halves `a` and `b` cannot talk; `bridgeNode` (in neither) talks to both. */
  bridge(a: readonly NodeId[], b: readonly NodeId[], bridgeNode: NodeId): void {
    assert.ok(!a.includes(bridgeNode) && !b.includes(bridgeNode), 'network.bridge: the bridge node must be in neither half');
    this.partition([a, b]);
  }

  /**
   * Jepsen's majorities ring: nodes in the given (caller-shuffled) ring order;
   * each keeps symmetric links to the nodes within ring distance r, where
   * r = ceil((majority − 1) / 2), so each node sees its own majority and no
   * two see the same one. With 3 nodes one link is cut (the ring becomes a
   * line: the ends see different majorities through the middle node).
   */
  majoritiesRing(nodes: readonly NodeId[]): void {
    const count = nodes.length;
    assert.ok(count >= 3, 'network.majoritiesRing: needs at least 3 nodes');
    assert.ok(new Set(nodes).size === count, 'network.majoritiesRing: duplicate node');
    this.heal();
    if (count === 3) {
      this.cutLink(nodes[0] as NodeId, nodes[2] as NodeId);
      return;
    }
    const majority = Math.floor(count / 2) + 1;
    const radius = Math.ceil((majority - 1) / 2);
    for (let i = 0; i < count; i++) {
      for (let j = i + 1; j < count; j++) {
        const distance = Math.min(j - i, count - (j - i));
        if (distance > radius) this.cutLink(nodes[i] as NodeId, nodes[j] as NodeId);
      }
    }
  }

  /** Cut links as `from>to` pairs in node-registration order, e.g. "n1>n2 n2>n1"; "" when healed. */
  describeCuts(): string {
    const parts: string[] = [];
    for (const from of this.ordered) {
      for (const to of this.ordered) {
        if (this.cut[from.index * this.nodesMax + to.index] === 1) parts.push(`${from.node}>${to.node}`);
      }
    }
    return parts.join(' ');
  }

  /** A snapshot of the counters. */
  stats(): NetworkStats {
    const byType = new Map<string, MessageCounters>();
    for (const [type, counters] of [...this.byType].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) byType.set(type, { ...counters });
    return { totals: { ...this.totals }, byType, droppedBy: { ...this.droppedBy }, inFlight: this.inFlight };
  }

  private dispatch(flight: InFlight<M>): void {
    const faults = this.faults;
    let delayMs = faults.latencyMsBase + flight.to.receiveDelayMs;
    if (faults.latencyMsJitter > 0) delayMs += faults.latencyMsJitter * this.prng.float();
    if (this.prng.chance(faults.longDelayProbability)) delayMs += faults.longDelayMsMax * this.prng.float();
    this.inFlight++;
    // Owned by the receiver: a paused (SIGSTOP'd) node reads its socket only after resuming.
    this.scheduler.scheduleCall(this.scheduler.nowMs() + delayMs, flight.to.node, this.deliverBound, flight, 'net');
  }

  private deliver(flight: InFlight<M>): void {
    this.inFlight--;
    const { from, to, message, counters } = flight;
    if (to.down || to.handler === null) {
      this.dropped(counters, 'down', from.node, to.node, message);
      return;
    }
    if (this.cut[from.index * this.nodesMax + to.index] === 1) {
      this.dropped(counters, 'partition', from.node, to.node, message);
      return;
    }
    counters.delivered++;
    this.totals.delivered++;
    if (this.observer !== null) this.observer('deliver', from.node, to.node, message, null);
    to.handler(message, from.node);
  }

  private dropped(counters: MessageCounters, reason: DropReason, from: NodeId, to: NodeId, message: M): void {
    counters.dropped++;
    this.totals.dropped++;
    this.droppedBy[reason]++;
    if (this.observer !== null) this.observer('drop', from, to, message, reason);
  }

  private countersFor(type: string): MessageCounters {
    let counters = this.byType.get(type);
    if (counters === undefined) {
      counters = newCounters();
      this.byType.set(type, counters);
    }
    return counters;
  }

  private setCut(from: NodeId, to: NodeId, value: 0 | 1): void {
    this.cut[this.endpoint(from).index * this.nodesMax + this.endpoint(to).index] = value;
  }

  private endpoint(node: NodeId): Endpoint<M> {
    let endpoint = this.endpoints.get(node);
    if (endpoint === undefined) {
      assert.ok(this.ordered.length < this.nodesMax, `network: more than nodesMax=${this.nodesMax} nodes`);
      endpoint = new Endpoint<M>(node, this.ordered.length);
      this.endpoints.set(node, endpoint);
      this.ordered.push(endpoint);
    }
    return endpoint;
  }
}
