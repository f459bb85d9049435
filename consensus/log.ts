// The in-memory Raft log of one node: a snapshot followed by entries, with the
// marks for what is committed, applied and stable (persisted).
import type { Entry, LogIndex, Snapshot, SnapshotMeta, Term } from './types.ts';

export const entryBytes = (entry: Entry): number => entry.data.byteLength + 24;

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`raft invariant broken: ${message}`);
}

// On paths run per entry or per message the check is written `if (!ok) assert(false, ...)`:
// the message is a template, and an argument is built on every call, not only on failure.

export class RaftLog {
  /** Metadata of the last snapshot; index 0 and term 0 before any. */
  snapshotMeta: SnapshotMeta;
  /**
   * The entry just before the first one held in memory. After a local
   * compaction it may lie before the snapshot: a tail of entries is kept so a
   * follower slightly behind catches up by appends instead of a snapshot.
   */
  private offsetIndex: LogIndex;
  private offsetTerm: Term;
  /** Bytes of that snapshot, kept to send to followers that fell behind. */
  snapshotData: Uint8Array | null;
  /** Entries offsetIndex+1 .. lastIndex, contiguous. */
  private entries: Entry[];
  committed: LogIndex;
  applied: LogIndex;
  /** Highest index known to be on disk. */
  stable: LogIndex;

  constructor(snapshot: Snapshot | null, entries: readonly Entry[], committed: LogIndex, initialConf: SnapshotMeta['conf']) {
    this.snapshotMeta = snapshot?.meta ?? { index: 0 as LogIndex, term: 0 as Term, conf: initialConf };
    this.snapshotData = snapshot?.data ?? null;
    this.offsetIndex = this.snapshotMeta.index;
    this.offsetTerm = this.snapshotMeta.term;
    this.entries = [...entries];
    for (let i = 0; i < this.entries.length; i += 1) {
      assert(this.entries[i]?.index === this.snapshotMeta.index + 1 + i, 'persisted entries are contiguous after the snapshot');
    }
    this.stable = this.lastIndex();
    this.applied = this.snapshotMeta.index;
    assert(committed <= this.lastIndex(), `commit ${committed} beyond last index ${this.lastIndex()}`);
    this.committed = Math.max(committed, this.snapshotMeta.index) as LogIndex;
  }

  firstIndex(): LogIndex {
    return (this.offsetIndex + 1) as LogIndex;
  }

  lastIndex(): LogIndex {
    return (this.offsetIndex + this.entries.length) as LogIndex;
  }

  lastTerm(): Term {
    return this.term(this.lastIndex()) as Term;
  }

  /** Term of the entry at `index`, or undefined when compacted away or not yet there. */
  term(index: number): Term | undefined {
    if (index === this.offsetIndex) return this.offsetTerm;
    if (index < this.offsetIndex || index > this.lastIndex()) return undefined;
    return this.entries[index - this.offsetIndex - 1]?.term;
  }

  entryAt(index: number): Entry | undefined {
    if (index <= this.offsetIndex) return undefined;
    return this.entries[index - this.offsetIndex - 1];
  }

  matchTerm(index: number, term: Term): boolean {
    return this.term(index) === term;
  }

  isUpToDate(lastIndex: LogIndex, lastTerm: Term): boolean {
    const myLastTerm = this.lastTerm();
    return lastTerm > myLastTerm || (lastTerm === myLastTerm && lastIndex >= this.lastIndex());
  }

  /** Entries [from, to] (inclusive), at most `bytesMax` but always at least one. */
  slice(from: number, to: number, bytesMax: number): Entry[] {
    if (!(from >= this.firstIndex())) assert(false, `slice from ${from} below first index ${this.firstIndex()}`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let index = from; index <= to; index += 1) {
      const entry = this.entryAt(index);
      if (entry === undefined) assert(false, `entry ${index} missing`);
      bytes += entryBytes(entry);
      if (out.length > 0 && bytes > bytesMax) break;
      out.push(entry);
    }
    return out;
  }

  /** Leader-side append of fresh entries. */
  append(entries: readonly Entry[]): void {
    for (const entry of entries) {
      if (entry.index !== this.lastIndex() + 1) assert(false, `append at ${entry.index} after ${this.lastIndex()}`);
      this.entries.push(entry);
    }
  }

  /**
   * Follower-side append after a matching (prevIndex, prevTerm): keeps entries
   * that agree, truncates at the first conflict, appends the rest. Returns the
   * last index now known to match the leader, or null when prev does not match.
   */
  maybeAppend(prevIndex: LogIndex, prevTerm: Term, entries: readonly Entry[]): LogIndex | null {
    if (!this.matchTerm(prevIndex, prevTerm)) return null;
    let firstNew = entries.length;
    for (let i = 0; i < entries.length; i += 1) {
      const entry = entries[i] as Entry;
      if (entry.index <= this.offsetIndex) continue;
      if (!this.matchTerm(entry.index, entry.term)) {
        firstNew = i;
        break;
      }
    }
    if (firstNew < entries.length) {
      const start = (entries[firstNew] as Entry).index;
      assert(start > this.committed, `truncating committed entry ${start} (commit ${this.committed})`);
      this.truncateFrom(start);
      this.append(entries.slice(firstNew));
    }
    return (prevIndex + entries.length) as LogIndex;
  }

  private truncateFrom(index: number): void {
    this.entries.length = index - this.offsetIndex - 1;
    if (this.stable >= index) this.stable = (index - 1) as LogIndex;
  }

  /**
   * For fast back-tracking: the largest index <= `index` whose term is <= `term`
   * (the first place where the two logs may agree).
   */
  findConflictByTerm(index: number, term: Term): LogIndex {
    let i = Math.min(index, this.lastIndex());
    while (i > this.offsetIndex) {
      const t = this.term(i);
      if (t !== undefined && t <= term) break;
      i -= 1;
    }
    return i as LogIndex;
  }

  commitTo(index: number): boolean {
    if (index <= this.committed) return false;
    if (!(index <= this.lastIndex())) assert(false, `commit ${index} beyond last index ${this.lastIndex()}`);
    this.committed = index as LogIndex;
    return true;
  }

  unstableEntries(): Entry[] {
    if (this.stable >= this.lastIndex()) return [];
    return this.entries.slice(Math.max(this.stable, this.offsetIndex) - this.offsetIndex);
  }

  stableTo(index: LogIndex, term: Term): void {
    if (this.term(index) === term && index > this.stable) this.stable = index;
  }

  /** Committed entries not yet handed to the state machine. */
  nextCommitted(bytesMax: number): Entry[] {
    const from = Math.max(this.applied + 1, this.firstIndex());
    if (from > this.committed) return [];
    return this.slice(from, this.committed, bytesMax);
  }

  /**
   * Record a new snapshot (at an applied index) and drop the entries it covers,
   * except the last `trailingEntries` of them, kept for followers slightly behind.
   */
  compact(snapshot: Snapshot, trailingEntries: number): void {
    const { index } = snapshot.meta;
    assert(index <= this.applied, `compact at ${index} beyond applied ${this.applied}`);
    if (index <= this.snapshotMeta.index) return;
    this.snapshotMeta = snapshot.meta;
    this.snapshotData = snapshot.data;
    const dropTo = index - trailingEntries;
    if (dropTo <= this.offsetIndex) return;
    this.offsetTerm = this.term(dropTo) as Term;
    this.entries = this.entries.slice(dropTo - this.offsetIndex);
    this.offsetIndex = dropTo as LogIndex;
  }

  /** Replace the whole log with a snapshot received from the leader. */
  restore(snapshot: Snapshot): void {
    this.entries = [];
    this.offsetIndex = snapshot.meta.index;
    this.offsetTerm = snapshot.meta.term;
    this.snapshotMeta = snapshot.meta;
    this.snapshotData = snapshot.data;
    this.committed = snapshot.meta.index;
    this.stable = snapshot.meta.index;
  }

  entryCount(): number {
    return this.entries.length;
  }
}
