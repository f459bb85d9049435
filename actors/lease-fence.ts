// How a node feeds its runtime's watchdog (Runtime.leaseHeartbeat) from its owner lease, when all
// it can see is whether the lease is valid now. A valid lease says only that the leader was heard
// within leaseMs; others may take over suspectMs after the leader last heard this node, so in the
// worst case another owner may start this node's projects suspectMs - leaseMs after a heartbeat.
// The watchdog must have frozen and then killed the workloads by then, with room to spare.
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
 * (so a paused or crashed node stops feeding it, as it should). Real nodes and the simulator both
 * use it. Returns a function that stops the heartbeats.
 */
export function startLeaseHeartbeats(clock: Clock, timing: FenceTiming, leaseValid: () => boolean, heartbeat: (validForMs: number) => void): () => void {
  let timer: TimerHandle | null = null;
  let stopped = false;
  const beat = (): void => {
    timer = null;
    if (stopped) return;
    if (leaseValid()) heartbeat(timing.validForMs);
    timer = clock.setTimer(timing.heartbeatMs, beat);
  };
  beat();
  return () => {
    stopped = true;
    if (timer !== null) clock.clearTimer(timer);
  };
}
