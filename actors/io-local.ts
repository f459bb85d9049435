// The owner node's real I/O next to its workloads: health probes of ports on
// this host, HTTP calls to a project's port, its captured log lines, and a
// one-off command in a process project's environment. The simulator gives its
// own ProjectIo.
import { checkHttp, checkTcp } from './health.ts';
import type { LogReader, ProjectIo } from './components.ts';
import type { LogStore } from './logs.ts';
import type { ExecAnswer } from './messages.ts';
import { HttpTargetError, runExec, runHttp } from './project-io.ts';
import type { ExecSpec } from './runtime.ts';

/** The base every one-off command starts from: fixed values, never the node's own environment. */
export const EXEC_BASE_ENV: Readonly<Record<string, string>> = Object.freeze({
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
});

export function logReader(logs: LogStore): LogReader {
  return {
    query: (project, query) => logs.query(project, query),
    cursor: (project) => logs.cursor(project),
    lastLines: (project, count) => logs.lastLines(project, count),
    has: (project) => logs.has(project),
    drop: (project, callback) => {
      logs.drop(project).then(callback, callback);
    },
  };
}

export function localProjectIo(logs: LogStore): ProjectIo {
  return {
    logs: logReader(logs),
    probe: (probe, attemptMsMax, callback) => {
      const attempt = probe.kind === 'http' ? checkHttp(probe.port, probe.path, '127.0.0.1', attemptMsMax) : checkTcp(probe.port, '127.0.0.1', attemptMsMax);
      attempt.then(callback, (error: unknown) => callback({ ok: false, detail: `probe failed: ${(error as Error).message}` }));
    },
    http: (port, call, callback) => {
      runHttp({ port, method: call.method, path: call.path, headers: call.headers, ...(call.body === null ? {} : { body: call.body }) }, call.timeoutMs, new AbortController().signal).then(
        (answer) => callback({ ok: true, answer }),
        (error: unknown) => callback({ ok: false, error: error instanceof HttpTargetError ? error.message : `request failed: ${(error as Error).message}` }),
      );
    },
  };
}

/** A one-off shell command with the project's cwd and env, in its own process group, killed at the timeout. */
export function execLocal(spec: ExecSpec, signal: AbortSignal): Promise<ExecAnswer> {
  return runExec({ argv: ['/bin/sh', '-c', spec.command], ...(spec.cwd === undefined ? {} : { cwd: spec.cwd }), env: { ...EXEC_BASE_ENV, HOME: spec.cwd ?? '/tmp', ...spec.env } }, spec.timeoutMs, signal, spec.outputBytesMax);
}
