// How a node feeds its runtime's watchdog from its owner lease. A valid lease says only that the
// leader was heard within leaseMs; others may take over suspectMs after the leader last heard this
// node, so in the worst case another owner may start this node's projects suspectMs - leaseMs after
// a heartbeat sent while the lease was valid. The watchdog must have frozen and then killed the
// workloads by then, with room to spare: each heartbeat keeps them running validForMs (60 % of that
// gap) and they are killed at 90 % of it.
//
// Two feeders, one rule: a heartbeat goes out only at a moment the lease is valid.
//  - startLeaseHeartbeats beats from the node's own event loop (Runtime.leaseHeartbeat). The
//    simulator uses it: its nodes' loops never stall, they pause or crash, and the beats stop then.
//  - startLeasePublishing (real nodes) publishes, from the event loop, when the lease ends:
//    lastContact + leaseMs, the same time the host's leaseState() turns from 'valid' (OwnerLease).
//    A thread of the node (actors/lease-beats.ts) beats while the monotonic clock is before it.
//    So a busy event loop (a failover on a loaded machine holds it for a second and more) no
//    longer looks like a lost lease, and the guarantee above still holds, because:
//     * a beat at time t means t < published end <= lastContact + leaseMs, i.e. the lease is valid
//       at t exactly as leaseState() would say at t: the end is converted to CLOCK_MONOTONIC with
//       that clock read before the host's (never later than the real end), the thread compares on
//       CLOCK_MONOTONIC too, and a stale publication (the loop stuck) only holds an earlier end;
//     * nothing extends the end but a new contact seen by the loop (a message from the leader, or
//       the leader's own poll while it leads), so a node cut off from the leader, stuck or not,
//       gets its last beat before lastContact + leaseMs, frozen by + validForMs, killed by + 90 %
//       of the gap: the same worst case as beats from the loop;
//     * the thread is in the node's process: SIGSTOP (or a cgroup freeze) of the node stops it,
//       SIGKILL ends it and closes the spawner's fd 0 (which stops every workload). Until the
//       thread says it beat into the live spawner's FIFO (it starts, a new spawner started) and
//       once it ended, the loop beats instead, as before (ProcessRuntime.leaseValidUntil);
//     * the spawner counts a beat from when it was sent (stamped, CLOCK_MONOTONIC), so reading it
//       late (the spawner busy, the FIFO full) never extends the deadlines.
//    What changes is the usual case, not the bound: a stuck loop is fenced at the lease's end +
//    validForMs (as one cut off), not validForMs after it stuck; a stopped node as before.
import type { Clock, TimerHandle } from '../consensus/types.ts';

export interface FenceTiming {
  /** How often the node sends a heartbeat while its lease is valid. */
  readonly heartbeatMs: number;
  /** Each heartbeat keeps the workloads running this long. */
  readonly validForMs: number;
  /** Frozen workloads are killed this long after the freeze (a heartbeat before then thaws them). */
  readonly killAfterMs: number;
}

/** Shares of the takeover gap (suspectMs - leaseMs): freeze at 60 %, kill at 90 %, heartbeat every 10 %. */
const FREEZE_SHARE = 0.6;
const KILL_SHARE = 0.9;
const HEARTBEAT_SHARE = 0.1;
/** Heartbeats more often than this cost CPU for nothing. */
const HEARTBEAT_MS_MIN = 20;

export class FenceTimingError extends Error {
  override readonly name = 'FenceTimingError';
}

export function fenceTiming(leaseMs: number, suspectMs: number): FenceTiming {
  const gapMs = suspectMs - leaseMs;
  const heartbeatMs = Math.max(HEARTBEAT_MS_MIN, Math.floor(gapMs * HEARTBEAT_SHARE));
  const validForMs = Math.floor(gapMs * FREEZE_SHARE);
  const killAfterMs = Math.floor(gapMs * KILL_SHARE) - validForMs;
  // Two missed heartbeats (a GC pause, a busy turn) must not freeze anything.
  if (validForMs < 3 * heartbeatMs || killAfterMs < 1) {
    throw new FenceTimingError(`suspectMs - leaseMs is ${gapMs} ms: too little for the watchdog to freeze and kill workloads before others take over; leave at least ${Math.ceil((3 * HEARTBEAT_MS_MIN) / FREEZE_SHARE)} ms`);
  }
  return { heartbeatMs, validForMs, killAfterMs };
}

/**
 * Feed a runtime's watchdog every `heartbeatMs` while `leaseValid()` holds, on the node's own clock
 * (so a paused or crashed node stops feeding it, as it should). The simulator uses it. Returns a
 * function that stops the heartbeats.
 */
export function startLeaseHeartbeats(clock: Clock, timing: FenceTiming, leaseValid: () => boolean, heartbeat: (validForMs: number) => void): () => void {
  return every(clock, timing.heartbeatMs, () => {
    if (leaseValid()) heartbeat(timing.validForMs);
  });
}

/**
 * Publish every `heartbeatMs` until when the lease is valid (`validUntilMs()` on `clock`; null
 * before the first contact: nothing to publish) to a feeder outside the event loop (a real node's
 * heartbeat thread, Runtime.leaseValidUntil). Publishing less often only holds an earlier end.
 * Returns a function that stops it.
 */
export function startLeasePublishing(clock: Clock, timing: FenceTiming, validUntilMs: () => number | null, publish: (untilMs: number) => void): () => void {
  return every(clock, timing.heartbeatMs, () => {
    const untilMs = validUntilMs();
    if (untilMs !== null) publish(untilMs);
  });
}

/** `action` now and then every `periodMs` on `clock` until the returned function is called. */
function every(clock: Clock, periodMs: number, action: () => void): () => void {
  let timer: TimerHandle | null = null;
  let stopped = false;
  const run = (): void => {
    timer = null;
    if (stopped) return;
    action();
    timer = clock.setTimer(periodMs, run);
  };
  run();
  return () => {
    stopped = true;
    if (timer !== null) clock.clearTimer(timer);
  };
}
