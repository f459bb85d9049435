// Goal: the watchdog's timing fits inside the host's takeover gap for the defaults and for shortened test timings, and too small a gap is refused.
import test from 'ava';
import { hostOptionsDefault } from './host.ts';
import { fenceTiming, FenceTimingError } from './lease-fence.ts';

test('with the host defaults the workloads are frozen and killed before anyone may take over', (t) => {
  const host = hostOptionsDefault('n1');
  const timing = fenceTiming(host.leaseMs, host.suspectMs);
  t.deepEqual(timing, { heartbeatMs: 100, validForMs: 600, killAfterMs: 300 });
  t.true(timing.validForMs + timing.killAfterMs < host.suspectMs - host.leaseMs);
  t.true(timing.validForMs >= 3 * timing.heartbeatMs);
});

test('a gap too small for the watchdog is refused with what to do', (t) => {
  const error = t.throws(() => fenceTiming(1000, 1050), { instanceOf: FenceTimingError });
  t.regex(error?.message ?? '', /leave at least 100 ms/);
  t.notThrows(() => fenceTiming(200, 400));
});
