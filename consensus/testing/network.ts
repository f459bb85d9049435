// A tiny synchronous harness for unit tests of the pure core, after etcd's
// `network`: persist is instant, messages are delivered in order, and links
// can be cut. The seeded simulator is the real test bed; this one is for
// precise, step-by-step scenarios.
import { Raft, defaultRaftConfig } from '../raft.ts';
import { bootstrapState, emptyPersistedState } from '../storage.ts';
import type { Entry, Message, NodeId, RaftConfig, Random, ReadState } from '../types.ts';

/** A cheap deterministic source; `seed` gives one process of a node draws of its own. */
export const counterRandom = (seed = 1): Random => {
  let state = seed;
  return {
    int: (max) => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return state % max;
    },
    float: () => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return state / 2147483648;
    },
  };
};

export class TestNetwork {
  readonly nodes = new Map<NodeId, Raft>();
  readonly applied = new Map<NodeId, Entry[]>();
  readonly readStates = new Map<NodeId, ReadState[]>();
  readonly cut = new Set<string>();
  /** Messages for which this returns true are dropped. */
  drop: (message: Message) => boolean = () => false;
  delivered: Message[] = [];

  constructor(ids: readonly string[], configure: (config: RaftConfig) => RaftConfig = (config) => config) {
    const voters = ids as NodeId[];
    for (const id of voters) {
      const config = configure(defaultRaftConfig(id));
      this.nodes.set(id, new Raft(config, counterRandom(), bootstrapState(voters)));
      this.applied.set(id, []);
      this.readStates.set(id, []);
    }
    this.settle();
  }

  /** A node that is not a member yet, started empty (to be added as a learner). */
  addEmpty(id: string): Raft {
    const node = new Raft(defaultRaftConfig(id as NodeId), counterRandom(), emptyPersistedState());
    this.nodes.set(id as NodeId, node);
    this.applied.set(id as NodeId, []);
    this.readStates.set(id as NodeId, []);
    return node;
  }

  node(id: string): Raft {
    const node = this.nodes.get(id as NodeId);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  isolate(id: string): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}->${other}`);
      this.cut.add(`${other}->${id}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  /** Drain every node's ready until nothing moves; returns messages delivered. */
  settle(roundsMax = 1000): number {
    let count = 0;
    for (let round = 0; round < roundsMax; round += 1) {
      const inFlight: Message[] = [];
      for (const [id, node] of this.nodes) {
        while (node.hasReady()) {
          const ready = node.ready();
          inFlight.push(...ready.messages);
          (this.applied.get(id) as Entry[]).push(...ready.committedEntries);
          (this.readStates.get(id) as ReadState[]).push(...ready.readStates);
          node.advance(ready);
        }
      }
      if (inFlight.length === 0) return count;
      for (const message of inFlight) {
        if (this.cut.has(`${message.from}->${message.to}`) || this.drop(message)) continue;
        const target = this.nodes.get(message.to);
        if (target === undefined) continue;
        count += 1;
        this.delivered.push(message);
        target.step(message);
      }
    }
    throw new Error('network did not settle');
  }

  /**
   * Make `id` leader: by ticking it when no leader is known, or else by a
   * TimeoutNow (as in a transfer), since followers of a live leader ignore
   * ordinary campaigns (check-quorum lease).
   */
  elect(id: string): void {
    const node = this.node(id);
    if (node.leader !== null && node.leader !== node.id) {
      node.step({ type: 'timeoutNow', from: node.leader, to: node.id, term: node.term });
      this.settle();
    }
    for (let i = 0; i < 100 && node.role !== 'leader'; i += 1) {
      node.tick();
      this.settle();
    }
    if (node.role !== 'leader') throw new Error(`${id} did not become leader (role ${node.role})`);
  }

  tickAll(times: number): void {
    for (let i = 0; i < times; i += 1) {
      for (const node of this.nodes.values()) node.tick();
      this.settle();
    }
  }
}

export const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
export const text = (data: Uint8Array): string => new TextDecoder().decode(data);
