// Virtual-time discrete event scheduler: one binary heap ordered by
// (time, insertion sequence), so equal times run in the order they were
// scheduled and a run is reproducible. Also gives each node a drifting Clock
// and models SIGSTOP: a paused node's events wait until it resumes.
import assert from 'node:assert/strict';
import type { Clock, NodeId, TimerHandle } from '../consensus/types.ts';

/** Opaque handle of a scheduled event; pass it to `cancel`. */
export type EventHandle = { readonly __event: unknown };

export type RunReason = 'time' | 'predicate' | 'idle';
export interface RunResult {
  /** 'time': reached the target time; 'predicate': it held; 'idle': no events left. */
  readonly reason: RunReason;
  /** Callbacks run by this call. */
  readonly events: number;
}

/** A run used up its event budget: most likely a livelock or a zero-delay loop. */
export class EventLimitError extends Error {
  override readonly name = 'EventLimitError';
  constructor(
    readonly eventsMax: number,
    readonly nowMs: number,
    readonly lastLabel: string,
    target: string,
  ) {
    super(`scheduler: ran ${eventsMax} events without reaching ${target}; virtual time ${nowMs} ms, last event '${lastLabel}'`);
  }
}

const STATE_QUEUED = 0;
const STATE_DEFERRED = 1; // popped while its node was paused; waits in NodeSlot.deferred
const STATE_FINISHED = 2; // ran or was cancelled

const noop = (): void => {};

class ScheduledEvent {
  heapIndex = -1;
  state = STATE_QUEUED;
  constructor(
    public timeMs: number,
    public seq: number,
    public callback: (argument: unknown) => void,
    public argument: unknown,
    readonly label: string,
    readonly owner: NodeSlot | null,
    readonly timerOf: NodeClock | null,
  ) {}
}

class NodeSlot {
  paused = false;
  readonly deferred: ScheduledEvent[] = [];
  clock: NodeClock | null = null;
  constructor(readonly node: NodeId) {}
}

const asHandle = (event: ScheduledEvent): EventHandle => event as unknown as EventHandle;

const before = (a: ScheduledEvent, b: ScheduledEvent): boolean => a.timeMs < b.timeMs || (a.timeMs === b.timeMs && a.seq < b.seq);

export interface SchedulerOptions {
  /** Virtual time at the start, ms (default 0). */
  readonly startMs?: number;
}

/**
 * Single-threaded virtual time. Callbacks run synchronously from `step` /
 * `runUntil`; an exception in a callback propagates out of them (a bug stops
 * the run). Times are plain numbers of virtual ms and may be fractional.
 */
export class Scheduler {
  private now: number;
  private seq = 0;
  private readonly heap: ScheduledEvent[] = [];
  private readonly slots = new Map<NodeId, NodeSlot>();
  private lastLabel = '';
  /** Callbacks run since construction. */
  eventsRun = 0;

  constructor(options: SchedulerOptions = {}) {
    this.now = options.startMs ?? 0;
    assert.ok(Number.isFinite(this.now), 'scheduler: startMs must be finite');
  }

  nowMs(): number {
    return this.now;
  }

  /** Events waiting in the heap (not counting those held by paused nodes). */
  pending(): number {
    return this.heap.length;
  }

  /** Time of the next queued event, or null. */
  nextEventMs(): number | null {
    return this.heap[0]?.timeMs ?? null;
  }

  /** Run `callback` after `delayMs` (>= 0) of virtual time. */
  schedule(delayMs: number, callback: () => void, label = ''): EventHandle {
    if (!(delayMs >= 0)) assert.fail(`scheduler: delay must be >= 0, got ${delayMs}`);
    return asHandle(this.insert(this.now + delayMs, callback, undefined, label, null, null));
  }

  /** Run `callback` at virtual time `timeMs` (>= now). */
  scheduleAt(timeMs: number, callback: () => void, label = ''): EventHandle {
    return asHandle(this.insert(timeMs, callback, undefined, label, null, null));
  }

  /**
   * Allocation-light form for hot paths: runs `callback(argument)` at `timeMs`
   * (pass a long-lived bound callback and a per-event record, no closure).
   * When `node` is given, the event belongs to that node's process: it is held
   * while the node is paused and runs (late) after `resume`.
   */
  scheduleCall<A>(timeMs: number, node: NodeId | null, callback: (argument: A) => void, argument: A, label = ''): EventHandle {
    const owner = node === null ? null : this.slot(node);
    return asHandle(this.insert(timeMs, callback as (argument: unknown) => void, argument, label, owner, null));
  }

  /** Cancel a queued or held event. Returns false when it already ran or was cancelled. */
  cancel(handle: EventHandle): boolean {
    const event = handle as unknown as ScheduledEvent;
    // Hot paths check with `if` and fail with assert.fail: assert.ok is a call per event.
    if (!(event instanceof ScheduledEvent)) assert.fail('scheduler.cancel: not an event handle');
    if (event.state === STATE_FINISHED) return false;
    if (event.state === STATE_QUEUED) this.removeAt(event.heapIndex);
    this.finish(event);
    return true;
  }

  /** Run the next event, if any. Returns false when nothing is left to run. */
  step(): boolean {
    while (this.heap.length > 0) {
      if (this.runNext()) return true;
    }
    return false;
  }

  /**
   * Run events until virtual time `until` (all events at or before it run, then
   * the clock is set to it), or until the predicate holds (checked before every
   * event), or nothing is left. Throws `EventLimitError` if more than
   * `eventsMax` callbacks would run.
   */
  runUntil(until: number | (() => boolean), eventsMax: number): RunResult {
    assert.ok(Number.isInteger(eventsMax) && eventsMax > 0, `scheduler.runUntil: eventsMax must be a positive integer, got ${eventsMax}`);
    let events = 0;
    if (typeof until === 'number') {
      if (!(until >= this.now)) assert.fail(`scheduler.runUntil: target ${until} ms is before now ${this.now} ms`);
      for (;;) {
        const next = this.heap[0];
        if (next === undefined || next.timeMs > until) break;
        if (events >= eventsMax) throw new EventLimitError(eventsMax, this.now, this.lastLabel, `time ${until} ms`);
        if (this.runNext()) events++;
      }
      this.now = until;
      return { reason: 'time', events };
    }
    for (;;) {
      if (until()) return { reason: 'predicate', events };
      if (this.heap.length === 0) return { reason: 'idle', events };
      if (events >= eventsMax) throw new EventLimitError(eventsMax, this.now, this.lastLabel, 'the predicate');
      if (this.runNext()) events++;
    }
  }

  /** Stop a node as SIGSTOP would: its events (timers, deliveries) are held until `resume`. */
  pause(node: NodeId): void {
    this.slot(node).paused = true;
  }

  /** Continue a paused node: held events run now, in the order they fell due. */
  resume(node: NodeId): void {
    const slot = this.slot(node);
    if (!slot.paused) return;
    slot.paused = false;
    for (const event of slot.deferred) {
      if (event.state !== STATE_DEFERRED) continue; // cancelled while held
      event.state = STATE_QUEUED;
      event.timeMs = this.now;
      event.seq = this.seq++;
      this.push(event);
    }
    slot.deferred.length = 0;
  }

  isPaused(node: NodeId): boolean {
    return this.slots.get(node)?.paused ?? false;
  }

  /**
   * The node's clock. The first call creates it: local time starts at virtual
   * now plus `offsetMs` and runs at rate 1 + driftPpm·1e-6 (drift default 0).
   * Later calls return the same clock (so time stays continuous across a
   * restart); a given `driftPpm` then changes its drift, `offsetMs` is ignored.
   * The clock keeps running while the node is paused or down, as a machine's does.
   */
  clockFor(node: NodeId, driftPpm?: number, offsetMs = 0): NodeClock {
    const slot = this.slot(node);
    if (slot.clock === null) slot.clock = new NodeClock(this, slot, driftPpm ?? 0, offsetMs);
    else if (driftPpm !== undefined) slot.clock.setDrift(driftPpm);
    return slot.clock;
  }

  /** @internal used by NodeClock */
  insertTimer(timeMs: number, callback: () => void, clock: NodeClock, slot: NodeSlot): ScheduledEvent {
    return this.insert(timeMs, callback, undefined, 'timer', slot, clock);
  }

  private slot(node: NodeId): NodeSlot {
    let slot = this.slots.get(node);
    if (slot === undefined) {
      slot = new NodeSlot(node);
      this.slots.set(node, slot);
    }
    return slot;
  }

  private insert(
    timeMs: number,
    callback: (argument: unknown) => void,
    argument: unknown,
    label: string,
    owner: NodeSlot | null,
    timerOf: NodeClock | null,
  ): ScheduledEvent {
    if (!(timeMs >= this.now && timeMs < Infinity)) assert.fail(`scheduler: event '${label}' at ${timeMs} ms is not in [now=${this.now}, ∞)`);
    const event = new ScheduledEvent(timeMs, this.seq++, callback, argument, label, owner, timerOf);
    this.push(event);
    return event;
  }

  /** Pops one event; runs it unless its node is paused. Returns whether a callback ran. */
  private runNext(): boolean {
    const event = this.removeAt(0);
    if (!(event.timeMs >= this.now)) assert.fail('scheduler: time went backwards');
    this.now = event.timeMs;
    const owner = event.owner;
    if (owner !== null && owner.paused) {
      event.state = STATE_DEFERRED;
      owner.deferred.push(event);
      return false;
    }
    const callback = event.callback;
    const argument = event.argument;
    this.finish(event);
    this.lastLabel = event.label;
    this.eventsRun++;
    callback(argument);
    return true;
  }

  private finish(event: ScheduledEvent): void {
    event.state = STATE_FINISHED;
    event.callback = noop;
    event.argument = undefined;
    if (event.timerOf !== null) event.timerOf.forget(event);
  }

  // Indexed binary min-heap: every event knows its index so cancel is O(log n)
  // and the heap never fills with dead timers (Raft resets them constantly).
  private push(event: ScheduledEvent): void {
    event.heapIndex = this.heap.length;
    this.heap.push(event);
    this.siftUp(event.heapIndex);
  }

  private removeAt(index: number): ScheduledEvent {
    const heap = this.heap;
    const removed = heap[index];
    const last = heap.pop();
    if (removed === undefined || last === undefined) assert.fail('scheduler: heap index out of range');
    removed.heapIndex = -1;
    if (last !== removed) {
      heap[index] = last;
      last.heapIndex = index;
      this.siftUp(index);
      this.siftDown(last.heapIndex);
    }
    return removed;
  }

  private siftUp(start: number): void {
    const heap = this.heap;
    const event = heap[start] as ScheduledEvent;
    let index = start;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex] as ScheduledEvent;
      if (!before(event, parent)) break;
      heap[index] = parent;
      parent.heapIndex = index;
      index = parentIndex;
    }
    heap[index] = event;
    event.heapIndex = index;
  }

  private siftDown(start: number): void {
    const heap = this.heap;
    const length = heap.length;
    const event = heap[start] as ScheduledEvent;
    let index = start;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= length) break;
      const right = left + 1;
      let child = left;
      let childEvent = heap[left] as ScheduledEvent;
      if (right < length) {
        const rightEvent = heap[right] as ScheduledEvent;
        if (before(rightEvent, childEvent)) {
          child = right;
          childEvent = rightEvent;
        }
      }
      if (!before(childEvent, event)) break;
      heap[index] = childEvent;
      childEvent.heapIndex = index;
      index = child;
    }
    heap[index] = event;
    event.heapIndex = index;
  }
}

/**
 * A node's `Clock`. Local time = base + (virtual − virtualBase)·rate with
 * rate = 1 + driftPpm·1e-6; a timer of `delayMs` local ms fires after
 * `delayMs / rate` virtual ms. Changing the drift keeps local time continuous;
 * timers already set keep their virtual due time. Timers are held while the
 * node is paused.
 */
export class NodeClock implements Clock {
  private rate: number;
  private drift: number;
  private localBaseMs: number;
  private virtualBaseMs: number;
  private readonly timers = new Set<ScheduledEvent>();

  /** @internal use Scheduler.clockFor */
  constructor(
    private readonly scheduler: Scheduler,
    private readonly slot: NodeSlot,
    driftPpm: number,
    offsetMs: number,
  ) {
    this.drift = driftPpm;
    this.rate = NodeClock.rateOf(driftPpm);
    this.virtualBaseMs = scheduler.nowMs();
    this.localBaseMs = this.virtualBaseMs + offsetMs;
  }

  private static rateOf(driftPpm: number): number {
    // ±1e5 ppm (10%) is far beyond any real crystal; the simulator's bound is 200.
    if (!(Math.abs(driftPpm) <= 100_000)) assert.fail(`clock: drift ${driftPpm} ppm out of range`);
    return 1 + driftPpm * 1e-6;
  }

  get node(): NodeId {
    return this.slot.node;
  }

  get driftPpm(): number {
    return this.drift;
  }

  nowMs(): number {
    return this.localBaseMs + (this.scheduler.nowMs() - this.virtualBaseMs) * this.rate;
  }

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    if (!(delayMs >= 0 && delayMs < Infinity)) assert.fail(`clock ${this.slot.node}: timer delay must be finite and >= 0, got ${delayMs}`);
    const event = this.scheduler.insertTimer(this.scheduler.nowMs() + delayMs / this.rate, callback, this, this.slot);
    this.timers.add(event);
    return event as unknown as TimerHandle;
  }

  clearTimer(handle: TimerHandle): void {
    const event = handle as unknown as ScheduledEvent;
    // The message is built only on failure: a template in assert.ok's argument is built on every call.
    if (event.timerOf !== this) assert.fail(`clock ${this.slot.node}: clearTimer with another clock's handle`);
    this.scheduler.cancel(asHandle(event));
  }

  setDrift(driftPpm: number): void {
    const rate = NodeClock.rateOf(driftPpm);
    this.localBaseMs = this.nowMs();
    this.virtualBaseMs = this.scheduler.nowMs();
    this.drift = driftPpm;
    this.rate = rate;
  }

  /** Timers set and not yet fired or cleared (held ones included). */
  timersPending(): number {
    return this.timers.size;
  }

  /** Cancel every timer of this node (its process died). Returns how many. */
  cancelAll(): number {
    const events = [...this.timers];
    for (const event of events) this.scheduler.cancel(asHandle(event));
    return events.length;
  }

  /** @internal called by the scheduler when a timer runs or is cancelled */
  forget(event: ScheduledEvent): void {
    this.timers.delete(event);
  }
}
