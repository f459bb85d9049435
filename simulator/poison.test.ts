// The poison-pill nemesis (issue 11): malformed entries and records proposed to
// the leader during faults leave every check green, on the Raft-only runs and
// on whole-cluster runs with the actor layer; and the nemesis's own check fails
// when the apply-time value check is planted away.
import test from 'ava';
import { RaftNode } from '../consensus/raft-node.ts';
import { kvMachineFactoryWith } from '../consensus/kv-machine.ts';
import type { RaftPlant } from './cluster.ts';
import { runActorSeed } from './run-actor-seed.ts';
import { runSeed } from './run-seed.ts';
import { ALL_FAULTS } from './faults.ts';

const FAULTS = new Set(ALL_FAULTS);
const RAFT_SEEDS = 20;
const ACTOR_SEEDS = 8;

test(`${RAFT_SEEDS} Raft seeds x 5 nodes under the swarm's faults and the poison nemesis: no violation, and poison was committed and refused`, (t) => {
  let committed = 0;
  let refused = 0;
  for (let seed = 1; seed <= RAFT_SEEDS; seed += 1) {
    const result = runSeed({ seed, nodes: 5, faults: FAULTS, poison: true });
    t.true(result.ok, `seed ${seed}: ${result.violations[0] ?? ''} (replay: debughost sim --seed ${seed} --nodes 5 --poison)`);
    committed += result.poison?.committed ?? 0;
    refused += result.poison?.refused ?? 0;
  }
  t.log(`${committed} poison entries committed, ${refused} refused at apply`);
  // Most poison decodes to nothing or to a write the value check refuses; a flipped byte now and then yields an ordinary key.
  t.true(refused > 100 && refused >= committed * 0.8, `${refused} of ${committed}`);
});

test(`${ACTOR_SEEDS} actor seeds x 3 nodes x 12 projects with the poison nemesis aimed at the projects' own records: exactly once, fencing and quota hold`, (t) => {
  let refused = 0;
  for (let seed = 1; seed <= ACTOR_SEEDS; seed += 1) {
    const result = runActorSeed({ seed, nodes: 3, faults: FAULTS, actors: 12, poison: true });
    t.true(result.ok, `seed ${seed}: ${result.violations[0] ?? ''} (replay: debughost sim --seed ${seed} --nodes 3 --actors 12 --poison)`);
    refused += result.poison?.refused ?? 0;
  }
  t.true(refused > 50, `only ${refused} poison entries refused`);
});

test('planted bug: state machines without the apply-time value check take the malformed records, and the poison check fails', (t) => {
  const unchecked = kvMachineFactoryWith({});
  const plant: RaftPlant = { createNode: (components, options, _factory, persisted) => new RaftNode(components, options, unchecked, persisted) };
  const result = runSeed({ seed: 1, nodes: 3, faults: new Set(), poison: true, plant });
  t.false(result.ok);
  t.regex(result.violations[0] ?? '', /poison: the malformed (write|value) .* (was applied|is stored)/);
});
