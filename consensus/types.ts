// Types that carry the Raft protocol: branded ids, log entries, messages, and
// the Ready bundle that the pure core hands to its driver.

export type NodeId = string & { readonly __brand: 'NodeId' };
export type Term = number & { readonly __brand: 'Term' };
export type LogIndex = number & { readonly __brand: 'LogIndex' };

export const nodeId = (id: string): NodeId => id as NodeId;
export const term = (value: number): Term => value as Term;
export const logIndex = (value: number): LogIndex => value as LogIndex;

/** Injected randomness; the simulator gives a seeded one. */
export interface Random {
  /** Uniform integer in [0, maxExclusive). */
  int(maxExclusive: number): number;
  /** Uniform float in [0, 1). */
  float(): number;
}

/** Injected time for drivers (never for the core, which only sees ticks). */
export interface Clock {
  nowMs(): number;
  setTimer(delayMs: number, callback: () => void): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}
export type TimerHandle = { readonly __timer: unknown };

export type EntryType = 'normal' | 'confChange' | 'empty';

export interface Entry {
  readonly term: Term;
  readonly index: LogIndex;
  readonly type: EntryType;
  /** Opaque command bytes for 'normal', an encoded ConfChange for 'confChange'. */
  readonly data: Uint8Array;
}

/** addVoter appears only in the bootstrap entries of a new cluster; joins go through addLearner then promote. */
export type ConfChangeType = 'addVoter' | 'addLearner' | 'promote' | 'remove';

export interface ConfChange {
  readonly type: ConfChangeType;
  readonly node: NodeId;
  /** The address the rest of the cluster reaches the node at (opaque to the core). */
  readonly address?: string;
  /**
   * Skip the strict reconfiguration check (fewer live voters than a quorum
   * after the change). Only a proposal option: not written to the log.
   */
  readonly force?: boolean;
}

export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export interface HardState {
  readonly term: Term;
  readonly vote: NodeId | null;
  readonly commit: LogIndex;
}

export interface SnapshotMeta {
  readonly index: LogIndex;
  readonly term: Term;
  readonly conf: ConfState;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

/** A linearizable read confirmed by a quorum: serve it once applied >= index. */
export interface ReadState {
  readonly requestId: string;
  readonly index: LogIndex;
}

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: Term;
}

export type Message =
  | (MessageBase & { readonly type: 'preVote' | 'vote'; readonly lastLogIndex: LogIndex; readonly lastLogTerm: Term; readonly transfer: boolean })
  | (MessageBase & { readonly type: 'preVoteResp' | 'voteResp'; readonly granted: boolean })
  | (MessageBase & {
      readonly type: 'append';
      readonly prevLogIndex: LogIndex;
      readonly prevLogTerm: Term;
      readonly entries: readonly Entry[];
      readonly commit: LogIndex;
    })
  | (MessageBase & {
      readonly type: 'appendResp';
      readonly success: boolean;
      /** On success: last index now matching. On reject: the index probed. */
      readonly index: LogIndex;
      /** On reject: hint for fast back-tracking (follower's last index, or first index of the conflicting term). */
      readonly rejectHint: LogIndex;
      readonly rejectHintTerm: Term;
    })
  | (MessageBase & { readonly type: 'heartbeat'; readonly commit: LogIndex; readonly readContext: string | null })
  | (MessageBase & { readonly type: 'heartbeatResp'; readonly readContext: string | null })
  | (MessageBase & {
      readonly type: 'snapshotChunk';
      readonly meta: SnapshotMeta;
      readonly offset: number;
      readonly totalBytes: number;
      readonly chunk: Uint8Array;
      readonly done: boolean;
    })
  | (MessageBase & { readonly type: 'snapshotChunkResp'; readonly snapshotIndex: LogIndex; readonly nextOffset: number; readonly rejected: boolean })
  | (MessageBase & { readonly type: 'timeoutNow' })
  | (MessageBase & { readonly type: 'readIndex'; readonly requestId: string })
  | (MessageBase & { readonly type: 'readIndexResp'; readonly requestId: string; readonly index: LogIndex; readonly ok: boolean });

export type MessageType = Message['type'];

/**
 * What the core asks its driver to do, in this order:
 * 1. persist `hardState`, `snapshot` and `entries` durably (entries replace any
 *    stored entries at or after `entries[0].index`), with one sync;
 * 2. only then send `messages`;
 * 3. apply `snapshot` (if any) then `committedEntries` to the state machine;
 * 4. hand `readStates` to waiting readers once applied;
 * 5. call `advance()`.
 */
export interface Ready {
  readonly hardState: HardState | null;
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | null;
  readonly messages: readonly Message[];
  readonly committedEntries: readonly Entry[];
  readonly readStates: readonly ReadState[];
  /** Read requests that can no longer be confirmed (leadership lost or none known); ids as given to readIndex(). */
  readonly droppedReads: readonly string[];
}

/** Limits and timing, validated in one place. */
export interface RaftConfig {
  readonly id: NodeId;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** Most bytes of entries in one append message. */
  readonly appendBytesMax: number;
  /** Most append messages in flight to one follower before waiting for acks. */
  readonly inflightAppendsMax: number;
  /** Ask for a snapshot when this many entries follow the last one. */
  readonly snapshotEntriesThreshold: number;
  /** Entries kept in memory behind a new snapshot, so a follower slightly behind catches up by appends. */
  readonly snapshotTrailingEntries: number;
  /** Bytes of snapshot data per InstallSnapshot chunk. */
  readonly snapshotChunkBytes: number;
  /** Largest snapshot a follower assembles from chunks; a chunk claiming more is dropped. */
  readonly snapshotBytesMax: number;
  /** A learner is promoted only when its match is at most this many entries behind the leader's last index. */
  readonly learnerLagEntriesMax: number;
  /** Most uncommitted entries the leader accepts before refusing proposals. */
  readonly uncommittedEntriesMax: number;
}

export type ProposeResult =
  | { readonly ok: true; readonly index: LogIndex; readonly term: Term }
  | { readonly ok: false; readonly reason: 'notLeader'; readonly leaderHint: NodeId | null }
  | { readonly ok: false; readonly reason: 'transferring' | 'pendingConfChange' | 'overloaded' | 'invalidConfChange' | 'notCommittedInTerm'; readonly detail: string };
