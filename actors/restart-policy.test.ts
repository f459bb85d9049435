// Goal: the pure restart decision — policies, exponential back-off with a cap, crash-loop window, stable runs resetting, unrecoverable exits.
import test from 'ava';
import { decideRestart, RESTART_DEFAULTS, type ExitFacts, type RestartLimits } from './restart-policy.ts';

const limits: RestartLimits = { backoffMsMin: 100, backoffMsMax: 1000, crashLoopExitsMax: 6, crashLoopWindowMs: 60_000, stableRunMs: 10_000 };
const exit = (fields: Partial<ExitFacts>): ExitFacts => ({ exitCode: 1, signal: null, requested: false, startedAtMs: 0, exitedAtMs: 500, ...fields });

test('policies: never stays, on-failure restarts failures only, always restarts clean exits too', (t) => {
  t.deepEqual(decideRestart('never', exit({}), [], limits).decision, { kind: 'stay', reason: 'policy' });
  t.deepEqual(decideRestart('on-failure', exit({ exitCode: 0 }), [], limits).decision, { kind: 'stay', reason: 'policy' });
  t.deepEqual(decideRestart('on-failure', exit({ exitCode: null, signal: 'SIGSEGV' }), [], limits).decision, { kind: 'restart', delayMs: 100 });
  t.deepEqual(decideRestart('always', exit({ exitCode: 0 }), [], limits).decision, { kind: 'restart', delayMs: 100 });
  t.deepEqual(decideRestart('always', exit({ requested: true }), [], limits).decision, { kind: 'stay', reason: 'requested' });
  t.deepEqual(decideRestart('always', exit({ exitCode: 127 }), [], limits).decision, { kind: 'stay', reason: 'unrecoverable' });
});

test('back-off doubles up to its cap, then a crash loop within the window stops restarts', (t) => {
  let recent: number[] = [];
  const delays: number[] = [];
  let last = decideRestart('on-failure', exit({}), recent, limits);
  for (let index = 0; index < 6; index += 1) {
    const timeMs = 1000 * (index + 1);
    last = decideRestart('on-failure', exit({ startedAtMs: timeMs - 100, exitedAtMs: timeMs }), recent, limits);
    recent = last.recentExitsMs;
    if (last.decision.kind === 'restart') delays.push(last.decision.delayMs);
  }
  t.deepEqual(delays, [100, 200, 400, 800, 1000]);
  t.deepEqual(last.decision, { kind: 'crashLoop', exitsInWindow: 6 });
});

test('exits older than the window do not count; a stable run resets the back-off', (t) => {
  const old = [1000, 2000, 3000, 4000, 5000];
  const afterWindow = decideRestart('on-failure', exit({ startedAtMs: 99_000, exitedAtMs: 100_000 }), old, limits);
  t.deepEqual(afterWindow.decision, { kind: 'restart', delayMs: 100 });
  t.deepEqual(afterWindow.recentExitsMs, [100_000]);
  const stable = decideRestart('on-failure', exit({ startedAtMs: 0, exitedAtMs: 20_000 }), [15_000, 16_000, 17_000, 18_000, 19_000], limits);
  t.deepEqual(stable.decision, { kind: 'restart', delayMs: 100 });
  t.is(RESTART_DEFAULTS.crashLoopExitsMax, 5);
});
