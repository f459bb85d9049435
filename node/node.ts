// The composition root of one debughost node: LevelDB storage, the Raft driver
// with the KV state machine, the gRPC server (Raft peers, KV, Admin), the HTTP
// server (health, metrics, MCP), bootstrap from the seed list or join through it.
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { KvMachine, memberKey } from '../consensus/kv-machine.ts';
import type { KvResult } from '../consensus/kv-state-machine.ts';
import { RaftNode, type WriteOutcome } from '../consensus/raft-node.ts';
import { defaultRaftConfig } from '../consensus/raft.ts';
import { bootstrapState, emptyPersistedState, type PersistedState } from '../consensus/storage.ts';
import type { WalStorage } from '../consensus/storage-wal.ts';
import { QUOTA_BYTES_DEFAULT, QuotaAlarm } from './quota-alarm.ts';
import { GrpcTransport, MESSAGE_BYTES_MAX } from '../consensus/transport-grpc.ts';
import type { ConfChange, LogIndex, NodeId } from '../consensus/types.ts';
import { systemClock, systemRandom } from './system.ts';
import { IDENTITY_FILE, openRaftStorage, persistSynced, writeIdentity } from './data-dir.ts';
import { forcedState } from './snapshot-rebuild.ts';
import { PeerClients } from './peer-clients.ts';
import type { Logger } from './log.ts';
import { NodeMetrics } from './metrics.ts';
import { WatchHub, watchedKvMachineFactory } from './watch-hub.ts';
import { NodeActors, type ActorNodeOptions } from './node-actors.ts';
import type { NodeAuth } from './auth.ts';
import { systemValueError } from '../actors/records.ts';
import type { Message } from '../consensus/types.ts';
import type { ActorStore } from '../actors/components.ts';
import { NodeTrust, TrustStartError } from './trust.ts';

export interface NodeOptions {
  readonly id: string;
  /** host:port the gRPC server binds and peers dial. */
  readonly grpcAddress: string;
  /** host:port of the HTTP server (MCP, health, metrics). */
  readonly httpAddress: string;
  readonly seeds: readonly string[];
  readonly dataDir: string;
  readonly tickMs: number;
  readonly fsync: boolean;
  readonly tls: TlsFiles | null;
  readonly log: Logger;
  /** How long to wait for the seeds to answer before giving up. */
  readonly seedWaitMs: number;
  /** Snapshot and compact the log after this many applied entries. */
  readonly snapshotEntries: number;
  /** Bytes of each preallocated WAL segment; default WAL_SEGMENT_BYTES_DEFAULT. */
  readonly walSegmentBytes?: number;
  /** Most bytes of replicated state before the NOSPACE alarm (the leader's value counts); default QUOTA_BYTES_DEFAULT. */
  readonly quotaBytes?: number;
  /** TEST-ONLY fault plant for the chaos suite: acknowledge writes before they commit (loses acknowledged writes). */
  readonly unsafeAckBeforeCommit?: boolean;
  /** The actor layer (ports, Docker, host timing); defaults when absent. */
  readonly actors?: ActorNodeOptions;
  /** MCP and the gRPC client plane without tokens: every client acts as admin (loopback only, refused by cli-node.ts elsewhere). */
  readonly insecureNoAuth: boolean;
  /** The cluster secret a founder starts from (or a node its operator handed it to); copied into the data dir. */
  readonly clusterSecretFile?: string | null;
  /** The first admin token (made there if missing); its record enters the replicated state at bootstrap. */
  readonly adminTokenFile?: string | null;
  /** An admin-issued join token: how a new node without the secret is admitted. */
  readonly joinToken?: string | null;
  /** Redis for cluster-wide rate limits; node-local limits without it. */
  readonly redisUrl?: string | null;
  /** Who may call this node and as whom; absent: the node's own (NodeTrust.nodeAuth), which honours insecureNoAuth. */
  readonly auth?: NodeAuth;
  /** Disaster recovery: restart this data dir as a new one-member cluster (see forcedState). */
  readonly forceNewCluster?: boolean;
}

/** What a node runs projects with unless told otherwise. */
export const ACTOR_OPTIONS_DEFAULT: ActorNodeOptions = { portRangeStart: 20_000, portRangeEnd: 29_999, docker: 'auto' };
/** Longest a graceful stop waits for this node's projects to move to other nodes. */
const DRAIN_MS_MAX = 5_000;
/** Distinct keys whose refused records are logged; past it only the metric counts. */
const REFUSED_KEYS_LOGGED_MAX = 1000;
/** Longest a request waits for its node to catch up before an unknown token is refused (a heartbeat round takes ms). */
const CATCH_UP_MS_MAX = 1_000;

export interface TlsFiles {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** Election timeout is electionTicks..2·electionTicks ticks: with 40 ms ticks, 400–800 ms. */
export const TICK_MS_DEFAULT = 40;
/** 10 ticks: a follower that hears no leader for 400–800 ms (at 40 ms ticks) campaigns; actors/liveness.ts's leaseMs + this < suspectMs rests on it. */
const ELECTION_TICKS = 10;
/**
 * 3 ticks (120 ms): the leader's heartbeats are about half of an idle node's CPU (3 nodes at 40 ms ticks:
 * heartbeats every 80 ms cost about 90 ms/s together, every 200 ms about 50 ms/s). Safety does not depend
 * on it; liveness needs several heartbeats within the shortest election timeout (400 ms: 3.3 of them, so a
 * follower campaigns only when a heartbeat is over 280 ms late, against 320 ms at 80 ms), and the owner
 * lease (2 s) and failure detector (3 s) far more than one heartbeat interval.
 */
const HEARTBEAT_TICKS = 3;

/** A failure the user can act on: its message is the one line they see. */
export class NodeStartError extends Error {
  override readonly name = 'NodeStartError';
}

export type KvNode = RaftNode<KvResult, KvMachine>;

/**
 * The Raft driver, counting every proposal's outcome for /metrics, and
 * refusing new proposals while this node's data disk is full (its log could
 * not take them; Raft's own traffic still has the current WAL segment).
 */
class MeteredRaftNode extends RaftNode<KvResult, KvMachine> {
  metrics: NodeMetrics | null = null;
  storage: WalStorage | null = null;

  override propose(data: Uint8Array, callback: (outcome: WriteOutcome<KvResult>) => void): void {
    const full = this.storage?.full ?? null;
    if (full !== null) return this.refuse('command', full.message, callback);
    super.propose(data, (outcome) => {
      this.metrics?.proposal('command', outcome);
      callback(outcome);
    });
  }

  override proposeConfChange(change: ConfChange, callback: (outcome: WriteOutcome<KvResult>) => void): void {
    const full = this.storage?.full ?? null;
    if (full !== null) return this.refuse('membership', full.message, callback);
    super.proposeConfChange(change, (outcome) => {
      this.metrics?.proposal('membership', outcome);
      callback(outcome);
    });
  }

  private refuse(kind: 'command' | 'membership', detail: string, callback: (outcome: WriteOutcome<KvResult>) => void): void {
    const outcome: WriteOutcome<KvResult> = { ok: false, reason: 'rejected', detail: `node ${this.id}: ${detail}` };
    this.metrics?.proposal(kind, outcome);
    callback(outcome);
  }
}

export class DebughostNode {
  raft: KvNode | null = null;
  clusterId = '';
  private transport: GrpcTransport | null = null;
  private promoteTimer: NodeJS.Timeout | null = null;
  /** The learner whose promotion is in flight (one change at a time). */
  private promoting: string | null = null;
  /**
   * Addresses learnt outside the log (from the join response). A joining node
   * has applied nothing yet, so without them it could not answer the leader.
   */
  private readonly joinAddresses = new Map<string, string>();
  private removalCheckRunning = false;
  private removalCheckedAtMs = 0;
  /** Seen itself in the configuration: from then on, absence means it was removed. */
  private everMember = false;
  private stopping = false;
  readonly peers: PeerClients;
  /** The applied state and proposals through the leader, for the trust services (proposals need the actor layer). */
  readonly store: Pick<ActorStore, 'view' | 'propose'>;
  /** Events of applied writes, for KV.Watch. */
  readonly watches = new WatchHub();
  /** Called after every persisted ready: leader, term and role changes show up here first (the dashboard listens). */
  readonly raftListeners = new Set<() => void>();
  /** Raises and clears the NOSPACE alarm when this node leads. */
  private readonly quota: QuotaAlarm;
  /** Keys whose refused values were logged (each once; the metric counts them all). */
  private readonly refusedKeysLogged = new Set<string>();
  /** The ReadIndex round catchUp() callers share, while one runs. */
  private catchingUp: Promise<void> | null = null;
  /** Called once when this node learns it was removed from the cluster. */
  onRemoved: (() => void) | null = null;
  /** The actor layer, once Raft runs. */
  actors: NodeActors | null = null;
  readonly auth: NodeAuth;

  /**
   * The apply-time check of values under system prefixes (actors/records.ts),
   * counted and logged once per key: a refused record is a bug or an attack
   * somewhere upstream, worth one line, not one per replay.
   */
  private checkSystemValue(key: string, value: string): string | null {
    const why = systemValueError(key, value);
    if (why === null) return null;
    this.metrics.recordRefused();
    if (!this.refusedKeysLogged.has(key) && this.refusedKeysLogged.size < REFUSED_KEYS_LOGGED_MAX) {
      this.refusedKeysLogged.add(key);
      this.options.log.warn({ key, why }, 'refused a write under a system prefix at apply: the value does not fit its schema');
    }
    return why;
  }

  private constructor(
    readonly options: NodeOptions,
    readonly storage: WalStorage,
    /** Tokens, peer authentication, audit, rate limits (node/trust.ts). */
    readonly trust: NodeTrust,
    readonly metrics: NodeMetrics,
  ) {
    this.peers = new PeerClients(trust.peerCredentials);
    this.quota = new QuotaAlarm(options.quotaBytes ?? QUOTA_BYTES_DEFAULT, metrics, options.log);
    this.store = {
      view: () => {
        const kv = this.raft?.machine.kv ?? null;
        return kv === null ? { get: () => null, range: () => [], revision: 0 } : { get: (key) => kv.get(key), range: (start, end, limit) => kv.range(start, end, limit), revision: kv.revision };
      },
      propose: (command, callback) => {
        if (this.actors === null) return callback({ ok: false, reason: 'unavailable', detail: `node ${this.id} is still starting` });
        this.actors.store.propose(command, callback);
      },
    };
    this.auth = options.auth ?? trust.nodeAuth();
  }

  /** Channel credentials for calls to peers: TLS, or plaintext carrying this node's peer proof. */
  get credentials(): grpc.ChannelCredentials {
    return this.trust.peerCredentials;
  }

  /**
   * May `id` use the peer plane here? It must be in this node's configuration
   * (or, while a joiner has applied nothing, in its join answer). A node that
   * knows no configuration yet (still waiting for its seeds) has only the
   * credential to go by.
   */
  isKnownMember(id: string): boolean {
    const raft = this.raft;
    if (raft === null) return true;
    const conf = raft.raft.confState();
    if (conf.voters.includes(id as NodeId) || conf.learners.includes(id as NodeId) || this.joinAddresses.has(id)) return true;
    return conf.voters.length === 0 && conf.learners.length === 0 && this.joinAddresses.size === 0;
  }

  get id(): NodeId {
    return this.options.id as NodeId;
  }

  static async open(options: NodeOptions): Promise<DebughostNode> {
    // Checked before anything is created: a mistyped --data-dir must not become a new empty one.
    if (options.forceNewCluster === true && (await readIdentity(options.dataDir)) === null) {
      throw new NodeStartError(`--force-new-cluster needs the data dir of a former member, and ${options.dataDir} holds none; drop the flag to bootstrap or join`);
    }
    await mkdir(options.dataDir, { recursive: true });
    // Checked before LevelDB opens: opening runs its recovery, which rewrites files.
    const identity = await readIdentity(options.dataDir);
    if (identity !== null && identity.nodeId !== options.id) {
      throw new NodeStartError(
        `data dir ${options.dataDir} belongs to node '${identity.nodeId}' of cluster ${identity.clusterId}, not '${options.id}'; start with --id ${identity.nodeId} or use another --data-dir`,
      );
    }
    // The gauges read the node once it exists; the storage feeds the fsync histogram from the first write.
    const view = { node: null as DebughostNode | null };
    const metrics = new NodeMetrics(options.id, {
      status: () => view.node?.raft?.raft.status() ?? null,
      appliedIndex: () => view.node?.raft?.machine.appliedIndex ?? 0,
      droppedMessages: () => view.node?.transport?.droppedTotal ?? 0,
      watchers: () => view.node?.watches.watcherCount ?? 0,
      recordsInvalid: () => view.node?.actors?.host.records.errors.invalid ?? 0,
    });
    metrics.space.watch(options.dataDir);
    const storage = await openRaftStorage(options.dataDir, {
      fsync: options.fsync,
      ...(options.walSegmentBytes === undefined ? {} : { segmentBytes: options.walSegmentBytes }),
      onSync: (ms, entries) => metrics.sync(ms, entries),
      onFull: (error) => {
        metrics.diskFull(error !== null);
        if (error !== null) options.log.error({ error: error.message }, 'the data disk is full; refusing writes until space is freed');
        else options.log.info('the data disk has room again; writes resume');
      },
    });
    const meta = storage.readMeta();
    if (meta !== null && meta.nodeId !== options.id) {
      await storage.close();
      throw new NodeStartError(
        `data dir ${options.dataDir} belongs to node '${meta.nodeId}' of cluster ${meta.clusterId}, not '${options.id}'; start with --id ${meta.nodeId} or use another --data-dir`,
      );
    }
    let trust: NodeTrust;
    try {
      trust = await NodeTrust.open(
        {
          nodeId: options.id,
          dataDir: options.dataDir,
          tls: options.tls,
          insecureNoAuth: options.insecureNoAuth,
          clusterSecretFile: options.clusterSecretFile ?? null,
          adminTokenFile: options.adminTokenFile ?? null,
          joinToken: options.joinToken ?? null,
          redisUrl: options.redisUrl ?? null,
        },
        {
          log: options.log,
          clock: systemClock,
          wallNowMs: () => Date.now(),
          // The node exists by the time anything calls these: they run on requests and after start.
          store: {
            view: () => view.node?.store.view() ?? { get: () => null, range: () => [], revision: 0 },
            propose: (command, callback) => (view.node === null ? callback({ ok: false, reason: 'unavailable', detail: 'the node is starting' }) : view.node.store.propose(command, callback)),
          },
          isMember: (id) => view.node?.isKnownMember(id) ?? true,
          clusterId: () => view.node?.clusterId ?? '',
          onRefused: (plane, reason) => metrics.authRefused(plane, reason),
          catchUp: () => view.node?.catchUp() ?? Promise.resolve(),
        },
      );
    } catch (error) {
      await storage.close();
      if (error instanceof TrustStartError) throw new NodeStartError(error.message);
      throw error;
    }
    const node = new DebughostNode(options, storage, trust, metrics);
    view.node = node;
    if (meta !== null) node.clusterId = meta.clusterId;
    return node;
  }

  /** Start Raft: from disk on a restart, else by bootstrapping with the seeds or joining through them. */
  async start(signal: AbortSignal): Promise<void> {
    const meta = this.storage.readMeta();
    if (meta !== null && this.options.forceNewCluster === true) {
      await this.forceNewCluster(meta.clusterId);
      return;
    }
    const plaintext = this.options.tls === null;
    if (meta !== null) {
      if (plaintext && !this.trust.hasClusterSecret) {
        throw new NodeStartError(`${this.options.dataDir} holds no cluster secret, so the other members would refuse this node; give the cluster's secret with --cluster-secret-file FILE (any member's data dir has it as cluster-secret)`);
      }
      this.options.log.info({ clusterId: meta.clusterId }, 'restarting from data dir');
      this.startRaft(this.storage.load());
      return;
    }
    const founding = this.options.seeds.includes(this.options.grpcAddress);
    const others = this.options.seeds.filter((seed) => seed !== this.options.grpcAddress);
    if (founding) {
      // Every founding member computes the same configuration and cluster id
      // from the seeds' identities, whichever of them starts first.
      const identities = await this.waitForSeeds(others, signal);
      const members = [{ id: this.options.id, address: this.options.grpcAddress }, ...identities];
      const clusterId = foundingClusterId(members);
      const other = identities.find((identity) => identity.clusterId !== '' && identity.clusterId !== clusterId);
      if (other === undefined) {
        this.checkFounderCredentials();
        await this.bootstrap(members, clusterId);
        return;
      }
      this.options.log.info({ clusterId: other.clusterId }, 'the seeds belong to an existing cluster; joining it');
    }
    await this.join(others, signal);
  }

  /** A founder needs the secret its peers share, and (unless MCP runs without auth) the first admin token. */
  private checkFounderCredentials(): void {
    if (this.options.tls === null && !this.trust.hasClusterSecret) {
      throw new NodeStartError(
        'a founding node needs the cluster secret every founder shares: --cluster-secret-file FILE (debughost init DIR makes it and an admin token), or mutual TLS with node certificates',
      );
    }
    if (!this.trust.hasBootstrapToken && !this.options.insecureNoAuth) {
      throw new NodeStartError('a founding node needs --admin-token-file FILE (the first admin token; made there if missing), or --insecure-no-auth on loopback');
    }
  }

  private async writeIdentity(): Promise<void> {
    await writeIdentity(this.storage, this.options.dataDir, { clusterId: this.clusterId, nodeId: this.options.id });
  }

  /**
   * etcd's --force-new-cluster: this node's state (its whole log applied) becomes
   * a new cluster with this node as its only member; the others rejoin it with
   * empty data dirs. Written through the storage before Raft starts.
   */
  private async forceNewCluster(oldClusterId: string): Promise<void> {
    const forced = forcedState(this.storage.load(), oldClusterId, { id: this.options.id, address: this.options.grpcAddress });
    await persistSynced(this.storage, forced.batch);
    this.clusterId = forced.clusterId;
    await this.writeIdentity();
    this.options.log.warn(
      { oldClusterId, clusterId: forced.clusterId, index: forced.index },
      'forced a new one-member cluster from this data dir; start the other nodes with empty data dirs to join it, and restart this one without --force-new-cluster',
    );
    this.startRaft(forced.persisted);
  }

  private async bootstrap(members: readonly { id: string; address: string }[], clusterId: string): Promise<void> {
    const sorted = sortMembers(members);
    const ids = new Set(sorted.map((member) => member.id));
    if (ids.size !== sorted.length) {
      throw new NodeStartError(`two seeds have the same node id (${sorted.map((m) => `${m.id}@${m.address}`).join(', ')}); give every node its own --id`);
    }
    this.clusterId = clusterId;
    // The founding entries carry each member's address, as later joins do.
    const state = bootstrapState(
      sorted.map((member) => member.id as NodeId),
      new Map(sorted.map((member) => [member.id as NodeId, member.address])),
    );
    await persistSynced(this.storage, { hardState: state.hardState, snapshot: null, dropEntriesAfterSnapshot: false, entries: state.entries });
    await this.writeIdentity();
    this.options.log.info({ clusterId: this.clusterId, members: sorted }, 'bootstrapped a new cluster from the seed list');
    // load() is what was on disk at open; the bootstrap state was written since.
    this.startRaft(state);
  }

  private async join(seeds: readonly string[], signal: AbortSignal): Promise<void> {
    if (seeds.length === 0) throw new NodeStartError('no seed to join through: give --seeds with the address of at least one running member');
    const joinToken = this.options.joinToken ?? '';
    if (this.options.tls === null && !this.trust.hasClusterSecret && joinToken === '') {
      throw new NodeStartError('joining needs --join-token TOKEN (an admin makes one with debughost token create --join) or the cluster secret (--cluster-secret-file)');
    }
    const deadline = Date.now() + this.options.seedWaitMs;
    let lastError = '';
    while (Date.now() < deadline && !signal.aborted) {
      for (const seed of seeds) {
        try {
          const status = await this.peers.status(seed, 2000);
          if (status.clusterId === '') {
            lastError = `${seed} has not formed a cluster yet`;
            continue;
          }
          const response = await this.peers.join(seed, { nodeId: this.options.id, address: this.options.grpcAddress, clusterId: status.clusterId, joinToken }, 10_000);
          if (!response.ok) {
            lastError = `${seed}: ${response.error}`;
            if (response.error.startsWith('refused:')) throw new NodeStartError(`joining through ${seed} was refused: ${response.error.slice(8).trim()}`);
            continue;
          }
          this.clusterId = status.clusterId;
          if (!this.trust.hasClusterSecret) {
            if (this.options.tls === null && response.clusterSecret.length === 0) throw new NodeStartError(`${seed} admitted this node but sent no cluster secret; it runs another version?`);
            await this.trust.adoptClusterSecret(response.clusterSecret);
          }
          for (const member of response.members) if (member.address !== '') this.joinAddresses.set(member.id, member.address);
          if (response.leaderId !== '' && response.leaderAddress !== '') this.joinAddresses.set(response.leaderId, response.leaderAddress);
          await this.writeIdentity();
          this.options.log.info({ clusterId: this.clusterId, seed }, 'joined as a learner');
          this.startRaft(emptyPersistedState());
          return;
        } catch (error) {
          if (error instanceof NodeStartError) throw error;
          lastError = `${seed}: ${(error as Error).message.split('\n')[0] ?? ''}`;
        }
      }
      await sleep(500, signal);
    }
    throw new NodeStartError(`could not join through the seeds (${seeds.join(', ')}) within ${this.options.seedWaitMs / 1000} s: ${lastError}; check the addresses and that a member runs there`);
  }

  /** Ask every other founding seed who it is; wait until all have answered. */
  private async waitForSeeds(seeds: readonly string[], signal: AbortSignal): Promise<{ id: string; address: string; clusterId: string }[]> {
    const deadline = Date.now() + this.options.seedWaitMs;
    const answers = new Map<string, { id: string; address: string; clusterId: string }>();
    let silent: string[] = [...seeds];
    while (!signal.aborted) {
      for (const seed of silent) {
        try {
          const status = await this.peers.status(seed, 1000);
          answers.set(seed, { id: status.id, address: seed, clusterId: status.clusterId });
        } catch {
          // Not up yet.
        }
      }
      silent = seeds.filter((seed) => !answers.has(seed));
      if (silent.length === 0) return seeds.map((seed) => answers.get(seed) as { id: string; address: string; clusterId: string });
      if (Date.now() > deadline) {
        throw new NodeStartError(
          `seed ${silent.join(', ')} did not answer within ${this.options.seedWaitMs / 1000} s; check the address and that debughost runs there (every founding node needs the same --seeds)`,
        );
      }
      this.options.log.info({ waitingFor: silent }, 'waiting for the other seeds');
      await sleep(300, signal);
    }
    throw new NodeStartError('stopped while waiting for the seeds');
  }

  private startRaft(persisted: PersistedState): void {
    const transport = new GrpcTransport({
      self: this.id,
      clusterId: this.clusterId,
      resolve: (id) => this.addressOf(id),
      credentials: this.credentials,
      messageBytesMax: MESSAGE_BYTES_MAX,
      queuedMessagesMax: 10_000,
      onError: (peer, error) => {
        this.metrics.peerStreamError(peer);
        this.options.log.debug({ peer, error: error.message }, 'peer stream broke');
      },
    });
    this.transport = transport;
    const raft = new MeteredRaftNode(
      {
        clock: systemClock,
        random: systemRandom,
        storage: this.storage,
        transport,
        // Proposals of one event-loop turn share one ready and one disk write.
        defer: (callback) => setImmediate(callback),
        observer: {
          // A new leader shows up in what gets persisted (its term, its first entry) on every node.
          persisted: () => {
            this.metrics.observeLeader(this.raft?.raft.leader ?? null);
            for (const listener of this.raftListeners) listener();
          },
          applied: () => {
            this.quota.check(raft);
            this.actors?.host.applied();
          },
          snapshotApplied: () => {
            this.quota.check(raft);
            this.actors?.host.applied();
          },
          fatal: (_node, error) => {
            this.options.log.fatal({ error: error.message }, 'storage failed; stopping');
            process.exitCode = 1;
            this.onRemoved?.();
          },
        },
      },
      {
        raft: {
          ...defaultRaftConfig(this.id),
          electionTicks: ELECTION_TICKS,
          heartbeatTicks: HEARTBEAT_TICKS,
          snapshotEntriesThreshold: this.options.snapshotEntries,
          snapshotTrailingEntries: Math.floor(this.options.snapshotEntries / 2),
        },
        tickMs: this.options.tickMs,
        requestTimeoutMs: 5_000,
        pendingRequestsMax: 50_000,
      },
      // Writes under the actors' keys must fit their schemas: a bad record is refused at apply, the same on every node.
      watchedKvMachineFactory(this.watches, { valueCheck: (key, value) => this.checkSystemValue(key, value) }),
      persisted,
    );
    raft.metrics = this.metrics;
    raft.storage = this.storage;
    this.raft = raft;
    if (this.options.unsafeAckBeforeCommit === true) {
      this.options.log.warn('--unsafe-ack-before-commit: writes are acknowledged before they commit; acknowledged writes WILL be lost (test-only)');
      plantAckBeforeCommit(this.raft);
    }
    this.raft.start();
    this.trust.start();
    void this.openActors();
    // The leader promotes learners once they have caught up, and notices its own removal.
    this.promoteTimer = setInterval(() => this.housekeeping(), 200);
  }

  private async openActors(): Promise<void> {
    try {
      const actors = await NodeActors.open(this, this.options.actors ?? ACTOR_OPTIONS_DEFAULT, this.auth.authorizer, () => this.auth.peerMetadata());
      if (this.stopping) {
        await actors.close();
        return;
      }
      this.actors = actors;
    } catch (error) {
      this.options.log.fatal({ error: (error as Error).message }, 'the actor layer could not start; stopping');
      process.exitCode = 1;
      this.onRemoved?.();
    }
  }

  /** A Raft message from a peer: to the Raft driver, and to the actor layer's failure detector and lease. */
  receiveRaft(message: Message): void {
    this.raft?.receive(message);
    this.actors?.host.raftMessageReceived(message.from);
  }

  addressOf(id: NodeId | string): string | null {
    const raft = this.raft;
    if (raft === null) return null;
    const value = raft.machine.kv.get(memberKey(id))?.value;
    if (value !== undefined && value !== '') return value;
    // Until the joiner's own log holds the member keys.
    return this.joinAddresses.get(id) ?? null;
  }

  members(): { id: string; address: string; learner: boolean }[] {
    const raft = this.raft;
    if (raft === null) return [];
    const conf = raft.raft.confState();
    const out: { id: string; address: string; learner: boolean }[] = [];
    for (const id of conf.voters) out.push({ id, address: this.addressOf(id) ?? '', learner: false });
    for (const id of conf.learners) out.push({ id, address: this.addressOf(id) ?? '', learner: true });
    return out;
  }

  private housekeeping(): void {
    const raft = this.raft;
    if (raft === null || this.stopping) return;
    const conf = raft.raft.confState();
    // A joining node is not in the configuration until it applies its own addLearner: only leaving counts.
    if (conf.voters.includes(this.id) || conf.learners.includes(this.id)) {
      this.everMember = true;
    } else if (this.everMember) {
      this.options.log.info('this node was removed from the cluster; stopping');
      this.onRemoved?.();
      return;
    }
    if (this.everMember && raft.raft.leader === null) void this.askWhetherRemoved();
    if (raft.raft.role !== 'leader' || this.promoting !== null) return;
    const status = raft.raft.status();
    for (const progress of status.progress) {
      if (!progress.learner) continue;
      // Caught up: within a few entries of the leader's log (and has acknowledged something: in a
      // short log, match 0 is also "within a few entries").
      if (progress.match === 0 || progress.match + AUTO_PROMOTE_LAG_ENTRIES_MAX < status.lastIndex) continue;
      this.promoting = progress.id;
      raft.proposeConfChange({ type: 'promote', node: progress.id }, (outcome) => {
        this.promoting = null;
        if (outcome.ok) this.options.log.info({ node: progress.id }, 'promoted a caught-up learner to voter');
      });
      return;
    }
  }

  /**
   * A removed member often never learns of its removal: the leader stops
   * sending to it once the change is in the log, before it commits. Left alone
   * it would campaign forever. So a member without a leader asks the others:
   * one that knows a leader and has applied a configuration without this node
   * proves the removal committed (only committed entries are applied).
   */
  private async askWhetherRemoved(): Promise<void> {
    const now = Date.now();
    if (this.removalCheckRunning || now - this.removalCheckedAtMs < REMOVAL_CHECK_INTERVAL_MS) return;
    this.removalCheckRunning = true;
    this.removalCheckedAtMs = now;
    try {
      for (const member of this.members()) {
        if (member.id === this.id || member.address === '' || this.stopping) continue;
        const status = await this.peers.status(member.address, 1000).catch(() => null);
        if (status === null || status.clusterId !== this.clusterId || status.leaderId === '') continue;
        if (status.members.length > 0 && !status.members.some((m) => m.id === this.id)) {
          this.options.log.info({ by: status.id, leader: status.leaderId }, 'this node was removed from the cluster (learnt from a member); stopping');
          this.onRemoved?.();
        }
        return;
      }
    } finally {
      this.removalCheckRunning = false;
    }
  }

  /**
   * Wait until this node has applied what the cluster had committed when it
   * was asked (a ReadIndex round), or CATCH_UP_MS_MAX passed. Callers at once
   * share one round: a burst of unknown tokens costs one heartbeat round, not
   * one each.
   */
  catchUp(): Promise<void> {
    if (this.catchingUp !== null) return this.catchingUp;
    const raft = this.raft;
    if (raft === null) return Promise.resolve();
    const round = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, CATCH_UP_MS_MAX);
      raft.read(() => {
        clearTimeout(timer);
        resolve();
      });
    }).finally(() => {
      this.catchingUp = null;
    });
    this.catchingUp = round;
    return round;
  }

  /**
   * Propose a membership change on this node (the leader). A new leader refuses
   * changes until it has committed an entry of its term, and any leader while
   * another change is unapplied: both pass within a few heartbeats, so they are
   * retried here for up to `transientWaitMs` instead of failing the caller.
   */
  async changeMembership(change: ConfChange, transientWaitMs = 5_000): Promise<WriteOutcome<KvResult>> {
    const raft = this.raft;
    if (raft === null) return { ok: false, reason: 'rejected', detail: 'this node has not started Raft yet' };
    const deadline = Date.now() + transientWaitMs;
    for (;;) {
      const outcome = await new Promise<WriteOutcome<KvResult>>((resolve) => raft.proposeConfChange(change, resolve));
      // The driver folds the core's reasons into 'rejected'; the two transient ones advise a retry.
      const transient = !outcome.ok && outcome.reason === 'rejected' && /; retry (shortly|after it)$/.test(outcome.detail);
      if (!transient || Date.now() >= deadline || this.stopping) return outcome;
      await sleep(50);
    }
  }

  async stop(options: { transferLeadership: boolean }): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const raft = this.raft;
    if (raft !== null && options.transferLeadership && raft.raft.role === 'leader') {
      const target = raft.raft.status().progress.filter((p) => p.id !== this.id && !p.learner).sort((a, b) => b.match - a.match)[0];
      if (target !== undefined) {
        raft.transferLeadership(target.id);
        await waitUntil(() => raft.raft.role !== 'leader', 2000);
        this.options.log.info({ to: target.id, done: raft.raft.role !== 'leader' }, 'transferred leadership before stopping');
      }
    }
    const actors = this.actors;
    if (actors !== null) {
      // Projects move to the other nodes while Raft still runs here, then whatever is left stops.
      const drained = options.transferLeadership ? await actors.drain(DRAIN_MS_MAX) : false;
      this.options.log.info({ drained }, drained ? 'handed every project off before stopping' : 'stopping this node\'s projects');
      await actors.close();
    }
    if (this.promoteTimer !== null) clearInterval(this.promoteTimer);
    this.trust.close();
    raft?.stop();
    this.transport?.close();
    this.peers.close();
    await this.storage.close();
  }
}

/**
 * TEST-ONLY fault plant (`--unsafe-ack-before-commit`): answer every proposal
 * the leader accepts at once, before a quorum holds it, and forget the real
 * outcome. The chaos suite runs it to prove its checkers catch lost writes; a
 * refusal (not leader, overloaded) still comes back as it is.
 */
function plantAckBeforeCommit(raft: KvNode): void {
  const propose = raft.propose.bind(raft);
  raft.propose = (data, callback) => {
    let answered = false;
    propose(data, (outcome) => {
      if (answered) return;
      answered = true;
      callback(outcome);
    });
    if (answered) return;
    answered = true;
    callback({ ok: true, index: 0 as LogIndex, result: { ok: true, revision: raft.machine.kv.revision } });
  };
}

/** How often a member without a leader asks the others whether it was removed. */
const REMOVAL_CHECK_INTERVAL_MS = 1_000;
/**
 * The leader promotes a learner on its own once it is this close to the last
 * index (stricter than the core's learnerLagEntriesMax, which bounds what an
 * operator may promote): a voter that joins far behind slows every commit.
 */
const AUTO_PROMOTE_LAG_ENTRIES_MAX = 16;

const sortMembers = <T extends { id: string }>(members: readonly T[]): T[] => [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

/** The id of a cluster founded by these members: the same on each of them. */
export function foundingClusterId(members: readonly { id: string; address: string }[]): string {
  return createHash('sha256')
    .update(sortMembers(members).map((member) => `${member.id}@${member.address}`).join(','))
    .digest('hex')
    .slice(0, 16);
}

async function readIdentity(dataDir: string): Promise<{ clusterId: string; nodeId: string } | null> {
  let text: string;
  try {
    text = await readFile(join(dataDir, IDENTITY_FILE), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new NodeStartError(`cannot read ${join(dataDir, IDENTITY_FILE)}: ${(error as Error).message}; check the permissions of --data-dir`);
  }
  try {
    const parsed = JSON.parse(text) as { clusterId?: unknown; nodeId?: unknown };
    if (typeof parsed.clusterId === 'string' && typeof parsed.nodeId === 'string') return { clusterId: parsed.clusterId, nodeId: parsed.nodeId };
  } catch {
    // Fall through.
  }
  throw new NodeStartError(`${join(dataDir, IDENTITY_FILE)} is corrupt; restore the data dir from a backup, or move it away and rejoin this node as a new member`);
}

/** Poll `done` every 20 ms for up to `timeoutMs`; returns whether it held. */
export async function waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() >= until) return false;
    await sleep(20);
  }
  return true;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
