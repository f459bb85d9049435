// Helpers for the scripted scenario tests: clients that retry a write until it
// is acknowledged (following leader hints), waits on virtual time, and views
// of a node's log and state machine. Everything runs on the cluster's
// scheduler, so a scenario stays deterministic for its seed.
import { decodeCommand, type KvResult } from '../consensus/kv-state-machine.ts';
import type { KvMachine } from '../consensus/kv-machine.ts';
import { decodeConfChange } from '../consensus/raft.ts';
import type { RaftNode, ReadOutcome, WriteOutcome } from '../consensus/raft-node.ts';
import type { ConfChange, ConfState, LogIndex, Message, NodeId } from '../consensus/types.ts';
import type { SimCluster } from './cluster.ts';

export type SimRaftNode = RaftNode<KvResult, KvMachine>;

/** Pause before retrying at the node a "not leader" answer pointed to, ms. */
const RETRY_WITH_HINT_MS = 10;
/** Pause before retrying at the next node when no leader is known, ms. */
const RETRY_WITHOUT_HINT_MS = 50;
/** An attempt not answered within this is abandoned and the next node is tried, ms. */
const ATTEMPT_TIMEOUT_MS = 1000;
/** Most attempts one write makes before giving up (a bound on every retry loop). */
const ATTEMPTS_MAX = 10_000;

// ---- writes ------------------------------------------------------------------

export type WriteStatus = 'pending' | 'ok' | 'unknown';

/** One client write: `ok` once some attempt was acknowledged; `unknown` when it gave up (it may still apply). */
export interface WriteHandle {
  readonly key: string;
  readonly value: string;
  status: WriteStatus;
  /** Log index of the acknowledged attempt. */
  index: LogIndex | null;
  attempts: number;
  /** Virtual ms when it was acknowledged. */
  ackedAtMs: number | null;
}

export interface WriteOptions {
  /** Give up (status `unknown`) after this much virtual time. Default 10 s. */
  readonly timeoutMs?: number;
  /** First node to ask; default the current leader, else the first founding node. */
  readonly target?: NodeId;
  /**
   * Retry after an `unknown` outcome or an unanswered attempt (default true).
   * Such a write may then apply twice: harmless for a put with a unique key.
   */
  readonly retryUnknown?: boolean;
}

/** Start a put of `key`=`value` that retries on other nodes until acknowledged or out of time. */
export function submitWrite(cluster: SimCluster, key: string, value: string, options: WriteOptions = {}): WriteHandle {
  const handle: WriteHandle = { key, value, status: 'pending', index: null, attempts: 0, ackedAtMs: null };
  const retryUnknown = options.retryUnknown ?? true;
  const targets = cluster.allIds();
  let rotation = 0;
  let current = 0;
  const nextTarget = (): NodeId => {
    rotation += 1;
    return targets[rotation % targets.length] as NodeId;
  };
  const deadline = cluster.scheduler.schedule(options.timeoutMs ?? 10_000, () => {
    if (handle.status === 'pending') handle.status = 'unknown';
  }, 'scenario-deadline');
  const attempt = (target: NodeId): void => {
    if (handle.status !== 'pending') return;
    if (handle.attempts >= ATTEMPTS_MAX) {
      handle.status = 'unknown';
      return;
    }
    handle.attempts += 1;
    current += 1;
    const attemptNumber = current;
    let answered = false;
    const retry = (delayMs: number, next: NodeId): void => {
      // Only the newest attempt may start another: abandoned ones may still answer.
      if (attemptNumber !== current) return;
      cluster.scheduler.schedule(delayMs, () => attempt(next), 'scenario-retry');
    };
    cluster.scheduler.schedule(ATTEMPT_TIMEOUT_MS, () => {
      if (answered || handle.status !== 'pending') return;
      if (!retryUnknown) handle.status = 'unknown';
      else retry(0, nextTarget());
    }, 'scenario-attempt-timeout');
    cluster.propose(target, { type: 'put', key, value }, (outcome: WriteOutcome<KvResult> | { ok: false; reason: 'down' }) => {
      answered = true;
      if (handle.status !== 'pending') return;
      if (outcome.ok) {
        if (!outcome.result.ok) throw new Error(`scenario: put ${key} was refused by the state machine: ${outcome.result.error.message}`);
        handle.status = 'ok';
        handle.index = outcome.index;
        handle.ackedAtMs = cluster.scheduler.nowMs();
        cluster.scheduler.cancel(deadline);
        return;
      }
      switch (outcome.reason) {
        case 'notLeader':
          if (outcome.leaderHint !== null && outcome.leaderHint !== target) retry(RETRY_WITH_HINT_MS, outcome.leaderHint);
          else retry(RETRY_WITHOUT_HINT_MS, nextTarget());
          return;
        case 'rejected':
        case 'down':
          retry(RETRY_WITHOUT_HINT_MS, nextTarget());
          return;
        case 'unknown':
          if (!retryUnknown) handle.status = 'unknown';
          else retry(RETRY_WITHOUT_HINT_MS, nextTarget());
          return;
        default: {
          const never: never = outcome;
          return never;
        }
      }
    });
  };
  attempt(options.target ?? cluster.leader()?.id ?? (cluster.ids[0] as NodeId));
  return handle;
}

/** Run the cluster until the write is acknowledged or `timeoutMs` passes; returns whether it was acknowledged. */
export function writeAndWait(cluster: SimCluster, key: string, value: string, timeoutMs: number, options: Omit<WriteOptions, 'timeoutMs'> = {}): boolean {
  const handle = submitWrite(cluster, key, value, { ...options, timeoutMs });
  cluster.runUntil(() => handle.status !== 'pending', timeoutMs + 1);
  return handle.status === 'ok';
}

/** Run until every handle is settled (acknowledged or given up); returns whether all were acknowledged. */
export function waitForWrites(cluster: SimCluster, handles: readonly WriteHandle[], timeoutMs: number): boolean {
  cluster.runUntil(() => handles.every((handle) => handle.status !== 'pending'), timeoutMs);
  return handles.every((handle) => handle.status === 'ok');
}

/**
 * Concurrent clients, each writing unique keys (`${prefix}c${client}.${n}`)
 * one at a time, as long as they run. Every write is kept for the final checks.
 */
export class WriteClients {
  readonly writes: WriteHandle[] = [];
  private running = false;

  constructor(
    private readonly cluster: SimCluster,
    private readonly options: { readonly clients: number; readonly prefix: string; readonly timeoutMs: number; readonly pauseMs?: number },
  ) {}

  start(): this {
    this.running = true;
    for (let client = 0; client < this.options.clients; client += 1) this.next(client, 1);
    return this;
  }

  stop(): void {
    this.running = false;
  }

  acknowledged(): WriteHandle[] {
    return this.writes.filter((write) => write.status === 'ok');
  }

  private next(client: number, sequence: number): void {
    if (!this.running) return;
    const handle = submitWrite(this.cluster, `${this.options.prefix}c${client}.${sequence}`, `v${client}.${sequence}`, { timeoutMs: this.options.timeoutMs });
    this.writes.push(handle);
    const poll = (): void => {
      if (handle.status === 'pending') {
        this.cluster.scheduler.schedule(10, poll, 'scenario-client');
        return;
      }
      this.cluster.scheduler.schedule(this.options.pauseMs ?? 5, () => this.next(client, sequence + 1), 'scenario-client');
    };
    poll();
  }
}

// ---- reads -------------------------------------------------------------------

export type ReadResult = { readonly ok: true; readonly value: string | null; readonly index: LogIndex } | { readonly ok: false; readonly reason: string };

/** Start a linearizable read of `key` at node `id` (no retries); `result` is set when it answers. */
export function submitRead(cluster: SimCluster, id: NodeId, key: string): { result: ReadResult | null } {
  const pending: { result: ReadResult | null } = { result: null };
  cluster.read(id, (outcome: ReadOutcome<KvMachine> | { ok: false; reason: 'down' }) => {
    // Take the value now: the machine object keeps changing after the callback.
    pending.result = outcome.ok ? { ok: true, value: outcome.machine.kv.get(key)?.value ?? null, index: outcome.index } : { ok: false, reason: outcome.reason };
  });
  return pending;
}

/** A linearizable read of `key` at node `id`; `{ ok: false, reason: 'noAnswer' }` when none came in time. */
export function readAndWait(cluster: SimCluster, id: NodeId, key: string, timeoutMs: number): ReadResult {
  const pending = submitRead(cluster, id, key);
  cluster.runUntil(() => pending.result !== null, timeoutMs);
  return pending.result ?? { ok: false, reason: 'noAnswer' };
}

/** What node `id` has applied for `key` (a local, possibly stale view); null when absent or the node is down. */
export function readValueAt(cluster: SimCluster, id: NodeId, key: string): string | null {
  return cluster.node(id)?.machine.kv.get(key)?.value ?? null;
}

// ---- leaders and convergence -------------------------------------------------------

/**
 * A leader among `ids` that a majority of the voters it knows follow in its
 * term (so not a deposed leader that has not noticed yet), or null.
 */
export function establishedLeader(cluster: SimCluster, ids: readonly NodeId[] = cluster.allIds()): SimRaftNode | null {
  for (const id of ids) {
    const node = cluster.node(id);
    if (node === null || node.raft.role !== 'leader') continue;
    const voters = node.raft.confState().voters;
    let followers = 0;
    for (const voter of voters) {
      const other = cluster.node(voter);
      if (ids.includes(voter) && other !== null && other.raft.term === node.raft.term && other.raft.leader === node.id) followers += 1;
    }
    if (followers > voters.length / 2) return node;
  }
  return null;
}

/** Run until a leader that a majority follows exists among `ids`; returns it, or null after `timeoutMs`. */
export function waitForLeader(cluster: SimCluster, timeoutMs: number, ids: readonly NodeId[] = cluster.allIds()): SimRaftNode | null {
  let found: SimRaftNode | null = null;
  cluster.runUntil(() => {
    found = establishedLeader(cluster, ids);
    return found !== null;
  }, timeoutMs);
  return found;
}

/** Every node of `ids` is up and has applied the same state as the others, up to the leader's commit index. */
export function converged(cluster: SimCluster, ids: readonly NodeId[]): boolean {
  const leader = establishedLeader(cluster, ids);
  if (leader === null) return false;
  const commit = leader.raft.log.committed;
  let digest: string | null = null;
  for (const id of ids) {
    const node = cluster.node(id);
    if (node === null || node.machine.appliedIndex !== commit) return false;
    const own = node.machine.kv.digest();
    if (digest === null) digest = own;
    else if (digest !== own) return false;
  }
  return true;
}

export function waitConverged(cluster: SimCluster, ids: readonly NodeId[], timeoutMs: number): boolean {
  // digest() serializes the store: check the cheap condition first.
  return cluster.runUntil(() => {
    const leader = cluster.leader();
    if (leader === null) return false;
    const commit = leader.raft.log.committed;
    // A new leader knows the commit index only once it has committed an entry of its own term (Raft §5.4.2).
    if (leader.raft.log.term(commit) !== leader.raft.term) return false;
    return ids.every((id) => cluster.node(id)?.machine.appliedIndex === commit) && converged(cluster, ids);
  }, timeoutMs);
}

// ---- logs ----------------------------------------------------------------------

/** The puts a node's log holds from its first index to its commit index, as "key=value" (other entries skipped). */
export function committedPuts(node: SimRaftNode): string[] {
  const log = node.raft.log;
  const out: string[] = [];
  for (let index: number = log.firstIndex(); index <= log.committed; index += 1) {
    const entry = log.entryAt(index);
    if (entry === undefined || entry.type !== 'normal') continue;
    const command = decodeCommand(entry.data);
    if (command !== null && command.type === 'put') out.push(`${command.key}=${command.value}`);
  }
  return out;
}

/** Every put in a node's log, committed or not, as "key=value". */
export function loggedPuts(node: SimRaftNode): string[] {
  const log = node.raft.log;
  const out: string[] = [];
  for (let index: number = log.firstIndex(); index <= log.lastIndex(); index += 1) {
    const entry = log.entryAt(index);
    if (entry === undefined || entry.type !== 'normal') continue;
    const command = decodeCommand(entry.data);
    if (command !== null && command.type === 'put') out.push(`${command.key}=${command.value}`);
  }
  return out;
}

/** Whether a configuration change shows in `conf` (it has been applied there). */
export function confShows(conf: ConfState, change: ConfChange): boolean {
  switch (change.type) {
    case 'addVoter':
    case 'promote':
      return conf.voters.includes(change.node);
    case 'addLearner':
      return conf.learners.includes(change.node) || conf.voters.includes(change.node);
    case 'remove':
      return !conf.voters.includes(change.node) && !conf.learners.includes(change.node);
    default: {
      const never: never = change.type;
      return never;
    }
  }
}

/**
 * Propose `change` until the established leader has applied it, retrying on
 * every refusal (not leader, a change pending, nothing committed in the term).
 * Returns whether it applied within `timeoutMs`.
 */
export function changeMembership(cluster: SimCluster, change: ConfChange, timeoutMs: number): boolean {
  const applied = (): boolean => {
    const leader = establishedLeader(cluster);
    return leader !== null && confShows(leader.raft.confState(), change);
  };
  let inFlight = false;
  const end = cluster.scheduler.nowMs() + timeoutMs;
  while (cluster.scheduler.nowMs() < end) {
    if (applied()) return true;
    if (!inFlight) {
      const leader = establishedLeader(cluster);
      if (leader !== null) {
        inFlight = true;
        cluster.proposeConfChange(leader.id, change, () => {
          inFlight = false;
        });
      }
    }
    // A short step, so that a refused proposal is retried soon.
    cluster.runUntil(() => !inFlight && applied(), Math.min(100, end - cluster.scheduler.nowMs()));
  }
  return applied();
}

/** Configuration changes in a node's log (committed), in order, e.g. "addLearner n4". */
export function committedConfChanges(node: SimRaftNode): string[] {
  const log = node.raft.log;
  const out: string[] = [];
  for (let index: number = log.firstIndex(); index <= log.committed; index += 1) {
    const entry = log.entryAt(index);
    if (entry?.type !== 'confChange') continue;
    const change = decodeConfChange(entry.data);
    out.push(`${change.type} ${change.node}`);
  }
  return out;
}

// ---- network -------------------------------------------------------------------

/**
 * Watch every message delivered to a node, before the node sees it. Replaces
 * the cluster's receive handlers with ones that call `observe` then deliver
 * exactly as the cluster does (to whichever incarnation is up).
 */
export function watchDeliveries(cluster: SimCluster, observe: (message: Message) => void): void {
  for (const id of cluster.allIds()) {
    cluster.network.register(id, (message) => {
      observe(message);
      cluster.node(id)?.receive(message);
    });
  }
}

/** Connect everything, then cut each of `disconnected` off from every other node. */
export function setDisconnected(cluster: SimCluster, disconnected: Iterable<NodeId>): void {
  cluster.network.heal();
  for (const id of disconnected) cluster.network.isolate(id);
}

/** Messages sent of each type since `before` (a `network.stats()` snapshot). */
export function sentSince(cluster: SimCluster, before: ReturnType<SimCluster['network']['stats']>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [type, counters] of cluster.network.stats().byType) {
    const earlier = before.byType.get(type)?.sent ?? 0;
    if (counters.sent > earlier) out.set(type, counters.sent - earlier);
  }
  return out;
}

export const totalOf = (counts: ReadonlyMap<string, number>): number => [...counts.values()].reduce((sum, count) => sum + count, 0);
