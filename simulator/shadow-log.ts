// The terms of what a node has written to its disk, kept beside the simulated
// disk from the batches the driver hands it: cheap to read after every event,
// where loading the disk is not. It starts from the disk at each boot, so it
// forgets what a crash lost.
import type { PersistBatch, PersistedState } from '../consensus/storage.ts';

export class ShadowLog {
  snapshotIndex = 0;
  snapshotTerm = 0;
  /** terms[k] is the term of index snapshotIndex + 1 + k. */
  private terms: number[] = [];

  static from(persisted: PersistedState): ShadowLog {
    const shadow = new ShadowLog();
    shadow.snapshotIndex = persisted.snapshot?.meta.index ?? 0;
    shadow.snapshotTerm = persisted.snapshot?.meta.term ?? 0;
    shadow.terms = persisted.entries.map((entry) => entry.term);
    return shadow;
  }

  lastIndex(): number {
    return this.snapshotIndex + this.terms.length;
  }

  lastTerm(): number {
    return this.terms.length === 0 ? this.snapshotTerm : (this.terms[this.terms.length - 1] as number);
  }

  /** The term at `index`; undefined past the end or inside the snapshot (except its last entry). */
  term(index: number): number | undefined {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex) return undefined;
    return this.terms[index - this.snapshotIndex - 1];
  }

  /** Whether it holds the entry of `term` at `index` (a snapshot past it covers it). */
  holds(index: number, term: number): boolean {
    return index < this.snapshotIndex || this.term(index) === term;
  }

  /**
   * Apply a batch as the disk will. Returns what it dropped that it should
   * not have: entries after a snapshot whose last entry the log already held
   * (Raft keeps them, §7), or null.
   */
  apply(batch: PersistBatch): string | null {
    let problem: string | null = null;
    const snapshot = batch.snapshot;
    if (snapshot !== null) {
      const { index, term } = snapshot.meta;
      if (batch.dropEntriesAfterSnapshot) {
        if (this.term(index) === term && this.lastIndex() > index) problem = `dropped entries ${index + 1}..${this.lastIndex()} installing snapshot ${index} (term ${term}), whose last entry it held`;
        this.terms = [];
      } else {
        this.terms = this.terms.slice(Math.max(0, Math.min(this.terms.length, index - this.snapshotIndex)));
      }
      this.snapshotIndex = index;
      this.snapshotTerm = term;
    }
    const first = batch.entries[0];
    if (first !== undefined) {
      this.terms.length = Math.max(0, first.index - this.snapshotIndex - 1);
      for (const entry of batch.entries) this.terms.push(entry.term);
    }
    return problem;
  }
}
