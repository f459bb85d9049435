// The simulated runtime's watchdog behaves as the spawner's: armed by the first lease heartbeat, it freezes, then kills, and a heartbeat thaws; it keeps time while the node is paused.
import test from 'ava';
import type { WorkloadSpec } from '../actors/runtime.ts';
import { startLeaseHeartbeats } from '../actors/lease-fence.ts';
import type { NodeId } from '../consensus/types.ts';
import { prngFromSeed } from './prng.ts';
import { SimRuntime } from './runtime-sim.ts';
import { Scheduler } from './scheduler.ts';

const NODE = 'n1' as NodeId;
const EVENTS_MAX = 100_000;
const spec = (name: string): WorkloadSpec => ({ project: { tenant: 't', name }, command: 'sleep 1000' }) as unknown as WorkloadSpec;

function setUp(): { scheduler: Scheduler; runtime: SimRuntime; launches: string[] } {
  const scheduler = new Scheduler();
  const launches: string[] = [];
  const runtime = new SimRuntime({ node: NODE, scheduler, prng: prngFromSeed(1), startMsMax: 10, stopMsMax: 10, fenceKillAfterMs: 500, launching: (_node, key) => launches.push(key) });
  return { scheduler, runtime, launches };
}

test('without a heartbeat the watchdog is disarmed: workloads run on', (t) => {
  const { scheduler, runtime, launches } = setUp();
  runtime.start(spec('a'), () => undefined);
  scheduler.runUntil(60_000, EVENTS_MAX);
  t.deepEqual(launches, ['projects/t/a']);
  t.is(runtime.status({ tenant: 't', name: 'a' })?.state, 'running');
  t.is(runtime.fence(), 'none');
});

test('heartbeats that stop: frozen at validFor, killed killAfter later, then a heartbeat thaws and a start works again', (t) => {
  const { scheduler, runtime } = setUp();
  runtime.leaseHeartbeat(1000);
  runtime.start(spec('a'), () => undefined);
  scheduler.runUntil(999, EVENTS_MAX);
  t.is(runtime.fence(), 'none');
  scheduler.runUntil(1001, EVENTS_MAX);
  t.is(runtime.fence(), 'frozen');
  t.true(runtime.isActive('projects/t/a'), 'a frozen copy still counts as a copy');
  let refused = '';
  runtime.start(spec('b'), (outcome) => (refused = outcome.ok ? '' : outcome.error.name));
  scheduler.runUntil(1499, EVENTS_MAX);
  t.is(refused, 'RuntimeUnavailableError');
  t.is(runtime.status({ tenant: 't', name: 'a' })?.state, 'running');
  scheduler.runUntil(1501, EVENTS_MAX);
  t.is(runtime.fence(), 'killed');
  t.false(runtime.isActive('projects/t/a'));
  t.regex(runtime.status({ tenant: 't', name: 'a' })?.error ?? '', /^fenced: /);
  runtime.leaseHeartbeat(1000);
  t.is(runtime.fence(), 'none');
  runtime.start(spec('a'), () => undefined);
  scheduler.runUntil(1600, EVENTS_MAX);
  t.true(runtime.isActive('projects/t/a'));
});

test("heartbeats fed on the node's clock keep workloads alive until the node is paused; the watchdog then kills them while it stays paused", (t) => {
  const { scheduler, runtime } = setUp();
  const clock = scheduler.clockFor(NODE);
  const stop = startLeaseHeartbeats(clock, { heartbeatMs: 100, validForMs: 600, killAfterMs: 300 }, () => true, (validForMs) => runtime.leaseHeartbeat(validForMs));
  runtime.start(spec('a'), () => undefined);
  scheduler.runUntil(5000, EVENTS_MAX);
  t.is(runtime.fence(), 'none');
  t.true(runtime.isActive('projects/t/a'));
  scheduler.pause(NODE);
  // The last heartbeat was at most 100 ms before the pause: frozen by +600, killed by +500 more (this runtime's killAfter).
  scheduler.runUntil(6200, EVENTS_MAX);
  t.is(runtime.fence(), 'killed');
  t.false(runtime.isActive('projects/t/a'));
  scheduler.resume(NODE);
  scheduler.runUntil(6300, EVENTS_MAX);
  t.is(runtime.fence(), 'none', 'the resumed node heartbeats again');
  stop();
});
