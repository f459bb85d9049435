// Raft's safety properties, checked while a simulated cluster runs: election
// safety, log matching, leader completeness, state-machine safety, and a commit
// index that never goes back. Violations are collected, not thrown, so a run
// reports every one it saw with the virtual time it happened.
import type { KvResult } from '../consensus/kv-state-machine.ts';
import type { KvMachine } from '../consensus/kv-machine.ts';
import type { RaftNode, RaftNodeObserver } from '../consensus/raft-node.ts';
import type { Entry, LogIndex, NodeId, Term } from '../consensus/types.ts';

type SimRaftNode = RaftNode<KvResult, KvMachine>;

interface ClusterView {
  readonly scheduler: { nowMs(): number };
  liveNodes(): SimRaftNode[];
  record(node: NodeId, event: string, details: string): void;
}

/** How often (virtual ms) the costlier whole-log checks run. */
const LOG_MATCHING_INTERVAL_MS = 1000;
/** Stop collecting after this many: one is enough to fail, a few help to debug. */
const VIOLATIONS_MAX = 20;

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i += 1) if (a[i] !== b[i]) return false;
  return true;
};

export class InvariantChecker {
  readonly violations: string[] = [];
  /** term -> the one node that led it. */
  private readonly leaders = new Map<number, NodeId>();
  /** Leaders already checked for completeness, as `${node}@${term}`. */
  private readonly checkedLeaders = new Set<string>();
  /** index -> the entry every node applied there. */
  private readonly appliedEntries = new Map<number, Entry>();
  /**
   * index -> the highest term any live node had when that entry was first
   * applied: it was committed in that term or earlier, so every leader of a
   * later term must hold it.
   */
  private readonly committedByTerm = new Map<number, number>();
  private readonly commitSeen = new Map<SimRaftNode, LogIndex>();
  private readonly durableCommit = new Map<NodeId, LogIndex>();
  private nextLogCheckMs = LOG_MATCHING_INTERVAL_MS;
  elections = 0;
  readonly observer: RaftNodeObserver;

  constructor(private readonly cluster: ClusterView) {
    this.observer = {
      applied: (node, entry) => this.onApplied(node, entry),
      persisted: (node, batch) => {
        if (batch.hardState === null) return;
        const before = this.durableCommit.get(node) ?? (0 as LogIndex);
        if (batch.hardState.commit < before) this.violation(`commit index went back on disk: ${node} persisted ${batch.hardState.commit} after ${before}`);
        this.durableCommit.set(node, batch.hardState.commit);
      },
      fatal: (node, error) => this.violation(`node ${node} stopped on a storage error: ${error.message}`),
    };
  }

  get ok(): boolean {
    return this.violations.length === 0;
  }

  violation(text: string): void {
    if (this.violations.length >= VIOLATIONS_MAX) return;
    const line = `at ${this.cluster.scheduler.nowMs().toFixed(1)} ms: ${text}`;
    this.violations.push(line);
    this.cluster.record('-' as NodeId, 'violation', text);
  }

  nodeStarted(node: SimRaftNode): void {
    this.commitSeen.set(node, node.raft.log.committed);
  }

  /** Cheap checks after every event; the whole-log ones once a virtual second. */
  afterEvent(): void {
    for (const node of this.cluster.liveNodes()) {
      const raft = node.raft;
      const commit = raft.log.committed;
      const before = this.commitSeen.get(node) ?? (0 as LogIndex);
      if (commit < before) this.violation(`commit index went back on ${raft.id}: ${before} -> ${commit}`);
      this.commitSeen.set(node, commit);
      if (raft.role !== 'leader') continue;
      const known = this.leaders.get(raft.term);
      if (known === undefined) {
        this.leaders.set(raft.term, raft.id);
        this.elections += 1;
        this.cluster.record(raft.id, 'leader', `term=${raft.term}`);
      } else if (known !== raft.id) {
        this.violation(`election safety: ${known} and ${raft.id} both lead term ${raft.term}`);
      }
      const key = `${raft.id}@${raft.term}`;
      if (!this.checkedLeaders.has(key)) {
        this.checkedLeaders.add(key);
        this.checkLeaderCompleteness(node);
      }
    }
    if (this.cluster.scheduler.nowMs() >= this.nextLogCheckMs) {
      this.nextLogCheckMs = this.cluster.scheduler.nowMs() + LOG_MATCHING_INTERVAL_MS;
      this.checkLogMatching();
    }
  }

  /** The checks that need the run to be over. */
  finalChecks(): void {
    this.checkLogMatching();
  }

  private onApplied(node: NodeId, entry: Entry): void {
    const first = this.appliedEntries.get(entry.index);
    if (first === undefined) {
      this.appliedEntries.set(entry.index, entry);
      let termMax = 0;
      for (const live of this.cluster.liveNodes()) termMax = Math.max(termMax, live.raft.term);
      this.committedByTerm.set(entry.index, termMax);
      return;
    }
    if (first.term !== entry.term || first.type !== entry.type || !sameBytes(first.data, entry.data)) {
      this.violation(`state machine safety: ${node} applied term ${entry.term} at index ${entry.index}, another node applied term ${first.term}`);
    }
  }

  /** A new leader holds every entry committed in an earlier term (entries applied anywhere were committed). */
  private checkLeaderCompleteness(leader: SimRaftNode): void {
    const log = leader.raft.log;
    for (const [index, entry] of this.appliedEntries) {
      if (index < log.firstIndex()) continue;
      if ((this.committedByTerm.get(index) ?? Infinity) >= leader.raft.term) continue;
      const term: Term | undefined = log.term(index);
      if (term !== entry.term) {
        this.violation(`leader completeness: ${leader.raft.id} leads term ${leader.raft.term} without committed entry ${index} (term ${entry.term}; has ${term ?? 'none'})`);
        return;
      }
    }
  }

  /** If two logs have an entry of the same term at an index, they agree on everything before it. */
  private checkLogMatching(): void {
    const nodes = this.cluster.liveNodes();
    for (let a = 0; a < nodes.length; a += 1) {
      for (let b = a + 1; b < nodes.length; b += 1) {
        const left = (nodes[a] as SimRaftNode).raft.log;
        const right = (nodes[b] as SimRaftNode).raft.log;
        const low = Math.max(left.firstIndex(), right.firstIndex());
        let high = Math.min(left.lastIndex(), right.lastIndex());
        while (high >= low && left.term(high) !== right.term(high)) high -= 1;
        for (let index = high; index >= low; index -= 1) {
          const x = left.entryAt(index);
          const y = right.entryAt(index);
          if (x === undefined || y === undefined) break;
          if (x.term !== y.term || !sameBytes(x.data, y.data)) {
            this.violation(`log matching: ${(nodes[a] as SimRaftNode).id} and ${(nodes[b] as SimRaftNode).id} agree at ${high} but differ at ${index}`);
            return;
          }
        }
      }
    }
  }
}
