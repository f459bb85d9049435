// A stand-in for a node process in tests: opens the process runtime on a state dir, starts one
// workload, prints its process group, then idles until it is killed. With a heartbeat period it
// also feeds the watchdog as a node holding its lease does: `loop` sends heartbeats (valid for 2
// periods) from its event loop; `thread` renews an owner lease (2 s) every period, as the leader's
// messages do, and publishes its end as node/node-actors.ts does, so the runtime's heartbeat thread
// beats. SIGSTOP of this process stops either.
// Usage: node --import tsx actors/testing/runtime-node.ts <dataDir> <command> [port|-] [heartbeatMs] [loop|thread]
import { join } from 'node:path';
import type { TimerHandle } from '../../consensus/types.ts';
import { fenceTiming, startLeasePublishing } from '../lease-fence.ts';
import { OwnerLease } from '../liveness.ts';
import { LogStore } from '../logs.ts';
import { ProcessRuntime } from '../runtime-process.ts';

/** The host's defaults: the fence timing a real node derives from them. */
const STAND_IN_LEASE_MS = 2000;
const STAND_IN_SUSPECT_MS = 3000;

const [dataDir, command, port, heartbeatMs, feeder = 'loop'] = process.argv.slice(2);
if (dataDir === undefined || command === undefined || (feeder !== 'loop' && feeder !== 'thread')) {
  process.stderr.write('usage: runtime-node.ts <dataDir> <command> [port|-] [heartbeatMs] [loop|thread]\n');
  process.exit(2);
}
const clock = {
  nowMs: () => performance.now(),
  setTimer: (delayMs: number, callback: () => void) => setTimeout(callback, delayMs) as unknown as TimerHandle,
  clearTimer: (handle: TimerHandle) => clearTimeout(handle as unknown as NodeJS.Timeout),
};
const fence = fenceTiming(STAND_IN_LEASE_MS, STAND_IN_SUSPECT_MS);
const logs = new LogStore({ dir: join(dataDir, 'logs'), wallNowMs: () => Date.now() });
const runtime = await ProcessRuntime.open({
  node: 'n1',
  stateDir: join(dataDir, 'runtime', 'process'),
  logs,
  clock,
  wallNowMs: () => Date.now(),
  orphanGraceMs: 1000,
  fenceHeartbeatMs: fence.heartbeatMs,
  fenceValidForMs: fence.validForMs,
  fenceKillAfterMs: fence.killAfterMs,
});
const period = heartbeatMs === undefined ? null : Number(heartbeatMs);
if (period !== null && feeder === 'loop') {
  runtime.leaseHeartbeat(period * 2);
  setInterval(() => runtime.leaseHeartbeat(period * 2), period);
}
if (period !== null && feeder === 'thread') {
  const lease = new OwnerLease(STAND_IN_LEASE_MS, clock.nowMs());
  lease.contact(clock.nowMs());
  setInterval(() => lease.contact(clock.nowMs()), period);
  startLeasePublishing(clock, fence, () => lease.validUntilMs(), (untilMs) => runtime.leaseValidUntil(untilMs));
}
const status = await runtime.start({
  project: { tenant: 't', name: 'p' },
  command,
  env: {},
  ports: port === undefined || port === '-' ? {} : { default: Number(port) },
  restart: 'never',
  node: 'n1',
});
process.stdout.write(`${JSON.stringify({ pgid: status.pid, cleanedUp: runtime.cleanedUp })}\n`);
setInterval(() => undefined, 60_000);
