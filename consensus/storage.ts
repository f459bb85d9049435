// The durable storage a Raft driver writes through. The simulator gives a disk
// that loses unsynced writes on crash; node/ gives LevelDB.
import { encodeConfChange } from './raft.ts';
import type { Entry, HardState, LogIndex, NodeId, Snapshot, Term } from './types.ts';

/** Everything that survived on disk, read once when a node starts. */
export interface PersistedState {
  readonly hardState: HardState;
  readonly snapshot: Snapshot | null;
  /** Entries after the snapshot (or from index 1 without one), contiguous. */
  readonly entries: readonly Entry[];
}

/** One group-committed write: everything in it becomes durable with one sync. */
export interface PersistBatch {
  readonly hardState: HardState | null;
  /** When set: store it, and drop every stored entry at or before its index. */
  readonly snapshot: Snapshot | null;
  /** With `snapshot`: also drop stored entries after its index (an installed snapshot replaces the log). */
  readonly dropEntriesAfterSnapshot: boolean;
  /** Replace any stored entries at or after entries[0].index with these. */
  readonly entries: readonly Entry[];
}

export interface RaftStorage {
  /** Write the batch and sync; call `done` once it is durable, or with the error that stopped it. */
  persist(batch: PersistBatch, done: (error: Error | null) => void): void;
}

/**
 * The first state of every founding member of a new cluster: one committed
 * addVoter entry per member at term 1, identical on each, so that a node that
 * joins later learns the founding configuration from the log (as etcd does).
 */
export function bootstrapState(voters: readonly NodeId[], addresses: ReadonlyMap<NodeId, string> = new Map()): PersistedState {
  const sorted = [...voters].sort();
  const entries: Entry[] = sorted.map((node, i) => ({
    term: 1 as Term,
    index: (i + 1) as LogIndex,
    type: 'confChange',
    data: encodeConfChange({ type: 'addVoter', node, ...(addresses.has(node) ? { address: addresses.get(node) as string } : {}) }),
  }));
  return { hardState: { term: 1 as Term, vote: null, commit: entries.length as LogIndex }, snapshot: null, entries };
}

export const emptyPersistedState = (): PersistedState => ({
  hardState: { term: 0 as HardState['term'], vote: null, commit: 0 as HardState['commit'] },
  snapshot: null,
  entries: [],
});
