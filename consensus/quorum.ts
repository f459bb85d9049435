// Majority quorum arithmetic, kept small and pure so it can be tested alone.
import type { LogIndex, NodeId } from './types.ts';

export const majority = (voterCount: number): number => Math.floor(voterCount / 2) + 1;

/** The highest index that a majority of voters has (0 with no voters). */
export function committedIndex(voters: readonly NodeId[], matchOf: (id: NodeId) => LogIndex): LogIndex {
  if (voters.length === 0) return 0 as LogIndex;
  const matches = voters.map(matchOf).sort((a, b) => b - a);
  return matches[majority(voters.length) - 1] as LogIndex;
}

export type VoteResult = 'won' | 'lost' | 'pending';

/** Tally votes of voters only; a vote from a non-voter does not count. */
export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const needed = majority(voters.length);
  let granted = 0;
  let rejected = 0;
  for (const voter of voters) {
    const vote = votes.get(voter);
    if (vote === true) granted += 1;
    else if (vote === false) rejected += 1;
  }
  if (granted >= needed) return 'won';
  if (voters.length - rejected < needed) return 'lost';
  return 'pending';
}

/** Whether the set of voters in `active` forms a quorum. */
export function hasQuorum(voters: readonly NodeId[], active: (id: NodeId) => boolean): boolean {
  let count = 0;
  for (const voter of voters) if (active(voter)) count += 1;
  return count >= majority(voters.length);
}
