// Probes of a project's readiness on its owner (HTTP path, TCP port, a log
// line of the current run) and the polling loop that settles a start or
// answers a wait. Callback-based on the actor's clock, so the simulator runs
// the same loop on virtual time.
import type { ActorContext } from './actor-system.ts';
import type { CheckResult, ProjectIo } from './components.ts';
import type { HealthCheckSpec } from './messages.ts';
import type { ProjectRef } from './runtime.ts';

/** One attempt of a check; calls back once. */
export type Attempt = (callback: (result: CheckResult) => void) => void;

/** Each single probe attempt gives up after this long. */
export const PROBE_ATTEMPT_MS_MAX = 1000;

/** What a check is, in words (for progress and results). */
export function describeCheck(check: HealthCheckSpec): string {
  switch (check.type) {
    case 'http':
      return `GET ${check.path} on port ${check.port}`;
    case 'tcp':
      return `port ${check.port} accepting connections`;
    case 'log':
      return `a log line matching /${check.regex}/`;
    default: {
      const never: never = check;
      return never;
    }
  }
}

/**
 * The attempt for `check` against this run's ports and log lines (after
 * `runCursor`), or why it cannot be made (a port the project does not have).
 * A log probe remembers how far it read, so each poll scans only new lines.
 */
export function attemptFor(check: HealthCheckSpec, ref: ProjectRef, ports: Readonly<Record<string, number>>, runCursor: number, io: ProjectIo): Attempt | { readonly error: string } {
  switch (check.type) {
    case 'http':
    case 'tcp': {
      const port = ports[check.port];
      if (port === undefined) return { error: `the project has no port named '${check.port}'; its ports: ${Object.keys(ports).join(', ') || 'none'}` };
      const probe = check.type === 'http' ? ({ kind: 'http', port, path: check.path } as const) : ({ kind: 'tcp', port } as const);
      return (callback) => io.probe(probe, PROBE_ATTEMPT_MS_MAX, callback);
    }
    case 'log': {
      let cursor = runCursor;
      return (callback) => {
        for (;;) {
          const page = io.logs.query(ref, { since: cursor, grep: check.regex, stream: 'both', limit: 1 });
          const line = page.lines[0];
          if (line !== undefined) return callback({ ok: true, detail: `log line ${line.seq} matches /${check.regex}/: ${line.line}` });
          cursor = Math.max(cursor, page.nextCursor);
          if (!page.hasMore) return callback({ ok: false, detail: `no log line of this run matches /${check.regex}/ yet` });
        }
      };
    }
    default: {
      const never: never = check;
      return never;
    }
  }
}

export type PollOutcome =
  | { readonly ok: true; readonly elapsedMs: number; readonly detail: string }
  | { readonly ok: false; readonly reason: 'timeout' | 'gaveUp' | 'cancelled'; readonly elapsedMs: number; readonly detail: string };

export interface PollOptions {
  readonly context: ActorContext;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** The next attempt; null while there is nothing to probe yet (e.g. the workload is still starting). */
  readonly attempt: () => Attempt | null;
  /** A reason to stop early (the workload ended), or null to go on. */
  readonly giveUp: () => string | null;
  /** What to say while nothing could be probed. */
  readonly waitingDetail: () => string;
}

/**
 * Less time left than this counts as the timeout. A timer of a sliver of a millisecond may not move
 * a clock at all (the simulator's drifting clocks: 4207.002 + 1e-13 ms is 4207.002 ms), and the poll
 * then re-armed it forever at one instant (simulator seed 136, 3 nodes, 20 projects, once a start's
 * settle waited out its whole time for a hand-off).
 */
const POLL_LEFT_MS_MIN = 1;

/** Poll until an attempt passes, giveUp says stop, or the timeout; returns a cancel function. */
export function pollUntil(options: PollOptions, done: (outcome: PollOutcome) => void): () => void {
  const { context } = options;
  const startedMs = context.clock.nowMs();
  const elapsed = (): number => context.clock.nowMs() - startedMs;
  let finished = false;
  let timer: ReturnType<ActorContext['setTimer']> | null = null;
  let detail = 'not checked yet';
  const finish = (outcome: PollOutcome): void => {
    if (finished) return;
    finished = true;
    if (timer !== null) context.clearTimer(timer);
    done(outcome);
  };
  const next = (): void => {
    if (finished) return;
    const ended = options.giveUp();
    if (ended !== null) return finish({ ok: false, reason: 'gaveUp', elapsedMs: elapsed(), detail: `${ended}; last check: ${detail}` });
    const attempt = options.attempt();
    if (attempt === null) {
      detail = options.waitingDetail();
      return schedule();
    }
    attempt(
      context.guard((result: CheckResult) => {
        if (finished) return;
        if (result.ok) return finish({ ok: true, elapsedMs: elapsed(), detail: result.detail });
        detail = result.detail;
        schedule();
      }),
    );
  };
  const schedule = (): void => {
    const leftMs = options.timeoutMs - elapsed();
    if (leftMs < POLL_LEFT_MS_MIN) return finish({ ok: false, reason: 'timeout', elapsedMs: elapsed(), detail: `not ready after ${options.timeoutMs} ms: ${detail}` });
    timer = context.setTimer(Math.min(options.intervalMs, leftMs), () => {
      timer = null;
      next();
    });
  };
  next();
  return () => finish({ ok: false, reason: 'cancelled', elapsedMs: elapsed(), detail: `cancelled: ${detail}` });
}
