// Majority quorum arithmetic, kept small and pure so it can be tested alone.
// Voters come as any iterable (the core passes its Set as is): these run on
// every acknowledgement, so they allocate nothing.
import type { LogIndex, NodeId } from './types.ts';

export const majority = (voterCount: number): number => Math.floor(voterCount / 2) + 1;

/** Reused by committedIndex: callers are synchronous, so one buffer serves them all. */
const matchesScratch: number[] = [];

/** The highest index that a majority of voters has (0 with no voters). */
export function committedIndex(voters: Iterable<NodeId>, matchOf: (id: NodeId) => LogIndex): LogIndex {
  const matches = matchesScratch;
  let count = 0;
  // Insertion sort, highest first: clusters have a handful of voters.
  for (const voter of voters) {
    const match = matchOf(voter);
    let i = count;
    while (i > 0 && (matches[i - 1] as number) < match) {
      matches[i] = matches[i - 1] as number;
      i -= 1;
    }
    matches[i] = match;
    count += 1;
  }
  if (count === 0) return 0 as LogIndex;
  return matches[majority(count) - 1] as LogIndex;
}

export type VoteResult = 'won' | 'lost' | 'pending';

/** Tally votes of voters only; a vote from a non-voter does not count. */
export function voteResult(voters: Iterable<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  let count = 0;
  let granted = 0;
  let rejected = 0;
  for (const voter of voters) {
    count += 1;
    const vote = votes.get(voter);
    if (vote === true) granted += 1;
    else if (vote === false) rejected += 1;
  }
  const needed = majority(count);
  if (granted >= needed) return 'won';
  if (count - rejected < needed) return 'lost';
  return 'pending';
}

/** Whether the set of voters in `active` forms a quorum. */
export function hasQuorum(voters: Iterable<NodeId>, active: (id: NodeId) => boolean): boolean {
  let count = 0;
  let activeCount = 0;
  for (const voter of voters) {
    count += 1;
    if (active(voter)) activeCount += 1;
  }
  return activeCount >= majority(count);
}
