// The longer crash run (npm run test:long): 7 SIGKILLs of random members under write load, each restarted on its data dir;
// no acknowledged write is lost on any node. node/crash.test.ts runs the same with 4 kills in npm test.
import test from 'ava';
import { killsUnderWriteLoad } from './testing/crash-run.ts';

test('7 SIGKILLs of random members, sometimes the leader, while clients write: every acknowledged write survives on every node', (t) => killsUnderWriteLoad(t, 7));
