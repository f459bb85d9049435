// Goal: the nemesis schedule is a pure function of its seed, stays inside the run, and each partition shape cuts where it says.
import test from 'ava';
import { LEAD_IN_MS, NEMESIS_KINDS, ScheduleError, TAIL_MS, parseKinds, partitionDrops, planSchedule, type Fault } from './schedule.ts';

const options = { seed: 42, durationMs: 60_000, kinds: ['partition', 'kill', 'pause'] as const, nodeCount: 5 };

test('the same seed gives the same schedule, another seed another one', (t) => {
  t.deepEqual(planSchedule(options), planSchedule(options));
  t.notDeepEqual(planSchedule(options), planSchedule({ ...options, seed: 43 }));
});

test('windows lie between the lead-in and the tail, in order, without overlap, with a gap between', (t) => {
  for (let seed = 0; seed < 200; seed++) {
    const windows = planSchedule({ ...options, seed, kinds: [...NEMESIS_KINDS] });
    t.true(windows.length >= 5, `seed ${seed}: ${windows.length} windows in 60 s`);
    let previousEnd = 0;
    for (const window of windows) {
      t.true(window.startMs >= LEAD_IN_MS && window.endMs <= options.durationMs - TAIL_MS);
      t.true(window.startMs >= previousEnd + 2_000, `seed ${seed}: gap before ${window.startMs}`);
      t.true(window.endMs > window.startMs);
      t.true(window.faults.length === 1 || window.faults.length === 2);
      previousEnd = window.endMs;
    }
  }
});

test('only the asked-for kinds strike; restarts, member changes and skew never combine', (t) => {
  const seen = new Set<Fault['kind']>();
  for (let seed = 0; seed < 300; seed++) {
    for (const window of planSchedule({ ...options, seed, kinds: ['pause', 'loss', 'member'] })) {
      for (const fault of window.faults) {
        t.true(['pause', 'loss', 'member'].includes(fault.kind));
        seen.add(fault.kind);
      }
      if (window.faults.length === 2) t.false(window.faults.some((fault) => fault.kind === 'member'));
    }
  }
  t.deepEqual([...seen].sort(), ['loss', 'member', 'pause']);
});

test('kills take at most a minority, pauses and kills name valid slots, loss stays within 5–30 %', (t) => {
  for (let seed = 0; seed < 300; seed++) {
    for (const window of planSchedule({ ...options, seed, kinds: ['kill', 'pause', 'loss'] })) {
      for (const fault of window.faults) {
        if (fault.kind === 'kill') {
          t.true(fault.targets.length >= 1 && fault.targets.length <= 2);
          for (const target of fault.targets) if (target.type === 'slot') t.true(target.slot >= 0 && target.slot < 5);
        }
        if (fault.kind === 'pause' && fault.target.type === 'slot') t.true(fault.target.slot < 5);
        if (fault.kind === 'loss') t.true(fault.probability >= 0.05 && fault.probability <= 0.3);
      }
    }
  }
});

test('parseKinds accepts a list and names the valid kinds on a typo', (t) => {
  t.deepEqual(parseKinds('partition, kill,partition'), ['partition', 'kill']);
  const error = t.throws(() => parseKinds('partition,kil'), { instanceOf: ScheduleError });
  t.regex(error?.message ?? '', /unknown nemesis 'kil'; choose from partition, loss, kill/);
  t.throws(() => parseKinds(''), { instanceOf: ScheduleError });
});

const reaches = (drops: [number, number][], from: number, to: number): boolean => !drops.some(([a, b]) => a === from && b === to);

test('halves: the first two of five cannot talk to the other three, each side talks within itself', (t) => {
  const drops = partitionDrops('halves', [3, 0, 4, 1, 2], null);
  t.is(drops.length, 2 * 3 * 2);
  t.false(reaches(drops, 3, 4));
  t.false(reaches(drops, 1, 0));
  t.true(reaches(drops, 3, 0));
  t.true(reaches(drops, 4, 2));
});

test('isolate-leader cuts the leader off both ways and nothing else', (t) => {
  const drops = partitionDrops('isolate-leader', [0, 1, 2, 3, 4], 2);
  t.is(drops.length, 8);
  for (const other of [0, 1, 3, 4]) {
    t.false(reaches(drops, 2, other));
    t.false(reaches(drops, other, 2));
  }
  t.true(reaches(drops, 0, 1));
});

test('bridge: only the bridge node reaches both halves', (t) => {
  const drops = partitionDrops('bridge', [4, 0, 1, 2, 3], null);
  for (const other of [0, 1, 2, 3]) t.true(reaches(drops, 4, other) && reaches(drops, other, 4));
  t.false(reaches(drops, 0, 2));
  t.true(reaches(drops, 0, 1));
  t.true(reaches(drops, 2, 3));
});

test('ring: each of five nodes reaches exactly its two neighbours', (t) => {
  const order = [2, 4, 1, 0, 3];
  const drops = partitionDrops('ring', order, null);
  for (let i = 0; i < 5; i++) {
    const node = order[i] as number;
    const reached = order.filter((other) => other !== node && reaches(drops, node, other));
    t.deepEqual(reached.sort(), [order[(i + 1) % 5] as number, order[(i + 4) % 5] as number].sort());
  }
});

test('one-way drops only what the first node sends', (t) => {
  const drops = partitionDrops('one-way', [1, 0, 2], null);
  t.deepEqual(drops, [[1, 0], [1, 2]]);
  t.true(reaches(drops, 0, 1));
});
