// The actor layer of a real node: the ActorHost with its real components — the
// replicated store (Raft, forwarded to the leader in batches when this node
// follows), the gRPC forwarder, the process and Docker runtimes, the
// host-checked port allocator, the durable log store and the local I/O next
// to workloads — plus the Actors service handlers and the hooks the node feeds.
import { chmodSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { CgroupMode } from '../actors/cgroups.ts';
import { callbackRuntime, storeOutcome, type ActorStore, type StoreWriteOutcome } from '../actors/components.ts';
import { ActorClients, GrpcForwarder, type ActorsServiceHandlers, type FollowedEvent } from '../actors/forwarder-grpc.ts';
import { ActorHost, hostOptionsDefault, type Authorizer, type HostOptions } from '../actors/host.ts';
import { localProjectIo } from '../actors/io-local.ts';
import { fenceTiming, startLeasePublishing, type FenceTiming } from '../actors/lease-fence.ts';
import { LogStore } from '../actors/logs.ts';
import { parseActorKey, projectActorKey, PROJECTS_PREFIX, type Identity } from '../actors/messages.ts';
import { hostCheckedAllocator } from '../actors/ports.ts';
import { CompositeRuntime } from '../actors/runtime-composite.ts';
import type { PruneOutcome } from '../actors/docker-images.ts';
import { DockerRuntime } from '../actors/runtime-docker.ts';
import { RuntimeError } from '../actors/runtime.ts';
import { ProcessRuntime } from '../actors/runtime-process.ts';
import type { WorkloadUserMode } from '../actors/workload-user.ts';
import { decodeCommand, encodeCommand, prefixEnd, validateCommand, type KvCommand } from '../consensus/kv-state-machine.ts';
import { actorMetricsView } from './actor-metrics-view.ts';
import type { DebughostNode } from './node.ts';
import { systemClock, systemRandom } from './system.ts';

export interface ActorNodeOptions {
  readonly portRangeStart: number;
  readonly portRangeEnd: number;
  /** 'auto': use Docker when an engine answers; 'off': processes only. */
  readonly docker: 'auto' | 'off';
  readonly dockerSocket?: string;
  /** Overrides of the host's timing (tests shorten them). */
  readonly host?: Partial<HostOptions>;
  /** Which cgroup hierarchies track process workloads (default auto; off: process groups). */
  readonly cgroups?: CgroupMode;
  /** Whom process workloads run as (default auto: a user per tenant when the node is root). */
  readonly workloadUsers?: 'auto' | WorkloadUserMode;
  /** The images this node lists, counts and prunes: a Docker reference pattern (`team/*`); default all of the engine's. */
  readonly imageScope?: string;
  /** The node's images must fit in this many bytes: pruned to it every IMAGE_PRUNE_INTERVAL_MS; null: no budget. */
  readonly imageBudgetBytes?: number | null;
  /** Images made sure of (loaded from `prewarmDir` tarballs when missing) before the node takes projects. */
  readonly prewarm?: readonly string[];
  readonly prewarmDir?: string;
}

/** How often a node with an image budget prunes down to it (a start also leaves images behind). */
export const IMAGE_PRUNE_INTERVAL_MS = 10 * 60_000;

/** Tenants' homes and default project directories, inside the data dir. */
const WORK_DIR = 'work';

const PROPOSE_DEADLINE_MS = 5_000;

export class NodeActors {
  readonly host: ActorHost;
  readonly forwarder: GrpcForwarder;
  readonly store: ActorStore;
  #closed = false;
  #stopHeartbeats: (() => void) | null = null;
  #imagePrunes: NodeJS.Timeout | null = null;
  /** The Docker side of the runtime, for image_list and image_prune; null without an engine. */
  docker: DockerRuntime | null = null;
  /** --image-budget-mb in bytes; null: no budget. */
  imageBudgetBytes: number | null = null;

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
        random: systemRandom,
        store: this.store,
        raft: { isLeader: () => raft().raft.role === 'leader', leader: () => raft().raft.leader },
        runtime: callbackRuntime(runtime),
        ports: hostCheckedAllocator({ rangeStart: options.portRangeStart, rangeEnd: options.portRangeEnd }),
        forwarder: {
          forward: (owner, call, onProgress, callback) => {
            node.metrics.actors.forwarded('sent');
            this.forwarder.forward(owner, call, onProgress, callback);
          },
        },
        io: localProjectIo(logs),
        authorizer,
      },
      { ...hostOptionsDefault(node.id), ...options.host },
      (key, detail) => node.options.log.error({ key, detail }, 'a stored record does not fit its schema; it is ignored'),
    );
    this.host.actors.onFailure = (key, error) => {
      node.metrics.actors.actorFailed();
      node.options.log.error({ key, error: (error as Error)?.message ?? String(error) }, 'an actor failed; it restarts after a back-off');
    };
  }

  /** Open the log store and runtimes (killing what a previous run of this node left), then start the host. */
  static async open(node: DebughostNode, options: ActorNodeOptions, authorizer: Authorizer, peerMetadata: () => grpc.Metadata): Promise<NodeActors> {
    const dataDir = node.options.dataDir;
    const wallNowMs = (): number => Date.now();
    const hostOptions = { ...hostOptionsDefault(node.id), ...options.host };
    const fence = fenceTiming(hostOptions.leaseMs, hostOptions.suspectMs);
    if (process.getuid?.() === 0 && options.workloadUsers !== 'node') protectDataDir(dataDir);
    const logs = new LogStore({ dir: join(dataDir, 'logs'), wallNowMs });
    const log = node.options.log;
    const processRuntime = await ProcessRuntime.open({
      node: node.id,
      stateDir: join(dataDir, 'runtime', 'process'),
      workRoot: join(dataDir, WORK_DIR),
      logs,
      clock: systemClock,
      wallNowMs,
      cgroups: options.cgroups ?? 'auto',
      users: options.workloadUsers ?? 'auto',
      fenceKillAfterMs: fence.killAfterMs,
      fenceHeartbeatMs: fence.heartbeatMs,
      fenceValidForMs: fence.validForMs,
      log: (level, message) => (level === 'warn' ? log.warn(message) : log.info(message)),
    });
    let docker: DockerRuntime | null = null;
    let dockerMissing = 'Docker is turned off on this node (--docker off)';
    if (options.docker === 'auto') {
      try {
        docker = await DockerRuntime.open({
          node: node.id,
          stateDir: join(dataDir, 'runtime', 'docker'),
          logs,
          clock: systemClock,
          wallNowMs,
          ...(options.dockerSocket === undefined ? {} : { socketPath: options.dockerSocket }),
          ...(options.imageScope === undefined ? {} : { imageReference: options.imageScope }),
        });
      } catch (error) {
        dockerMissing = (error as Error).message;
        node.options.log.info({ reason: dockerMissing }, 'no Docker engine: projects with an image will be refused, commands run as processes');
      }
    }
    if ((options.prewarm ?? []).length > 0) {
      if (docker === null) node.options.log.warn({ images: options.prewarm, reason: dockerMissing }, 'cannot prewarm images without a Docker engine');
      else {
        // Before the node takes projects: a start on this node then finds its image here.
        for (const result of await docker.prewarm(options.prewarm ?? [], options.prewarmDir === undefined ? {} : { tarballDir: options.prewarmDir })) {
          if (result.outcome === 'missing' || result.outcome === 'failed') node.options.log.warn({ image: result.image, detail: result.detail }, `prewarm: image ${result.outcome}`);
          else node.options.log.info({ image: result.image, outcome: result.outcome }, 'prewarm');
        }
      }
    }
    const runtime = new CompositeRuntime(processRuntime, docker, dockerMissing);
    const actors = new NodeActors(node, logs, runtime, new ActorClients(node.credentials, peerMetadata), authorizer, options);
    actors.docker = docker;
    actors.imageBudgetBytes = options.imageBudgetBytes ?? null;
    actors.host.start();
    if (docker !== null && actors.imageBudgetBytes !== null) actors.#startImagePrunes();
    node.metrics.actors.attach(actorMetricsView(node.id, actors.host, actors.store, runtime));
    actors.#startHeartbeats(fence);
    return actors;
  }

  /**
   * Tell the runtime until when this node holds its owner lease; a thread of this process beats
   * its watchdog (outside this event loop) until then, which freezes and then kills the workloads
   * once the beats stop: lease lost, node paused or killed. A busy event loop alone does not stop
   * them (actors/lease-fence.ts).
   */
  #startHeartbeats(fence: FenceTiming): void {
    this.#stopHeartbeats = startLeasePublishing(systemClock, fence, () => this.host.leaseValidUntilMs(), (untilMs) => this.runtime.leaseValidUntil(untilMs));
  }

  /** Every image a desired-running project of the cluster names: never pruned, on any node. */
  imagesInUse(): string[] {
    const images = new Set<string>();
    for (const entry of this.store.view().range(PROJECTS_PREFIX, prefixEnd(PROJECTS_PREFIX))) {
      const record = this.host.records.project(entry);
      if (record !== null && record.desired === 'running' && typeof record.spec.image === 'string' && record.spec.image !== '') images.add(record.spec.image);
    }
    return [...images];
  }

  /** Prune this node's images down to `budgetBytes`, keeping every image a desired-running project needs. */
  async pruneImages(budgetBytes: number): Promise<PruneOutcome> {
    if (this.docker === null) throw new RuntimeError('RuntimeUnavailableError', `node ${this.node.id} has no Docker engine (started with --docker off, or none answered)`);
    return this.docker.pruneImages({ budgetBytes, keep: this.imagesInUse() });
  }

  #startImagePrunes(): void {
    const budget = this.imageBudgetBytes;
    if (budget === null) return;
    const prune = (): void => {
      void this.pruneImages(budget).then(
        (outcome) => {
          if (outcome.removed.length > 0 || !outcome.fits) this.node.options.log.info({ removed: outcome.removed.length, freedBytes: outcome.freedBytes, totalBytesAfter: outcome.totalBytesAfter, fits: outcome.fits }, 'image budget: pruned');
        },
        (error: Error) => this.node.options.log.warn({ error: error.message }, 'image budget: prune failed'),
      );
    };
    prune();
    this.#imagePrunes = setInterval(prune, IMAGE_PRUNE_INTERVAL_MS);
    this.#imagePrunes.unref();
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
    this.node.metrics.actors.attach(null);
    this.#stopHeartbeats?.();
    if (this.#imagePrunes !== null) clearInterval(this.#imagePrunes);
    this.host.stop();
    await this.runtime.close();
    await this.logs.close();
    this.clients.close();
  }
}

/**
 * A root node runs workloads as per-tenant users, who must reach their homes in <dataDir>/work but
 * nothing else of the node's: the data dir becomes passable but not listable (0711) and every
 * other entry in it private to the node (Raft log, logs, tokens, runtime state).
 */
function protectDataDir(dataDir: string): void {
  chmodSync(dataDir, 0o711);
  // Made here (private) before the log store and the runtime make them with the default mode.
  for (const dir of ['logs', 'runtime']) mkdirSync(join(dataDir, dir), { recursive: true, mode: 0o700 });
  for (const entry of readdirSync(dataDir)) {
    if (entry === WORK_DIR) continue;
    const path = join(dataDir, entry);
    const mode = statSync(path).mode & 0o7777;
    if ((mode & 0o077) !== 0) chmodSync(path, mode & ~0o077);
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
      node.metrics.actors.forwarded('served');
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
