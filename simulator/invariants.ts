// Raft's safety properties, checked while a simulated cluster runs: election
// safety, log matching, leader completeness, state-machine safety, and a commit
// index that never goes back. Violations are collected, not thrown, so a run
// reports every one it saw with the virtual time it happened.
import type { KvResult } from '../consensus/kv-state-machine.ts';
import type { KvMachine } from '../consensus/kv-machine.ts';
import type { RaftNode, RaftNodeObserver } from '../consensus/raft-node.ts';
import type { PersistedState } from '../consensus/storage.ts';
import type { ShadowLog } from './shadow-log.ts';
import type { Entry, LogIndex, NodeId, Term } from '../consensus/types.ts';

type SimRaftNode = RaftNode<KvResult, KvMachine>;

interface ClusterView {
  readonly scheduler: { nowMs(): number };
  /** The founding voters (the durability check counts their disks). */
  readonly ids: readonly NodeId[];
  liveNodes(): readonly SimRaftNode[];
  /** What the node's disk holds now: only synced writes. */
  durable(id: NodeId): PersistedState;
  /** The terms of what the node has written (kept from its batches; reset to the disk at boot and crash). */
  shadow(id: NodeId): ShadowLog;
  record(node: NodeId, event: string, details: string): void;
  /** Told when a node starts or stops leading (coverage, aimed faults). */
  readonly leadership?: {
    elected(node: SimRaftNode['raft']): void;
    deposed(node: SimRaftNode['raft'], termBefore: Term): void;
  };
}

/** What the checker last saw of a node, compared after every event. */
interface Seen {
  commit: LogIndex;
  /** The term it led in, or -1 when it was not leader. */
  ledTerm: number;
  /**
   * The term in which it was last found leading, recorded as that term's one
   * leader and checked for completeness; -1 before. Nothing of the
   * per-leader checks can change while it leads that term, so they are
   * skipped (each was two map lookups after every event).
   */
  leaderChecked: number;
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

/** Whether the stored state holds the entry of `term` at `index` (a snapshot at or past it covers it). */
function holdsDurably(disk: PersistedState, index: number, term: Term): boolean {
  const snapshotIndex = disk.snapshot?.meta.index ?? 0;
  if (index < snapshotIndex) return true;
  if (index === snapshotIndex) return disk.snapshot?.meta.term === term;
  return disk.entries[index - snapshotIndex - 1]?.term === term;
}

export class InvariantChecker {
  readonly violations: string[] = [];
  /** Virtual time of the first violation (time to detection), null while there is none. */
  firstViolationMs: number | null = null;
  /** term -> the one node that led it. */
  private readonly leaders = new Map<number, NodeId>();
  /** Per node, the last term it was checked for completeness as leader (it leads a term once). */
  private readonly checkedLeaders = new Map<NodeId, number>();
  /** index -> the entry every node applied there. */
  private readonly appliedEntries = new Map<number, Entry>();
  /**
   * index -> the highest term any live node had when that entry was first
   * applied: it was committed in that term or earlier, so every leader of a
   * later term must hold it.
   */
  private readonly committedByTerm = new Map<number, number>();
  private readonly seen = new Map<SimRaftNode, Seen>();
  /** `seen` of each node of `seenOf`, in its order: the per-event loop reads them without a map lookup. */
  private seenList: Seen[] = [];
  /** The cluster's live-node list that `seenList` follows (the cluster makes a new one when a node starts or stops). */
  private seenOf: readonly SimRaftNode[] | null = null;
  private readonly durableCommit = new Map<NodeId, LogIndex>();
  private nextLogCheckMs = LOG_MATCHING_INTERVAL_MS;
  elections = 0;
  /** Highest commit index seen on any node: electability is checked each time it grows. */
  private commitMaxSeen = 0;
  /** Set once a configuration change past the bootstrap entries was applied: the durability check stops. */
  private membershipChanged = false;
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
    if (this.violations.length === 0) this.firstViolationMs = this.cluster.scheduler.nowMs();
    const line = `at ${this.cluster.scheduler.nowMs().toFixed(1)} ms: ${text}`;
    this.violations.push(line);
    // A trace line holds no newline, and a linearizability explanation has many: one line each.
    const [first = '', ...rest] = text.split('\n');
    this.cluster.record('-' as NodeId, 'violation', first);
    for (const more of rest) this.cluster.record('-' as NodeId, 'violation+', more.trim());
  }

  nodeStarted(node: SimRaftNode): void {
    this.seen.set(node, { commit: node.raft.log.committed, ledTerm: -1, leaderChecked: -1 });
    this.seenOf = null;
  }

  private seenListFor(nodes: readonly SimRaftNode[]): Seen[] {
    if (nodes === this.seenOf) return this.seenList;
    this.seenList = nodes.map((node) => {
      let seen = this.seen.get(node);
      if (seen === undefined) {
        seen = { commit: node.raft.log.committed, ledTerm: -1, leaderChecked: -1 };
        this.seen.set(node, seen);
      }
      return seen;
    });
    this.seenOf = nodes;
    return this.seenList;
  }

  /** Cheap checks after every event; the whole-log ones once a virtual second. */
  afterEvent(): void {
    let commitMax = 0;
    const nodes = this.cluster.liveNodes();
    const seenList = this.seenListFor(nodes);
    for (let i = 0; i < nodes.length; i += 1) {
      const node = nodes[i] as SimRaftNode;
      const seen = seenList[i] as Seen;
      const raft = node.raft;
      const commit = raft.log.committed;
      if (commit > commitMax) commitMax = commit;
      if (commit < seen.commit) this.violation(`commit index went back on ${raft.id}: ${seen.commit} -> ${commit}`);
      // §5.4.2: a leader moves its commit index only onto an entry of its own term (earlier ones follow along).
      if (commit > seen.commit && raft.role === 'leader' && seen.ledTerm === raft.term && raft.log.term(commit) !== raft.term) {
        this.violation(`commit rule: ${raft.id} leading term ${raft.term} committed index ${commit} of term ${raft.log.term(commit) ?? '?'} by counting replicas`);
      }
      seen.commit = commit;
      const ledTerm = raft.role === 'leader' ? raft.term : -1;
      if (ledTerm !== seen.ledTerm) {
        if (seen.ledTerm !== -1) this.cluster.leadership?.deposed(raft, seen.ledTerm as Term);
        if (ledTerm !== -1) this.cluster.leadership?.elected(raft);
        seen.ledTerm = ledTerm;
      }
      if (raft.role !== 'leader' || seen.leaderChecked === raft.term) continue;
      const known = this.leaders.get(raft.term);
      if (known === undefined) {
        this.leaders.set(raft.term, raft.id);
        this.elections += 1;
        this.cluster.record(raft.id, 'leader', `term=${raft.term}`);
      } else if (known !== raft.id) {
        this.violation(`election safety: ${known} and ${raft.id} both lead term ${raft.term}`);
      }
      if (this.checkedLeaders.get(raft.id) !== raft.term) {
        this.checkedLeaders.set(raft.id, raft.term);
        this.checkLeaderCompleteness(node);
      }
      // A second leader of the term is reported after every event, as before; the recorded one is done.
      if (this.leaders.get(raft.term) === raft.id) seen.leaderChecked = raft.term;
    }
    if (commitMax > this.commitMaxSeen) {
      this.commitMaxSeen = commitMax;
      this.checkElectability();
    }
    if (this.cluster.scheduler.nowMs() >= this.nextLogCheckMs) {
      this.nextLogCheckMs = this.cluster.scheduler.nowMs() + LOG_MATCHING_INTERVAL_MS;
      this.checkLogMatching();
      this.checkDurability();
      this.checkElectability();
    }
  }

  /** The checks that need the run to be over. */
  finalChecks(): void {
    this.checkLogMatching();
    this.checkDurability();
    this.checkElectability();
  }

  /** What a node asked its disk to drop that Raft keeps (ShadowLog.apply). */
  logRetention(node: NodeId, problem: string): void {
    this.violation(`log retention: ${node} ${problem}`);
  }

  /**
   * No node that lacks the newest committed entry could win an election: the
   * nodes whose logs are not more up to date than its own (who would vote for
   * it, §5.4.1) are fewer than a quorum. This is what makes a commit safe, so
   * it fails at the commit that is not (Figure 8), before any node acts on it.
   * Judged on what each node has written, as it would restart after a crash.
   */
  checkElectability(): void {
    if (this.membershipChanged) return;
    let committer: SimRaftNode | null = null;
    for (const node of this.cluster.liveNodes()) if (committer === null || node.raft.log.committed > committer.raft.log.committed) committer = node;
    if (committer === null) return;
    const index = committer.raft.log.committed;
    const term = committer.raft.log.term(index);
    if (term === undefined || index <= this.cluster.ids.length) return;
    const shadows = this.cluster.ids.map((id) => this.cluster.shadow(id));
    const quorum = Math.floor(shadows.length / 2) + 1;
    for (let c = 0; c < shadows.length; c += 1) {
      const candidate = shadows[c] as ShadowLog;
      if (candidate.holds(index, term)) continue;
      const lastIndex = candidate.lastIndex();
      const lastTerm = candidate.lastTerm();
      let voters = 0;
      for (const voter of shadows) {
        const voterTerm = voter.lastTerm();
        if (voterTerm < lastTerm || (voterTerm === lastTerm && voter.lastIndex() <= lastIndex)) voters += 1;
      }
      if (voters >= quorum) {
        this.violation(`electability: ${this.cluster.ids[c] ?? ''} lacks committed entry ${index} (term ${term}) yet ${voters} of ${shadows.length} nodes would vote for it`);
        return;
      }
    }
  }

  /**
   * Every committed entry is on the disks of a majority of voters: followers
   * acknowledge only what they synced, the leader counts itself only once
   * synced, and nothing drops an entry a quorum acknowledged. Checked once a
   * virtual second and after every crash, while the voters are the founding
   * ones (with membership changes the quorum in force at commit is not
   * tracked; the other checks still run).
   */
  checkDurability(): void {
    if (this.membershipChanged) return;
    const disks = this.cluster.ids.map((id) => this.cluster.durable(id));
    const quorum = Math.floor(disks.length / 2) + 1;
    for (const [index, entry] of this.appliedEntries) {
      let copies = 0;
      for (const disk of disks) if (holdsDurably(disk, index, entry.term)) copies += 1;
      if (copies < quorum) {
        this.violation(`durability: committed entry ${index} (term ${entry.term}) is on ${copies} disks, fewer than a quorum of ${quorum}`);
        return;
      }
    }
  }

  private onApplied(node: NodeId, entry: Entry): void {
    const first = this.appliedEntries.get(entry.index);
    if (first === undefined) {
      if (entry.type === 'confChange' && entry.index > this.cluster.ids.length) this.membershipChanged = true;
      this.appliedEntries.set(entry.index, entry);
      let termMax = 0;
      for (const live of this.cluster.liveNodes()) termMax = Math.max(termMax, live.raft.term);
      this.committedByTerm.set(entry.index, termMax);
      return;
    }
    // Replicas share entry objects in the simulator: the same object is the same entry.
    if (first === entry) return;
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
          if (x === y) continue;
          if (x.term !== y.term || !sameBytes(x.data, y.data)) {
            this.violation(`log matching: ${(nodes[a] as SimRaftNode).id} and ${(nodes[b] as SimRaftNode).id} agree at ${high} but differ at ${index}`);
            return;
          }
        }
      }
    }
  }
}
