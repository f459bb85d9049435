// The leader's view of one follower: how far it matches, what to send next,
// and how many appends are in flight (flow control, as etcd's tracker).
import type { LogIndex, NodeId, Snapshot } from './types.ts';

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  match = 0 as LogIndex;
  next: LogIndex;
  state: ProgressState = 'probe';
  /** In probe state: an append was sent and no answer came yet. */
  probeSent = false;
  /** Last indexes of appends in flight, oldest first (replicate state). */
  inflight: LogIndex[] = [];
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** Heard from in the round before (liveness for membership changes, which must not read a round just begun as silence). */
  activeLastRound = false;
  /** In snapshot state: the snapshot being sent and how far. */
  snapshotIndex = 0 as LogIndex;
  /** The snapshot being sent; kept here so a newer compaction does not restart the transfer. */
  snapshot: Snapshot | null = null;
  snapshotOffset = 0;
  /** Ticks since the last snapshot chunk was acknowledged. */
  snapshotStallTicks = 0;

  constructor(
    readonly id: NodeId,
    next: LogIndex,
    public learner: boolean,
  ) {
    this.next = next;
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') this.next = Math.max(this.match + 1, this.snapshotIndex + 1) as LogIndex;
    else this.next = (this.match + 1) as LogIndex;
    this.snapshot = null;
    this.state = 'probe';
    this.probeSent = false;
    this.inflight = [];
  }

  becomeReplicate(): void {
    this.state = 'replicate';
    this.snapshot = null;
    this.next = (this.match + 1) as LogIndex;
    this.inflight = [];
  }

  becomeSnapshot(snapshot: Snapshot): void {
    this.state = 'snapshot';
    this.snapshot = snapshot;
    this.snapshotIndex = snapshot.meta.index;
    this.snapshotOffset = 0;
    this.snapshotStallTicks = 0;
    this.inflight = [];
  }

  /** A success answer: returns whether match moved forward. */
  maybeUpdate(index: LogIndex): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    if (this.next < index + 1) this.next = (index + 1) as LogIndex;
    while (this.inflight.length > 0 && (this.inflight[0] as LogIndex) <= index) this.inflight.shift();
    return updated;
  }

  /**
   * A rejection of the append whose prev index was `rejected`: back `next` off
   * to the hint. Returns false when the rejection is stale.
   */
  maybeDecreaseTo(rejected: LogIndex, hint: LogIndex): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = (this.match + 1) as LogIndex;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1, 1) as LogIndex;
    this.probeSent = false;
    return true;
  }

  isPaused(inflightMax: number): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflight.length >= inflightMax;
      case 'snapshot':
        return true;
      default: {
        const never: never = this.state;
        return never;
      }
    }
  }
}
