// A stand-in for a node process in tests: opens the process runtime on a state dir, starts one
// workload, prints its process group, then idles until it is killed. With a heartbeat period it
// also sends lease heartbeats (valid for 2 periods) from its event loop, as a node holding its
// lease does: SIGSTOP of this process then stops them.
// Usage: node --import tsx actors/testing/runtime-node.ts <dataDir> <command> [port|-] [heartbeatMs]
import { join } from 'node:path';
import type { TimerHandle } from '../../consensus/types.ts';
import { LogStore } from '../logs.ts';
import { ProcessRuntime } from '../runtime-process.ts';

const [dataDir, command, port, heartbeatMs] = process.argv.slice(2);
if (dataDir === undefined || command === undefined) {
  process.stderr.write('usage: runtime-node.ts <dataDir> <command> [port|-] [heartbeatMs]\n');
  process.exit(2);
}
const clock = {
  nowMs: () => performance.now(),
  setTimer: (delayMs: number, callback: () => void) => setTimeout(callback, delayMs) as unknown as TimerHandle,
  clearTimer: (handle: TimerHandle) => clearTimeout(handle as unknown as NodeJS.Timeout),
};
const logs = new LogStore({ dir: join(dataDir, 'logs'), wallNowMs: () => Date.now() });
const runtime = await ProcessRuntime.open({ node: 'n1', stateDir: join(dataDir, 'runtime', 'process'), logs, clock, wallNowMs: () => Date.now(), orphanGraceMs: 1000 });
const period = heartbeatMs === undefined ? null : Number(heartbeatMs);
if (period !== null) {
  runtime.leaseHeartbeat(period * 2);
  setInterval(() => runtime.leaseHeartbeat(period * 2), period);
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
