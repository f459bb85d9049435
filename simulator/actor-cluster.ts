// The actor layer on every node of a simulated cluster: the real ActorHost,
// ProjectActor and TenantActor over each node's RaftNode, with the simulated
// runtime, an in-memory forwarder and proposal path over the simulated
// network (partitions, drops and pauses apply), and client calls that reach
// one node at a time as over a socket.
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { authorizerFrom } from '../actors/authorizer.ts';
import { rangePortAllocator, storeOutcome, type ActorStore, type ForwardCall, type ForwardOutcome, type Forwarder, type StoreWriteOutcome } from '../actors/components.ts';
import { ActorHost, hostOptionsDefault, type HostComponents, type HostOptions } from '../actors/host.ts';
import { fenceTiming, startLeaseHeartbeats, type FenceTiming } from '../actors/lease-fence.ts';
import type { ActorKey, ActorRequest, ActorResponse, Identity, ProgressFn } from '../actors/messages.ts';
import type { ToolCall } from '../actors/tools.ts';
import { callFromWire, callToWire, responseFromWire, responseToWire, WireError } from '../actors/wire.ts';
import { ActorResponseSchema, CallRequestSchema } from '../proto/gen/actor_pb.ts';
import type { KvMachine } from '../consensus/kv-machine.ts';
import { encodeCommand, type KvCommand, type KvResult } from '../consensus/kv-state-machine.ts';
import type { RaftNode, WriteOutcome } from '../consensus/raft-node.ts';
import type { Entry, NodeId } from '../consensus/types.ts';
import { SimCluster, type ClusterOptions } from './cluster.ts';
import type { Prng } from './prng.ts';
import { SimRuntime, simProjectIo } from './runtime-sim.ts';

type SimRaftNode = RaftNode<KvResult, KvMachine>;

/** Owner lease and failure-detector timeout in virtual ms; the lease fence's timing follows from them. */
const SIM_LEASE_MS = 1500;
const SIM_SUSPECT_MS = 3000;
/** The runtime watchdog's timing (heartbeat period, validity, kill delay), as a real node derives it. */
export const SIM_FENCE: FenceTiming = fenceTiming(SIM_LEASE_MS, SIM_SUSPECT_MS);

/** Timing of the actor layer in virtual ms, scaled to the simulator's 50 ms Raft tick. */
export function simHostOptions(node: string, prng: Prng): HostOptions {
  return {
    ...hostOptionsDefault(node),
    mailboxDepthMax: 16,
    idleMs: prng.range(300, 3000),
    turnMsMax: 6000,
    callAttemptsMax: 6,
    retryBackoffMs: 20,
    leaseMs: SIM_LEASE_MS,
    suspectMs: SIM_SUSPECT_MS,
    pollMs: 50,
    fullScanMs: 500,
    movesInFlightMax: prng.range(1, 8),
    stopGraceMs: 100,
    applyWaitMsMax: 2000,
  };
}

/** Sim clients act as an admin unless a test gives another identity. */
export const SIM_ADMIN: Identity = Object.freeze({ tokenId: 'sim-admin', tokenName: 'sim admin', tenant: 'default', role: 'admin' });

/** The simulator's rights: an admin anywhere, anyone else on its own tenant (viewers read only, exec needs exec or more). */
export const simAuthorizer = authorizerFrom((identity, right, tenant) => {
  if (identity.role === 'admin') return null;
  if (identity.tenant !== tenant) return `token ${identity.tokenName} is for tenant ${identity.tenant}, not ${tenant}`;
  if (right === 'read') return null;
  if (identity.role === 'viewer') return `token ${identity.tokenName} (role viewer) lacks the right '${right}'`;
  if (right === 'exec' && identity.role === 'developer') return `token ${identity.tokenName} (role developer) lacks the right 'exec'`;
  if (right === 'quota' && identity.role !== 'tenant-admin') return `token ${identity.tokenName} lacks the right 'quota'`;
  return null;
});

export type ClientOutcome = { readonly delivered: true; readonly response: ActorResponse } | { readonly delivered: false; readonly reason: 'refused' | 'timeout' };

/** A client waits this long past its deadline before it gives up on a node that went silent. */
const CLIENT_GRACE_MS = 500;

/** Extra delay of a message the lossy link dropped once (a TCP retransmission timeout). */
const TCP_RESEND_MS = 200;

/** How long a proposal forwarded to the leader may take before its outcome counts as unknown. */
const PROPOSE_TIMEOUT_MS = 3000;

export type RpcOutcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: 'unreachable' | 'deadline' };

/** What a planted bug in the actor layer wraps on every node (simulator/mutations.ts); each part defaults to the real one. */
export interface ActorPlant {
  readonly wrapStore?: (store: ActorStore) => ActorStore;
  readonly wrapForwarder?: (forwarder: Forwarder) => Forwarder;
  /** A host subclass with a planted bug in its own decisions (e.g. its failure detector). */
  readonly createHost?: (components: HostComponents, options: HostOptions) => ActorHost;
}

export interface ActorClusterOptions extends Omit<ClusterOptions, 'hooks'> {
  readonly actorPlant?: ActorPlant;
}

export class SimActorCluster {
  readonly cluster: SimCluster;
  readonly hosts = new Map<NodeId, ActorHost>();
  readonly runtimes = new Map<NodeId, SimRuntime>();
  private readonly pendingBoots: [NodeId, SimRaftNode][] = [];
  private readonly appliedListeners: ((id: NodeId, node: SimRaftNode, entry: Entry) => void)[] = [];
  private readonly launchListeners: ((id: NodeId, key: string) => void)[] = [];
  private readonly heartbeats = new Map<NodeId, () => void>();
  private readonly prng: Prng;
  private readonly actorPlant: ActorPlant;
  private ready = false;
  readonly rpcStats = { sent: 0, lost: 0 };

  constructor(options: ActorClusterOptions) {
    this.actorPlant = options.actorPlant ?? {};
    this.cluster = new SimCluster({
      ...options,
      hooks: {
        booted: (id, node) => {
          if (this.ready) this.boot(id, node);
          else this.pendingBoots.push([id, node]);
        },
        stopped: (id) => this.shutdown(id),
        received: (id, message) => this.hosts.get(id)?.raftMessageReceived(message.from),
        applied: (id, entry) => {
          if (!this.ready) return;
          this.hosts.get(id)?.applied();
          const node = this.cluster.node(id);
          if (node !== null) for (const listener of this.appliedListeners) listener(id, node, entry);
        },
      },
    });
    this.prng = this.cluster.prng.fork('actors');
    for (const id of this.cluster.allIds()) {
      this.runtimes.set(
        id,
        new SimRuntime({
          node: id,
          scheduler: this.cluster.scheduler,
          prng: this.prng.fork(`runtime:${id}`),
          startMsMax: 30,
          stopMsMax: 30,
          fenceKillAfterMs: SIM_FENCE.killAfterMs,
          launching: (node, key) => {
            for (const listener of this.launchListeners) listener(node, key);
          },
        }),
      );
    }
    this.ready = true;
    for (const [id, node] of this.pendingBoots.splice(0)) this.boot(id, node);
  }

  /** Watch every launch of a workload copy on any node (before it runs). */
  onLaunching(listener: (id: NodeId, key: string) => void): void {
    this.launchListeners.push(listener);
  }

  /** Watch every applied entry (after the host heard of it). */
  onApplied(listener: (id: NodeId, node: SimRaftNode, entry: Entry) => void): void {
    this.appliedListeners.push(listener);
  }

  private boot(id: NodeId, node: SimRaftNode): void {
    const scheduler = this.cluster.scheduler;
    const runtime = this.runtimes.get(id) as SimRuntime;
    const store = this.storeFor(id, node);
    const forwarder: Forwarder = {
      forward: (owner, call, onProgress, callback) => {
        // Through the protobuf wire format, as the gRPC forwarder carries it.
        const bytes = toBinary(CallRequestSchema, callToWire(call));
        this.rpc<Uint8Array>(id, owner as NodeId, call.deadlineMs, (respond) => {
          const target = this.hosts.get(owner as NodeId);
          if (target === undefined) return;
          let forwarded: ForwardCall;
          try {
            forwarded = callFromWire(fromBinary(CallRequestSchema, bytes));
          } catch (error) {
            // As the gRPC service answers a call it cannot decode within bounds (actors/forwarder-grpc.ts).
            const message = error instanceof WireError ? error.message : `malformed call: ${(error as Error).message}`;
            return respond(toBinary(ActorResponseSchema, responseToWire({ type: 'error', name: 'InvalidRequestError', message })));
          }
          // Progress events travel with the answer's stream; the simulator drops them (only the answer counts).
          void onProgress;
          target.serveForwarded(forwarded, null, (response) => respond(toBinary(ActorResponseSchema, responseToWire(response))));
        }, (outcome) => callback(forwardOutcome(outcome, owner)));
      },
    };
    const plant = this.actorPlant;
    const components: HostComponents = {
      clock: scheduler.clockFor(id),
      random: this.prng.fork(`random:${id}:${this.cluster.incarnation(id)}`),
      store: plant.wrapStore === undefined ? store : plant.wrapStore(store),
      raft: { isLeader: () => node.raft.role === 'leader', leader: () => node.raft.leader },
      runtime,
      ports: rangePortAllocator(20_000, 20_999),
      forwarder: plant.wrapForwarder === undefined ? forwarder : plant.wrapForwarder(forwarder),
      io: simProjectIo(runtime),
      authorizer: simAuthorizer,
    };
    const options = simHostOptions(id, this.prng.fork(`host:${id}:${this.cluster.incarnation(id)}`));
    const host = plant.createHost === undefined ? new ActorHost(components, options) : plant.createHost(components, options);
    this.hosts.set(id, host);
    host.start();
    // As node/node-actors.ts does: while the lease holds, the runtime's watchdog is fed on this node's clock.
    this.heartbeats.set(id, startLeaseHeartbeats(components.clock, SIM_FENCE, () => host.leaseState() === 'valid', (validForMs) => runtime.leaseHeartbeat(validForMs)));
  }

  private shutdown(id: NodeId): void {
    this.heartbeats.get(id)?.();
    this.heartbeats.delete(id);
    this.hosts.get(id)?.stop();
    this.hosts.delete(id);
    this.runtimes.get(id)?.detach();
  }

  /** The store as one node sees it: its own applied state; proposals go to the leader it knows. */
  private storeFor(id: NodeId, node: SimRaftNode): ActorStore {
    return {
      view: () => node.machine.kv,
      propose: (command, callback) => this.propose(id, node, command, callback),
    };
  }

  private propose(id: NodeId, node: SimRaftNode, command: KvCommand, callback: (outcome: StoreWriteOutcome) => void): void {
    const data = encodeCommand(command);
    if (node.raft.role === 'leader') {
      // As a real client's deadline would: an answer the driver never gives (see docs/simulator.md) ends as unknown.
      const clock = this.cluster.scheduler.clockFor(id);
      let answered = false;
      const timer = clock.setTimer(PROPOSE_TIMEOUT_MS, () => {
        if (answered) return;
        answered = true;
        callback({ ok: false, reason: 'unknown', detail: `no answer from the local Raft node within ${PROPOSE_TIMEOUT_MS} ms` });
      });
      return node.propose(data, (outcome) => {
        if (answered) return;
        answered = true;
        clock.clearTimer(timer);
        callback(storeOutcome(outcome));
      });
    }
    const leader = node.raft.leader;
    if (leader === null || leader === id) return callback({ ok: false, reason: 'unavailable', detail: `node ${id} knows no leader` });
    this.rpc<WriteOutcome<KvResult>>(id, leader, PROPOSE_TIMEOUT_MS, (respond) => {
      const target = this.cluster.node(leader);
      if (target === null) return;
      target.propose(data, respond);
    }, (outcome) => {
      if (outcome.ok) return callback(storeOutcome(outcome.value));
      callback(outcome.reason === 'unreachable' ? { ok: false, reason: 'unavailable', detail: `leader ${leader} is down` } : { ok: false, reason: 'unknown', detail: `no answer from leader ${leader}` });
    });
  }

  /**
   * One request and its answer between two node processes. A request to a
   * down node is refused; across a cut link it is lost and the caller's
   * deadline decides; a random drop only delays it (TCP resends). Events
   * belong to the receiving node, so a paused node answers late; answers to a
   * crashed incarnation are dropped.
   */
  rpc<T>(from: NodeId, to: NodeId, timeoutMs: number, serve: (respond: (value: T) => void) => void, done: (outcome: RpcOutcome<T>) => void): void {
    const scheduler = this.cluster.scheduler;
    const network = this.cluster.network;
    const fromIncarnation = this.cluster.incarnation(from);
    this.rpcStats.sent += 1;
    let settled = false;
    const settle = (outcome: RpcOutcome<T>): void => {
      if (settled) return;
      settled = true;
      clock.clearTimer(timer);
      done(outcome);
    };
    const clock = scheduler.clockFor(from);
    const timer = clock.setTimer(Math.max(1, timeoutMs), () => settle({ ok: false, reason: 'deadline' }));
    // A stream over TCP does not lose a message on a lossy link: it resends it, late. Only a cut link loses it.
    const latency = (): number => {
      const faults = network.getFaults();
      const resend = this.prng.chance(faults.dropProbability) ? TCP_RESEND_MS : 0;
      return faults.latencyMsBase + this.prng.float() * faults.latencyMsJitter + resend;
    };
    const lost = (a: NodeId, b: NodeId): boolean => !network.connected(a, b);
    if (network.isDown(to)) {
      scheduler.scheduleCall(scheduler.nowMs() + latency(), from, () => {
        if (this.cluster.incarnation(from) === fromIncarnation) settle({ ok: false, reason: 'unreachable' });
      }, undefined, 'rpc-refused');
      return;
    }
    if (lost(from, to)) {
      this.rpcStats.lost += 1;
      return;
    }
    scheduler.scheduleCall(scheduler.nowMs() + latency(), to, () => {
      const toIncarnation = this.cluster.incarnation(to);
      if (this.cluster.node(to) === null) return;
      let answered = false;
      serve((value) => {
        if (answered || this.cluster.incarnation(to) !== toIncarnation || this.cluster.node(to) === null) return;
        answered = true;
        if (lost(to, from)) {
          this.rpcStats.lost += 1;
          return;
        }
        scheduler.scheduleCall(scheduler.nowMs() + latency(), from, () => {
          if (this.cluster.incarnation(from) === fromIncarnation && this.cluster.node(from) !== null) settle({ ok: true, value });
        }, undefined, 'rpc-answer');
      });
    }, undefined, 'rpc');
  }

  /**
   * A client's call reaching node `id` as over a socket: refused if the node
   * is down, late if paused; if the node dies before answering, the client
   * gives up a little after its deadline.
   */
  clientCall(id: NodeId, key: ActorKey, request: ActorRequest, deadlineMs: number, requestId: string, callback: (outcome: ClientOutcome) => void, identity: Identity = SIM_ADMIN, progress: ProgressFn | null = null): void {
    const scheduler = this.cluster.scheduler;
    let settled = false;
    const settle = (outcome: ClientOutcome): void => {
      if (settled) return;
      settled = true;
      scheduler.cancel(timeout);
      callback(outcome);
    };
    const timeout = scheduler.schedule(deadlineMs + CLIENT_GRACE_MS, () => settle({ delivered: false, reason: 'timeout' }), 'client-timeout');
    scheduler.scheduleCall(scheduler.nowMs() + 0.2, id, () => {
      const host = this.hosts.get(id);
      if (host === undefined) return settle({ delivered: false, reason: 'refused' });
      const incarnation = this.cluster.incarnation(id);
      // As the MCP endpoint does: the entry node checks the identity first, the owner again.
      const refusal = simAuthorizer.check(identity, key, request);
      if (refusal !== null) return settle({ delivered: true, response: refusal });
      host.call(key, request, { deadlineMs, requestId, identity, progress }, (response) => {
        if (this.cluster.incarnation(id) === incarnation) settle({ delivered: true, response });
      });
    }, undefined, 'client');
  }

  /** A tool's call (actors/tools.ts, as an MCP client's would be) through node `id`. */
  toolCall(id: NodeId, identity: Identity, call: ToolCall, requestId: string, callback: (outcome: ClientOutcome) => void): void {
    this.clientCall(id, call.key, call.request, call.deadlineMs, call.requestId ?? requestId, callback, identity);
  }
}


function forwardOutcome(outcome: RpcOutcome<Uint8Array>, owner: string): ForwardOutcome {
  if (outcome.ok) return { ok: true, response: responseFromWire(fromBinary(ActorResponseSchema, outcome.value)) as ActorResponse };
  return { ok: false, reason: outcome.reason, detail: outcome.reason === 'unreachable' ? `node ${owner} refused the connection` : `node ${owner} did not answer in time` };
}
