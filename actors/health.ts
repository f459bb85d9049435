// Health checks (HTTP, TCP, log regex) and waitFor, which polls a condition until it
// holds, the workload ends, the caller aborts, or a timeout passes, and then says why
// not with the project's last log lines.
import { request } from 'node:http';
import { connect } from 'node:net';
import type { Clock } from '../consensus/types.ts';
import { compileLinearRegex, type LogStore, type LogStream } from './logs.ts';
import type { ProjectRef } from './runtime.ts';

export type HealthCheck =
  /** GET `path` on the port answers 2xx or 3xx. */
  | { readonly kind: 'http'; readonly port: number; readonly path: string; readonly host?: string }
  /** The port accepts a TCP connection. */
  | { readonly kind: 'tcp'; readonly port: number; readonly host?: string }
  /** A log line after `sinceCursor` matches the regular expression. */
  | { readonly kind: 'log'; readonly pattern: string; readonly sinceCursor: number; readonly stream?: LogStream | 'both' };

export interface CheckResult {
  readonly ok: boolean;
  /** One line: what was seen (status code, error, matching line). */
  readonly detail: string;
}

export interface ProbeOptions {
  /** Each single attempt gives up after this long. */
  readonly attemptMsMax?: number;
}

export function checkHttp(port: number, path: string, host = '127.0.0.1', attemptMsMax = 2000): Promise<CheckResult> {
  return new Promise((resolve) => {
    const req = request({ host, port, path: path.startsWith('/') ? path : `/${path}`, method: 'GET', timeout: attemptMsMax }, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      resolve({ ok: status >= 200 && status < 400, detail: `GET ${path} on port ${port} answered ${status}` });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${attemptMsMax} ms`)));
    req.on('error', (error) => resolve({ ok: false, detail: `GET ${path} on port ${port}: ${error.message}` }));
    req.end();
  });
}

export function checkTcp(port: number, host = '127.0.0.1', attemptMsMax = 2000): Promise<CheckResult> {
  return new Promise((resolve) => {
    const socket = connect({ port, host, timeout: attemptMsMax });
    socket.once('connect', () => {
      socket.destroy();
      resolve({ ok: true, detail: `port ${port} accepts connections` });
    });
    socket.once('timeout', () => socket.destroy(new Error(`no answer within ${attemptMsMax} ms`)));
    socket.once('error', (error) => resolve({ ok: false, detail: `port ${port}: ${error.message}` }));
  });
}

/** A log-regex probe that remembers how far it has read, so each poll scans only new lines. */
export function logProbe(logs: LogStore, project: ProjectRef, pattern: string, sinceCursor: number, stream: LogStream | 'both' = 'both'): () => CheckResult {
  let cursor = sinceCursor;
  compileLinearRegex(pattern, 'health check pattern');
  return () => {
    for (;;) {
      const page = logs.query(project, { since: cursor, grep: pattern, stream, limit: 1 });
      const line = page.lines[0];
      if (line !== undefined) return { ok: true, detail: `log line ${line.seq} matches /${pattern}/: ${line.line}` };
      cursor = Math.max(cursor, page.nextCursor);
      if (!page.hasMore) return { ok: false, detail: `no log line since cursor ${sinceCursor} matches /${pattern}/` };
    }
  };
}

/** Turns a check description into a probe. */
export function probeFor(check: HealthCheck, context: { logs: LogStore; project: ProjectRef }, options: ProbeOptions = {}): () => Promise<CheckResult> {
  switch (check.kind) {
    case 'http':
      return () => checkHttp(check.port, check.path, check.host, options.attemptMsMax);
    case 'tcp':
      return () => checkTcp(check.port, check.host, options.attemptMsMax);
    case 'log': {
      const probe = logProbe(context.logs, context.project, check.pattern, check.sinceCursor, check.stream);
      return () => Promise.resolve(probe());
    }
    default: {
      const unreachable: never = check;
      throw new Error(`unknown health check ${JSON.stringify(unreachable)}`);
    }
  }
}

export type WaitResult =
  | { readonly ok: true; readonly elapsedMs: number; readonly detail: string }
  | {
      readonly ok: false;
      readonly reason: 'timeout' | 'aborted' | 'workloadEnded';
      readonly elapsedMs: number;
      /** The last check's detail, or why the wait gave up. */
      readonly detail: string;
      readonly lastLines: string[];
    };

export interface WaitOptions {
  readonly timeoutMs: number;
  readonly clock: Clock;
  readonly signal?: AbortSignal;
  /** Pause between two checks. */
  readonly intervalMs?: number;
  /** The project's last log lines, quoted when the wait fails. */
  readonly lastLines?: () => string[];
  /** A reason to stop early (e.g. the workload exited or is in a crash loop), or null to go on. */
  readonly giveUp?: () => string | null;
}

/** Polls `condition` until it holds (resolves at once), the timeout, an abort, or giveUp says stop. */
export async function waitFor(condition: () => Promise<CheckResult>, options: WaitOptions): Promise<WaitResult> {
  const { clock, timeoutMs } = options;
  const intervalMs = options.intervalMs ?? 100;
  const startedMs = clock.nowMs();
  const elapsed = (): number => clock.nowMs() - startedMs;
  const fail = (reason: 'timeout' | 'aborted' | 'workloadEnded', detail: string): WaitResult => ({ ok: false, reason, elapsedMs: elapsed(), detail, lastLines: options.lastLines?.() ?? [] });
  let detail = 'not checked yet';
  for (;;) {
    if (options.signal?.aborted === true) return fail('aborted', `cancelled: ${detail}`);
    const result = await condition();
    if (result.ok) return { ok: true, elapsedMs: elapsed(), detail: result.detail };
    detail = result.detail;
    const ended = options.giveUp?.() ?? null;
    if (ended !== null) return fail('workloadEnded', `${ended}; last check: ${detail}`);
    const leftMs = timeoutMs - elapsed();
    if (leftMs <= 0) return fail('timeout', `not ready after ${timeoutMs} ms: ${detail}`);
    await pause(clock, Math.min(intervalMs, leftMs), options.signal);
  }
}

function pause(clock: Clock, ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clock.clearTimer(timer);
      resolve();
    };
    const timer = clock.setTimer(ms, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
