// Linearizability checker for key-value register histories, after Porcupine:
// Wing & Gong's depth-first search over a linked list of call/return events,
// with Lowe's memoization of (decided ops, register value), one key at a time
// (a register history is linearizable iff each key's is), and a step budget
// so that a hard history answers `unknown` instead of hanging.
//
// Semantics (see Operation in history.ts for the fields):
// - Every key starts absent (null).
// - Dropped before the search, since they neither changed nor observed the
//   register: reads that are not `ok`, writes and cas ops that `fail`.
// - A write or cas with status `unknown` never returns: it may take effect at
//   any point after its call, or never.
// - A cas with `casSucceeded: false` takes effect as an assertion that the
//   value differed from `expected`; an `unknown` cas sets the value if it
//   matched at the chosen point and otherwise changes nothing.
// - Intervals are closed: ops whose call and return touch are concurrent.
//
// Three prunings keep the search small, none changing the answer (the tests
// hold the checker to a brute-force reference): an observer that fits the
// current value is taken at once; an unknown op gets a deadline after which
// nothing could observe it, where it is left out; values nothing compares
// with share one id, so orders of writes nobody can tell apart meet in the
// cache. The search is deterministic: the same history gives the same answer
// and the same step count.
import { describeOperation, describeValue, MalformedOperationError, validateOperation } from './history.ts';
import type { Operation } from './history.ts';

export { describeOperation } from './history.ts';

export type CheckResult =
  | { result: 'ok' }
  | {
      result: 'violation';
      key: string;
      explanation: string;
      /** Every operation on that key, in history order, for a report. */
      operations: Operation[];
    }
  | { result: 'unknown'; key: string; reason: string };

export interface CheckOptions {
  /** Search steps (events visited) allowed per key before answering `unknown`. */
  stepsMaxPerKey?: number;
}

/** Enough for 10,000 ops on a key with 10 clients; spending it all takes roughly 0.2 to 0.5 s. */
export const stepsMaxPerKeyDefault = 2_000_000;

/**
 * Checks each key independently, in key order. A violation on any key wins over
 * `unknown` on another; otherwise the first key that ran out of budget is
 * reported. `steps` sums the search steps over the keys checked.
 */
export function checkLinearizability(
  history: readonly Operation[],
  options: CheckOptions = {},
): CheckResult & { keysChecked: number; steps: number } {
  const stepsMaxPerKey = options.stepsMaxPerKey ?? stepsMaxPerKeyDefault;
  if (!Number.isSafeInteger(stepsMaxPerKey) || stepsMaxPerKey < 1) {
    throw new Error(`linearizability: stepsMaxPerKey must be a positive integer, got ${String(stepsMaxPerKey)}`);
  }
  const byKey = partitionByKey(history);
  const keys = [...byKey.keys()].sort(compareStrings);
  let steps = 0;
  let keysChecked = 0;
  let firstUnknown: { key: string; reason: string } | null = null;
  for (const key of keys) {
    const operations = byKey.get(key) ?? [];
    const problem = compileKey(operations);
    const search = searchKey(problem, stepsMaxPerKey);
    steps += search.steps;
    keysChecked += 1;
    if (search.verdict === 'violation') {
      const explanation = explainViolation(key, problem, search);
      return { result: 'violation', key, explanation, operations, keysChecked, steps };
    }
    if (search.verdict === 'unknown' && firstUnknown === null) {
      firstUnknown = { key, reason: explainBudget(key, problem, search, stepsMaxPerKey) };
    }
  }
  if (firstUnknown !== null) return { result: 'unknown', ...firstUnknown, keysChecked, steps };
  return { result: 'ok', keysChecked, steps };
}

const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function partitionByKey(history: readonly Operation[]): Map<string, Operation[]> {
  const ids = new Set<number>();
  const byKey = new Map<string, Operation[]>();
  for (const op of history) {
    validateOperation(op);
    if (ids.has(op.id)) throw new MalformedOperationError('duplicate operation id', op);
    ids.add(op.id);
    const list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, [op]);
    else list.push(op);
  }
  return byKey;
}

// Model: the register value is an interned integer, 0 = absent. An op is one
// of these effects; applying it to a value gives the next value or REJECTED.
const READ = 0; // a: value observed
const WRITE = 1; // a: new value
const CAS_MATCHED = 2; // a: expected, b: new value
const CAS_MISMATCHED = 3; // a: expected (the value was something else)
const CAS_MAYBE = 4; // a: expected, b: new value; sets b if matched, else no-op
type Effect = typeof READ | typeof WRITE | typeof CAS_MATCHED | typeof CAS_MISMATCHED | typeof CAS_MAYBE;
const REJECTED = -1;
const ABSENT = 0;
const UNOBSERVED = 1; // any value that no op compares with
const FIRST_OBSERVED = 2;

function applyEffect(effect: number, a: number, b: number, state: number): number {
  switch (effect) {
    case READ:
      return state === a ? state : REJECTED;
    case WRITE:
      return a;
    case CAS_MATCHED:
      return state === a ? b : REJECTED;
    case CAS_MISMATCHED:
      return state !== a ? state : REJECTED;
    default: // CAS_MAYBE
      return state === a ? b : state;
  }
}

// Event kinds in the list the search walks. At equal times calls come first
// (touching intervals are concurrent) and deadlines last.
const CALL = 0;
const RETURN = 1;
const DEADLINE = 2;

/** One key's history compiled to flat arrays, plus the event list the search walks. */
interface KeyProblem {
  /** Ops that take part in the search, sorted by (callTime, id); index = op number. */
  readonly ops: readonly Operation[];
  /** Ops left out: no effect (failed, unanswered reads) or provably irrelevant. */
  readonly droppedCount: number;
  readonly effect: Uint8Array;
  readonly argA: Int32Array;
  readonly argB: Int32Array;
  /** Whether op i must be linearized (it returned); unknown ops may be left out. */
  readonly definite: Uint8Array;
  readonly definiteCount: number;
  /** Events sorted by (time, kind, op): the op number and CALL, RETURN or DEADLINE. */
  readonly eventOp: Int32Array;
  readonly eventKind: Uint8Array;
  /** Value ids run from 0 (ABSENT) to valueCount - 1. */
  readonly valueCount: number;
}

function compileKey(operations: readonly Operation[]): KeyProblem {
  const effective = operations.filter(hasEffect);
  const deadlines = unknownOpDeadlines(effective);
  const ops = effective
    .filter((op) => op.status !== 'unknown' || (deadlines.get(op) ?? -Infinity) >= op.callTime)
    .sort((x, y) => x.callTime - y.callTime || x.id - y.id);

  // Ops tell values apart only by comparing them with what reads saw and cas
  // ops expected. Values nobody compares with share one id, UNOBSERVED, so
  // orders of writes that nobody can tell apart meet in the cache.
  const valueIds = new Map<string, number>();
  for (const op of ops) {
    const compared = op.kind === 'read' ? op.output : op.kind === 'cas' ? op.expected : null;
    if (typeof compared === 'string' && !valueIds.has(compared)) valueIds.set(compared, FIRST_OBSERVED + valueIds.size);
  }
  const intern = (value: string | null | undefined): number => {
    if (value === null || value === undefined) return ABSENT;
    return valueIds.get(value) ?? UNOBSERVED;
  };

  const count = ops.length;
  const effect = new Uint8Array(count);
  const argA = new Int32Array(count);
  const argB = new Int32Array(count);
  const definite = new Uint8Array(count);
  let definiteCount = 0;
  const events: { time: number; kind: number; op: number }[] = [];
  ops.forEach((op, index) => {
    const compiled = compileEffect(op, intern);
    effect[index] = compiled.effect;
    argA[index] = compiled.a;
    argB[index] = compiled.b;
    events.push({ time: op.callTime, kind: CALL, op: index });
    if (op.status === 'ok' && op.returnTime !== null) {
      definite[index] = 1;
      definiteCount += 1;
      events.push({ time: op.returnTime, kind: RETURN, op: index });
    } else {
      const deadline = deadlines.get(op) ?? Infinity;
      if (deadline !== Infinity) events.push({ time: deadline, kind: DEADLINE, op: index });
    }
  });
  events.sort((x, y) => x.time - y.time || x.kind - y.kind || x.op - y.op);
  return {
    ops,
    droppedCount: operations.length - count,
    effect,
    argA,
    argB,
    definite,
    definiteCount,
    eventOp: Int32Array.from(events, (event) => event.op),
    eventKind: Uint8Array.from(events, (event) => event.kind),
    valueCount: FIRST_OBSERVED + valueIds.size,
  };
}

/** Failed ops and unanswered reads neither changed nor observed the register. */
function hasEffect(op: Operation): boolean {
  if (op.kind === 'read') return op.status === 'ok';
  return op.status !== 'fail';
}

function compileEffect(
  op: Operation,
  intern: (value: string | null | undefined) => number,
): { effect: Effect; a: number; b: number } {
  switch (op.kind) {
    case 'read':
      return { effect: READ, a: intern(op.output), b: 0 };
    case 'write':
      return { effect: WRITE, a: intern(op.value), b: 0 };
    case 'cas': {
      const a = intern(op.expected);
      const b = intern(op.value);
      if (op.status === 'unknown') return { effect: CAS_MAYBE, a, b };
      return op.casSucceeded === true ? { effect: CAS_MATCHED, a, b } : { effect: CAS_MISMATCHED, a, b: 0 };
    }
    default: {
      const never: never = op.kind;
      throw new Error(`linearizability: unknown kind ${String(never)}`);
    }
  }
}

/**
 * When each unknown write or cas stops mattering (+Infinity: never; absent
 * from the map: from the start). While the value v it sets is current, the
 * only ops that can take effect before a write replaces v are its observers:
 * reads of v, cas ops expecting v, and mismatched cas ops expecting some e ≠ v
 * that only pass thanks to it, which needs e to be current both just before
 * the op and when the mismatch is called (nothing else changed the value in
 * between). Once every definite observer has returned, an op that has not taken
 * effect can be left out instead: nothing could tell. Each deadline closes an
 * interval that would otherwise stay open to the end of the history, which is
 * what makes searches blow up on histories full of timeouts.
 *
 * Whether e can still be current depends on when its writers took effect, and
 * for unknown writers that is bounded by their own deadlines: so a few rounds
 * refine them. Every round is sound on its own (leaving out, in a valid
 * linearization, the earliest op placed past its deadline keeps it valid,
 * since the writers before it kept theirs).
 */
function unknownOpDeadlines(ops: readonly Operation[]): Map<Operation, number> {
  const latestObserver = new Map<string | null, number>();
  const mismatches: Operation[] = [];
  for (const op of ops) {
    const returnTime = op.status === 'ok' ? (op.returnTime ?? Infinity) : Infinity;
    if (op.kind === 'read') observe(latestObserver, op.output ?? null, returnTime);
    if (op.kind === 'cas' && op.status === 'ok' && op.casSucceeded === false) mismatches.push(op);
    else if (op.kind === 'cas') observe(latestObserver, op.expected ?? null, returnTime);
  }
  const unknownOps = ops.filter((op) => op.status === 'unknown').sort((x, y) => y.callTime - x.callTime);
  let deadlines = new Map<Operation, number>(unknownOps.map((op) => [op, Infinity]));
  const lifetimes = mismatches.length > 0 && unknownOps.length > 0 ? new ValueLifetimes(ops) : null;
  const roundsMax = lifetimes !== null ? deadlineRoundsMax : 1;
  for (let round = 0; round < roundsMax; round += 1) {
    const needed = lifetimes !== null ? mismatchDeadlines(unknownOps, mismatches, lifetimes.given(unknownOps, deadlines)) : null;
    const refined = new Map<Operation, number>();
    let changed = false;
    for (const op of unknownOps) {
      const deadline = Math.max(latestObserver.get(op.value ?? null) ?? -Infinity, needed?.get(op) ?? -Infinity);
      if (deadline !== -Infinity) refined.set(op, deadline);
      if (deadline !== (deadlines.get(op) ?? -Infinity)) changed = true;
    }
    deadlines = refined;
    if (!changed) break;
  }
  return deadlines;
}

/** Rounds of refining deadlines through the lifetimes of values that unknown ops set (each O(n log n)). */
const deadlineRoundsMax = 100;

/**
 * For each unknown op (given latest call first), the latest return among the
 * mismatches that may need it. A mismatch expecting e needs e current when it
 * is called, and may need an op setting v ≠ e that was called by the time e
 * was surely gone and the mismatch returned.
 */
function mismatchDeadlines(
  unknownOps: readonly Operation[],
  mismatches: readonly Operation[],
  lifetimeOf: (value: string | null) => Lifetime | undefined,
): Map<Operation, number> {
  const windows: { until: number; returnTime: number; expected: string | null }[] = [];
  for (const mismatch of mismatches) {
    const expected = mismatch.expected ?? null;
    const returnTime = mismatch.returnTime ?? Infinity;
    const lifetime = lifetimeOf(expected);
    if (lifetime === undefined || lifetime.deadAfter < mismatch.callTime || lifetime.firstCall > returnTime) continue;
    windows.push({ until: Math.min(returnTime, lifetime.deadAfter), returnTime, expected });
  }
  windows.sort((x, y) => y.until - x.until);
  // The latest return seen so far, and the latest among those expecting another value.
  let latest = { returnTime: -Infinity, expected: null as string | null };
  let latestOther = -Infinity;
  let next = 0;
  const deadlines = new Map<Operation, number>();
  for (const op of unknownOps) {
    for (; next < windows.length && (windows[next]?.until ?? -Infinity) >= op.callTime; next += 1) {
      const window = windows[next] as (typeof windows)[number];
      if (window.returnTime >= latest.returnTime) {
        if (window.expected !== latest.expected) latestOther = latest.returnTime;
        latest = { returnTime: window.returnTime, expected: window.expected };
      } else if (window.expected !== latest.expected) {
        latestOther = Math.max(latestOther, window.returnTime);
      }
    }
    deadlines.set(op, (op.value ?? null) !== latest.expected ? latest.returnTime : latestOther);
  }
  return deadlines;
}

function observe(latest: Map<string | null, number>, value: string | null, time: number): void {
  latest.set(value, Math.max(latest.get(value) ?? -Infinity, time));
}

interface Lifetime {
  /** The earliest call among the value's writers. */
  readonly firstCall: number;
  /** After this time the value is surely never current again. */
  readonly deadAfter: number;
}

/**
 * Lifetimes of the values some op may set (and of absent): a value is surely
 * gone once each of its writers was followed by a definite write that called
 * after the writer returned (for an unknown writer: after its deadline) and
 * itself returned. Overwrites with the same value may count: the last such
 * writer dominates. Definite writers are folded in once; unknown ones per
 * round of deadlines.
 */
class ValueLifetimes {
  private readonly sureWrites: Operation[];
  /** suffixReturnMin[i]: the earliest return among sureWrites[i..] (sorted by call). */
  private readonly suffixReturnMin: Float64Array;
  private readonly definite = new Map<string | null, Lifetime>();

  constructor(ops: readonly Operation[]) {
    this.sureWrites = ops
      .filter((op) => op.status === 'ok' && (op.kind === 'write' || (op.kind === 'cas' && op.casSucceeded === true)))
      .sort((x, y) => x.callTime - y.callTime);
    this.suffixReturnMin = new Float64Array(this.sureWrites.length + 1).fill(Infinity);
    for (let index = this.sureWrites.length - 1; index >= 0; index -= 1) {
      const returnTime = this.sureWrites[index]?.returnTime ?? Infinity;
      this.suffixReturnMin[index] = Math.min(this.suffixReturnMin[index + 1] ?? Infinity, returnTime);
    }
    extendLifetime(this.definite, null, -Infinity, this.overwrittenBy(-Infinity)); // the initial value
    for (const op of ops) {
      if (!setsValue(op) || op.status !== 'ok') continue;
      extendLifetime(this.definite, op.value ?? null, op.callTime, this.overwrittenBy(op.returnTime ?? Infinity));
    }
  }

  /** Lifetimes when unknown ops take effect by their deadlines (ops missing from `deadlines` never do). */
  given(unknownOps: readonly Operation[], deadlines: ReadonlyMap<Operation, number>): (value: string | null) => Lifetime | undefined {
    const unknown = new Map<string | null, Lifetime>();
    for (const op of unknownOps) {
      const deadline = deadlines.get(op);
      if (deadline !== undefined && setsValue(op)) extendLifetime(unknown, op.value ?? null, op.callTime, this.overwrittenBy(deadline));
    }
    return (value) => {
      const fromDefinite = this.definite.get(value);
      const fromUnknown = unknown.get(value);
      if (fromDefinite === undefined || fromUnknown === undefined) return fromDefinite ?? fromUnknown;
      return {
        firstCall: Math.min(fromDefinite.firstCall, fromUnknown.firstCall),
        deadAfter: Math.max(fromDefinite.deadAfter, fromUnknown.deadAfter),
      };
    };
  }

  /** The earliest return of a sure write calling strictly after `time`. */
  private overwrittenBy(time: number): number {
    let low = 0;
    let high = this.sureWrites.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((this.sureWrites[middle]?.callTime ?? Infinity) > time) high = middle;
      else low = middle + 1;
    }
    return this.suffixReturnMin[low] ?? Infinity;
  }
}

/** Writes, matched cas ops and unknown cas ops may set a value; reads and mismatches never do. */
const setsValue = (op: Operation): boolean => op.kind === 'write' || (op.kind === 'cas' && (op.status !== 'ok' || op.casSucceeded === true));

function extendLifetime(lifetimes: Map<string | null, Lifetime>, value: string | null, callTime: number, deadAfter: number): void {
  const lifetime = lifetimes.get(value);
  if (lifetime === undefined) lifetimes.set(value, { firstCall: callTime, deadAfter });
  else lifetimes.set(value, { firstCall: Math.min(lifetime.firstCall, callTime), deadAfter: Math.max(lifetime.deadAfter, deadAfter) });
}

// How an op on the search stack was decided.
const CHOSEN = 0; // one candidate among several; on failure try the next
const FORCED = 1; // an observer that fit: no alternative needed
const LEFT_OUT = 2; // an unknown op past its deadline, never taking effect
type Decision = typeof CHOSEN | typeof FORCED | typeof LEFT_OUT;

/** Reads and mismatched cas ops never change the value; the search takes them eagerly. */
const observesOnly = (effect: number): boolean => effect === READ || effect === CAS_MISMATCHED;

interface SearchOutcome {
  readonly verdict: 'ok' | 'violation' | 'unknown';
  readonly steps: number;
  /** The longest prefix found: op numbers in order, with how each was decided. */
  readonly deepestPrefix: Int32Array;
  readonly deepestHow: Uint8Array;
}

/** Zobrist codes: the hash of a set of ops is the xor of their codes. */
function zobristCode(index: number): number {
  // splitmix32 of the index: fixed, so the search order never depends on chance.
  let z = (Math.imul(index + 1, 0x9e3779b9) + 0x7f4a7c15) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * Wing & Gong / Lowe search over the event list. Calls before the first
 * pending return are the candidates to linearize next; lifting one removes its
 * call and return from the list. Reaching a return means no candidate worked,
 * so the last lift is undone. Reaching the deadline of a pending unknown op
 * leaves that op out (then, if that fails too, acts as a return). The cache of
 * (decided ops, value) prunes configurations already explored, which all
 * failed: what can follow depends only on the ops left and the value.
 */
function searchKey(problem: KeyProblem, stepsMax: number): SearchOutcome {
  const opCount = problem.ops.length;
  const { effect, argA, argB, definite, eventOp, eventKind } = problem;
  const eventCount = eventOp.length;
  // Doubly linked list over events 1..eventCount, 0 = head, eventCount + 1 = tail.
  const head = 0;
  const tail = eventCount + 1;
  const next = new Int32Array(eventCount + 2);
  const prev = new Int32Array(eventCount + 2);
  for (let node = 0; node <= eventCount; node += 1) {
    next[node] = node + 1;
    prev[node + 1] = node;
  }
  const nodeOp = new Int32Array(eventCount + 2);
  const nodeKind = new Uint8Array(eventCount + 2);
  const callNodeOf = new Int32Array(opCount);
  const endNodeOf = new Int32Array(opCount); // return or deadline; 0 = none
  for (let event = 0; event < eventCount; event += 1) {
    const op = eventOp[event] ?? 0;
    const kind = eventKind[event] ?? CALL;
    nodeOp[event + 1] = op;
    nodeKind[event + 1] = kind;
    if (kind === CALL) callNodeOf[op] = event + 1;
    else endNodeOf[op] = event + 1;
  }
  const unlink = (node: number): void => {
    const before = prev[node] ?? head;
    const after = next[node] ?? tail;
    next[before] = after;
    prev[after] = before;
  };
  // Dancing links: a removed node keeps its neighbours, so undoing in reverse order restores it.
  const relink = (node: number): void => {
    next[prev[node] ?? head] = node;
    prev[next[node] ?? tail] = node;
  };

  const words = Math.max(1, Math.ceil(opCount / 32));
  const decided = new Uint32Array(words);
  const codes = new Uint32Array(opCount);
  for (let op = 0; op < opCount; op += 1) codes[op] = zobristCode(op);
  const cache = new ConfigurationCache();
  // Words below `low` are all ones and from `high` on all zeros: with ops
  // sorted by call, the decided set is a full prefix plus a window, and only
  // the window is hashed into the cache.
  let low = 0;
  let high = 0;
  const full = 0xffffffff;
  const flip = (op: number): void => {
    const index = op >>> 5;
    const word = ((decided[index] ?? 0) ^ (1 << (op & 31))) >>> 0;
    decided[index] = word;
    if (word === full) {
      while (low < words && decided[low] === full) low += 1;
    } else if (index < low) {
      low = index;
    }
    if (word !== 0) {
      if (index >= high) high = index + 1;
    } else {
      while (high > 0 && decided[high - 1] === 0) high -= 1;
    }
  };

  // The stack of decisions: op, value before it, and how it was decided.
  const stackOp = new Int32Array(opCount);
  const stackState = new Int32Array(opCount);
  const stackHow = new Uint8Array(opCount);
  let depth = 0;
  // The deepest stack so far, for explanations. The stack agrees with it
  // below `agreeing`, so recording a new deepest copies only what changed.
  const deepestOp = new Int32Array(opCount);
  const deepestHow = new Uint8Array(opCount);
  let deepestDepth = 0;
  let agreeing = 0;

  let state = ABSENT;
  let hash = 0;
  let definiteLeft = problem.definiteCount;
  let steps = 0;
  const outcome = (verdict: SearchOutcome['verdict']): SearchOutcome => ({
    verdict,
    steps,
    deepestPrefix: deepestOp.subarray(0, deepestDepth),
    deepestHow: deepestHow.subarray(0, deepestDepth),
  });

  /** Decides op, if (decided ops, nextState) is new. */
  const tryDecide = (op: number, nextState: number, how: Decision): boolean => {
    flip(op);
    const nextHash = (hash ^ (codes[op] ?? 0)) >>> 0;
    if (!cache.add(decided, low, high, nextHash, nextState)) {
      flip(op);
      return false;
    }
    stackOp[depth] = op;
    stackState[depth] = state;
    stackHow[depth] = how;
    depth += 1;
    state = nextState;
    hash = nextHash;
    unlink(callNodeOf[op] ?? head);
    const endNode = endNodeOf[op] ?? 0;
    if (endNode !== 0) unlink(endNode);
    if (definite[op] === 1) definiteLeft -= 1;
    if (depth > deepestDepth) {
      deepestOp.set(stackOp.subarray(agreeing, depth), agreeing);
      deepestHow.set(stackHow.subarray(agreeing, depth), agreeing);
      agreeing = depth;
      deepestDepth = depth;
    }
    return true;
  };

  /** Undoes decisions up to the last choice, whose frame then goes on; false when none is left. */
  const backtrack = (): boolean => {
    for (;;) {
      if (depth === 0) return false;
      depth -= 1;
      agreeing = Math.min(agreeing, depth);
      const op = stackOp[depth] ?? 0;
      state = stackState[depth] ?? ABSENT;
      flip(op);
      hash = (hash ^ (codes[op] ?? 0)) >>> 0;
      const callNode = callNodeOf[op] ?? head;
      const endNode = endNodeOf[op] ?? 0;
      if (endNode !== 0) relink(endNode);
      relink(callNode);
      if (definite[op] === 1) definiteLeft += 1;
      // Forced decisions had no alternative: their failure is their parent's.
      if (stackHow[depth] === CHOSEN) return true;
    }
  };

  // Each new configuration starts with a sweep over the candidates (calls
  // before the first pending return or deadline). A candidate that only
  // observes and fits the value is taken at once: that loses nothing (any
  // valid order can be rearranged to start with it), so it is a forced
  // decision. Otherwise the sweep lists the candidates that would change the
  // value, in event order, as this depth's frame; the search tries them in
  // turn, then the frame's end: leaving an op out at its deadline, or failing
  // at a return.
  const frameStart = new Int32Array(opCount + 1);
  const frameCursor = new Int32Array(opCount + 1);
  const frameLength = new Int32Array(opCount + 1);
  const frameEnd = new Int32Array(opCount + 1);
  let candidates = new Int32Array(64);

  /**
   * Sweeps the configuration at `depth`: made a forced decision, built its
   * frame, found the forced decision already explored, or ran out of budget.
   */
  const buildFrame = (): 'forced' | 'frame' | 'seen' | 'budget' => {
    const start = depth === 0 ? 0 : (frameStart[depth - 1] ?? 0) + (frameLength[depth - 1] ?? 0);
    // An empty frame until built, so that a forced child's frame starts right here.
    frameStart[depth] = start;
    frameLength[depth] = 0;
    let length = 0;
    let node = next[head] ?? tail;
    while ((nodeKind[node] ?? RETURN) === CALL) {
      if (steps >= stepsMax) return 'budget';
      steps += 1;
      const op = nodeOp[node] ?? 0;
      const opEffect = effect[op] ?? READ;
      const nextState = applyEffect(opEffect, argA[op] ?? 0, argB[op] ?? 0, state);
      if (observesOnly(opEffect)) {
        if (nextState !== REJECTED) return tryDecide(op, state, FORCED) ? 'forced' : 'seen';
      } else if (nextState !== REJECTED && (opEffect !== CAS_MAYBE || nextState !== state)) {
        // (An unknown cas that would not match stays pending: deciding it now gains nothing.)
        if (start + length >= candidates.length) {
          const grown = new Int32Array(candidates.length * 2);
          grown.set(candidates);
          candidates = grown;
        }
        candidates[start + length] = op;
        length += 1;
      }
      node = next[node] ?? tail;
    }
    frameLength[depth] = length;
    frameCursor[depth] = 0;
    frameEnd[depth] = node;
    return 'frame';
  };

  let fresh = true;
  while (definiteLeft > 0) {
    if (steps >= stepsMax) return outcome('unknown');
    if (fresh) {
      const swept = buildFrame();
      if (swept === 'forced') continue;
      if (swept === 'budget') return outcome('unknown');
      fresh = false;
      if (swept === 'seen') {
        if (!backtrack()) return outcome('violation');
        continue;
      }
    }
    steps += 1;
    const cursor = frameCursor[depth] ?? 0;
    if (cursor < (frameLength[depth] ?? 0)) {
      frameCursor[depth] = cursor + 1;
      const op = candidates[(frameStart[depth] ?? 0) + cursor] ?? 0;
      const nextState = applyEffect(effect[op] ?? READ, argA[op] ?? 0, argB[op] ?? 0, state);
      fresh = tryDecide(op, nextState, CHOSEN);
      continue;
    }
    const end = frameEnd[depth] ?? tail;
    // A pending definite op always leaves its return ahead of the candidates.
    assert(end !== tail, 'search ran off the event list with definite ops pending');
    if ((nodeKind[end] ?? RETURN) === DEADLINE && tryDecide(nodeOp[end] ?? 0, state, LEFT_OUT)) {
      fresh = true;
    } else if (!backtrack()) {
      return outcome('violation');
    }
  }
  return outcome('ok');
}

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`linearizability invariant broken: ${message}`);
}

/**
 * Open-addressing hash set of (decided set, value) configurations, stored flat
 * (no object per entry) and compactly (only the words between the full prefix
 * and the empty tail). Entries are bounded by the step budget, since each step
 * adds at most one, and their words by cacheWordsMax: past it the search goes
 * on without remembering more, still correct, only slower.
 */
class ConfigurationCache {
  /** Slots of two words, kept together for locality: the hash, and entry + 1 (0 = empty). */
  private table = new Int32Array(2 * 128);
  private count = 0;
  private entryHash = new Uint32Array(64);
  private entryState = new Int32Array(64);
  private entryLow = new Int32Array(64);
  private entryStart = new Int32Array(64);
  private entryLength = new Int32Array(64);
  private pool = new Uint32Array(256);
  private poolUsed = 0;

  /** Adds the configuration; false if it was already there. */
  add(bits: Uint32Array, low: number, high: number, bitsHash: number, state: number): boolean {
    const length = Math.max(0, high - low);
    const hash = mixHash(bitsHash, state);
    const mask = (this.table.length >>> 1) - 1;
    let slot = hash & mask;
    for (;;) {
      const stored = this.table[2 * slot + 1] ?? 0;
      if (stored === 0) break;
      if (this.table[2 * slot] === (hash | 0) && this.matches(stored - 1, state, bits, low, length)) return false;
      slot = (slot + 1) & mask;
    }
    if (this.poolUsed + length > cacheWordsMax) return true;
    const entry = this.count;
    if (entry === this.entryState.length) this.growEntries();
    if (this.poolUsed + length > this.pool.length) this.growPool(this.poolUsed + length);
    this.entryHash[entry] = hash;
    this.entryState[entry] = state;
    this.entryLow[entry] = low;
    this.entryStart[entry] = this.poolUsed;
    this.entryLength[entry] = length;
    this.pool.set(bits.subarray(low, low + length), this.poolUsed);
    this.poolUsed += length;
    this.table[2 * slot] = hash;
    this.table[2 * slot + 1] = entry + 1;
    this.count += 1;
    if (this.count * 2 > this.table.length >>> 1) this.growTable();
    return true;
  }

  private matches(entry: number, state: number, bits: Uint32Array, low: number, length: number): boolean {
    if (this.entryState[entry] !== state) return false;
    if (this.entryLow[entry] !== low || this.entryLength[entry] !== length) return false;
    const start = this.entryStart[entry] ?? 0;
    for (let word = 0; word < length; word += 1) {
      if (this.pool[start + word] !== bits[low + word]) return false;
    }
    return true;
  }

  private growEntries(): void {
    const capacity = this.entryState.length * 2;
    const grow = <T extends Int32Array | Uint32Array>(old: T, fresh: T): T => {
      fresh.set(old);
      return fresh;
    };
    this.entryHash = grow(this.entryHash, new Uint32Array(capacity));
    this.entryState = grow(this.entryState, new Int32Array(capacity));
    this.entryLow = grow(this.entryLow, new Int32Array(capacity));
    this.entryStart = grow(this.entryStart, new Int32Array(capacity));
    this.entryLength = grow(this.entryLength, new Int32Array(capacity));
  }

  private growPool(wordsNeeded: number): void {
    const pool = new Uint32Array(Math.min(cacheWordsMax, Math.max(wordsNeeded, this.pool.length * 2)));
    pool.set(this.pool.subarray(0, this.poolUsed));
    this.pool = pool;
  }

  private growTable(): void {
    const table = new Int32Array(this.table.length * 2);
    const mask = (table.length >>> 1) - 1;
    for (let entry = 0; entry < this.count; entry += 1) {
      const hash = this.entryHash[entry] ?? 0;
      let slot = hash & mask;
      while (table[2 * slot + 1] !== 0) slot = (slot + 1) & mask;
      table[2 * slot] = hash;
      table[2 * slot + 1] = entry + 1;
    }
    this.table = table;
  }
}

/** 64 MiB of cached decided-set words per key searched. */
const cacheWordsMax = 16 * 1024 * 1024;

function mixHash(bitsHash: number, state: number): number {
  let h = (bitsHash ^ Math.imul(state + 1, 0x9e3779b1)) | 0;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  h = Math.imul(h ^ (h >>> 12), 0x297a2d39);
  return (h ^ (h >>> 15)) >>> 0;
}

// Explanations. They only run once per failed key, so clarity beats speed.

const listedOpsMax = 12;

function explainViolation(key: string, problem: KeyProblem, search: SearchOutcome): string {
  const { ops } = problem;
  const prefix = Array.from(search.deepestPrefix);
  const placed = new Set(prefix);
  const tookEffect = prefix.filter((_, index) => search.deepestHow[index] !== LEFT_OUT).map((op) => ops[op] as Operation);
  const leftOut = prefix.length - tookEffect.length;
  // The search only knows values up to what ops compare them with: replay for the real one.
  let value: string | null = null;
  for (const op of tookEffect) value = valueAfter(op, value);
  const lines = [
    `key ${JSON.stringify(key)}: no linearization of its ${ops.length} operations` +
      (problem.droppedCount > 0 ? ` (${problem.droppedCount} more left out: failed, unanswered reads, unknown writes nothing could see)` : '') +
      ` exists; searched ${search.steps} steps.`,
    `Longest linearizable prefix found: ${tookEffect.length} operations` +
      (leftOut > 0 ? ` (and ${leftOut} unknown ones left out)` : '') +
      `, leaving the value ${describeValue(value)}:`,
    ...listTail(tookEffect.map(describeOperation)),
  ];
  // The first pending return in event order is the deadline the prefix could not meet.
  let blocking: Operation | null = null;
  const candidates: Operation[] = [];
  for (let event = 0; event < problem.eventOp.length; event += 1) {
    const op = problem.eventOp[event] ?? 0;
    if (placed.has(op)) continue;
    const kind = problem.eventKind[event] ?? CALL;
    if (kind === RETURN) {
      blocking = ops[op] as Operation;
      break;
    }
    if (kind === CALL) candidates.push(ops[op] as Operation);
  }
  if (blocking === null) return lines.join('\n');
  lines.push(
    `Next, ${describeOperation(blocking)} had to take effect by its return at ${String(blocking.returnTime)}, ` +
      `but none of the ${candidates.length} operations pending then fits after that prefix:`,
  );
  lines.push(...listTail(candidates.map((op) => `${describeOperation(op)}: ${whyNot(op, value)}`)));
  return lines.join('\n');
}

/** The register value after op takes effect on `value` (op known to fit). */
function valueAfter(op: Operation, value: string | null): string | null {
  switch (op.kind) {
    case 'read':
      return value;
    case 'write':
      return op.value ?? null;
    case 'cas':
      if (op.status === 'ok' && op.casSucceeded !== true) return value;
      return value === (op.expected ?? null) ? (op.value ?? null) : value;
  }
}

/** Lists at most listedOpsMax lines, keeping the last ones (nearest the failure). */
function listTail(lines: readonly string[]): string[] {
  const shown = lines.slice(-listedOpsMax).map((line) => `  ${line}`);
  if (lines.length > listedOpsMax) shown.unshift(`  … ${lines.length - listedOpsMax} earlier`);
  return shown;
}

function whyNot(op: Operation, value: string | null): string {
  const current = describeValue(value);
  switch (op.kind) {
    case 'read':
      if (op.output !== value) return `observed ${describeValue(op.output)} but the value is ${current}`;
      break;
    case 'cas':
      if (op.casSucceeded === true && op.expected !== value) return `matched ${describeValue(op.expected)} but the value is ${current}`;
      if (op.casSucceeded === false && op.expected === value) return `reported a mismatch but the value is ${current}`;
      break;
    case 'write':
      break;
  }
  return 'fits, but nothing fits after it';
}

function explainBudget(key: string, problem: KeyProblem, search: SearchOutcome, stepsMax: number): string {
  return (
    `key ${JSON.stringify(key)}: search budget of ${stepsMax} steps spent on ${problem.ops.length} operations ` +
    `(${problem.definiteCount} definite) without a verdict; longest linearizable prefix found: ${search.deepestPrefix.length} operations.`
  );
}
