// SIGKILL of random members (leaders and followers) under write load, each restarted on its data dir: no acknowledged write is lost on any node.
// Four kills here (two leaders, two followers, in a seeded order); the seven-kill run is in node/crash.long.test.ts (npm run test:long).
import test from 'ava';
import { killsUnderWriteLoad } from './testing/crash-run.ts';

test('4 SIGKILLs of random members, 2 of them the leader, while clients write: every acknowledged write survives on every node', (t) => killsUnderWriteLoad(t, 4));
