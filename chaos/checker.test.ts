// Goal: the chaos checkers judge recorded histories right, and can fail: stale reads, lost and doubled inserts are caught.
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import type { Operation } from '../simulator/history.ts';
import { allowedFinal, checkExactlyOnce, CopiesDuringRun, checkRegisters, checkSet, classifyWriteError, poisonLeaks, recoveryPerWindow, type FinalDesired, type ProjectCall } from './checker.ts';
import { escapeHtml, renderReport } from './report.ts';

test('a refused write failed; a timed-out or cut-off one is unknown', (t) => {
  t.is(classifyWriteError(grpc.status.UNAVAILABLE, 'no leader is known yet (an election is under way); retry shortly'), 'fail');
  t.is(classifyWriteError(grpc.status.UNAVAILABLE, 'the write was not applied: index 7 was taken by term 3'), 'fail');
  t.is(classifyWriteError(grpc.status.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED 10.213.1.11:2701'), 'fail');
  t.is(classifyWriteError(grpc.status.INVALID_ARGUMENT, 'value too large'), 'fail');
  t.is(classifyWriteError(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded after 2.001s'), 'unknown');
  t.is(classifyWriteError(grpc.status.UNAVAILABLE, 'Connection dropped'), 'unknown');
  t.is(classifyWriteError(grpc.status.CANCELLED, 'Call cancelled'), 'unknown');
});

const op = (fields: Partial<Operation> & Pick<Operation, 'id' | 'kind' | 'callTime'>): Operation => ({ clientId: fields.id, key: 'k', returnTime: null, status: 'ok', ...fields });

test('planted stale read: a read after an acknowledged write that returns the old value is a violation', (t) => {
  const history = [
    op({ id: 1, kind: 'write', value: 'a', callTime: 0, returnTime: 10 }),
    op({ id: 2, kind: 'write', value: 'b', callTime: 20, returnTime: 30 }),
    op({ id: 3, kind: 'read', output: 'a', callTime: 40, returnTime: 50 }),
  ];
  const result = checkRegisters(history);
  t.is(result.result, 'violation');
});

test('an unknown write may have taken effect late: reading its value later is fine, and so is never seeing it', (t) => {
  const seen = [
    op({ id: 1, kind: 'write', value: 'a', callTime: 0, returnTime: 10 }),
    op({ id: 2, kind: 'write', value: 'b', callTime: 20, status: 'unknown' }),
    op({ id: 3, kind: 'read', output: 'a', callTime: 40, returnTime: 50 }),
    op({ id: 4, kind: 'read', output: 'b', callTime: 500, returnTime: 510 }),
  ];
  t.is(checkRegisters(seen).result, 'ok');
  const unseen = seen.slice(0, 3);
  t.is(checkRegisters(unseen).result, 'ok');
});

test('a final read that misses an acknowledged register write is a violation (lost write)', (t) => {
  const history = [
    op({ id: 1, kind: 'write', value: 'a', callTime: 0, returnTime: 10 }),
    op({ id: 2, kind: 'cas', expected: 'a', value: 'b', casSucceeded: true, callTime: 20, returnTime: 30 }),
    op({ id: 3, kind: 'read', output: 'a', callTime: 1000, returnTime: 1010, clientId: -1 }),
  ];
  t.is(checkRegisters(history).result, 'violation');
});

test('checkSet: acknowledged inserts missing on a node are lost; unknown ones may be missing; version 2 is a duplicate', (t) => {
  const attempts = [
    { element: 'a', outcome: 'ok' as const },
    { element: 'b', outcome: 'ok' as const },
    { element: 'c', outcome: 'unknown' as const },
    { element: 'd', outcome: 'fail' as const },
  ];
  const good = new Map([
    ['n1', new Map([['a', 1], ['b', 1], ['c', 1]])],
    ['n2', new Map([['a', 1], ['b', 1], ['c', 1]])],
  ]);
  t.deepEqual(checkSet(attempts, good), { lost: [], duplicates: [], phantoms: [], divergent: [] });
  const bad = new Map([
    ['n1', new Map([['a', 2], ['c', 1], ['z', 1]])],
    ['n2', new Map([['a', 1], ['b', 1], ['c', 1]])],
  ]);
  t.deepEqual(checkSet(attempts, bad), { lost: ['b'], duplicates: ['a'], phantoms: ['z'], divergent: ['n2'] });
});

test('recoveryPerWindow: time from a window end until a later write succeeded through every node', (t) => {
  const windows = [
    { startMs: 1000, endMs: 2000 },
    { startMs: 5000, endMs: 6000 },
  ];
  const writes = [
    { node: 'n1', startMs: 1500, endMs: 1600 }, // during the window: does not count
    { node: 'n1', startMs: 2100, endMs: 2200 },
    { node: 'n2', startMs: 2000, endMs: 2700 },
    { node: 'n1', startMs: 6100, endMs: 6150 },
  ];
  t.deepEqual(recoveryPerWindow(windows, writes, ['n1', 'n2']), [700, null]);
});

test('the report is one self-contained page: an SVG with a shaded band per window, text escaped', (t) => {
  const html = renderReport({
    seed: 9,
    prefix: 'dhc000000',
    nodes: 3,
    kinds: ['pause'],
    durationMs: 20_000,
    calls: [
      { workload: 'kv', op: 'write', node: 'n1', startMs: 100, endMs: 110, outcome: 'ok' },
      { workload: 'kv', op: 'write', node: 'n2', startMs: 4000, endMs: 6000, outcome: 'unknown', error: '<timeout>' },
    ],
    windows: [{ plannedStartMs: 3000, plannedEndMs: 6000, startMs: 3010, endMs: 6020, faults: [{ kind: 'pause', target: { type: 'leader' } }], details: ['pause n2'] }],
    perWindowRecoveryMs: [250],
    timeline: [{ atMs: 3010, text: 'pause <n2>' }],
    verdicts: [{ workload: 'kv', ok: true, lost: 0, duplicates: 0, linearizable: true, findings: ['fine'] }],
    summary: { ok: true },
    registerExplanation: 'linearizable',
  });
  t.regex(html, /<svg [^>]*>/);
  t.is(html.match(/<rect [^>]*fill="#f4c7c3"/g)?.length, 1);
  t.is(html.match(/<circle /g)?.length, 2);
  t.true(html.includes('pause &#60;n2&#62;'));
  t.false(/<script|src=|href=/.test(html));
  t.is(escapeHtml(`a<b>"c"&'`), 'a&#60;b&#62;&#34;c&#34;&#38;&#39;');
});

const call = (intent: ProjectCall['intent'], outcome: ProjectCall['outcome'], startMs: number, endMs: number): ProjectCall => ({ project: 'p', intent, outcome, startMs, endMs });

test('the final desired state of a project: the last acknowledged change, either of two concurrent ones, or any unknown one', (t) => {
  t.deepEqual([...allowedFinal([])], ['absent']);
  t.deepEqual([...allowedFinal([call('running', 'ok', 0, 10), call('stopped', 'ok', 20, 30), call(null, 'ok', 40, 50)])], ['stopped']);
  // Overlapping acknowledged calls may be applied in either order.
  t.deepEqual([...allowedFinal([call('running', 'ok', 0, 30), call('stopped', 'ok', 20, 25)])].sort(), ['running', 'stopped']);
  // A failed change took no effect; an unknown one may have, even after later acknowledged ones.
  t.deepEqual([...allowedFinal([call('running', 'unknown', 0, 5), call('stopped', 'ok', 20, 30), call('running', 'fail', 40, 50)])].sort(), ['running', 'stopped']);
  t.deepEqual([...allowedFinal([call('running', 'unknown', 0, 5)])].sort(), ['absent', 'running']);
});

test('exactly once: duplicates, missing and orphaned projects are told apart; a matching host has none', (t) => {
  const desired = new Map<string, FinalDesired>([
    ['a', 'running'],
    ['b', 'running'],
    ['c', 'stopped'],
    ['d', 'absent'],
    ['e', 'running'],
  ]);
  t.deepEqual(checkExactlyOnce(desired, new Map([['a', 1], ['b', 1], ['e', 1]])), { duplicates: [], missing: [], orphans: [] });
  // Planted: a runs twice, b nowhere, c and d although stopped or removed, and f nobody ever asked for.
  t.deepEqual(checkExactlyOnce(desired, new Map([['a', 2], ['c', 1], ['d', 1], ['e', 1], ['f', 1]])), { duplicates: ['a'], missing: ['b'], orphans: ['c', 'd', 'f'] });
});

test('copies during the run: a planted second copy at one sample is caught with its time; one copy per project at every sample is fine', (t) => {
  const fine = new CopiesDuringRun();
  fine.observe(0, new Map([['p1', 1], ['p2', 1]]));
  fine.observe(250, new Map([['p1', 1]]));
  t.deepEqual(fine.violations, []);
  t.is(fine.maxCopies, 1);
  const planted = new CopiesDuringRun();
  planted.observe(0, new Map([['p1', 1]]));
  planted.observe(250, new Map([['p1', 2], ['p2', 1]]));
  planted.observe(500, new Map([['p1', 3]]));
  planted.observe(750, new Map([['p2', 2]]));
  t.deepEqual(planted.violations, [
    { project: 'p1', atMs: 250, copies: 2 },
    { project: 'p2', atMs: 750, copies: 2 },
  ]);
  t.is(planted.maxCopies, 3);
  t.is(planted.samples, 4);
});

test('planted leak: a poison window in which the cluster applied a malformed command or accepted a bad client put fails the run', (t) => {
  const clean = { applied: 0, clientAccepted: 0 };
  t.deepEqual(poisonLeaks([{}, { poison: clean }]), []);
  t.deepEqual(poisonLeaks([{ poison: clean }, { poison: { applied: 1, clientAccepted: 0 } }]), [{ applied: 1, clientAccepted: 0 }]);
  t.is(poisonLeaks([{ poison: { applied: 0, clientAccepted: 2 } }]).length, 1);
});
