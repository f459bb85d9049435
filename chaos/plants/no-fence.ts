// Planted fault for chaos tests, loaded into node processes with --import (never a node flag): the
// node never tells its runtime's watchdog that it holds its lease (neither the heartbeats from its
// event loop nor the lease's end to the heartbeat thread), so a paused node's workloads keep running
// while another owner starts them again. The copies-during-run check must catch it.
import { ProcessRuntime } from '../../actors/runtime-process.ts';

ProcessRuntime.prototype.leaseHeartbeat = function leaseHeartbeat(): void {
  // planted: no heartbeat, so the watchdog is never armed
};
ProcessRuntime.prototype.leaseValidUntil = function leaseValidUntil(): void {
  // planted: no lease end published, so the heartbeat thread never starts
};
process.stderr.write('planted fault: no lease heartbeats to the runtime watchdog\n');
