// Adapts the KV state machine to the Raft driver: every committed entry moves
// the applied index; only 'normal' entries carry KV commands.
import { KvStateMachine, encodeCommand, type KvCommand, type KvResult, type KvStateMachineOptions } from './kv-state-machine.ts';
import { decodeConfChange } from './raft.ts';
import type { StateMachine, StateMachineFactory } from './raft-node.ts';
import type { ConfChange, Entry, LogIndex, Snapshot } from './types.ts';
import { assert } from './log.ts';

export class KvMachine implements StateMachine<KvResult> {
  constructor(readonly kv: KvStateMachine) {}

  get appliedIndex(): LogIndex {
    return this.kv.appliedIndex;
  }

  applyEntry(entry: Entry): KvResult {
    if (entry.type === 'normal') return this.kv.apply(entry.index, entry.data);
    const command = entry.type === 'confChange' ? memberCommand(decodeConfChange(entry.data)) : null;
    if (command !== null) return this.kv.apply(entry.index, encodeCommand(command), 'configuration');
    this.kv.skip(entry.index);
    return { ok: true, revision: this.kv.revision };
  }

  snapshot(): Uint8Array {
    return this.kv.snapshot();
  }
}

/** Keys of members' addresses: written only by configuration entries (a command that writes one is refused). */
export const MEMBER_KEYS_PREFIX = 'members/';

/** Key of a member's address, kept in the KV store so that snapshots carry it. */
export const memberKey = (node: string): string => `${MEMBER_KEYS_PREFIX}${node}`;

/**
 * Rewritten by every change of the actor ring's inputs (members, liveness);
 * its modRevision is the ring epoch, the same on every replica at one index.
 */
export const RING_EPOCH_KEY = 'ring/epoch';

/**
 * A configuration change also updates `members/<id>` in the same entry, so
 * every replica (and every snapshot) knows each member's address, and bumps
 * the ring epoch in the same command. Roles come from the Raft configuration
 * itself; a promotion changes no ring input.
 */
export function memberCommand(change: ConfChange): KvCommand | null {
  const epoch = (reason: string): { type: 'put'; key: string; value: string } => ({ type: 'put', key: RING_EPOCH_KEY, value: reason });
  switch (change.type) {
    case 'addVoter':
    case 'addLearner':
      return { type: 'txn', compare: [], success: [{ type: 'put', key: memberKey(change.node), value: change.address ?? '' }, epoch(`join ${change.node}`)], failure: [] };
    case 'promote':
      return null;
    case 'remove':
      return { type: 'txn', compare: [], success: [{ type: 'delete', key: memberKey(change.node) }, epoch(`leave ${change.node}`)], failure: [] };
    default: {
      const never: never = change.type;
      return never;
    }
  }
}

/** KV machines that all take `options` (which must be the same on every replica). */
/**
 * The options every replicated KV machine runs with: `given`, plus the member
 * keys reserved to configuration entries (a command that wrote `members/`
 * would put a node in the ring that the configuration does not have).
 */
export const kvMachineOptions = (given: KvStateMachineOptions): KvStateMachineOptions => ({ configurationPrefixes: [MEMBER_KEYS_PREFIX], ...given });

export function kvMachineFactoryWith(given: KvStateMachineOptions): StateMachineFactory<KvResult, KvMachine> {
  const options = kvMachineOptions(given);
  return {
    empty: () => new KvMachine(new KvStateMachine(options)),
    restore: (snapshot: Snapshot) => {
      const kv = KvStateMachine.restore(snapshot.data, options);
      assert(kv.appliedIndex === snapshot.meta.index, `snapshot at ${snapshot.meta.index} holds state applied to ${kv.appliedIndex}`);
      return new KvMachine(kv);
    },
  };
}

export const kvMachineFactory: StateMachineFactory<KvResult, KvMachine> = kvMachineFactoryWith({});
