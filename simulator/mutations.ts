// Deliberately broken Raft cores. The simulator must catch each of them: a
// checker that never fails proves nothing (mutation testing).
import { Raft } from '../consensus/raft.ts';
import { committedIndex } from '../consensus/quorum.ts';
import type { PersistedState } from '../consensus/storage.ts';
import type { LogIndex, Message, NodeId, RaftConfig, Random } from '../consensus/types.ts';

/** Commits an entry of an earlier term by counting replicas (the Figure 8 bug). */
class CommitEarlierTermRaft extends Raft {
  protected override maybeCommitAndBroadcast(): boolean {
    const index = committedIndex([...this.voters], (id: NodeId) => this.progress.get(id)?.match ?? (0 as LogIndex));
    if (index <= this.log.committed) return false;
    this.log.commitTo(index);
    this.releaseReadsAwaitingCommit();
    this.broadcastPending = true;
    return true;
  }
}

/** Grants votes without checking that the candidate's log is at least as up to date. */
class VoteWithoutLogCheckRaft extends Raft {
  protected override handleVoteRequest(message: Extract<Message, { type: 'preVote' | 'vote' }>): void {
    const canVote = this.vote === message.from || (this.vote === null && this.leader === null) || (message.type === 'preVote' && message.term > this.term);
    const responseType = message.type === 'preVote' ? 'preVoteResp' : 'voteResp';
    const responseTerm = canVote && message.type === 'preVote' ? message.term : this.term;
    this.messages.push({ type: responseType, from: this.id, to: message.from, term: responseTerm, granted: canVote });
    if (canVote && message.type === 'vote') {
      this.electionElapsed = 0;
      this.vote = message.from;
    }
  }
}

export const MUTATIONS = {
  commitEarlierTerm: CommitEarlierTermRaft,
  voteWithoutLogCheck: VoteWithoutLogCheckRaft,
} as const;

export type MutationName = keyof typeof MUTATIONS;

/** Planted bugs in the actor layer (host options), for runs with --actors. */
export const ACTOR_MUTATIONS = {
  noFencing: 'owner writes omit the ring-epoch compare',
  freshRequestIds: 'every forwarded attempt of a call gets a new request id (the old two-router bug): a retried change can apply twice',
} as const;

export type ActorMutationName = keyof typeof ACTOR_MUTATIONS;

export function isActorMutationName(name: string): name is ActorMutationName {
  return Object.hasOwn(ACTOR_MUTATIONS, name);
}

export function isMutationName(name: string): name is MutationName {
  return Object.hasOwn(MUTATIONS, name);
}

export function mutatedRaftFactory(name: MutationName): (config: RaftConfig, random: Random, persisted: PersistedState) => Raft {
  const Mutant = MUTATIONS[name];
  return (config, random, persisted) => new Mutant(config, random, persisted);
}
