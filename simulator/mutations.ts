// The mutation catalogue: small, realistic bugs planted in the real code as
// subclasses and wrappers that only the simulator installs. Each must be
// caught within 200 seeds with the default fault mix (simulator/mutations.test.ts):
// a checker that never fails proves nothing.
import type { KvResult } from '../consensus/kv-state-machine.ts';
import type { KvMachine } from '../consensus/kv-machine.ts';
import { RaftNode } from '../consensus/raft-node.ts';
import { Raft, type PendingRead } from '../consensus/raft.ts';
import type { PersistBatch, RaftStorage } from '../consensus/storage.ts';
import type { Clock, Message, Snapshot } from '../consensus/types.ts';
import type { ActorStore, Forwarder } from '../actors/components.ts';
import { ActorHost, type HostOptions } from '../actors/host.ts';
import { CLEAR, type Handoff } from '../actors/handoff.ts';
import { FailureDetector } from '../actors/liveness.ts';
import { RING_EPOCH_KEY } from '../consensus/kv-machine.ts';
import type { KvCommand } from '../consensus/kv-state-machine.ts';
import type { ActorPlant } from './actor-cluster.ts';
import type { RaftPlant } from './cluster.ts';

// ---- the Raft core -----------------------------------------------------------

/** Commits an entry of an earlier term by counting replicas (the Figure 8 bug, §5.4.2). */
class CommitEarlierTermRaft extends Raft {
  protected override committableByCounting(): boolean {
    return true;
  }
}

/** Grants votes without checking that the candidate's log is at least as up to date (§5.4.1). */
class VoteWithoutLogCheckRaft extends Raft {
  protected override candidateLogUpToDate(): boolean {
    return true;
  }
}

/** Answers a ReadIndex from the leader's commit index without a heartbeat round confirming it still leads (§6.4). */
class ReadWithoutHeartbeatRaft extends Raft {
  protected override leaderReadIndex(requestId: string, from: PendingRead['from']): void {
    // Keeps the wait for an entry of its own term; skips only the confirmation round.
    if (this.log.term(this.log.committed) !== this.term) return super.leaderReadIndex(requestId, from);
    this.completeRead({ requestId, index: this.log.committed, from, acks: new Set() });
  }
}

/** A follower that accepts an append when it has any entry at prevLogIndex, whatever its term (§5.3). */
class AppendWithoutPrevTermRaft extends Raft {
  protected override handleAppend(message: Extract<Message, { type: 'append' }>): void {
    const ours = this.log.term(message.prevLogIndex);
    super.handleAppend(ours === undefined ? message : { ...message, prevLogTerm: ours });
  }
}

/** Installing a snapshot replaces the whole log, even entries after the snapshot that the follower already acknowledged (§7). */
class SnapshotDropsNewerRaft extends Raft {
  protected override installSnapshot(snapshot: Snapshot): void {
    this.restoreSnapshot(snapshot);
  }
}

/** A leader that notices it lost its quorum (check-quorum) and keeps leading anyway. */
class IgnoreCheckQuorumRaft extends Raft {
  protected override quorumRecentlyActive(): boolean {
    super.quorumRecentlyActive();
    return true;
  }
}

// ---- the driver and its storage ----------------------------------------------

type SimRaftNode = RaftNode<KvResult, KvMachine>;

/** Sends its vote before the vote is on disk: a crash in between lets it vote twice in one term. */
class VoteBeforePersistNode extends RaftNode<KvResult, KvMachine> {
  protected override messagesBeforePersist(messages: readonly Message[]): readonly Message[] {
    const early = super.messagesBeforePersist(messages);
    return messages.filter((message) => message.type === 'voteResp' || early.includes(message));
  }
}

/**
 * Storage that reports a batch written when it is handed over, before its
 * sync: the driver then acknowledges, counts and applies entries (and answers
 * their clients) that a crash can still lose.
 */
function acknowledgeBeforeSync(storage: RaftStorage, clock: Clock): RaftStorage {
  return {
    persist(batch: PersistBatch, done: (error: Error | null) => void): void {
      storage.persist(batch, () => undefined);
      // On the node's own clock, so a crash (which cancels its timers) swallows it as it would the real callback.
      clock.setTimer(0, () => done(null));
    },
  };
}

// ---- the catalogue -----------------------------------------------------------

export interface RaftMutation {
  /** One line: the bug, as a reviewer would describe it. */
  readonly bug: string;
  readonly plant: RaftPlant;
}

const coreMutant = (Mutant: typeof Raft): RaftPlant => ({ createRaft: (config, random, persisted) => new Mutant(config, random, persisted) });

export const MUTATIONS = {
  commitEarlierTerm: { bug: 'the leader commits an entry of an earlier term by counting replicas (Figure 8)', plant: coreMutant(CommitEarlierTermRaft) },
  voteWithoutLogCheck: { bug: "a voter skips the check that the candidate's log is at least as up to date as its own", plant: coreMutant(VoteWithoutLogCheckRaft) },
  readWithoutHeartbeat: { bug: 'the leader answers ReadIndex from its commit index without a heartbeat round', plant: coreMutant(ReadWithoutHeartbeatRaft) },
  appendWithoutPrevTerm: { bug: 'a follower accepts an append without checking the term of the entry at prevLogIndex', plant: coreMutant(AppendWithoutPrevTermRaft) },
  snapshotDropsNewer: { bug: 'installing a snapshot drops the entries after it that the follower already held', plant: coreMutant(SnapshotDropsNewerRaft) },
  ignoreCheckQuorum: { bug: 'a leader keeps leading after check-quorum found it cut off from a quorum', plant: coreMutant(IgnoreCheckQuorumRaft) },
  voteBeforePersist: {
    bug: 'the driver sends a vote before the vote is persisted',
    plant: { createNode: (components, options, factory, persisted): SimRaftNode => new VoteBeforePersistNode(components, options, factory, persisted) },
  },
  applyBeforeSync: {
    bug: 'the driver applies and acknowledges entries before their write is synced (storage answers on write, not on fsync)',
    plant: { wrapStorage: (storage, clock) => acknowledgeBeforeSync(storage, clock) },
  },
} as const satisfies Record<string, RaftMutation>;

export type MutationName = keyof typeof MUTATIONS;

export function isMutationName(name: string): name is MutationName {
  return Object.hasOwn(MUTATIONS, name);
}

// ---- the actor layer (runs with --actors) ------------------------------------

/** Owner writes lose their ring-epoch compare: a stale owner's writes are accepted. */
function unfencedStore(store: ActorStore): ActorStore {
  return {
    view: () => store.view(),
    propose: (command, callback) => {
      if (command.type !== 'txn') return store.propose(command, callback);
      store.propose({ ...command, compare: command.compare.filter((compare) => compare.key !== RING_EPOCH_KEY) }, callback);
    },
  };
}

/** Every forwarded attempt of a call gets a new request id (the old two-router bug): a retried change can apply twice. */
function freshRequestIds(forwarder: Forwarder): Forwarder {
  let attempts = 0;
  return {
    forward: (owner, call, onProgress, callback) => {
      attempts += 1;
      forwarder.forward(owner, { ...call, requestId: `${call.requestId}.${attempts}` }, onProgress, callback);
    },
  };
}

const isUsageKey = (key: string): boolean => /^tenants\/[^/]+\/usage$/.test(key);

/**
 * A change that reserves quota does it in a txn of its own before the
 * project's write (compare on the usage version, then put it), instead of in
 * the same txn: if the second write fails or is lost, the reservation stays.
 */
function quotaReservedApart(store: ActorStore): ActorStore {
  return {
    view: () => store.view(),
    propose: (command, callback) => {
      if (command.type !== 'txn' || !command.success.some((op) => op.type === 'put' && isUsageKey(op.key))) return store.propose(command, callback);
      const reserve: KvCommand = { type: 'txn', compare: command.compare.filter((c) => isUsageKey(c.key)), success: command.success.filter((op) => 'key' in op && isUsageKey(op.key)), failure: command.failure };
      const rest: KvCommand = { type: 'txn', compare: command.compare.filter((c) => !isUsageKey(c.key)), success: command.success.filter((op) => !('key' in op) || !isUsageKey(op.key)), failure: command.failure };
      store.propose(reserve, (outcome) => {
        if (!outcome.ok || outcome.result.succeeded !== true) return callback(outcome);
        store.propose(rest, callback);
      });
    },
  };
}

/**
 * The leader's failure detector suspects a silent member after half its owner
 * lease instead of suspectMs (leaseMs + an election timeout < suspectMs is the
 * rule): the ring hands the member's projects to others while its lease may
 * still hold, so a new owner starts a copy before the old one stopped, e.g.
 * while the old owner's watchdog has not yet killed a crashed node's copies.
 */
class SuspectEarlyHost extends ActorHost {
  protected override createFailureDetector(options: HostOptions): FailureDetector {
    return new FailureDetector(options.node, Math.floor(options.leaseMs / 2));
  }
}

/**
 * The hand-off as it was before actors/handoff.ts: a new owner launches as soon as the ring
 * names it, while the old owner's stop runs (or its node crashed mid-release).
 */
class LaunchBeforeReleaseHost extends ActorHost {
  override handoffFor(): Handoff {
    return CLEAR;
  }
}

export interface ActorMutation {
  readonly bug: string;
  readonly plant: ActorPlant;
}

/** Planted bugs in the actor layer, for runs with --actors. */
export const ACTOR_MUTATIONS = {
  noFencing: { bug: 'owner writes omit the ring-epoch compare', plant: { wrapStore: unfencedStore } },
  freshRequestIds: { bug: 'every forwarded attempt of a call gets a new request id (the old two-router bug): a retried change can apply twice', plant: { wrapForwarder: freshRequestIds } },
  quotaOutsideStartTxn: { bug: "a start reserves its tenant's quota in a txn of its own, before the project's write", plant: { wrapStore: quotaReservedApart } },
  startBeforeOldStopped: {
    bug: "a hand-off starts the new owner before the old one stopped: the leader marks a silent member down after half its owner lease, not after suspectMs, so its projects start elsewhere before its lease lapsed and its copies were fenced",
    plant: { createHost: (components, options) => new SuspectEarlyHost(components, options) },
  },
  launchBeforeRelease: {
    bug: "a graceful hand-off launches on the new owner as soon as the ring names it, without waiting for the old owner's recorded release",
    plant: { createHost: (components, options) => new LaunchBeforeReleaseHost(components, options) },
  },
} as const satisfies Record<string, ActorMutation>;

export type ActorMutationName = keyof typeof ACTOR_MUTATIONS;

export function isActorMutationName(name: string): name is ActorMutationName {
  return Object.hasOwn(ACTOR_MUTATIONS, name);
}
