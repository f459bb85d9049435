// The composition root of one debughost node: LevelDB storage, the Raft driver
// with the KV state machine, the gRPC server (Raft peers, KV, Admin), the HTTP
// server (health, metrics, MCP), bootstrap from the seed list or join through it.
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { KvMachine, kvMachineFactory, memberKey } from '../consensus/kv-machine.ts';
import type { KvResult } from '../consensus/kv-state-machine.ts';
import { RaftNode, type WriteOutcome } from '../consensus/raft-node.ts';
import { defaultRaftConfig } from '../consensus/raft.ts';
import { bootstrapState, emptyPersistedState, type PersistedState } from '../consensus/storage.ts';
import { LevelStorage } from '../consensus/storage-leveldb.ts';
import { GrpcTransport, MESSAGE_BYTES_MAX } from '../consensus/transport-grpc.ts';
import type { ConfChange, NodeId } from '../consensus/types.ts';
import { systemClock, systemRandom } from './system.ts';
import { PeerClients } from './peer-clients.ts';
import type { Logger } from './log.ts';

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
}

export interface TlsFiles {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** Election timeout is electionTicks..2·electionTicks ticks: with 40 ms ticks, 400–800 ms. */
export const TICK_MS_DEFAULT = 40;

/** A failure the user can act on: its message is the one line they see. */
export class NodeStartError extends Error {
  override readonly name = 'NodeStartError';
}

export type KvNode = RaftNode<KvResult, KvMachine>;

export class DebughostNode {
  raft: KvNode | null = null;
  clusterId = '';
  private transport: GrpcTransport | null = null;
  private promoteTimer: NodeJS.Timeout | null = null;
  /** The learner whose promotion is in flight (one change at a time). */
  private promoting: string | null = null;
  /** Seen itself in the configuration: from then on, absence means it was removed. */
  private everMember = false;
  private stopping = false;
  readonly peers: PeerClients;
  /** Called once when this node learns it was removed from the cluster. */
  onRemoved: (() => void) | null = null;

  private constructor(
    readonly options: NodeOptions,
    readonly storage: LevelStorage,
    readonly credentials: grpc.ChannelCredentials,
  ) {
    this.peers = new PeerClients(credentials);
  }

  get id(): NodeId {
    return this.options.id as NodeId;
  }

  static async open(options: NodeOptions): Promise<DebughostNode> {
    await mkdir(options.dataDir, { recursive: true });
    // Checked before LevelDB opens: opening runs its recovery, which rewrites files.
    const identity = await readIdentity(options.dataDir);
    if (identity !== null && identity.nodeId !== options.id) {
      throw new NodeStartError(
        `data dir ${options.dataDir} belongs to node '${identity.nodeId}' of cluster ${identity.clusterId}, not '${options.id}'; start with --id ${identity.nodeId} or use another --data-dir`,
      );
    }
    const storage = await LevelStorage.open(join(options.dataDir, 'raft'), { fsync: options.fsync });
    const meta = storage.readMeta();
    if (meta !== null && meta.nodeId !== options.id) {
      await storage.close();
      throw new NodeStartError(
        `data dir ${options.dataDir} belongs to node '${meta.nodeId}' of cluster ${meta.clusterId}, not '${options.id}'; start with --id ${meta.nodeId} or use another --data-dir`,
      );
    }
    const credentials =
      options.tls === null ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(options.tls.ca, options.tls.key, options.tls.cert);
    const node = new DebughostNode(options, storage, credentials);
    if (meta !== null) node.clusterId = meta.clusterId;
    return node;
  }

  /** Start Raft: from disk on a restart, else by bootstrapping with the seeds or joining through them. */
  async start(signal: AbortSignal): Promise<void> {
    const meta = this.storage.readMeta();
    if (meta !== null) {
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
        await this.bootstrap(members, clusterId);
        return;
      }
      this.options.log.info({ clusterId: other.clusterId }, 'the seeds belong to an existing cluster; joining it');
    }
    await this.join(others, signal);
  }

  private async writeIdentity(): Promise<void> {
    const identity = { clusterId: this.clusterId, nodeId: this.options.id };
    await this.storage.writeMeta(identity);
    const path = join(this.options.dataDir, IDENTITY_FILE);
    const handle = await open(`${path}.tmp`, 'w');
    await handle.writeFile(`${JSON.stringify(identity)}\n`);
    await handle.sync();
    await handle.close();
    await rename(`${path}.tmp`, path);
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
    await new Promise<void>((resolve, reject) =>
      this.storage.persist({ hardState: state.hardState, snapshot: null, dropEntriesAfterSnapshot: false, entries: state.entries }, (error) =>
        error === null ? resolve() : reject(error),
      ),
    );
    await this.writeIdentity();
    this.options.log.info({ clusterId: this.clusterId, members: sorted }, 'bootstrapped a new cluster from the seed list');
    // load() is what was on disk at open; the bootstrap state was written since.
    this.startRaft(state);
  }

  private async join(seeds: readonly string[], signal: AbortSignal): Promise<void> {
    if (seeds.length === 0) throw new NodeStartError('no seed to join through: give --seeds with the address of at least one running member');
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
          const response = await this.peers.join(seed, { nodeId: this.options.id, address: this.options.grpcAddress, clusterId: status.clusterId }, 10_000);
          if (!response.ok) {
            lastError = `${seed}: ${response.error}`;
            if (response.error.startsWith('refused:')) throw new NodeStartError(`joining through ${seed} was refused: ${response.error.slice(8).trim()}`);
            continue;
          }
          this.clusterId = status.clusterId;
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
      onError: (peer, error) => this.options.log.debug({ peer, error: error.message }, 'peer stream broke'),
    });
    this.transport = transport;
    this.raft = new RaftNode(
      {
        clock: systemClock,
        random: systemRandom,
        storage: this.storage,
        transport,
        observer: {
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
          electionTicks: 10,
          heartbeatTicks: 2,
          snapshotEntriesThreshold: this.options.snapshotEntries,
          snapshotTrailingEntries: Math.floor(this.options.snapshotEntries / 2),
        },
        tickMs: this.options.tickMs,
        requestTimeoutMs: 5_000,
        pendingRequestsMax: 50_000,
      },
      kvMachineFactory,
      persisted,
    );
    this.raft.start();
    // The leader promotes learners once they have caught up, and notices its own removal.
    this.promoteTimer = setInterval(() => this.housekeeping(), 200);
  }

  addressOf(id: NodeId | string): string | null {
    const raft = this.raft;
    if (raft === null) return null;
    const value = raft.machine.kv.get(memberKey(id))?.value;
    return value === undefined || value === '' ? null : value;
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
    if (raft.raft.role !== 'leader' || this.promoting !== null) return;
    const status = raft.raft.status();
    for (const progress of status.progress) {
      if (!progress.learner) continue;
      // Caught up: within a few entries of the leader's log.
      if (progress.match + 16 < status.lastIndex) continue;
      this.promoting = progress.id;
      raft.proposeConfChange({ type: 'promote', node: progress.id }, (outcome) => {
        this.promoting = null;
        if (outcome.ok) this.options.log.info({ node: progress.id }, 'promoted a caught-up learner to voter');
      });
      return;
    }
  }

  /** Propose a membership change through this node: here when leader, else at the leader. */
  changeMembership(change: ConfChange): Promise<WriteOutcome<KvResult>> {
    const raft = this.raft;
    if (raft === null) return Promise.resolve({ ok: false, reason: 'rejected', detail: 'this node has not started Raft yet' });
    return new Promise((resolve) => raft.proposeConfChange(change, resolve));
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
    if (this.promoteTimer !== null) clearInterval(this.promoteTimer);
    raft?.stop();
    this.transport?.close();
    this.peers.close();
    await this.storage.close();
  }
}

const sortMembers = <T extends { id: string }>(members: readonly T[]): T[] => [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

/** The id of a cluster founded by these members: the same on each of them. */
export function foundingClusterId(members: readonly { id: string; address: string }[]): string {
  return createHash('sha256')
    .update(sortMembers(members).map((member) => `${member.id}@${member.address}`).join(','))
    .digest('hex')
    .slice(0, 16);
}

const IDENTITY_FILE = 'identity.json';

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
