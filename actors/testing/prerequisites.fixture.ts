// A test file for prerequisites.test.ts to run through run-ava.ts: one test with no prerequisite,
// one that needs redis-server (which the test pretends missing). Not part of any suite.
import test from 'ava';
import { prerequisites } from './prerequisites.ts';

const redisTest = (await prerequisites('redis-server')).guard(test);

test('needs nothing', (t) => t.pass());
redisTest('needs redis-server', (t) => t.pass());
