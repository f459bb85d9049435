// Goal: virtual time runs events in (time, insertion) order, cancels cleanly, bounds runaway runs, drifts and pauses node clocks correctly, and the trace digest makes runs comparable.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import test from 'ava';
import { nodeId } from '../consensus/types.ts';
import { Prng } from './prng.ts';
import { EventLimitError, Scheduler } from './scheduler.ts';
import { Trace, formatMs } from './trace.ts';

const n1 = nodeId('n1');
const n2 = nodeId('n2');

test('events run in time order, ties in insertion order', (t) => {
  const scheduler = new Scheduler();
  const order: string[] = [];
  scheduler.schedule(5, () => order.push('b5'));
  scheduler.scheduleAt(1, () => order.push('a1'));
  scheduler.schedule(5, () => order.push('c5'));
  scheduler.scheduleCall(3, null, (label: string) => order.push(label), 'x3');
  scheduler.schedule(0, () => order.push('z0'));
  const result = scheduler.runUntil(10, 100);
  t.deepEqual(order, ['z0', 'a1', 'x3', 'b5', 'c5']);
  t.deepEqual(result, { reason: 'time', events: 5 });
  t.is(scheduler.nowMs(), 10);
});

test('the clock reads the event time inside callbacks; nested scheduling works', (t) => {
  const scheduler = new Scheduler({ startMs: 100 });
  const times: number[] = [];
  scheduler.schedule(2.5, () => {
    times.push(scheduler.nowMs());
    scheduler.schedule(0, () => times.push(scheduler.nowMs()));
  });
  t.true(scheduler.step());
  t.true(scheduler.step());
  t.false(scheduler.step());
  t.deepEqual(times, [102.5, 102.5]);
});

test('cancel removes an event; cancelling twice or after it ran returns false', (t) => {
  const scheduler = new Scheduler();
  const ran: number[] = [];
  const handles = Array.from({ length: 50 }, (_, i) => scheduler.schedule(i % 7, () => ran.push(i)));
  for (let i = 0; i < 50; i += 3) t.true(scheduler.cancel(handles[i]!));
  t.false(scheduler.cancel(handles[0]!));
  scheduler.runUntil(100, 1000);
  const expected = Array.from({ length: 50 }, (_, i) => i)
    .filter((i) => i % 3 !== 0)
    .sort((a, b) => (a % 7) - (b % 7) || a - b);
  t.deepEqual(ran, expected);
  t.false(scheduler.cancel(handles[1]!));
  t.is(scheduler.pending(), 0);
});

test('heap order matches a sorted reference over random operations', (t) => {
  const prng = new Prng(77);
  const scheduler = new Scheduler();
  const live = new Map<number, { timeMs: number; handle: ReturnType<Scheduler['schedule']> }>();
  const ran: number[] = [];
  for (let id = 0; id < 5000; id++) {
    const timeMs = prng.int(1000);
    live.set(id, { timeMs, handle: scheduler.scheduleAt(timeMs, () => ran.push(id)) });
    if (prng.chance(0.3)) {
      const victim = prng.int(id + 1);
      const entry = live.get(victim);
      if (entry !== undefined) {
        t.true(scheduler.cancel(entry.handle));
        live.delete(victim);
      }
    }
  }
  scheduler.runUntil(1000, 10_000);
  const expected = [...live].sort(([a, x], [b, y]) => x.timeMs - y.timeMs || a - b).map(([id]) => id);
  t.deepEqual(ran, expected);
});

test('runUntil with a predicate stops when it holds, or when idle', (t) => {
  const scheduler = new Scheduler();
  let count = 0;
  for (let i = 1; i <= 10; i++) scheduler.schedule(i, () => count++);
  t.deepEqual(scheduler.runUntil(() => count >= 4, 100), { reason: 'predicate', events: 4 });
  t.is(scheduler.nowMs(), 4);
  t.deepEqual(scheduler.runUntil(() => false, 100), { reason: 'idle', events: 6 });
});

test('a runaway run stops with EventLimitError', (t) => {
  const scheduler = new Scheduler();
  const loop = (): void => {
    scheduler.schedule(0, loop, 'loop');
  };
  scheduler.schedule(0, loop, 'loop');
  const error = t.throws(() => scheduler.runUntil(1, 1000), { instanceOf: EventLimitError });
  t.is(error?.name, 'EventLimitError');
  t.regex(error?.message ?? '', /ran 1000 events without reaching time 1 ms.*last event 'loop'/);
  t.throws(() => scheduler.runUntil(() => false, 10), { instanceOf: EventLimitError });
});

test('scheduling in the past or with a negative delay is refused', (t) => {
  const scheduler = new Scheduler({ startMs: 10 });
  t.throws(() => scheduler.scheduleAt(9, () => {}));
  t.throws(() => scheduler.schedule(-1, () => {}));
  t.throws(() => scheduler.schedule(Number.NaN, () => {}));
  t.throws(() => scheduler.runUntil(5, 10));
});

test('a drifting clock runs fast or slow and converts timer delays', (t) => {
  const scheduler = new Scheduler();
  const fast = scheduler.clockFor(n1, 200, 1000);
  const exact = scheduler.clockFor(n2);
  t.is(fast.nowMs(), 1000);
  scheduler.runUntil(10_000, 10);
  t.is(exact.nowMs(), 10_000);
  t.true(Math.abs(fast.nowMs() - (1000 + 10_000 * 1.0002)) < 1e-9);

  // A 1000 local-ms timer on a fast clock fires after 1000 / 1.0002 virtual ms.
  const firedAt: number[] = [];
  fast.setTimer(1000, () => firedAt.push(scheduler.nowMs()));
  scheduler.runUntil(20_000, 10);
  t.true(Math.abs(firedAt[0]! - (10_000 + 1000 / 1.0002)) < 1e-9);

  // Changing the drift keeps local time continuous.
  const before = fast.nowMs();
  fast.setDrift(-100);
  t.is(fast.nowMs(), before);
  scheduler.runUntil(21_000, 10);
  t.true(Math.abs(fast.nowMs() - (before + 1000 * 0.9999)) < 1e-9);
  t.is(scheduler.clockFor(n1), fast);
  t.is(fast.driftPpm, -100, 'asking for the clock again keeps its drift');
  t.is(scheduler.clockFor(n1, -100), fast);
  t.throws(() => scheduler.clockFor(n1, 1e6));
});

test('clearTimer and cancelAll stop timers', (t) => {
  const scheduler = new Scheduler();
  const clock = scheduler.clockFor(n1);
  const fired: string[] = [];
  const a = clock.setTimer(5, () => fired.push('a'));
  clock.setTimer(6, () => fired.push('b'));
  clock.setTimer(7, () => fired.push('c'));
  clock.clearTimer(a);
  clock.clearTimer(a);
  t.is(clock.timersPending(), 2);
  scheduler.runUntil(6, 10);
  t.deepEqual(fired, ['b']);
  t.is(clock.cancelAll(), 1);
  scheduler.runUntil(100, 10);
  t.deepEqual(fired, ['b']);
  t.is(clock.timersPending(), 0);
});

test('a paused node fires its timers and owned events late, in order, after resume', (t) => {
  const scheduler = new Scheduler();
  const clock = scheduler.clockFor(n1);
  const log: string[] = [];
  clock.setTimer(10, () => log.push(`t10@${scheduler.nowMs()}`));
  clock.setTimer(20, () => log.push(`t20@${scheduler.nowMs()}`));
  const held = clock.setTimer(25, () => log.push('cancelled'));
  scheduler.scheduleCall(15, n1, (m: string) => log.push(`${m}@${scheduler.nowMs()}`), 'msg15');
  scheduler.schedule(12, () => log.push(`other@${scheduler.nowMs()}`));
  scheduler.pause(n1);
  t.true(scheduler.isPaused(n1));
  t.false(scheduler.isPaused(n2));
  scheduler.runUntil(50, 100);
  t.deepEqual(log, ['other@12']);
  t.is(clock.nowMs(), 50, 'local time keeps running while paused');
  clock.clearTimer(held);
  scheduler.resume(n1);
  scheduler.runUntil(60, 100);
  t.deepEqual(log, ['other@12', 't10@50', 'msg15@50', 't20@50']);
  t.is(clock.timersPending(), 0);
});

test('the same seeded workload gives the same trace digest, a different seed a different one', (t) => {
  const run = (seed: number): string => {
    const prng = new Prng(seed);
    const scheduler = new Scheduler();
    const trace = new Trace({ enabled: true });
    for (let i = 0; i < 200; i++) {
      const node = `n${prng.range(1, 5)}`;
      scheduler.schedule(prng.float() * 100, () => trace.record(scheduler.nowMs(), node, 'tick', `i=${i}`));
    }
    scheduler.runUntil(100, 1000);
    return trace.digestHex();
  };
  t.is(run(1), run(1));
  t.not(run(1), run(2));
});

test('trace formats lines, hashes them, streams to a file, and is free when disabled', (t) => {
  const directory = mkdtempSync(join(tmpdir(), 'trace-'));
  try {
    const filePath = join(directory, 'run.trace');
    const trace = new Trace({ enabled: true, filePath, linesKeptMax: 2 });
    trace.record(0, 'n1', 'start');
    trace.record(12.5, 'n2', 'send', 'to=n1 type=vote');
    trace.record(1 / 3, 'sim', 'note', 'x');
    t.deepEqual(trace.lines(), ['0 n1 start', '12.500 n2 send to=n1 type=vote']);
    t.is(trace.lineCount(), 3);
    const expectedText = '0 n1 start\n12.500 n2 send to=n1 type=vote\n0.333 sim note x\n';
    t.is(trace.digestHex(), createHash('sha256').update(expectedText).digest('hex'));
    trace.close();
    t.is(readFileSync(filePath, 'utf8'), expectedText);
    t.throws(() => trace.record(1, 'n1', 'late'));
    t.throws(() => new Trace({ enabled: true }).record(1, 'n1', 'bad', 'a\nb'));

    const off = new Trace({ enabled: false, filePath: join(directory, 'unused') });
    off.record(1, 'n1', 'ignored');
    t.is(off.lineCount(), 0);
    t.is(off.digestHex(), createHash('sha256').digest('hex'));
    t.is(formatMs(7), '7');
    t.is(formatMs(0.1 + 0.2), '0.300');
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});
