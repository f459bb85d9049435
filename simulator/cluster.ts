// A whole cluster in one process under virtual time: the real Raft core and
// driver on simulated clocks, network and disks, a fault nemesis, a KV client
// workload, and the invariant checker watching every step. One seed decides
// everything, so a run replays byte for byte.
import { KvMachine, kvMachineFactoryWith } from '../consensus/kv-machine.ts';
import { systemValueError } from '../actors/records.ts';
import { CommandDecodeCache, encodeCommand, type KvCommand, type KvResult } from '../consensus/kv-state-machine.ts';
import { RaftNode, type ReadOutcome, type WriteOutcome } from '../consensus/raft-node.ts';
import { Raft, defaultRaftConfig } from '../consensus/raft.ts';
import { bootstrapState, emptyPersistedState, type PersistBatch, type PersistedState, type RaftStorage } from '../consensus/storage.ts';
import type { Clock, ConfChange, Entry, Message, NodeId, RaftConfig, Random, Term } from '../consensus/types.ts';
import { SimDisk, type DiskLatency } from './disk.ts';
import { drawFaultConfig, describeFaultConfig, type FaultConfig, type FaultKind, type TopologyFault } from './faults.ts';
import type { Operation } from './history.ts';
import { InvariantChecker } from './invariants.ts';
import { NETWORK_FAULTS_NONE, SimNetwork, type NetworkEventKind } from './network.ts';
import { Coverage } from './coverage.ts';
import { AimedNemesis } from './nemesis-aimed.ts';
import { ShadowLog } from './shadow-log.ts';
import { ProtocolRules } from './protocol-rules.ts';
import { prngFromSeed, type Prng } from './prng.ts';
import { EventLimitError, Scheduler, type EventHandle } from './scheduler.ts';
import type { Trace } from './trace.ts';

// One decode cache for every replica: they share entry objects, so each command is decoded once, not once per node.
const SIM_KV_MACHINES = kvMachineFactoryWith({ valueCheck: systemValueError, decodeCache: new CommandDecodeCache() });

export const SIM_TICK_MS = 50;
/** Share of seeds that run without pre-vote. */
const PRE_VOTE_OFF_PROBABILITY = 0.25;

/** A whole number in [lo, hi] whose logarithm is uniform: each order of magnitude is as likely. */
function logUniform(prng: Prng, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, Math.round(Math.exp(prng.floatRange(Math.log(lo), Math.log(hi))))));
}

/** Mean virtual time between two draws of new priorities (the `priority` fault). */
const PRIORITY_CHANGE_MS_MEAN = 2000;

export interface ClusterOptions {
  readonly seed: number;
  readonly nodes: number;
  /** Faults the swarm may switch on for this seed. */
  readonly faults: ReadonlySet<FaultKind>;
  readonly trace?: Trace | null;
  /** A deliberately broken core, driver or storage (simulator/mutations.ts): mutation testing of the checkers. */
  readonly plant?: RaftPlant;
  /** Extra founding-member-less nodes that start empty and can join (membership scenarios). */
  readonly spareNodes?: number;
  /** Override the drawn Raft limits (scenario tests). */
  readonly raftOverrides?: Partial<RaftConfig>;
  /** Lets a layer above Raft (the actor hosts) follow each node's life. */
  readonly hooks?: ClusterHooks;
  /**
   * End the run (runUntil throws RunStoppedError) at the first violation: what
   * follows a broken invariant is noise, and a corrupted cluster can spin.
   */
  readonly stopAtFirstViolation?: boolean;
}

/** The run was ended at its first violation (ClusterOptions.stopAtFirstViolation). */
export class RunStoppedError extends Error {
  override readonly name = 'RunStoppedError';
  constructor(readonly violation: string) {
    super(`run stopped at its first violation: ${violation}`);
  }
}

type SimRaftNodeArgs = ConstructorParameters<typeof RaftNode<KvResult, KvMachine>>;

/** What a planted bug replaces in every node; each part defaults to the real one. */
export interface RaftPlant {
  readonly createRaft?: (config: RaftConfig, random: Random, persisted: PersistedState) => Raft;
  readonly createNode?: (...args: SimRaftNodeArgs) => RaftNode<KvResult, KvMachine>;
  /** Wraps the node's disk as its driver sees it (the simulator still crashes and loads the disk itself). */
  readonly wrapStorage?: (storage: RaftStorage, clock: Clock) => RaftStorage;
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
  /** Last entry index its disk holds, as far as the batches written since boot tell (coverage of truncations). */
  lastPersistedIndex: number;
  /** Terms of what the driver has handed the disk (invariants read it after every event). */
  shadow: ShadowLog;
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
  private readonly rules: ProtocolRules;
  readonly history: Operation[] = [];
  readonly coverage = new Coverage();
  /** Told by the checker when a node starts or stops leading. */
  readonly leadership = {
    elected: (raft: Raft): void => {
      this.coverage.elected(raft);
      if (this.aimed !== null && this.nemesisActive) this.aimed.elected(raft.id);
    },
    deposed: (raft: Raft, termBefore: Term): void => this.coverage.deposed(raft, termBefore),
  };
  private aimed: AimedNemesis | null = null;
  /** Nodes the aimed nemesis has cut off now: reconnecting one must not reconnect it to another. */
  private readonly aimCut = new Set<NodeId>();
  /** Client writes proposed and not answered yet (coverage: snapshots installed while writes continue). */
  private writesInFlight = 0;
  readonly trace: Trace | null;
  private readonly states = new Map<NodeId, NodeState>();
  private readonly raftConfig: Omit<RaftConfig, 'id'>;
  private readonly plant: RaftPlant;
  private readonly hooks: ClusterHooks;
  private nemesisHandles: EventHandle[] = [];
  private nemesisActive = false;
  private liveCache: SimRaftNode[] | null = null;
  private readonly stopAtFirstViolation: boolean;
  readonly stats = { crashes: 0, crashesDuringSync: 0, restarts: 0, pauses: 0, topologyChanges: 0, snapshotsInstalled: 0, compactions: 0 };

  constructor(options: ClusterOptions) {
    this.seed = options.seed;
    this.prng = prngFromSeed(options.seed);
    this.trace = options.trace ?? null;
    this.plant = options.plant ?? {};
    this.stopAtFirstViolation = options.stopAtFirstViolation ?? false;
    this.hooks = options.hooks ?? {};
    this.faults = drawFaultConfig(this.prng.fork('faults'), options.faults);
    this.ids = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}` as NodeId);
    this.spareIds = Array.from({ length: options.spareNodes ?? 0 }, (_, i) => `n${options.nodes + i + 1}` as NodeId);
    const limits = this.prng.fork('limits');
    this.raftConfig = {
      ...defaultRaftConfig('x' as NodeId),
      electionTicks: 10,
      heartbeatTicks: 2,
      // Small, seed-drawn limits so that snapshots, chunking and flow control happen in short runs; each
      // order of magnitude as likely, so that appends of one entry and snapshots after a few are common.
      snapshotEntriesThreshold: logUniform(limits, 10, 1000),
      snapshotTrailingEntries: logUniform(limits, 1, 400) - 1,
      snapshotChunkBytes: logUniform(limits, 64, 4096),
      appendBytesMax: logUniform(limits, 64, 64 * 1024),
      inflightAppendsMax: logUniform(limits, 1, 64),
      // Pre-vote too: some seeds run without it. Check-quorum stays on, as on real nodes: without it a
      // leader cut off from all but one member keeps that member from electing, so no liveness bound holds.
      preVote: !limits.chance(PRE_VOTE_OFF_PROBABILITY),
      ...options.raftOverrides,
    };
    this.network = new SimNetwork<Message>({
      scheduler: this.scheduler,
      prng: this.prng.fork('network'),
      typeOf: (message) => message.type,
      faults: this.faults.network,
      observer: (kind, from, to, message, reason) => this.observeMessage(kind, from, to, message, reason),
    });
    this.checker = new InvariantChecker(this);
    this.rules = new ProtocolRules((id) => this.durable(id).hardState, (text) => this.checker.violation(text));
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
      this.states.set(id, { id, disk, node: null, incarnation: 0, crashed: false, lastPersistedIndex: 0, shadow: new ShadowLog() });
      this.network.register(id, (message) => {
        const node = this.states.get(id)?.node;
        if (node === null || node === undefined) return;
        node.receive(message);
        this.hooks.received?.(id, message);
      });
    }
    for (const id of [...this.ids, ...this.spareIds]) this.boot(id);
  }

  /** The seed's fault mix and its drawn Raft settings, on one line. */
  describeFaults(): string {
    const c = this.raftConfig;
    const options = `${c.preVote ? '' : ' noPreVote'}${c.checkQuorum ? '' : ' noCheckQuorum'}`;
    return `${describeFaultConfig(this.faults)} raft(append<=${c.appendBytesMax}B inflight<=${c.inflightAppendsMax} snapshot every ${c.snapshotEntriesThreshold} keep ${c.snapshotTrailingEntries} chunk ${c.snapshotChunkBytes}B${options})`;
  }

  // ---- nodes ---------------------------------------------------------------

  node(id: NodeId): SimRaftNode | null {
    return this.states.get(id)?.node ?? null;
  }

  durable(id: NodeId): PersistedState {
    return (this.states.get(id) as NodeState).disk.load();
  }

  /** The fsync latency the node's disk draws from now (the seed's, or the healed one). */
  diskLatency(id: NodeId): DiskLatency {
    return (this.states.get(id) as NodeState).disk.syncLatency();
  }

  shadow(id: NodeId): ShadowLog {
    return (this.states.get(id) as NodeState).shadow;
  }

  /** Nodes that are running (paused ones included); cached, as the checker asks after every event. */
  liveNodes(): readonly SimRaftNode[] {
    if (this.liveCache === null) {
      const out: SimRaftNode[] = [];
      for (const state of this.states.values()) if (state.node !== null) out.push(state.node);
      this.liveCache = out;
    }
    return this.liveCache;
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
    const createRaft = this.plant.createRaft;
    const persisted = state.disk.load();
    state.lastPersistedIndex = (persisted.snapshot?.meta.index ?? 0) + persisted.entries.length;
    state.shadow = ShadowLog.from(persisted);
    const tapped: RaftStorage = {
      persist: (batch, done) => {
        const problem = state.shadow.apply(batch);
        if (problem !== null) this.checker.logRetention(id, problem);
        state.disk.persist(batch, done);
      },
    };
    const node: SimRaftNode = (this.plant.createNode ?? ((...args: SimRaftNodeArgs) => new RaftNode(...args)))(
      {
        clock,
        random: this.prng.fork(`raft:${id}:${state.incarnation}`),
        storage: this.plant.wrapStorage === undefined ? tapped : this.plant.wrapStorage(tapped, clock),
        transport: { send: (message) => this.network.send(message.from, message.to, message) },
        observer: {
          ...this.checker.observer,
          applied: (node, entry) => {
            this.checker.observer.applied?.(node, entry);
            this.hooks.applied?.(node, entry);
          },
          snapshotApplied: () => {
            this.stats.snapshotsInstalled += 1;
            this.coverage.snapshotInstalled(this.writesInFlight > 0);
            // A snapshot replaces a follower's log: the moment it could drop entries a quorum counted on.
            this.checker.checkDurability();
          },
          persisted: (node, batch) => {
            this.checker.observer.persisted?.(node, batch);
            this.persistedBatch(state, batch);
            if (batch.snapshot !== null && !batch.dropEntriesAfterSnapshot) this.stats.compactions += 1;
          },
        },
        ...(createRaft === undefined ? {} : { createRaft }),
      },
      {
        raft: { ...this.raftConfig, id },
        tickMs: SIM_TICK_MS,
        requestTimeoutMs: 3000,
        pendingRequestsMax: 10_000,
      },
      // As on real nodes: writes under the actors' keys must fit their schemas.
      SIM_KV_MACHINES,
      persisted,
    );
    state.node = node;
    this.liveCache = null;
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
    this.coverage.crashed(id, lost, this.scheduler.nowMs());
    state.shadow = ShadowLog.from(state.disk.load());
    // The moment durability is tested: only what was synced is left.
    this.checker.checkDurability();
    this.checker.checkElectability();
    state.node.stop();
    state.node = null;
    this.liveCache = null;
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
    this.writesInFlight += 1;
    const answered = (outcome: WriteOutcome<KvResult> | { ok: false; reason: 'down' }): void => {
      this.writesInFlight -= 1;
      callback(outcome);
    };
    this.callNode(id, (node) => node.propose(data, answered), () => answered({ ok: false, reason: 'down' }));
  }

  read(id: NodeId, callback: (outcome: ReadOutcome<KvMachine> | { ok: false; reason: 'down' }) => void): void {
    this.callNode(
      id,
      (node) => {
        const startedMs = this.scheduler.nowMs();
        const ledTerm = node.raft.role === 'leader' ? node.raft.term : -1;
        node.read((outcome) => {
          if (outcome.ok) {
            this.coverage.readAnswered(node.raft, this.leader()?.raft.term ?? 0);
            if (node.raft.role === 'leader' && node.raft.term === ledTerm) this.rules.localReadServed(node.raft, ledTerm, startedMs);
          }
          callback(outcome);
        });
      },
      () => callback({ ok: false, reason: 'down' }),
    );
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
      if (this.stopAtFirstViolation && !this.checker.ok) throw new RunStoppedError(this.checker.violations[0] as string);
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
    if (f.aim !== null) {
      this.aimed = new AimedNemesis(f.aim, this.prng.fork('nemesis:aim'), {
        crash: (id) => this.crash(id),
        restart: (id) => this.restart(id),
        isolate: (id) => {
          this.aimCut.add(id);
          this.network.isolate(id);
        },
        deafen: (id) => {
          this.aimCut.add(id);
          this.network.deafen(id);
        },
        reconnect: (id) => {
          this.aimCut.delete(id);
          this.network.reconnect(id, this.aimCut);
        },
        isUp: (id) => this.isUp(id),
        later: (delayMs, action) => this.later(delayMs, action),
        record: (id, event, details) => this.record(id, event, details),
      });
      this.aimed.start();
    }
    if (f.priority !== null) this.shufflePriorities(this.prng.fork('nemesis:priority'), f.priority.stepMs, f.priority.changes);
  }

  /** Draw a new order of the nodes; the n-th hears everything n × stepMs late. Again at random points, `changes` times. */
  private shufflePriorities(stream: Prng, stepMs: number, changesLeft: number): void {
    stream.shuffle(this.allIds()).forEach((id, rank) => this.network.setReceiveDelay(id, rank * stepMs));
    if (changesLeft > 0) this.later(stream.range(1, 2 * PRIORITY_CHANGE_MS_MEAN), () => this.shufflePriorities(stream, stepMs, changesLeft - 1));
  }

  private clearPriorities(): void {
    for (const id of this.allIds()) this.network.setReceiveDelay(id, 0);
  }

  /**
   * End the safety phase: stop the nemesis, pick a majority, heal it fully
   * (restart, resume, reconnect, no more packet faults, no more slow syncs).
   * Faults outside it may stay.
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
    this.clearPriorities();
    this.network.healAmong(quorum);
    for (const id of quorum) {
      this.resume(id);
      this.restart(id);
      this.healDisk(id);
    }
    this.record('-' as NodeId, 'healQuorum', quorum.join(','));
    return quorum;
  }

  healAll(): void {
    this.nemesisActive = false;
    for (const handle of this.nemesisHandles) this.scheduler.cancel(handle);
    this.nemesisHandles = [];
    this.network.setFaults(NETWORK_FAULTS_NONE);
    this.clearPriorities();
    this.network.heal();
    for (const id of this.allIds()) {
      this.resume(id);
      this.healDisk(id);
      if (this.states.get(id)?.crashed === true) this.restart(id);
      // A node caught in a graceful restart comes back once its disk is synced (its own timer died with the nemesis).
      else if (this.states.get(id)?.node === null) this.restartWhenSynced(id);
    }
  }

  /**
   * The disk keeps its ordinary fsync latency and loses its slow outliers (the
   * slowDisk fault). A sync already queued still ends when it was drawn to:
   * within about slowSyncMsMax. Without this a healed node is not healed:
   * an outlier longer than the election timeout stalls its driver (no
   * heartbeats, no answers while a sync runs, as in etcd), and when the healed
   * majority is a bare quorum every node's stall deposes the leader or stops
   * an election (seed 7247, docs/simulator.md).
   */
  private healDisk(id: NodeId): void {
    (this.states.get(id) as NodeState).disk.setLatency({ ...this.faults.disk, slowSyncProbability: 0, slowSyncMsMax: 0 });
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
    this.liveCache = null;
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
    this.liveCache = null;
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

  private observeMessage(kind: NetworkEventKind, from: NodeId, to: NodeId, message: Message, reason: string | null): void {
    if (kind === 'send') {
      this.coverage.sent(message, this.scheduler.nowMs());
      this.rules.sent(message, this.states.get(from)?.node?.raft ?? null, this.scheduler.nowMs());
      if (this.aimed !== null && this.nemesisActive) this.aimed.sent(message);
    } else if (kind === 'deliver') {
      const receiver = this.states.get(to)?.node;
      if (receiver !== null && receiver !== undefined) this.coverage.delivering(message, receiver.raft);
      this.rules.delivered(message, this.scheduler.nowMs());
    }
    if (this.trace !== null) this.traceMessage(kind, from, to, message, reason);
  }

  /** Follows each disk's last index to see a follower overwrite entries it had persisted. */
  private persistedBatch(state: NodeState, batch: PersistBatch): void {
    if (batch.snapshot !== null && batch.dropEntriesAfterSnapshot) state.lastPersistedIndex = batch.snapshot.meta.index;
    const first = batch.entries[0];
    if (first === undefined) return;
    if (first.index <= state.lastPersistedIndex) this.coverage.truncated();
    state.lastPersistedIndex = (batch.entries[batch.entries.length - 1] as Entry).index;
  }

  private traceMessage(kind: string, from: NodeId, to: NodeId, message: Message, reason: string | null): void {
    if (kind !== 'deliver' && kind !== 'drop') return;
    let details = `${message.type} ${from}->${to} t${message.term}`;
    if (message.type === 'append') details += ` prev=${message.prevLogIndex}/${message.prevLogTerm} n=${message.entries.length} c=${message.commit}`;
    else if (message.type === 'appendResp') details += ` ok=${message.success} i=${message.index}`;
    else if (message.type === 'voteResp' || message.type === 'preVoteResp') details += ` granted=${message.granted}`;
    else if (message.type === 'snapshotChunk') details += ` snap=${message.meta.index}/${message.meta.term} at=${message.offset} done=${message.done}`;
    if (reason !== null) details += ` reason=${reason}`;
    this.trace?.record(this.scheduler.nowMs(), to, kind, details);
  }
}
