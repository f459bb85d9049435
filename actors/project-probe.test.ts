// The settle poll ends at its timeout even on a clock that a sliver of a millisecond does not move.
import test from 'ava';
import type { ActorContext } from './actor-system.ts';
import type { TimerHandle } from '../consensus/types.ts';
import { pollUntil, type PollOutcome } from './project-probe.ts';

/** A clock at 4207.002 ms whose due timers run one after another; a delay below 1e-9 ms leaves it where it is, as floating point does there. */
function stickyContext(): { context: ActorContext; run: (eventsMax: number) => number } {
  let now = 4207.002;
  const due: { atMs: number; callback: () => void }[] = [];
  const clock = {
    nowMs: () => now,
    setTimer: (delayMs: number, callback: () => void): TimerHandle => {
      const timer = { atMs: delayMs < 1e-9 ? now : now + delayMs, callback };
      due.push(timer);
      return timer as unknown as TimerHandle;
    },
    clearTimer: (handle: TimerHandle): void => {
      const index = due.indexOf(handle as unknown as (typeof due)[number]);
      if (index >= 0) due.splice(index, 1);
    },
  };
  const context: ActorContext = { key: 'projects/t/p', clock, setTimer: clock.setTimer, clearTimer: clock.clearTimer, guard: (callback) => callback };
  const run = (eventsMax: number): number => {
    let events = 0;
    while (due.length > 0 && events < eventsMax) {
      due.sort((a, b) => a.atMs - b.atMs);
      const next = due.shift() as (typeof due)[number];
      now = next.atMs;
      next.callback();
      events += 1;
    }
    return events;
  };
  return { context, run };
}

test('a poll with less than a millisecond left times out instead of re-arming its timer at one instant', (t) => {
  const { context, run } = stickyContext();
  let outcome: PollOutcome | null = null;
  // 50 ms steps from 0 leave 1e-13 ms at the end: the last timer would not move this clock.
  pollUntil({ context, intervalMs: 50, timeoutMs: 100 + 1e-13, attempt: () => null, giveUp: () => null, waitingDetail: () => 'not running here' }, (result) => {
    outcome = result;
  });
  const events = run(1000);
  t.true(events < 10, `${events} timer events`);
  t.like(outcome, { ok: false, reason: 'timeout' });
});
