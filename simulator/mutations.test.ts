// The simulator's checks can fail: every planted bug of the catalogue is caught within 200 seeds with the default fault mix, and the seed that catches it runs clean without it.
import test from 'ava';
import { ALL_FAULTS } from './faults.ts';
import { huntMutation } from './mutation-hunt.ts';
import { MUTATIONS, type MutationName } from './mutations.ts';
import { runSeed } from './run-seed.ts';

const SEEDS_MAX = 200;
const NODES = 5;

/** What each bug breaks: the invariants that may see it first. */
const EXPECTED: Record<MutationName, RegExp> = {
  commitEarlierTerm: /^(commit rule|electability|durability|state machine safety|leader completeness)$/,
  voteWithoutLogCheck: /^(leader completeness|electability|state machine safety|log matching|durability|linearizability)$/,
  readWithoutHeartbeat: /^(read index|linearizability)$/,
  appendWithoutPrevTerm: /^(log matching|state machine safety|electability|durability|leader completeness)$/,
  snapshotDropsNewer: /^(log retention|durability|electability)$/,
  ignoreCheckQuorum: /^(check-quorum|liveness)$/,
  voteBeforePersist: /^(persist before send|election safety)$/,
  applyBeforeSync: /^(durability|persist before send|commit index went back on disk|linearizability)$/,
};

for (const name of Object.keys(MUTATIONS) as MutationName[]) {
  test(`${name} (${MUTATIONS[name].bug}) is caught within ${SEEDS_MAX} seeds`, (t) => {
    const faults = new Set(ALL_FAULTS);
    const hunt = huntMutation(name, { seedsMax: SEEDS_MAX, nodes: NODES, faults });
    const first = hunt.first;
    if (first === null) return t.fail(`${name} went unnoticed for ${SEEDS_MAX} seeds`);
    t.log(`seed ${first.seed}, after ${(first.detectedMs / 1000).toFixed(1)} s simulated, by ${first.invariant}: ${first.violation}`);
    t.regex(first.invariant, EXPECTED[name]);
    // The failure is the bug's, not the seed's.
    t.deepEqual(runSeed({ seed: first.seed, nodes: NODES, faults }).violations, []);
  });
}
