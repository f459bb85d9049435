// Prometheus metrics of one node, on a Registry of its own (never prom-client's
// global one, so that several nodes in one process and tests stay apart).
// Gauges of Raft state are read at scrape time; counters and the fsync
// histogram are fed by hooks in the node, the storage and the gRPC server.
import * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RaftStatus } from '../consensus/raft.ts';
import type { WriteOutcome } from '../consensus/raft-node.ts';
import { ActorMetrics } from './actor-metrics.ts';
import { SpaceMetrics } from './space-metrics.ts';

/** What the scrape-time gauges read; null while Raft has not started. */
export interface RaftView {
  status(): RaftStatus | null;
  appliedIndex(): number;
  droppedMessages(): number;
  watchers(): number;
  /** Records read back from the state that did not fit their schema (ignored, never handed to an actor). */
  recordsInvalid(): number;
}

const ROLES = ['follower', 'preCandidate', 'candidate', 'leader'] as const;

/** fsync of one group commit: 100 µs (page cache) to 4 s (a disk about to lose us the leadership). */
const FSYNC_BUCKETS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4];

export class NodeMetrics {
  readonly registry = new Registry();
  /** The actor layer's metrics (actor-metrics.ts) and the data dir's space (space-metrics.ts), on this registry. */
  readonly actors = new ActorMetrics(this.registry);
  readonly space = new SpaceMetrics(this.registry);
  private readonly leaderChanges: Counter;
  private readonly proposals: Counter<'kind' | 'outcome'>;
  private readonly fsyncSeconds: Histogram;
  private readonly syncEntries: Counter;
  private readonly peerStreamErrors: Counter<'peer'>;
  private readonly grpcRequests: Counter<'method' | 'code'>;
  private readonly authRefusals: Counter<'plane' | 'reason'>;
  private readonly raftSpoofed: Counter;
  private readonly recordsRefused: Counter;
  private readonly alarms: Gauge<'alarm'>;
  /** The last leader this node knew, to count changes. */
  private lastLeader: string | null = null;

  constructor(nodeId: string, view: RaftView) {
    this.registry.setDefaultLabels({ node: nodeId });
    const registers = [this.registry];
    const gauge = (name: string, help: string, read: (status: RaftStatus) => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const status = view.status();
          this.set(status === null ? 0 : read(status));
        },
      });
    };
    gauge('debughost_raft_term', 'Current Raft term.', (status) => status.term);
    gauge('debughost_raft_commit_index', 'Highest log index known to be committed.', (status) => status.commit);
    gauge('debughost_raft_last_index', 'Last index in this node\'s log.', (status) => status.lastIndex);
    gauge('debughost_raft_snapshot_index', 'Index of the latest snapshot (the log before it is compacted away).', (status) => status.snapshotIndex);
    new Gauge({
      name: 'debughost_raft_applied_index',
      help: 'Highest log index applied to the KV state machine.',
      registers,
      collect() {
        this.set(view.appliedIndex());
      },
    });
    new Gauge({
      name: 'debughost_raft_role',
      help: 'Raft role of this node: 1 for the current role, 0 for the others.',
      labelNames: ['role'],
      registers,
      collect() {
        const role = view.status()?.role ?? null;
        for (const each of ROLES) this.set({ role: each }, each === role ? 1 : 0);
      },
    });
    new Gauge({
      name: 'debughost_raft_has_leader',
      help: '1 when this node knows a leader.',
      registers,
      collect() {
        this.set((view.status()?.leader ?? null) === null ? 0 : 1);
      },
    });
    new Gauge({
      name: 'debughost_transport_dropped_messages',
      help: 'Raft messages dropped because a peer was unreachable or its queue was full (since start).',
      registers,
      collect() {
        this.set(view.droppedMessages());
      },
    });
    new Gauge({
      name: 'debughost_kv_watchers',
      help: 'KV watch streams open on this node.',
      registers,
      collect() {
        this.set(view.watchers());
      },
    });
    this.leaderChanges = new Counter({ name: 'debughost_raft_leader_changes_total', help: 'Times this node saw a new leader.', registers });
    this.proposals = new Counter({
      name: 'debughost_raft_proposals_total',
      help: 'Proposals made on this node, by kind (command or membership) and outcome (ok: applied; failed: not leader, rejected or unknown).',
      labelNames: ['kind', 'outcome'],
      registers,
    });
    this.fsyncSeconds = new Histogram({
      name: 'debughost_storage_fsync_seconds',
      help: 'Latency of one synced WAL write (one group commit of the Raft log).',
      buckets: FSYNC_BUCKETS_SECONDS,
      registers,
    });
    this.syncEntries = new Counter({ name: 'debughost_storage_synced_entries_total', help: 'Log entries made durable by those writes.', registers });
    this.peerStreamErrors = new Counter({ name: 'debughost_peer_stream_errors_total', help: 'Broken Raft streams to a peer.', labelNames: ['peer'], registers });
    this.grpcRequests = new Counter({
      name: 'debughost_grpc_requests_total',
      help: 'gRPC calls served, by method and status code.',
      labelNames: ['method', 'code'],
      registers,
    });
    this.authRefusals = new Counter({
      name: 'debughost_auth_refusals_total',
      help: 'Calls refused before any handler ran, by plane (peer: member credentials; client: bearer tokens) and reason.',
      labelNames: ['plane', 'reason'],
      registers,
    });
    this.raftSpoofed = new Counter({
      name: 'debughost_raft_messages_spoofed_total',
      help: 'Raft messages dropped because their sender field named another node than the authenticated peer.',
      registers,
    });
    new Gauge({
      name: 'debughost_raft_peer_messages_dropped',
      help: 'Raft messages from peers dropped for breaking the bounds of consensus/peer-bounds.ts (a term or index past 2^48, a snapshot chunk that does not add up): only a broken or hostile peer sends them (since start).',
      registers,
      collect() {
        this.set(view.status()?.droppedPeerMessages ?? 0);
      },
    });
    this.recordsRefused = new Counter({
      name: 'debughost_records_refused_total',
      help: 'Writes under a system prefix that this node refused at apply because the value does not fit its schema (every replica refuses the same ones).',
      registers,
    });
    new Gauge({
      name: 'debughost_records_invalid',
      help: 'Records read back from the state that did not fit their schema, so the actors treated them as absent (since start).',
      registers,
      collect() {
        this.set(view.recordsInvalid());
      },
    });
    this.alarms = new Gauge({
      name: 'debughost_alarm_active',
      help: 'Alarms raised on this node: diskfull (its data disk has no room for the next WAL segment or snapshot; it refuses writes) and nospace (the replicated KV size quota is exceeded; the cluster refuses writes that put).',
      labelNames: ['alarm'],
      registers,
    });
    this.alarms.set({ alarm: 'diskfull' }, 0);
    this.alarms.set({ alarm: 'nospace' }, 0);
    collectDefaultMetrics({ register: this.registry, prefix: 'debughost_' });
  }

  /** Called whenever the node may have learnt of a new leader. */
  observeLeader(leader: string | null): void {
    if (leader === null || leader === this.lastLeader) return;
    this.lastLeader = leader;
    this.leaderChanges.inc();
  }

  proposal(kind: 'command' | 'membership', outcome: WriteOutcome<unknown>): void {
    this.proposals.inc({ kind, outcome: outcome.ok ? 'ok' : 'failed' });
  }

  sync(ms: number, entries: number): void {
    this.fsyncSeconds.observe(ms / 1000);
    this.syncEntries.inc(entries);
  }

  authRefused(plane: 'peer' | 'client', reason: string): void {
    this.authRefusals.inc({ plane, reason });
  }

  recordRefused(): void {
    this.recordsRefused.inc();
  }

  raftMessageSpoofed(): void {
    this.raftSpoofed.inc();
  }

  diskFull(active: boolean): void {
    this.alarms.set({ alarm: 'diskfull' }, active ? 1 : 0);
  }

  nospace(active: boolean): void {
    this.alarms.set({ alarm: 'nospace' }, active ? 1 : 0);
  }

  peerStreamError(peer: string): void {
    this.peerStreamErrors.inc({ peer });
  }

  /** A gRPC server interceptor that counts every call by method and final status. */
  grpcInterceptor(): grpc.ServerInterceptor {
    return (method, call) =>
      new grpc.ServerInterceptingCall(call, {
        sendStatus: (status, next) => {
          this.grpcRequests.inc({ method: method.path, code: grpc.status[status.code] ?? String(status.code) });
          next(status);
        },
      });
  }

  /** The text exposition format, with its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
