// Goal: the register linearizability checker accepts exactly the linearizable histories (classic cases, a brute-force reference, generated executions), per key, within its budget.
import test from 'ava';
import { describeOperation, MalformedOperationError } from './history.ts';
import type { Operation, OpStatus } from './history.ts';
import { checkLinearizability } from './linearizability.ts';

// ---- Builders -------------------------------------------------------------

interface OpOptions {
  client?: number;
  status?: OpStatus;
  key?: string;
}

/** Hands out ids in call order; `key` defaults to "x", status to ok. */
function historyBuilder() {
  const ops: Operation[] = [];
  const base = (kind: Operation['kind'], call: number, ret: number | null, options: OpOptions) => ({
    id: ops.length + 1,
    clientId: options.client ?? ops.length,
    key: options.key ?? 'x',
    kind,
    callTime: call,
    returnTime: options.status === 'unknown' ? null : ret,
    status: options.status ?? 'ok',
  });
  const add = (op: Operation): Operation => {
    ops.push(op);
    return op;
  };
  return {
    ops,
    write: (value: string | null, call: number, ret: number | null, options: OpOptions = {}) =>
      add({ ...base('write', call, ret, options), value }),
    read: (output: string | null, call: number, ret: number, options: OpOptions = {}) =>
      add({ ...base('read', call, ret, options), output }),
    cas: (expected: string | null, value: string | null, succeeded: boolean | undefined, call: number, ret: number | null, options: OpOptions = {}) =>
      add({ ...base('cas', call, ret, options), expected, value, ...(succeeded === undefined ? {} : { casSucceeded: succeeded }) }),
  };
}

/** mulberry32: a seeded generator so every generated history is reproducible. */
function seededRandom(seed: number) {
  let a = seed >>> 0;
  const float = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (maxExclusive: number): number => Math.floor(float() * maxExclusive);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;
  return { float, int, pick };
}
type Random = ReturnType<typeof seededRandom>;

// ---- Classic cases ----------------------------------------------------------

test('a sequential history is linearizable', (t) => {
  const h = historyBuilder();
  h.read(null, 0, 1);
  h.write('a', 2, 3);
  h.read('a', 4, 5);
  h.cas('a', 'b', true, 6, 7);
  h.read('b', 8, 9);
  h.write(null, 10, 11);
  h.read(null, 12, 13);
  const result = checkLinearizability(h.ops);
  t.is(result.result, 'ok');
  t.is(result.keysChecked, 1);
});

test('a read concurrent with a write may see the old or the new value', (t) => {
  for (const seen of [null, 'a']) {
    const h = historyBuilder();
    h.write('a', 0, 10);
    h.read(seen, 2, 5);
    t.is(checkLinearizability(h.ops).result, 'ok', `read saw ${String(seen)}`);
  }
});

test('a read concurrent with two writes may see either, and later reads follow the order it implies', (t) => {
  const h = historyBuilder();
  h.write('a', 0, 10);
  h.write('b', 0, 10);
  h.read('a', 1, 2);
  h.read('b', 3, 4);
  t.is(checkLinearizability(h.ops).result, 'ok');
  h.read('a', 11, 12); // b was seen after a, both writes are done: a is gone for good
  t.is(checkLinearizability(h.ops).result, 'violation');
});

test('touching intervals count as concurrent', (t) => {
  const h = historyBuilder();
  h.read('a', 0, 5);
  h.write('a', 5, 8);
  t.is(checkLinearizability(h.ops).result, 'ok');
});

test('a stale read after a completed write is a violation, explained with key and ops', (t) => {
  const h = historyBuilder();
  h.write('a', 0, 1, { client: 1 });
  h.write('b', 2, 3, { client: 1 });
  const stale = h.read('a', 4, 5, { client: 2 });
  const result = checkLinearizability(h.ops);
  if (result.result !== 'violation') return t.fail(`expected a violation, got ${result.result}`);
  t.is(result.key, 'x');
  t.deepEqual(result.operations, h.ops);
  t.true(result.explanation.includes('key "x"'), result.explanation);
  t.true(result.explanation.includes(describeOperation(stale)), result.explanation);
  t.true(result.explanation.includes('observed "a" but the value is "b"'), result.explanation);
  t.log(result.explanation);
});

test('a read of a value never written is a violation', (t) => {
  const h = historyBuilder();
  h.write('a', 0, 10);
  h.read('z', 2, 5);
  t.is(checkLinearizability(h.ops).result, 'violation');
});

test('a lost write (later reads see the older value) is a violation', (t) => {
  const h = historyBuilder();
  h.write('a', 0, 2, { client: 1 });
  h.write('b', 1, 3, { client: 2 });
  h.read('b', 4, 5, { client: 3 });
  h.read('a', 6, 7, { client: 3 });
  t.is(checkLinearizability(h.ops).result, 'violation');
});

test('cas: a match needs the expected value and replaces it', (t) => {
  const ok = historyBuilder();
  ok.cas(null, 'a', true, 0, 1); // absent → a
  ok.cas('a', 'b', true, 2, 3);
  ok.read('b', 4, 5);
  t.is(checkLinearizability(ok.ops).result, 'ok');

  const wrongValue = historyBuilder();
  wrongValue.write('a', 0, 1);
  wrongValue.cas('z', 'b', true, 2, 3);
  t.is(checkLinearizability(wrongValue.ops).result, 'violation');

  const notReplaced = historyBuilder();
  notReplaced.write('a', 0, 1);
  notReplaced.cas('a', 'b', true, 2, 3);
  notReplaced.read('a', 4, 5);
  t.is(checkLinearizability(notReplaced.ops).result, 'violation');
});

test('cas: a mismatch asserts another value and changes nothing', (t) => {
  const ok = historyBuilder();
  ok.write('a', 0, 1);
  ok.cas('z', 'b', false, 2, 3);
  ok.read('a', 4, 5);
  t.is(checkLinearizability(ok.ops).result, 'ok');

  const falseMismatch = historyBuilder();
  falseMismatch.write('a', 0, 1);
  falseMismatch.cas('a', 'b', false, 2, 3);
  t.is(checkLinearizability(falseMismatch.ops).result, 'violation');

  const concurrent = historyBuilder(); // the write may land before the cas looks
  concurrent.write('a', 0, 10);
  concurrent.cas(null, 'b', false, 2, 3);
  t.is(checkLinearizability(concurrent.ops).result, 'ok');
});

test('an unknown write may have taken effect, or not, at any time after its call', (t) => {
  for (const seen of ['a', 'b']) {
    const h = historyBuilder();
    h.write('a', 0, 1);
    h.write('b', 2, 3, { status: 'unknown' });
    h.read(seen, 100, 101);
    h.read(seen, 102, 103);
    t.is(checkLinearizability(h.ops).result, 'ok', `later reads see ${seen}`);
  }
  const late = historyBuilder(); // it may even land long after the client gave up
  late.write('a', 0, 1);
  late.write('b', 2, 3, { status: 'unknown' });
  late.read('a', 100, 101);
  late.read('b', 102, 103);
  t.is(checkLinearizability(late.ops).result, 'ok');

  const flipBack = historyBuilder(); // but only once
  flipBack.write('a', 0, 1);
  flipBack.write('b', 2, 3, { status: 'unknown' });
  flipBack.read('b', 100, 101);
  flipBack.read('a', 102, 103);
  t.is(checkLinearizability(flipBack.ops).result, 'violation');

  const beforeCall = historyBuilder();
  beforeCall.read('b', 0, 1);
  beforeCall.write('b', 2, 3, { status: 'unknown' });
  t.is(checkLinearizability(beforeCall.ops).result, 'violation');
});

test('an unknown cas sets its value only if it matched where it took effect', (t) => {
  const h = historyBuilder();
  h.write('a', 0, 1);
  h.cas('a', 'b', undefined, 2, null, { status: 'unknown' });
  h.read('b', 5, 6);
  t.is(checkLinearizability(h.ops).result, 'ok');

  const neverMatched = historyBuilder();
  neverMatched.write('z', 0, 1);
  neverMatched.cas('a', 'b', undefined, 2, null, { status: 'unknown' });
  neverMatched.read('b', 5, 6);
  t.is(checkLinearizability(neverMatched.ops).result, 'violation');
});

test('an unknown write may be what made a later cas see a mismatch', (t) => {
  const h = historyBuilder();
  h.write('a', 0, 1);
  h.write('b', 2, null, { status: 'unknown' });
  h.cas('a', 'c', false, 50, 51);
  t.is(checkLinearizability(h.ops).result, 'ok');
  const failed = h.ops.map((op) => (op.id === 2 ? { ...op, status: 'fail' as const } : op));
  t.is(checkLinearizability(failed).result, 'violation');
});

test('an unknown cas may be what made an early mismatch pass', (t) => {
  const h = historyBuilder();
  h.cas(null, 'a', undefined, 1, null, { status: 'unknown' });
  h.cas(null, 'z', false, 1, 1); // absent had to be gone by then: only the unknown cas can have done it
  h.write('a', 2, 2);
  h.cas(null, 'z', false, 2, 6);
  t.is(checkLinearizability(h.ops).result, 'ok');
  t.is(checkLinearizability(h.ops.slice(1)).result, 'violation');
});

test('unknown writes that nothing could observe cost the search nothing', (t) => {
  const h = historyBuilder();
  h.write('a', 0, 1);
  for (let index = 0; index < 60; index += 1) h.write(`lost-${index}`, 2 + index, null, { status: 'unknown' });
  h.read('a', 100, 101);
  h.read('a', 102, 103);
  const ok = checkLinearizability(h.ops);
  t.is(ok.result, 'ok');
  h.read('z', 104, 105);
  const broken = checkLinearizability(h.ops);
  if (broken.result !== 'violation') return t.fail(`expected a violation, got ${broken.result}`);
  t.true(broken.steps < 100, `${broken.steps} steps`);
  t.true(broken.explanation.includes('60 more left out'), broken.explanation);
});

test('failed ops and unanswered reads are ignored', (t) => {
  const h = historyBuilder();
  h.write('a', 0, 1, { status: 'fail' });
  h.cas(null, 'b', undefined, 0, 1, { status: 'fail' });
  h.read('garbage', 0, 1, { status: 'unknown' });
  h.read('garbage', 0, 1, { status: 'fail' });
  h.read(null, 2, 3);
  t.is(checkLinearizability(h.ops).result, 'ok');
  h.read('a', 4, 5); // a failed write cannot be observed
  t.is(checkLinearizability(h.ops).result, 'violation');
});

test('keys are checked independently and the violating key is named', (t) => {
  const h = historyBuilder();
  for (let index = 0; index < 10; index += 1) {
    const key = `k${index}`;
    h.write(`${key}-a`, 0, 2, { key, client: 1 });
    h.read(index === 7 ? 'bogus' : `${key}-a`, 3, 4, { key, client: 2 });
  }
  const result = checkLinearizability(h.ops);
  if (result.result !== 'violation') return t.fail(`expected a violation, got ${result.result}`);
  t.is(result.key, 'k7');
  t.true(result.operations.every((op) => op.key === 'k7'));
  t.is(result.operations.length, 2);
  t.true(result.explanation.startsWith('key "k7"'));

  const fixed = h.ops.map((op) => (op.key === 'k7' && op.kind === 'read' ? { ...op, output: 'k7-a' } : op));
  const ok = checkLinearizability(fixed);
  t.is(ok.result, 'ok');
  t.is(ok.keysChecked, 10);
});

test('a violation on one key beats running out of budget on another', (t) => {
  const hard = hardViolation(18, 'a-hard');
  const easy = historyBuilder();
  easy.read('bogus', 0, 1, { key: 'z-easy' });
  const result = checkLinearizability([...hard, ...easy.ops.map((op) => ({ ...op, id: op.id + 10_000 }))], { stepsMaxPerKey: 1000 });
  t.is(result.result, 'violation');
  t.is(result.keysChecked, 2);
});

/** Many concurrent writes, then a read that no order explains: only exhaustive search proves it. */
function hardViolation(writerCount: number, key = 'x'): Operation[] {
  const h = historyBuilder();
  for (let writer = 0; writer < writerCount; writer += 1) {
    h.write(`v${writer}`, 0, 100, { key });
    h.read(`v${writer}`, 0, 100, { key });
  }
  h.read('never', 200, 201, { key });
  return h.ops;
}

test('a highly concurrent history out of budget answers unknown, quickly', (t) => {
  const ops = hardViolation(40);
  const started = performance.now();
  const result = checkLinearizability(ops, { stepsMaxPerKey: 10_000 });
  const elapsedMs = performance.now() - started;
  if (result.result !== 'unknown') return t.fail(`expected unknown, got ${result.result}`);
  t.is(result.key, 'x');
  t.is(result.steps, 10_000);
  t.true(result.reason.includes('10000 steps'), result.reason);
  t.log(`budget of 10000 steps spent in ${elapsedMs.toFixed(1)} ms: ${result.reason}`);
});

test('same history, same answer and step count, whatever the input order', (t) => {
  const random = seededRandom(7);
  const ops = generateHistory(random, { clients: 5, opsPerClient: 40, keys: ['a', 'b'], unknownChance: 0.1, failChance: 0.05 }).ops;
  const first = checkLinearizability(ops);
  const shuffled = [...ops].sort(() => random.float() - 0.5);
  t.deepEqual(checkLinearizability(shuffled), first);
  t.deepEqual(checkLinearizability(ops), first);
});

test('malformed operations are rejected as programmer errors', (t) => {
  const h = historyBuilder();
  h.read('a', 5, 4);
  t.throws(() => checkLinearizability(h.ops), { instanceOf: MalformedOperationError });
  const cas = historyBuilder();
  cas.cas('a', 'b', undefined, 0, 1);
  t.throws(() => checkLinearizability(cas.ops), { name: 'MalformedOperationError' });
  const duplicate = historyBuilder();
  duplicate.write('a', 0, 1);
  t.throws(() => checkLinearizability([...duplicate.ops, ...duplicate.ops]), { message: /duplicate operation id/ });
});

test('describeOperation gives one line per op', (t) => {
  const h = historyBuilder();
  t.is(describeOperation(h.write('a', 0, 1, { client: 3 })), '#1 c3 write "x" := "a" [0,1] ok');
  t.is(describeOperation(h.read(null, 2, 3, { client: 3 })), '#2 c3 read "x" → absent [2,3] ok');
  t.is(describeOperation(h.cas('a', 'b', false, 4, 5, { client: 3 })), '#3 c3 cas "x" "a"→"b" mismatched [4,5] ok');
  t.is(describeOperation(h.cas('a', 'b', undefined, 6, null, { client: 3, status: 'unknown' })), '#4 c3 cas "x" "a"→"b" [6,∞) unknown');
});

// ---- Against a brute-force reference ------------------------------------------

/** Literal semantics: try every order that respects real time, leaving out any unknown op. */
function referenceLinearizable(history: readonly Operation[]): boolean {
  const relevant = history.filter((op) => (op.kind === 'read' ? op.status === 'ok' : op.status !== 'fail'));
  const apply = (op: Operation, state: string | null): { ok: boolean; state: string | null } => {
    switch (op.kind) {
      case 'read':
        return { ok: op.output === state, state };
      case 'write':
        return { ok: true, state: op.value ?? null };
      case 'cas':
        if (op.status === 'unknown' || op.casSucceeded === true) return { ok: op.expected === state, state: op.value ?? null };
        return { ok: op.expected !== state, state };
    }
  };
  const search = (remaining: readonly Operation[], state: string | null): boolean => {
    const definite = remaining.filter((op) => op.status === 'ok');
    if (definite.length === 0) return true;
    const deadline = Math.min(...definite.map((op) => op.returnTime ?? Infinity));
    return remaining.some((op, index) => {
      if (op.callTime > deadline) return false;
      const rest = remaining.filter((_, other) => other !== index);
      const step = apply(op, state);
      if (step.ok && search(rest, step.state)) return true;
      return op.status === 'unknown' && search(rest, state);
    });
  };
  return search(relevant, null);
}

interface SmallHistoryMix {
  /** Chance that an op is definite (ok); the rest split 3:1 between unknown and fail. */
  okChance: number;
  /** Chance that an ok cas reports a match. */
  matchChance: number;
  kinds: readonly Operation['kind'][];
}

const balancedMix: SmallHistoryMix = { okChance: 0.6, matchChance: 0.5, kinds: ['read', 'write', 'cas', 'cas'] };
/** Mismatches and unknown writes: what the deadline rule for unknown ops reasons about. */
const mismatchMix: SmallHistoryMix = { okChance: 0.5, matchChance: 0.2, kinds: ['read', 'write', 'cas', 'cas', 'cas'] };

/** Few values, so that they repeat, and every kind and status, so that every rule gets exercised. */
function randomSmallHistory(random: Random, mix: SmallHistoryMix): Operation[] {
  const h = historyBuilder();
  const values = [null, 'a', 'b', 'c', 'd'].slice(0, 2 + random.int(4));
  const count = 2 + random.int(7);
  const span = 4 + random.int(12);
  for (let index = 0; index < count; index += 1) {
    const call = random.int(span);
    const ret = call + random.int(6);
    const roll = random.float();
    const status: OpStatus = roll < mix.okChance ? 'ok' : roll < mix.okChance + (1 - mix.okChance) * 0.75 ? 'unknown' : 'fail';
    const kind = random.pick(mix.kinds);
    if (kind === 'read') h.read(random.pick(values), call, ret, { status });
    else if (kind === 'write') h.write(random.pick(values), call, ret, { status });
    else h.cas(random.pick(values), random.pick(values), status === 'ok' ? random.float() < mix.matchChance : undefined, call, ret, { status });
  }
  return h.ops;
}

for (const [name, mix, seed] of [
  ['a balanced mix', balancedMix, 2024],
  ['mismatches and unknown writes', mismatchMix, 77],
] as const) {
  test(`agrees with a brute-force reference on small random histories: ${name}`, (t) => {
    const random = seededRandom(seed);
    const tally = { ok: 0, violation: 0 };
    for (let round = 0; round < 20_000; round += 1) {
      const ops = randomSmallHistory(random, mix);
      const expected = referenceLinearizable(ops);
      const actual = checkLinearizability(ops);
      if ((actual.result === 'ok') !== expected) {
        return t.fail(`round ${round}: checker says ${actual.result}, reference says ${String(expected)}:\n${ops.map(describeOperation).join('\n')}`);
      }
      tally[expected ? 'ok' : 'violation'] += 1;
    }
    t.log(tally);
    t.true(tally.ok > 4000 && tally.violation > 4000, JSON.stringify(tally));
  });
}

// ---- Generated executions of a real register -----------------------------------

interface GeneratorSettings {
  clients: number;
  opsPerClient: number;
  keys: readonly string[];
  /** Chance that a write or cas times out; half of those take effect anyway, possibly late. */
  unknownChance: number;
  failChance: number;
}

/**
 * Runs clients against one true register: each op takes effect at a point
 * inside its interval (unknown ops: anywhere after the call, or never), in
 * the order of those points, so the history is linearizable by construction.
 */
function generateHistory(random: Random, settings: GeneratorSettings): { ops: Operation[] } {
  interface Planned {
    op: Omit<Operation, 'output' | 'casSucceeded' | 'expected'> & { kind: Operation['kind'] };
    effectTime: number | null; // null: never takes effect
  }
  const planned: Planned[] = [];
  let id = 0;
  for (let client = 0; client < settings.clients; client += 1) {
    let time = random.int(5);
    for (let index = 0; index < settings.opsPerClient; index += 1) {
      const callTime = time + random.int(3);
      const effectTime = callTime + random.int(8);
      const returnTime = effectTime + random.int(8);
      time = returnTime + 1;
      const kind = random.pick(['read', 'read', 'write', 'cas'] as const);
      const key = random.pick(settings.keys);
      const roll = random.float();
      const status: OpStatus = roll < settings.unknownChance ? 'unknown' : roll < settings.unknownChance + settings.failChance ? 'fail' : 'ok';
      id += 1;
      const value = kind === 'read' ? undefined : `${key}:${client}:${index}`;
      const op = { id, clientId: client, key, kind, callTime, returnTime: status === 'unknown' && random.float() < 0.5 ? null : returnTime, status, ...(value === undefined ? {} : { value }) };
      let effect: number | null = effectTime;
      if (status === 'fail') effect = null;
      if (status === 'unknown') effect = random.float() < 0.5 ? null : callTime + random.int(40);
      planned.push({ op, effectTime: effect });
    }
  }
  // Execute in effect order against the true register.
  const register = new Map<string, string | null>();
  const writtenSoFar = new Map<string, (string | null)[]>();
  const ops = new Map<number, Operation>();
  const byEffect = planned.filter((p) => p.effectTime !== null).sort((x, y) => (x.effectTime ?? 0) - (y.effectTime ?? 0) || x.op.clientId - y.op.clientId);
  for (const { op } of byEffect) {
    const current = register.get(op.key) ?? null;
    const history = writtenSoFar.get(op.key) ?? [null];
    writtenSoFar.set(op.key, history);
    switch (op.kind) {
      case 'read':
        ops.set(op.id, { ...op, output: current });
        break;
      case 'write':
        register.set(op.key, op.value ?? null);
        history.push(op.value ?? null);
        ops.set(op.id, op);
        break;
      case 'cas': {
        const expected = random.float() < 0.6 ? current : random.pick(history);
        const matched = expected === current;
        if (matched) {
          register.set(op.key, op.value ?? null);
          history.push(op.value ?? null);
        }
        ops.set(op.id, { ...op, expected, ...(op.status === 'ok' ? { casSucceeded: matched } : {}) });
        break;
      }
    }
  }
  // Ops that never took effect: reads observed nothing, cas ops expected something.
  for (const { op, effectTime } of planned) {
    if (effectTime !== null) continue;
    if (op.kind === 'read') ops.set(op.id, { ...op, output: 'not-observed' });
    else if (op.kind === 'cas') ops.set(op.id, { ...op, expected: random.pick(writtenSoFar.get(op.key) ?? [null]) });
    else ops.set(op.id, op);
  }
  return { ops: [...ops.values()].sort((x, y) => x.id - y.id) };
}

/** Writes that surely took effect: they returned ok and, for cas, matched. */
const surelyWrote = (op: Operation): boolean => op.status === 'ok' && (op.kind === 'write' || (op.kind === 'cas' && op.casSucceeded === true));

/**
 * A value the read cannot have seen in any linearization (values are unique
 * per write): written only after the read returned, or surely overwritten
 * before it was called, or never written.
 */
function impossibleOutput(random: Random, ops: readonly Operation[], read: Operation): string | null {
  const sameKey = ops.filter((op) => op.key === read.key);
  const readReturn = read.returnTime ?? Infinity;
  const choices: (string | null)[] = [];
  for (const writer of sameKey) {
    if (writer.kind === 'read' || writer.status === 'fail' || typeof writer.value !== 'string') continue;
    if (writer.callTime > readReturn) choices.push(writer.value);
    const overwritten = surelyWrote(writer) && sameKey.some((later) => surelyWrote(later) && later.callTime > (writer.returnTime ?? Infinity) && (later.returnTime ?? Infinity) < read.callTime);
    if (overwritten) choices.push(writer.value);
  }
  if (sameKey.some((writer) => surelyWrote(writer) && (writer.returnTime ?? Infinity) < read.callTime)) choices.push(null);
  const possible = choices.filter((value) => value !== read.output);
  return possible.length > 0 ? random.pick(possible) : 'never-written';
}

test('generated register executions are linearizable; one impossible read makes them a violation', (t) => {
  const tally = { checked: 0, steps: 0, stepsCorrupted: 0 };
  for (let seed = 1; seed <= 300; seed += 1) {
    const random = seededRandom(seed);
    const settings = {
      clients: 1 + random.int(5),
      opsPerClient: 5 + random.int(40),
      keys: ['a', 'b', 'c'].slice(0, 1 + random.int(3)),
      unknownChance: random.pick([0, 0.05, 0.15]),
      failChance: random.pick([0, 0.05]),
    };
    const { ops } = generateHistory(random, settings);
    const valid = checkLinearizability(ops);
    if (valid.result !== 'ok') return t.fail(`seed ${seed}: ${valid.result}\n${'explanation' in valid ? valid.explanation : ''}`);
    tally.steps += valid.steps;

    const reads = ops.filter((op) => op.kind === 'read' && op.status === 'ok');
    if (reads.length === 0) continue;
    const target = random.pick(reads);
    const output = impossibleOutput(random, ops, target);
    const corrupted = ops.map((op) => (op === target ? { ...op, output } : op));
    const broken = checkLinearizability(corrupted);
    if (broken.result !== 'violation') return t.fail(`seed ${seed}: corrupted ${describeOperation(target)} to ${String(output)}, got ${broken.result}`);
    t.is(broken.key, target.key);
    tally.checked += 1;
    tally.stepsCorrupted += broken.steps;
  }
  t.log(tally);
});

test('a moderately large valid history checks in well under the default budget', (t) => {
  const random = seededRandom(99);
  const { ops } = generateHistory(random, { clients: 5, opsPerClient: 200, keys: ['a', 'b', 'c'], unknownChance: 0.02, failChance: 0.02 });
  const started = performance.now();
  const result = checkLinearizability(ops);
  const elapsedMs = performance.now() - started;
  t.is(result.result, 'ok');
  t.is(result.keysChecked, 3);
  t.log(`${ops.length} ops on 3 keys, 5 clients: ${result.steps} steps in ${elapsedMs.toFixed(1)} ms`);
});

test('500 simulator-sized histories check quickly', (t) => {
  let steps = 0;
  const started = performance.now();
  for (let seed = 1; seed <= 500; seed += 1) {
    const random = seededRandom(seed * 7919);
    const { ops } = generateHistory(random, { clients: 5, opsPerClient: 30, keys: ['a', 'b', 'c'], unknownChance: 0.05, failChance: 0.05 });
    const result = checkLinearizability(ops);
    if (result.result !== 'ok') return t.fail(`seed ${seed}: ${result.result}`);
    steps += result.steps;
  }
  t.log(`500 histories of 150 ops: ${steps} steps in ${(performance.now() - started).toFixed(1)} ms`);
  t.pass();
});
