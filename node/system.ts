// The real implementations of the injected Clock and Random: what a node gets
// outside the simulator.
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Clock, Random, TimerHandle } from '../consensus/types.ts';

export const systemClock: Clock = {
  nowMs: () => performance.now(),
  setTimer: (delayMs, callback) => setTimeout(callback, delayMs) as unknown as TimerHandle,
  clearTimer: (handle) => clearTimeout(handle as unknown as NodeJS.Timeout),
};

export const systemRandom: Random = {
  int: (maxExclusive) => randomInt(maxExclusive),
  float: () => randomInt(2 ** 48 - 1) / 2 ** 48,
};
