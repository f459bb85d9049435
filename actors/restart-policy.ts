// The restart decision, shared by the process and Docker drivers: a pure function
// of the policy, the exit, and the recent exits, so that it is tested without
// processes and both drivers behave alike.
import type { RestartPolicy } from './runtime.ts';

export interface RestartLimits {
  /** First back-off; doubles after each unexpected exit. */
  readonly backoffMsMin: number;
  readonly backoffMsMax: number;
  /** This many unexpected exits within the window means a crash loop: stop restarting. */
  readonly crashLoopExitsMax: number;
  readonly crashLoopWindowMs: number;
  /** A run that lasted this long resets the back-off (it was healthy for a while). */
  readonly stableRunMs: number;
}

export const RESTART_DEFAULTS: RestartLimits = {
  backoffMsMin: 200,
  backoffMsMax: 30_000,
  crashLoopExitsMax: 5,
  crashLoopWindowMs: 60_000,
  stableRunMs: 10_000,
};

export interface ExitFacts {
  readonly exitCode: number | null;
  readonly signal: string | null;
  /** The run ended because stop() asked it to. */
  readonly requested: boolean;
  readonly startedAtMs: number;
  readonly exitedAtMs: number;
}

export type RestartDecision =
  | { readonly kind: 'stay'; readonly reason: 'requested' | 'policy' | 'unrecoverable' }
  | { readonly kind: 'restart'; readonly delayMs: number }
  | { readonly kind: 'crashLoop'; readonly exitsInWindow: number };

/** Exit codes that a restart cannot fix: the shell's "not executable" and "command not found". */
export const UNRECOVERABLE_EXIT_CODES: ReadonlySet<number> = new Set([126, 127]);

/**
 * Decides what follows an exit. `recentExitsMs` holds the times of earlier unexpected exits
 * (the caller keeps it; this function returns the updated list).
 */
export function decideRestart(
  policy: RestartPolicy,
  exit: ExitFacts,
  recentExitsMs: readonly number[],
  limits: RestartLimits,
): { decision: RestartDecision; recentExitsMs: number[] } {
  if (exit.requested) return { decision: { kind: 'stay', reason: 'requested' }, recentExitsMs: [...recentExitsMs] };
  const failed = exit.signal !== null || (exit.exitCode !== null && exit.exitCode !== 0);
  if (exit.exitCode !== null && UNRECOVERABLE_EXIT_CODES.has(exit.exitCode)) {
    return { decision: { kind: 'stay', reason: 'unrecoverable' }, recentExitsMs: [...recentExitsMs] };
  }
  const wants = policyWantsRestart(policy, failed);
  if (!wants) return { decision: { kind: 'stay', reason: 'policy' }, recentExitsMs: [...recentExitsMs] };
  const stable = exit.exitedAtMs - exit.startedAtMs >= limits.stableRunMs;
  const windowStart = exit.exitedAtMs - limits.crashLoopWindowMs;
  const recent = (stable ? [] : recentExitsMs.filter((timeMs) => timeMs > windowStart)).concat(exit.exitedAtMs);
  if (recent.length >= limits.crashLoopExitsMax) {
    return { decision: { kind: 'crashLoop', exitsInWindow: recent.length }, recentExitsMs: recent };
  }
  const delayMs = Math.min(limits.backoffMsMax, limits.backoffMsMin * 2 ** (recent.length - 1));
  return { decision: { kind: 'restart', delayMs }, recentExitsMs: recent };
}

function policyWantsRestart(policy: RestartPolicy, failed: boolean): boolean {
  switch (policy) {
    case 'never':
      return false;
    case 'on-failure':
      return failed;
    case 'always':
      return true;
    default: {
      const unreachable: never = policy;
      throw new Error(`unknown restart policy ${String(unreachable)}`);
    }
  }
}

/** A one-line description of how a run ended, for status and errors. */
export function describeExit(exitCode: number | null, signal: string | null): string {
  if (signal !== null) return `killed by ${signal}`;
  if (exitCode !== null) return `exited with code ${exitCode}`;
  return 'ended';
}
