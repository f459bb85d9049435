// A whole cluster in one process under virtual time: the real Raft core and
// driver on simulated clocks, network and disks, a fault nemesis, a KV client
// workload, and the invariant checker watching every step. One seed decides
// everything, so a run replays byte for byte.
import { KvMachine, kvMachineFactoryWith } from '../consensus/kv-machine.ts';
import { systemValueError } from '../actors/records.ts';
import { encodeCommand, type KvCommand, type KvResult } from '../consensus/kv-state-machine.ts';
import { RaftNode, type ReadOutcome, type WriteOutcome } from '../consensus/raft-node.ts';
import { Raft, defaultRaftConfig } from '../consensus/raft.ts';
import { bootstrapState, emptyPersistedState, type PersistedState } from '../consensus/storage.ts';
import type { ConfChange, Entry, Message, NodeId, RaftConfig, Random } from '../consensus/types.ts';
import { SimDisk } from './disk.ts';
import { drawFaultConfig, describeFaultConfig, type FaultConfig, type FaultKind, type TopologyFault } from './faults.ts';
import type { Operation } from './history.ts';
import { InvariantChecker } from './invariants.ts';
import { NETWORK_FAULTS_NONE, SimNetwork } from './network.ts';
import { prngFromSeed, type Prng } from './prng.ts';
import { EventLimitError, Scheduler, type EventHandle } from './scheduler.ts';
import type { Trace } from './trace.ts';


const SIM_KV_MACHINES = kvMachineFactoryWith({ valueCheck: systemValueError });

export const SIM_TICK_MS = 50;

export interface ClusterOptions {
  readonly seed: number;
  readonly nodes: number;
  /** Faults the swarm may switch on for this seed. */
  readonly faults: ReadonlySet<FaultKind>;
  readonly trace?: Trace | null;
  /** Builds a deliberately broken core (mutation testing of the checkers). */
  readonly createRaft?: (config: RaftConfig, random: Random, persisted: PersistedState) => Raft;
  /** Extra founding-member-less nodes that start empty and can join (membership scenarios). */
  readonly spareNodes?: number;
  /** Override the drawn Raft limits (scenario tests). */
  readonly raftOverrides?: Partial<RaftConfig>;
  /** Lets a layer above Raft (the actor hosts) follow each node's life. */
  readonly hooks?: ClusterHooks;
}

export interface ClusterHooks {
  /** A node (re)started with this Raft node. */
  booted?(id: NodeId, node: RaftNode<KvResult, KvMachine>): void;
  /** A node crashed or stopped; its timers are gone. */
  stopped?(id: NodeId): void;
  /** A node took a Raft message (after the core stepped it). */
  received?(id: NodeId, message: Message): void;
  /** A node applied a committed entry. */
  applied?(id: NodeId, entry: Entry): void;
}

type SimRaftNode = RaftNode<KvResult, KvMachine>;

interface NodeState {
  readonly id: NodeId;
  readonly disk: SimDisk;
  node: SimRaftNode | null;
  incarnation: number;
  crashed: boolean;
}

/** What the workload and scenarios use to reach a node, as a client over a socket would. */
export type CallResult<T> = { readonly delivered: true; readonly value: T } | { readonly delivered: false; readonly reason: 'down' };

export class SimCluster {
  readonly seed: number;
  readonly ids: NodeId[];
  readonly spareIds: NodeId[];
  readonly scheduler = new Scheduler();
  readonly prng: Prng;
  readonly faults: FaultConfig;
  readonly network: SimNetwork<Message>;
  readonly checker: InvariantChecker;
  readonly history: Operation[] = [];
  readonly trace: Trace | null;
  private readonly states = new Map<NodeId, NodeState>();
  private readonly raftConfig: Omit<RaftConfig, 'id'>;
  private readonly createRaft: ClusterOptions['createRaft'];
  private readonly hooks: ClusterHooks;
  private nemesisHandles: EventHandle[] = [];
  private nemesisActive = false;
  readonly stats = { crashes: 0, crashesDuringSync: 0, restarts: 0, pauses: 0, topologyChanges: 0, snapshotsInstalled: 0, compactions: 0 };

  constructor(options: ClusterOptions) {
    this.seed = options.seed;
    this.prng = prngFromSeed(options.seed);
    this.trace = options.trace ?? null;
    this.createRaft = options.createRaft;
    this.hooks = options.hooks ?? {};
    this.faults = drawFaultConfig(this.prng.fork('faults'), options.faults);
    this.ids = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}` as NodeId);
    this.spareIds = Array.from({ length: options.spareNodes ?? 0 }, (_, i) => `n${options.nodes + i + 1}` as NodeId);
    const limits = this.prng.fork('limits');
    this.raftConfig = {
      ...defaultRaftConfig('x' as NodeId),
      electionTicks: 10,
      heartbeatTicks: 2,
      // Small, seed-drawn limits so that snapshots, chunking and flow control happen in short runs.
      snapshotEntriesThreshold: limits.range(20, 400),
      snapshotTrailingEntries: limits.range(10, 400),
      snapshotChunkBytes: limits.range(64, 4096),
      appendBytesMax: limits.range(64, 64 * 1024),
      inflightAppendsMax: limits.range(1, 64),
      ...options.raftOverrides,
    };
    this.network = new SimNetwork<Message>({
      scheduler: this.scheduler,
      prng: this.prng.fork('network'),
      typeOf: (message) => message.type,
      faults: this.faults.network,
      observer: this.trace === null ? undefined : (kind, from, to, message, reason) => this.traceMessage(kind, from, to, message, reason),
    });
    this.checker = new InvariantChecker(this);
    const founding = bootstrapState(this.ids);
    const driftStream = this.prng.fork('drift');
    for (const id of [...this.ids, ...this.spareIds]) {
      const disk = new SimDisk({
        node: id,
        scheduler: this.scheduler,
        prng: this.prng.fork(`disk:${id}`),
        latency: this.faults.disk,
        initial: this.ids.includes(id) ? founding : emptyPersistedState(),
      });
      const drift = this.faults.clockDriftPpmMax > 0 ? driftStream.range(-this.faults.clockDriftPpmMax, this.faults.clockDriftPpmMax) : 0;
      this.scheduler.clockFor(id, drift);
      this.states.set(id, { id, disk, node: null, incarnation: 0, crashed: false });
      this.network.register(id, (message) => {
        const node = this.states.get(id)?.node;
        if (node === null || node === undefined) return;
        node.receive(message);
        this.hooks.received?.(id, message);
      });
    }
    for (const id of [...this.ids, ...this.spareIds]) this.boot(id);
  }

  describeFaults(): string {
    return describeFaultConfig(this.faults);
  }

  // ---- nodes ---------------------------------------------------------------

  node(id: NodeId): SimRaftNode | null {
    return this.states.get(id)?.node ?? null;
  }

  liveNodes(): SimRaftNode[] {
    const out: SimRaftNode[] = [];
    for (const state of this.states.values()) if (state.node !== null) out.push(state.node);
    return out;
  }

  allIds(): NodeId[] {
    return [...this.ids, ...this.spareIds];
  }

  /** The leader of the highest term among live nodes, if any. */
  leader(): SimRaftNode | null {
    let best: SimRaftNode | null = null;
    for (const node of this.liveNodes()) {
      if (node.raft.role === 'leader' && (best === null || node.raft.term > best.raft.term)) best = node;
    }
    return best;
  }

  isUp(id: NodeId): boolean {
    const state = this.states.get(id);
    return state !== undefined && state.node !== null && !this.scheduler.isPaused(id);
  }

  private boot(id: NodeId): void {
    const state = this.states.get(id) as NodeState;
    state.incarnation += 1;
    const clock = this.scheduler.clockFor(id);
    const node: SimRaftNode = new RaftNode(
      {
        clock,
        random: this.prng.fork(`raft:${id}:${state.incarnation}`),
        storage: state.disk,
        transport: { send: (message) => this.network.send(message.from, message.to, message) },
        observer: {
          ...this.checker.observer,
          applied: (node, entry) => {
            this.checker.observer.applied?.(node, entry);
            this.hooks.applied?.(node, entry);
          },
          snapshotApplied: () => {
            this.stats.snapshotsInstalled += 1;
          },
          persisted: (node, batch) => {
            this.checker.observer.persisted?.(node, batch);
            if (batch.snapshot !== null && !batch.dropEntriesAfterSnapshot) this.stats.compactions += 1;
          },
        },
        ...(this.createRaft === undefined ? {} : { createRaft: this.createRaft }),
      },
      {
        raft: { ...this.raftConfig, id },
        tickMs: SIM_TICK_MS,
        requestTimeoutMs: 3000,
        pendingRequestsMax: 10_000,
      },
      // As on real nodes: writes under the actors' keys must fit their schemas.
      SIM_KV_MACHINES,
      state.disk.load(),
    );
    state.node = node;
    state.crashed = false;
    this.network.setDown(id, false);
    this.checker.nodeStarted(node);
    this.record(id, 'start', `incarnation=${state.incarnation}`);
    node.start();
    this.hooks.booted?.(id, node);
  }

  /** How many times the node has booted: an answer from an older incarnation is dropped. */
  incarnation(id: NodeId): number {
    return this.states.get(id)?.incarnation ?? 0;
  }

  /** kill -9: unsynced writes are lost, timers and in-flight work vanish. */
  crash(id: NodeId): void {
    const state = this.states.get(id);
    if (state === undefined || state.node === null) return;
    if (!state.disk.isSynced()) this.stats.crashesDuringSync += 1;
    this.stats.crashes += 1;
    const lost = state.disk.crash();
    state.node.stop();
    state.node = null;
    state.crashed = true;
    this.scheduler.clockFor(id).cancelAll();
    this.hooks.stopped?.(id);
    if (this.scheduler.isPaused(id)) this.scheduler.resume(id);
    this.network.setDown(id, true);
    this.record(id, 'crash', `lostWrites=${lost}`);
  }

  restart(id: NodeId): void {
    const state = this.states.get(id);
    if (state === undefined || state.node !== null) return;
    this.stats.restarts += 1;
    this.boot(id);
  }

  pause(id: NodeId): void {
    if (!this.isUp(id)) return;
    this.stats.pauses += 1;
    this.scheduler.pause(id);
    this.record(id, 'pause', '');
  }

  resume(id: NodeId): void {
    if (!this.scheduler.isPaused(id)) return;
    this.scheduler.resume(id);
    this.record(id, 'resume', '');
  }

  // ---- client calls (a client reaching one node) ---------------------------

  /** Deliver a call to a node as a request over a socket: late if it is paused, refused if it is down. */
  callNode(id: NodeId, call: (node: SimRaftNode) => void, refused: () => void): void {
    this.scheduler.scheduleCall(
      this.scheduler.nowMs() + 0.2,
      id,
      () => {
        const node = this.node(id);
        if (node === null) refused();
        else call(node);
      },
      undefined,
      'client',
    );
  }

  propose(id: NodeId, command: KvCommand, callback: (outcome: WriteOutcome<KvResult> | { ok: false; reason: 'down' }) => void): void {
    const data = encodeCommand(command);
    this.callNode(id, (node) => node.propose(data, callback), () => callback({ ok: false, reason: 'down' }));
  }

  read(id: NodeId, callback: (outcome: ReadOutcome<KvMachine> | { ok: false; reason: 'down' }) => void): void {
    this.callNode(id, (node) => node.read(callback), () => callback({ ok: false, reason: 'down' }));
  }

  proposeConfChange(id: NodeId, change: ConfChange, callback: (outcome: WriteOutcome<KvResult> | { ok: false; reason: 'down' }) => void): void {
    this.callNode(id, (node) => node.proposeConfChange(change, callback), () => callback({ ok: false, reason: 'down' }));
  }

  // ---- running -------------------------------------------------------------

  /** Run for `durationMs` of virtual time, checking invariants after every event. */
  runFor(durationMs: number): void {
    this.runUntil(() => false, durationMs);
  }

  /** Run until `predicate` holds (checked after every event) or `timeoutMs` passes; returns whether it held. */
  runUntil(predicate: () => boolean, timeoutMs: number): boolean {
    const end = this.scheduler.nowMs() + timeoutMs;
    let events = 0;
    const eventsMax = Math.max(1_000_000, timeoutMs * 2000);
    while (true) {
      if (predicate()) return true;
      const next = this.scheduler.nextEventMs();
      if (next === null || next > end || this.scheduler.nowMs() >= end) {
        if (this.scheduler.nowMs() < end) this.scheduler.runUntil(end, 1);
        return predicate();
      }
      this.scheduler.step();
      this.checker.afterEvent();
      events += 1;
      if (events > eventsMax) throw new EventLimitError(eventsMax, this.scheduler.nowMs(), 'cluster', `${end} ms`);
    }
  }

  // ---- nemesis ---------------------------------------------------------------

  startNemesis(): void {
    this.nemesisActive = true;
    const f = this.faults;
    const stream = this.prng.fork('nemesis');
    if (f.topology.length > 0) this.every(stream, f.topologyIntervalMs, () => this.topologyFault(stream));
    if (f.crash !== null) {
      const { intervalMs, downtimeMsMax } = f.crash;
      this.every(stream, intervalMs, () => {
        const id = stream.pick(this.allIds());
        if (this.node(id) === null) return;
        this.crash(id);
        this.later(stream.range(1, downtimeMsMax), () => this.restart(id));
      });
    }
    if (f.restart !== null) {
      this.every(stream, f.restart.intervalMs, () => {
        const id = stream.pick(this.allIds());
        if (this.node(id) === null) return;
        // Graceful: stop once everything written is synced, then start again from disk.
        this.gracefulRestart(id);
      });
    }
    if (f.pause !== null) {
      const { intervalMs, durationMsMax } = f.pause;
      this.every(stream, intervalMs, () => {
        const id = stream.pick(this.allIds());
        this.pause(id);
        this.later(stream.range(1, durationMsMax), () => this.resume(id));
      });
    }
  }

  /**
   * End the safety phase: stop the nemesis, pick a majority, heal it fully
   * (restart, resume, reconnect, no more packet faults). Faults outside it may stay.
   */
  healQuorum(): NodeId[] {
    this.nemesisActive = false;
    for (const handle of this.nemesisHandles) this.scheduler.cancel(handle);
    this.nemesisHandles = [];
    const voters = this.currentVoters();
    const stream = this.prng.fork('heal');
    const quorum = stream.shuffle([...voters]).slice(0, Math.floor(voters.length / 2) + 1);
    quorum.sort();
    this.network.setFaults(NETWORK_FAULTS_NONE);
    this.network.healAmong(quorum);
    for (const id of quorum) {
      this.resume(id);
      this.restart(id);
    }
    this.record('-' as NodeId, 'healQuorum', quorum.join(','));
    return quorum;
  }

  healAll(): void {
    this.nemesisActive = false;
    for (const handle of this.nemesisHandles) this.scheduler.cancel(handle);
    this.nemesisHandles = [];
    this.network.setFaults(NETWORK_FAULTS_NONE);
    this.network.heal();
    for (const id of this.allIds()) {
      this.resume(id);
      if (this.states.get(id)?.crashed === true) this.restart(id);
      // A node caught in a graceful restart comes back once its disk is synced (its own timer died with the nemesis).
      else if (this.states.get(id)?.node === null) this.restartWhenSynced(id);
    }
  }

  private restartWhenSynced(id: NodeId): void {
    const state = this.states.get(id) as NodeState;
    if (state.node !== null) return;
    if (state.disk.isSynced()) this.restart(id);
    else this.scheduler.schedule(5, () => this.restartWhenSynced(id), 'heal');
  }

  /** Voters as the most advanced live node knows them (founding members when none is up). */
  currentVoters(): NodeId[] {
    let best: SimRaftNode | null = null;
    for (const node of this.liveNodes()) if (best === null || node.raft.log.applied > best.raft.log.applied) best = node;
    return best === null ? [...this.ids] : [...best.raft.confState().voters];
  }

  /** A rolling restart outside the nemesis (after an actor drain): stop now, start again from disk once it is synced. */
  restartGracefully(id: NodeId): void {
    const state = this.states.get(id) as NodeState;
    if (state.node === null) return;
    state.node.stop();
    state.node = null;
    this.scheduler.clockFor(id).cancelAll();
    this.hooks.stopped?.(id);
    this.network.setDown(id, true);
    this.record(id, 'stop', 'rolling');
    this.scheduler.schedule(5, () => this.restartWhenSynced(id), 'restart');
  }

  private gracefulRestart(id: NodeId): void {
    const state = this.states.get(id) as NodeState;
    if (state.node === null) return;
    state.node.stop();
    state.node = null;
    this.scheduler.clockFor(id).cancelAll();
    this.hooks.stopped?.(id);
    this.network.setDown(id, true);
    this.record(id, 'stop', 'graceful');
    const waitSynced = (): void => {
      if (state.disk.isSynced()) this.restart(id);
      else this.later(5, waitSynced);
    };
    this.later(5, waitSynced);
  }

  private topologyFault(stream: Prng): void {
    const kind: TopologyFault = stream.pick(this.faults.topology);
    const ids = this.allIds();
    this.stats.topologyChanges += 1;
    switch (kind) {
      case 'partition': {
        const shuffled = stream.shuffle([...ids]);
        const cut = stream.range(1, shuffled.length - 1);
        this.network.partition([shuffled.slice(0, cut), shuffled.slice(cut)]);
        break;
      }
      case 'asymmetric': {
        const links = stream.range(1, ids.length);
        for (let i = 0; i < links; i += 1) {
          const from = stream.pick(ids);
          const to = stream.pick(ids.filter((id) => id !== from));
          this.network.oneWay(from, to);
        }
        break;
      }
      case 'isolateLeader': {
        const leader = this.leader();
        this.network.isolate(leader?.id ?? stream.pick(ids));
        break;
      }
      case 'bridge': {
        const shuffled = stream.shuffle([...ids]);
        const bridgeNode = shuffled[0] as NodeId;
        const rest = shuffled.slice(1);
        const half = Math.floor(rest.length / 2);
        this.network.bridge(rest.slice(0, half), rest.slice(half), bridgeNode);
        break;
      }
      case 'majoritiesRing':
        this.network.majoritiesRing(stream.shuffle([...ids]));
        break;
      default: {
        const never: never = kind;
        return never;
      }
    }
    this.record('-' as NodeId, 'topology', `${kind} ${this.network.describeCuts()}`);
    this.later(stream.range(1, this.faults.topologyDurationMsMax), () => {
      this.network.heal();
      this.record('-' as NodeId, 'topology', 'heal');
    });
  }

  private every(stream: Prng, meanMs: number, action: () => void): void {
    const delay = stream.range(Math.max(1, Math.floor(meanMs / 2)), Math.max(2, Math.floor((meanMs * 3) / 2)));
    this.later(delay, () => {
      action();
      this.every(stream, meanMs, action);
    });
  }

  private later(delayMs: number, action: () => void): void {
    const handle = this.scheduler.schedule(delayMs, () => {
      if (this.nemesisActive) action();
    }, 'nemesis');
    this.nemesisHandles.push(handle);
    if (this.nemesisHandles.length > 256) this.nemesisHandles = this.nemesisHandles.slice(-128);
  }

  // ---- tracing ---------------------------------------------------------------

  record(node: NodeId, event: string, details: string): void {
    this.trace?.record(this.scheduler.nowMs(), node, event, details);
  }

  private traceMessage(kind: string, from: NodeId, to: NodeId, message: Message, reason: string | null): void {
    if (kind !== 'deliver' && kind !== 'drop') return;
    let details = `${message.type} ${from}->${to} t${message.term}`;
    if (message.type === 'append') details += ` prev=${message.prevLogIndex}/${message.prevLogTerm} n=${message.entries.length} c=${message.commit}`;
    else if (message.type === 'appendResp') details += ` ok=${message.success} i=${message.index}`;
    else if (message.type === 'voteResp' || message.type === 'preVoteResp') details += ` granted=${message.granted}`;
    if (reason !== null) details += ` reason=${reason}`;
    this.trace?.record(this.scheduler.nowMs(), to, kind, details);
  }
}
