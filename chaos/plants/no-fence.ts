// Planted fault for chaos tests, loaded into node processes with --import (never a node flag): the
// node never tells its runtime's watchdog that it holds its lease, so a paused node's workloads
// keep running while another owner starts them again. The copies-during-run check must catch it.
import { ProcessRuntime } from '../../actors/runtime-process.ts';

ProcessRuntime.prototype.leaseHeartbeat = function leaseHeartbeat(): void {
  // planted: no heartbeat, so the watchdog is never armed
};
process.stderr.write('planted fault: no lease heartbeats to the runtime watchdog\n');
