// The simulator's checks can fail: planted bugs in the Raft core are caught within 200 seeds.
import test from 'ava';
import { ALL_FAULTS } from './faults.ts';
import { mutatedRaftFactory } from './mutations.ts';
import { runSeed } from './run-seed.ts';

test('a voter that ignores the log up-to-date check is caught within 200 seeds', (t) => {
  const createRaft = mutatedRaftFactory('voteWithoutLogCheck');
  let caught: { seed: number; violation: string } | null = null;
  for (let seed = 1; seed <= 200 && caught === null; seed += 1) {
    const result = runSeed({ seed, nodes: 5, faults: new Set(ALL_FAULTS), createRaft });
    if (!result.ok) caught = { seed, violation: result.violations[0] ?? '' };
  }
  t.not(caught, null, 'the planted bug went unnoticed for 200 seeds');
  t.log(`caught at seed ${String(caught?.seed)}: ${caught?.violation ?? ''}`);
  // Leader completeness or state-machine safety is what this bug breaks.
  t.regex(caught?.violation ?? '', /leader completeness|state machine safety|log matching|linearizability/);
});

test('the seed that catches the mutation runs clean without it (the failure is the bug, not the seed)', (t) => {
  const createRaft = mutatedRaftFactory('voteWithoutLogCheck');
  let seed = 1;
  while (seed <= 200 && runSeed({ seed, nodes: 5, faults: new Set(ALL_FAULTS), createRaft }).ok) seed += 1;
  t.true(seed <= 200);
  t.deepEqual(runSeed({ seed, nodes: 5, faults: new Set(ALL_FAULTS) }).violations, []);
});
