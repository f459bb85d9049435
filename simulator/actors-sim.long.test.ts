// The actor layer's many-seed run (npm run test:long): 500 seeds at the CLI's default safety phase run clean.
import test from 'ava';
import { actorSeedsRunClean } from './testing/sim-cli.ts';

test('debughost sim --actors 20 --seeds 500 --nodes 5 runs clean', (t) => actorSeedsRunClean(t, 500));
