// The simulator's many-seed runs (npm run test:long): 500 seeds of Raft and KV under swarm faults run clean,
// over 20 times faster than real time (the goal is 100x, see docs/simulator.md; a wide margin for a shared machine).
import test from 'ava';
import { raftSeedsRunClean } from './testing/sim-cli.ts';

test('debughost sim --seeds 500 --nodes 5 --json runs clean, faster than real time', (t) => raftSeedsRunClean(t, 500, 20));
