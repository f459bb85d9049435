// The state a node starts from after a disaster: a state machine (from a
// snapshot file, or replayed from a survivor's data dir) turned into a new
// cluster whose only members are the restored nodes, as `etcdutl snapshot
// restore` and etcd's --force-new-cluster do. Pure: bytes in, PersistBatch
// out; the caller writes it through the storage interface.
import { createHash } from 'node:crypto';
import { kvMachineFactory, memberKey, RING_EPOCH_KEY } from '../consensus/kv-machine.ts';
import { encodeCommand, fnv1a64Hex, KvStateMachine, prefixEnd, type KvCommand } from '../consensus/kv-state-machine.ts';
import { assert } from '../consensus/log.ts';
import type { PersistBatch, PersistedState } from '../consensus/storage.ts';
import type { HardState, LogIndex, NodeId, Snapshot, Term } from '../consensus/types.ts';
import { LIVENESS_PREFIX, MEMBERS_PREFIX } from '../actors/messages.ts';

export interface RestoredMember {
  readonly id: string;
  /** gRPC HOST:PORT the other members dial. */
  readonly address: string;
}

export interface RebuiltState {
  /** What to persist, in one synced write, into the node's storage. */
  readonly batch: PersistBatch;
  /** The same state as the driver loads it. */
  readonly persisted: PersistedState;
  readonly clusterId: string;
  /** Index of the snapshot the node starts from. */
  readonly index: LogIndex;
}

const sortById = (members: readonly RestoredMember[]): RestoredMember[] => [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

/**
 * The one command that makes a copied state machine belong to its new cluster:
 * the members it names (and no others) under `members/`, no failure-detector
 * marks from the old cluster, and a new ring epoch. Desired state (projects,
 * tenants, quotas) is left exactly as it was; observed status is rewritten by
 * the new owners once they run the projects again.
 */
export function membershipCommand(members: readonly RestoredMember[], reason: string): KvCommand {
  return {
    type: 'txn',
    compare: [],
    success: [
      { type: 'deleteRange', start: MEMBERS_PREFIX, end: prefixEnd(MEMBERS_PREFIX) },
      { type: 'deleteRange', start: LIVENESS_PREFIX, end: prefixEnd(LIVENESS_PREFIX) },
      ...sortById(members).map((member) => ({ type: 'put' as const, key: memberKey(member.id), value: member.address })),
      { type: 'put', key: RING_EPOCH_KEY, value: reason },
    ],
    failure: [],
  };
}

/**
 * Apply the membership command to `kv` as the next entry and wrap the result
 * as a snapshot whose configuration is exactly `members` (all voters), with a
 * hard state that has voted for no one in `term`.
 */
function rebuild(kv: KvStateMachine, members: readonly RestoredMember[], term: Term, reason: string, clusterId: string): RebuiltState {
  assert(members.length > 0, 'a rebuilt cluster needs at least one member');
  const index = (kv.appliedIndex + 1) as LogIndex;
  // The KV side of the new configuration: the one kind of entry that may write members/.
  const result = kv.apply(index, encodeCommand(membershipCommand(members, reason)), 'configuration');
  assert(result.ok, `the membership command of a restore was refused: ${result.ok ? '' : result.error.message}`);
  const snapshot: Snapshot = { meta: { index, term, conf: { voters: sortById(members).map((m) => m.id as NodeId), learners: [] } }, data: kv.snapshot() };
  const hardState: HardState = { term, vote: null, commit: index };
  return {
    batch: { hardState, snapshot, dropEntriesAfterSnapshot: true, entries: [] },
    persisted: { hardState, snapshot, entries: [] },
    clusterId,
    index,
  };
}

/**
 * A new cluster from a snapshot file's state. Every member restored from the
 * same file with the same member list computes the same cluster id, which
 * differs from the original's, so a node of the old cluster that comes back
 * is refused by the new one instead of mixing logs with it.
 */
export function restoredState(kvSnapshot: Uint8Array, members: readonly RestoredMember[]): RebuiltState {
  const kv = KvStateMachine.restore(kvSnapshot);
  const list = sortById(members).map((m) => `${m.id}@${m.address}`).join(',');
  const clusterId = createHash('sha256').update(`restore\n${fnv1a64Hex(kvSnapshot)}\n${list}`).digest('hex').slice(0, 16);
  return rebuild(kv, members, 1 as Term, `restore ${list}`, clusterId);
}

/**
 * A one-member cluster from what a survivor's data dir holds. As etcd's
 * --force-new-cluster, every entry in its log is applied, also those it had
 * not seen committed: a follower does not persist every commit-index advance,
 * so its recorded commit index lags and stopping there would drop writes the
 * cluster had acknowledged. The term stays (it never goes back); the cluster
 * id is new, so the old members are refused until they rejoin with empty dirs.
 */
export function forcedState(persisted: PersistedState, oldClusterId: string, self: RestoredMember): RebuiltState {
  const machine = persisted.snapshot === null ? kvMachineFactory.empty() : kvMachineFactory.restore(persisted.snapshot);
  for (const entry of persisted.entries) if (entry.index > machine.appliedIndex) machine.applyEntry(entry);
  const clusterId = createHash('sha256')
    .update(`force-new-cluster\n${oldClusterId}\n${self.id}@${self.address}\n${machine.appliedIndex}`)
    .digest('hex')
    .slice(0, 16);
  return rebuild(machine.kv, [self], Math.max(1, persisted.hardState.term) as Term, `force-new-cluster ${self.id}`, clusterId);
}
