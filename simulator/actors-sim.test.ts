// Whole-cluster actor runs as a user starts them: 50 seeds clean under swarm faults, and each planted actor-layer bug caught.
import test from 'ava';
import { ALL_FAULTS } from './faults.ts';
import { huntActorMutation } from './mutation-hunt.ts';
import { ACTOR_MUTATIONS, type ActorMutationName } from './mutations.ts';
import { runActorSeed } from './run-actor-seed.ts';
import { actorSeedsRunClean, debughost } from './testing/sim-cli.ts';

// 50 seeds with a shorter safety phase than the CLI default (8 s) here; 500 at the default in
// simulator/actors-sim.long.test.ts (npm run test:long).
test('debughost sim --actors 20 --seeds 50 --nodes 5 runs clean', (t) => actorSeedsRunClean(t, 50, ['--safety-ms', '4000']));

/** Hunted seed by seed below (stops at the first catch), not through the CLI's whole range. */
type HuntedPlant = 'startBeforeOldStopped';

/** Each actor-layer plant run through the CLI, the seeds it must be caught within, and the check that may see it. */
const ACTOR_PLANTS: Record<Exclude<ActorMutationName, HuntedPlant>, { seeds: number; caughtBy: RegExp }> = {
  noFencing: { seeds: 30, caughtBy: /fencing|two owners/ },
  freshRequestIds: { seeds: 30, caughtBy: /idempotency: .*a retried request was applied twice/ },
  quotaOutsideStartTxn: { seeds: 30, caughtBy: /quota: tenant/ },
  // Caught at seed 1, and on 17 of seeds 1-30 (main before the hand-off protocol: 14 of 30).
  launchBeforeRelease: { seeds: 5, caughtBy: /two copies: .*a graceful move that did not wait for its release/ },
};

for (const name of Object.keys(ACTOR_PLANTS) as Exclude<ActorMutationName, HuntedPlant>[]) {
  const { seeds, caughtBy } = ACTOR_PLANTS[name];
  test(`the planted ${name} (${ACTOR_MUTATIONS[name].bug}) is caught within ${seeds} seeds, and its seed replays clean without it`, async (t) => {
    const result = await debughost(['sim', '--actors', '20', '--seeds', String(seeds), '--nodes', '5', '--mutation', name]);
    t.is(result.code, 1, result.stdout);
    const match = /seed (\d+) FAILED: (.*)/.exec(result.stdout);
    t.truthy(match, result.stdout);
    t.log(`first caught at seed ${match?.[1] ?? '?'}: ${match?.[2] ?? ''}`);
    t.regex(match?.[2] ?? '', caughtBy);
    t.regex(result.stdout, new RegExp(`replay: debughost sim --seed ${match?.[1] ?? ''} --nodes 5 --actors 20 --mutation ${name}`));
    const seed = Number(match?.[1]);
    t.deepEqual(runActorSeed({ seed, nodes: 5, faults: new Set(ALL_FAULTS), actors: 20 }).violations, []);
  });
}

const HUNT_SEEDS_MAX = 200;

test(`the planted startBeforeOldStopped (${ACTOR_MUTATIONS.startBeforeOldStopped.bug}) is caught by the copies-during-the-run check within ${HUNT_SEEDS_MAX} seeds, and its seed runs clean without it`, (t) => {
  const faults = new Set(ALL_FAULTS);
  const hunt = huntActorMutation('startBeforeOldStopped', { seedsMax: HUNT_SEEDS_MAX, nodes: 5, actors: 20, faults });
  const first = hunt.first;
  if (first === null) return t.fail(`startBeforeOldStopped went unnoticed for ${HUNT_SEEDS_MAX} seeds`);
  t.log(`seed ${first.seed}, after ${(first.detectedMs / 1000).toFixed(1)} s simulated, by ${first.invariant}: ${first.violation}`);
  t.is(first.invariant, 'two copies');
  t.deepEqual(runActorSeed({ seed: first.seed, nodes: 5, faults, actors: 20 }).violations, []);
});

test('an actor run replays exactly: same seed, same trace hash', (t) => {
  const hash = (seed: number): string | null => runActorSeed({ seed, nodes: 3, faults: new Set(ALL_FAULTS), actors: 10, safetyMs: 3000, traceHash: true }).traceHash;
  t.is(hash(7), hash(7));
  t.not(hash(7), hash(8));
});

test('an actor mutation without --actors is refused in one line', async (t) => {
  const result = await debughost(['sim', '--mutation', 'noFencing']);
  t.is(result.code, 2);
  t.is(result.stderr.trim(), 'debughost sim: --mutation noFencing plants a bug in the actor layer; add --actors N');
});
