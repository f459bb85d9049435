// The actor layer of a real node: the ActorHost with its real components — the
// replicated store (Raft, forwarded to the leader in batches when this node
// follows), the gRPC forwarder, the process and Docker runtimes, the
// host-checked port allocator, the durable log store and the local I/O next
// to workloads — plus the Actors service handlers and the hooks the node feeds.
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { callbackRuntime, storeOutcome, type ActorStore, type StoreWriteOutcome } from '../actors/components.ts';
import { ActorClients, GrpcForwarder, type ActorsServiceHandlers, type FollowedEvent } from '../actors/forwarder-grpc.ts';
import { ActorHost, hostOptionsDefault, type Authorizer, type HostOptions } from '../actors/host.ts';
import { localProjectIo } from '../actors/io-local.ts';
import { LogStore } from '../actors/logs.ts';
import { parseActorKey, projectActorKey, type Identity } from '../actors/messages.ts';
import { hostCheckedAllocator } from '../actors/ports.ts';
import { CompositeRuntime } from '../actors/runtime-composite.ts';
import { DockerRuntime } from '../actors/runtime-docker.ts';
import { ProcessRuntime } from '../actors/runtime-process.ts';
import { decodeCommand, encodeCommand, validateCommand, type KvCommand } from '../consensus/kv-state-machine.ts';
import type { DebughostNode } from './node.ts';
import { systemClock } from './system.ts';

export interface ActorNodeOptions {
  readonly portRangeStart: number;
  readonly portRangeEnd: number;
  /** 'auto': use Docker when an engine answers; 'off': processes only. */
  readonly docker: 'auto' | 'off';
  readonly dockerSocket?: string;
  /** Overrides of the host's timing (tests shorten them). */
  readonly host?: Partial<HostOptions>;
}

const PROPOSE_DEADLINE_MS = 5_000;

export class NodeActors {
  readonly host: ActorHost;
  readonly forwarder: GrpcForwarder;
  readonly store: ActorStore;
  #closed = false;

  private constructor(
    private readonly node: DebughostNode,
    readonly logs: LogStore,
    readonly runtime: CompositeRuntime,
    readonly clients: ActorClients,
    authorizer: Authorizer,
    options: ActorNodeOptions,
  ) {
    this.forwarder = new GrpcForwarder(node.id, clients, (id) => node.addressOf(id));
    const raft = () => {
      const current = node.raft;
      if (current === null) throw new Error('the actor layer started before Raft');
      return current;
    };
    this.store = {
      view: () => {
        const kv = raft().machine.kv;
        return { get: (key) => kv.get(key), range: (start, end, limit) => kv.range(start, end, limit), revision: kv.revision };
      },
      propose: (command, callback) => this.propose(command, callback),
    };
    this.host = new ActorHost(
      {
        clock: systemClock,
        store: this.store,
        raft: { isLeader: () => raft().raft.role === 'leader', leader: () => raft().raft.leader },
        runtime: callbackRuntime(runtime),
        ports: hostCheckedAllocator({ rangeStart: options.portRangeStart, rangeEnd: options.portRangeEnd }),
        forwarder: this.forwarder,
        io: localProjectIo(logs),
        authorizer,
      },
      { ...hostOptionsDefault(node.id), ...options.host },
      (key, detail) => node.options.log.error({ key, detail }, 'a stored record does not fit its schema; it is ignored'),
    );
    this.host.actors.onFailure = (key, error) => node.options.log.error({ key, error: (error as Error)?.message ?? String(error) }, 'an actor failed; it restarts after a back-off');
  }

  /** Open the log store and runtimes (killing what a previous run of this node left), then start the host. */
  static async open(node: DebughostNode, options: ActorNodeOptions, authorizer: Authorizer, peerMetadata: () => grpc.Metadata): Promise<NodeActors> {
    const dataDir = node.options.dataDir;
    const wallNowMs = (): number => Date.now();
    const logs = new LogStore({ dir: join(dataDir, 'logs'), wallNowMs });
    const processRuntime = await ProcessRuntime.open({ node: node.id, stateDir: join(dataDir, 'runtime', 'process'), logs, clock: systemClock, wallNowMs });
    let docker: DockerRuntime | null = null;
    let dockerMissing = 'Docker is turned off on this node (--docker off)';
    if (options.docker === 'auto') {
      try {
        docker = await DockerRuntime.open({ node: node.id, logs, clock: systemClock, wallNowMs, ...(options.dockerSocket === undefined ? {} : { socketPath: options.dockerSocket }) });
      } catch (error) {
        dockerMissing = (error as Error).message;
        node.options.log.info({ reason: dockerMissing }, 'no Docker engine: projects with an image will be refused, commands run as processes');
      }
    }
    const runtime = new CompositeRuntime(processRuntime, docker, dockerMissing);
    const actors = new NodeActors(node, logs, runtime, new ActorClients(node.credentials, peerMetadata), authorizer, options);
    actors.host.start();
    return actors;
  }

  private propose(command: KvCommand, callback: (outcome: StoreWriteOutcome) => void): void {
    const raft = this.node.raft;
    if (raft === null) return callback({ ok: false, reason: 'unavailable', detail: 'Raft has not started on this node' });
    const valid = validateCommand(command);
    if (!valid.ok) return callback({ ok: false, reason: 'unavailable', detail: valid.message });
    if (raft.raft.role === 'leader') {
      raft.propose(encodeCommand(valid.command), (outcome) => callback(storeOutcome(outcome)));
      return;
    }
    const leader = raft.raft.leader;
    const address = leader === null ? null : this.node.addressOf(leader);
    if (address === null) return callback({ ok: false, reason: 'unavailable', detail: 'no leader is known yet (an election is under way)' });
    this.forwarder.propose(address, encodeCommand(valid.command), PROPOSE_DEADLINE_MS, callback);
  }

  /** New log lines and events of `key`'s project on this node, as they happen. */
  followHere(key: string, onEvent: (event: FollowedEvent) => void): () => void {
    const parsed = parseActorKey(key);
    if (parsed === null || parsed.kind !== 'project') return () => {};
    const { tenant, name } = parsed;
    const stopLines = this.runtime.subscribe((event) => {
      if (event.type !== 'log' || event.project.tenant !== tenant || event.project.name !== name) return;
      onEvent({ type: 'line', line: { seq: 0, timeMs: event.timeMs, stream: event.stream, line: event.line } });
    });
    const stopEvents = this.host.onEvent((ref, event) => {
      if (ref.tenant === tenant && ref.name === name) onEvent({ type: 'event', event });
    });
    return () => {
      stopLines();
      stopEvents();
    };
  }

  /** Follow a project wherever it runs: here, or on its owner over Actors.Follow. */
  follow(tenant: string, name: string, identity: Identity, onEvent: (event: FollowedEvent) => void): () => void {
    const key = projectActorKey(tenant, name);
    const owner = this.host.placement().owner(key);
    if (owner === null) return () => {};
    if (owner === this.node.id) return this.followHere(key, onEvent);
    return this.forwarder.follow(owner, key, identity, onEvent, () => {});
  }

  /** Graceful shutdown: hand every actor to the others, waiting at most `timeoutMs`. */
  drain(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.host.drain(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Stop the host and every workload of this node, and flush the logs. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.host.stop();
    await this.runtime.close();
    await this.logs.close();
    this.clients.close();
  }
}

/**
 * The Actors gRPC service of a node, registered before the actor layer exists
 * (it opens after Raft starts): until then every call answers "starting".
 */
export function actorsServiceHandlers(node: DebughostNode, peerOf: ActorsServiceHandlers['peerOf'], mayFollow: (identity: Identity, key: string) => boolean): ActorsServiceHandlers {
  const starting = `node ${node.id} is still starting its actor layer; retry shortly`;
  return {
    peerOf,
    call: (call, onProgress, callback) => {
      if (node.actors === null) return callback({ type: 'error', name: 'UnavailableError', message: starting });
      node.actors.host.serveForwarded(call, onProgress, callback);
    },
    follow: (key, identity, onEvent) => {
      if (!mayFollow(identity, key)) return null;
      return node.actors === null ? () => {} : node.actors.followHere(key, onEvent);
    },
    decode: (bytes) => decodeCommand(bytes),
    propose: (command, callback) => {
      const raft = node.raft;
      if (raft === null || raft.raft.role !== 'leader') {
        return callback({ ok: false, reason: 'unavailable', detail: `node ${node.id} is not the leader (leader ${raft?.raft.leader ?? 'unknown'})` });
      }
      raft.propose(encodeCommand(command), (outcome) => callback(storeOutcome(outcome)));
    },
  };
}
