// The cluster behind the MCP tools. Every project call is served on the
// project's owner node: here when this node owns it, else forwarded over gRPC
// (Actors.Call, channel 'io') to the owner, which serves it the same way.
// Lifecycle changes go through the owner's ProjectActor (fenced writes through
// Raft); logs, waits, exec and HTTP run next to the workload, on the owner.
import { randomUUID } from 'node:crypto';
import { probeFor, waitFor, type HealthCheck as ProbeCheck } from '../actors/health.ts';
import { LogQueryError, type LogLine as StoredLine } from '../actors/logs.ts';
import {
  ACTOR_NAME_PATTERN,
  parseRecord,
  projectActorKey,
  statusKey,
  tenantActorKey,
  type ActorRequest,
  type ActorResponse,
  type ProjectSpec,
  type ProjectStatusRecord,
  type ProjectView as ActorProjectView,
} from '../actors/messages.ts';
import { BASE_ENV_NAMES, portEnv } from '../actors/runtime-process.ts';
import type { ProjectRef, WorkloadStatus } from '../actors/runtime.ts';
import { ForwardError } from './actor-forwarding.ts';
import type { NodeActors } from './node-actors.ts';
import {
  ProjectApiError,
  type ExecInput,
  type ExecResult,
  type HealthCheck,
  type HttpInput,
  type HttpResult,
  type LogLine,
  type LogsInput,
  type LogsResult,
  type ProgressFn,
  type ProjectApi,
  type ProjectRefInput,
  type ProjectView,
  type StartInput,
  type TenantUsage,
  type WaitInput,
  type WaitResult,
} from './project-api.ts';
import { HttpTargetError, runExec, runHttp } from './project-io.ts';
import { systemClock } from './system.ts';

/** Deadline of one lifecycle call through the actor layer. */
const CALL_DEADLINE_MS = 15_000;
/** Characters of log lines in one page: keeps a result far below Claude Code's 25,000 tokens. */
export const LOG_PAGE_CHARS_MAX = 30_000;
const WAIT_DEFAULT_MS = 30_000;
const EXEC_DEFAULT_MS = 60_000;
const HTTP_DEFAULT_MS = 30_000;
const MB = 1024 * 1024;

type IoRequest =
  | { readonly op: 'start'; readonly input: StartInput & { tenant: string } }
  | { readonly op: 'restart'; readonly ref: ProjectRefInput; readonly waitMs: number }
  | { readonly op: 'stop'; readonly ref: ProjectRefInput }
  | { readonly op: 'remove'; readonly ref: ProjectRefInput }
  | { readonly op: 'status'; readonly ref: ProjectRefInput }
  | { readonly op: 'logs'; readonly input: LogsInput & { tenant: string } }
  | { readonly op: 'wait'; readonly input: WaitInput & { tenant: string } }
  | { readonly op: 'exec'; readonly input: ExecInput & { tenant: string } }
  | { readonly op: 'http'; readonly input: HttpInput & { tenant: string } };

type IoReply = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly name: ProjectApiError['name']; readonly message: string };

const ERROR_NAMES: Record<string, ProjectApiError['name']> = {
  QuotaExceededError: 'QuotaExceededError',
  VersionConflictError: 'ConflictError',
  NotFoundError: 'NotFoundError',
  InvalidRequestError: 'InvalidInputError',
  RuntimeFailedError: 'StartFailedError',
};

/** An actor's error answer as the one exception the MCP layer turns into isError. */
function actorError(response: Extract<ActorResponse, { type: 'error' }>): ProjectApiError {
  return new ProjectApiError(ERROR_NAMES[response.name] ?? 'UnavailableError', response.message);
}

function checkName(ref: ProjectRefInput): void {
  for (const [what, value] of [
    ['tenant', ref.tenant],
    ['project name', ref.name],
  ] as const) {
    if (!ACTOR_NAME_PATTERN.test(value)) {
      throw new ProjectApiError('InvalidInputError', `${what} ${JSON.stringify(value)} is not valid: use 1-63 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit`);
    }
  }
}

export class ClusterProjectApi implements ProjectApi {
  constructor(
    private readonly actors: NodeActors,
    private readonly self: string,
    /** Host part of a node's address, for URLs of its projects. */
    private readonly hostOf: (node: string) => string | null,
  ) {}

  // ---- routing ------------------------------------------------------------------------

  /** Run `request` on the owner of `ref`'s project: here, or forwarded (bounded retries while ownership settles). */
  private async route<T>(ref: ProjectRefInput, request: IoRequest, deadlineMs: number, signal?: AbortSignal): Promise<T> {
    checkName(ref);
    const key = projectActorKey(ref.tenant, ref.name);
    const requestId = randomUUID();
    let lastError = '';
    for (let attempt = 1; attempt <= 4; attempt++) {
      const owner = this.actors.host.placement().owner(key);
      if (owner === null) {
        lastError = 'no live member owns projects yet';
      } else {
        const reply = owner === this.self ? await this.serveIo(request, signal ?? new AbortController().signal) : await this.forward(owner, key, request, deadlineMs, requestId, signal);
        if (reply !== null) {
          if (reply.ok) return reply.value as T;
          throw new ProjectApiError(reply.name, reply.message);
        }
        lastError = `owner ${owner} did not answer`;
      }
      await new Promise((resolve) => setTimeout(resolve, 250 * attempt));
    }
    throw new ProjectApiError('UnavailableError', `${key}: ${lastError}; the cluster may be electing a leader or moving the project; retry in a few seconds`);
  }

  private async forward(owner: string, key: string, request: IoRequest, deadlineMs: number, requestId: string, signal?: AbortSignal): Promise<IoReply | null> {
    try {
      return await this.actors.forwarder.io<IoReply>(owner, key, request, deadlineMs, requestId, signal);
    } catch (error) {
      if (error instanceof ForwardError) return null;
      throw error;
    }
  }

  /** Serve an I/O request on this node (it was routed here as the owner). Never throws: errors become replies. */
  async serveIo(request: IoRequest, signal: AbortSignal): Promise<IoReply> {
    try {
      return { ok: true, value: await this.local(request, signal) };
    } catch (error) {
      if (error instanceof ProjectApiError) return { ok: false, name: error.name, message: error.message };
      if (error instanceof LogQueryError) return { ok: false, name: 'InvalidInputError', message: error.message };
      if (error instanceof HttpTargetError) return { ok: false, name: 'UnavailableError', message: error.message };
      return { ok: false, name: 'UnavailableError', message: `node ${this.self}: ${(error as Error).message}` };
    }
  }

  /** The io channel's entry point for calls forwarded from other nodes. */
  handleIo = (_key: string, payload: unknown, _deadlineMs: number, signal: AbortSignal): Promise<unknown> => this.serveIo(payload as IoRequest, signal);

  private local(request: IoRequest, signal: AbortSignal): Promise<unknown> {
    switch (request.op) {
      case 'start':
        return this.startHere(request.input, () => {}, signal);
      case 'restart':
        return this.restartHere(request.ref, request.waitMs, () => {}, signal);
      case 'stop':
        return this.lifecycle(request.ref, { type: 'stop' });
      case 'remove':
        return this.removeHere(request.ref);
      case 'status':
        return this.statusHere(request.ref, true);
      case 'logs':
        return Promise.resolve(this.logsHere(request.input));
      case 'wait':
        return this.waitHere(request.input, () => {}, signal);
      case 'exec':
        return this.execHere(request.input, signal);
      case 'http':
        return this.httpHere(request.input, signal);
      default: {
        const never: never = request;
        return never;
      }
    }
  }

  private callActor(key: string, request: ActorRequest, deadlineMs = CALL_DEADLINE_MS): Promise<ActorResponse> {
    return new Promise((resolve) => this.actors.host.call(key as never, request, { deadlineMs, requestId: randomUUID() }, resolve));
  }

  private async projectCall(ref: ProjectRefInput, request: ActorRequest): Promise<ActorProjectView> {
    const response = await this.callActor(projectActorKey(ref.tenant, ref.name), request);
    if (response.type === 'project') return response.project;
    if (response.type === 'error') throw actorError(response);
    throw new ProjectApiError('UnavailableError', `unexpected answer '${response.type}' for ${ref.tenant}/${ref.name}; retry`);
  }

  // ---- views ------------------------------------------------------------------------------

  private view(project: ActorProjectView, workload: WorkloadStatus | null, healthy: boolean | null): ProjectView {
    const status = project.status;
    const owner = status?.node ?? this.actors.host.placement().owner(projectActorKey(project.tenant, project.name));
    const ports = { ...(status?.ports ?? {}) };
    const host = owner === null ? null : this.hostOf(owner);
    const urls: Record<string, string> = {};
    if (host !== null && project.desired === 'running') for (const [name, port] of Object.entries(ports)) urls[name] = `http://${host}:${port}/`;
    const startedAtMs = workload?.startedAtMs ?? null;
    const running = workload?.state === 'running';
    return {
      tenant: project.tenant,
      name: project.name,
      version: project.version,
      desired: project.desired,
      state: workload?.state ?? status?.state ?? 'unknown',
      owner,
      runtime: project.spec.image !== null ? 'docker' : 'process',
      command: project.spec.command,
      image: project.spec.image,
      pid: workload?.pid ?? null,
      containerId: workload?.containerId ?? null,
      ports,
      urls,
      restarts: workload?.restarts ?? status?.restarts ?? 0,
      exitCode: workload?.exitCode ?? status?.exitCode ?? null,
      signal: workload?.signal ?? null,
      startedAt: startedAtMs === null ? null : new Date(startedAtMs).toISOString(),
      uptimeSeconds: running && startedAtMs !== null ? Math.round((Date.now() - startedAtMs) / 1000) : null,
      healthy,
      error: workload?.error ?? status?.error ?? null,
    };
  }

  private workloadOf(ref: ProjectRef): WorkloadStatus | null {
    return this.actors.runtime.status(ref);
  }

  private probeOf(project: ActorProjectView, check: HealthCheck, sinceCursor: number): ProbeCheck {
    const port = (name: string): number => {
      const number = project.status?.ports[name];
      if (number === undefined) throw new ProjectApiError('InvalidInputError', `project ${project.tenant}/${project.name} has no port named '${name}'; its ports: ${Object.keys(project.status?.ports ?? {}).join(', ') || 'none'}`);
      return number;
    };
    switch (check.type) {
      case 'http':
        return { kind: 'http', port: port(check.port), path: check.path };
      case 'tcp':
        return { kind: 'tcp', port: port(check.port) };
      case 'log':
        return { kind: 'log', pattern: check.regex, sinceCursor };
      default: {
        const never: never = check;
        return never;
      }
    }
  }

  private async statusHere(ref: ProjectRefInput, probe: boolean): Promise<ProjectView> {
    const project = await this.projectCall(ref, { type: 'status' });
    const workload = this.workloadOf(ref);
    let healthy: boolean | null = null;
    const check = project.spec.healthCheck as HealthCheck | null;
    if (probe && check !== null && check !== undefined && workload?.state === 'running') {
      const result = await probeFor(this.probeOf(project, check, this.runCursor(ref, workload)), { logs: this.actors.logs, project: ref }, { attemptMsMax: 500 })();
      healthy = result.ok;
    }
    return this.view(project, workload, healthy);
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  private specOf(input: StartInput): ProjectSpec {
    if (input.command === undefined && input.image === undefined) {
      throw new ProjectApiError('InvalidInputError', 'give a command (run as a process) or an image (run in Docker; a command then overrides its default)');
    }
    const envBytes = Object.entries(input.env ?? {}).reduce((sum, [key, value]) => sum + key.length + value.length, 0);
    if (envBytes > MB) throw new ProjectApiError('InvalidInputError', `env holds ${envBytes} bytes; keep it under 1 MB (put large data in files)`);
    const ports = input.ports ?? ['default'];
    if (new Set(ports).size !== ports.length) throw new ProjectApiError('InvalidInputError', `port names repeat (${ports.join(', ')}); give each once`);
    return {
      command: input.command ?? null,
      image: input.image ?? null,
      cwd: input.cwd ?? null,
      env: input.env ?? {},
      ports,
      restart: input.restart ?? 'on-failure',
      healthCheck: input.healthCheck ?? null,
      memoryBytes: (input.memoryMb ?? 0) * MB,
    };
  }

  private async startHere(input: StartInput & { tenant: string }, progress: ProgressFn, signal: AbortSignal): Promise<ProjectView> {
    const spec = this.specOf(input);
    progress(`recording ${input.tenant}/${input.name} and starting it on ${this.self}`, 1, 3);
    const project = await this.projectCall(input, { type: 'start', spec, ...(input.ifVersion === undefined ? {} : { ifVersion: input.ifVersion }) });
    return this.settle(input, project, input.waitMs ?? WAIT_DEFAULT_MS, progress, signal);
  }

  private async restartHere(ref: ProjectRefInput, waitMs: number, progress: ProgressFn, signal: AbortSignal): Promise<ProjectView> {
    progress(`restarting ${ref.tenant}/${ref.name} on ${this.self}`, 1, 3);
    const project = await this.projectCall(ref, { type: 'restart' });
    return this.settle(ref, project, waitMs, progress, signal);
  }

  /** After a start: wait until it runs and passes its health check, or say why it did not. */
  private async settle(ref: ProjectRefInput, project: ActorProjectView, waitMs: number, progress: ProgressFn, signal: AbortSignal): Promise<ProjectView> {
    const check = project.spec.healthCheck as HealthCheck | null;
    const failed = (): string | null => {
      const workload = this.workloadOf(ref);
      if (workload === null) {
        // Refused before launch (command not found, missing cwd or image): only the owner's status record says so.
        const recorded = parseRecord<ProjectStatusRecord>(this.actors.store.view().get(statusKey(ref.tenant, ref.name))?.value);
        const current = recorded !== null && recorded.generation >= (project.status?.generation ?? 0) ? recorded : null;
        return current !== null && (current.state === 'failed' || current.state === 'crashLoop') ? (current.error ?? `the workload is ${current.state}`) : null;
      }
      if (workload.state === 'failed' || workload.state === 'crashLoop') return workload.error ?? `the workload is ${workload.state}`;
      if (workload.state === 'exited' && project.spec.restart === 'never') {
        return `it exited with ${workload.exitCode !== null ? `code ${workload.exitCode}` : `signal ${workload.signal}`}`;
      }
      return null;
    };
    // One probe per run: finding where a run's log lines begin scans the log, and a log probe keeps its own cursor.
    let probe: { startedAtMs: number | null; check: () => Promise<{ ok: boolean; detail: string }> } | null = null;
    const condition = async (): Promise<{ ok: boolean; detail: string }> => {
      const workload = this.workloadOf(ref);
      if (workload?.state !== 'running') return { ok: false, detail: `state ${workload?.state ?? 'not started yet'}` };
      if (check === null || check === undefined) return { ok: true, detail: 'running' };
      if (probe === null || probe.startedAtMs !== workload.startedAtMs) {
        const probeCheck = this.probeOf(project, check, this.runCursor(ref, workload));
        probe = { startedAtMs: workload.startedAtMs, check: probeFor(probeCheck, { logs: this.actors.logs, project: ref }, { attemptMsMax: 1000 }) };
      }
      return probe.check();
    };
    if (waitMs > 0) {
      progress(check === null || check === undefined ? 'waiting until it runs' : `waiting for its ${check.type} health check`, 2, 3);
      const result = await waitFor(condition, {
        timeoutMs: waitMs,
        clock: systemClock,
        signal,
        intervalMs: 50,
        giveUp: failed,
        lastLines: () => this.actors.logs.lastLines(ref, 10),
      });
      if (!result.ok && result.reason === 'workloadEnded') {
        // The failure stays readable: project_status and project_logs show it until project_remove.
        throw new ProjectApiError(
          'StartFailedError',
          `${ref.tenant}/${ref.name} did not start: ${result.detail}${result.lastLines.length > 0 ? `; last log lines: ${result.lastLines.join(' | ')}` : ''}`,
        );
      }
      progress(result.ok ? `ready: ${result.detail}` : `not ready yet: ${result.detail}`, 3, 3);
      const fresh = await this.projectCall(ref, { type: 'status' });
      return this.view(fresh, this.workloadOf(ref), check === null || check === undefined ? null : result.ok);
    }
    return this.view(project, this.workloadOf(ref), null);
  }

  private async lifecycle(ref: ProjectRefInput, request: ActorRequest): Promise<ProjectView> {
    const project = await this.projectCall(ref, request);
    return this.view(project, this.workloadOf(ref), null);
  }

  private async removeHere(ref: ProjectRefInput): Promise<{ removed: boolean }> {
    const response = await this.callActor(projectActorKey(ref.tenant, ref.name), { type: 'remove' });
    if (response.type === 'removed') {
      await this.actors.logs.drop(ref);
      return { removed: true };
    }
    if (response.type === 'error' && response.name === 'NotFoundError') return { removed: false };
    if (response.type === 'error') throw actorError(response);
    throw new ProjectApiError('UnavailableError', `unexpected answer '${response.type}' removing ${ref.tenant}/${ref.name}; retry`);
  }

  // ---- I/O next to the workload ------------------------------------------------------------------

  /** The log cursor where the current run began: a wait or log check only looks at lines of this run. */
  private runCursor(ref: ProjectRef, workload: WorkloadStatus | null): number {
    const startedAtMs = workload?.startedAtMs ?? null;
    if (startedAtMs === null) return this.actors.logs.cursor(ref);
    let since = 0;
    for (let pages = 0; pages < 64; pages++) {
      const page = this.actors.logs.query(ref, { since, limit: 1000 });
      const first = page.lines.find((line) => line.timeMs >= startedAtMs);
      if (first !== undefined) return first.seq - 1;
      if (!page.hasMore) return page.nextCursor;
      since = page.nextCursor;
    }
    return this.actors.logs.cursor(ref);
  }

  private logsHere(input: LogsInput & { tenant: string }): LogsResult {
    const ref = { tenant: input.tenant, name: input.name };
    const since = input.since === undefined ? undefined : Number(input.since);
    if (since !== undefined && (!Number.isSafeInteger(since) || since < 0)) {
      throw new ProjectApiError('InvalidInputError', `since ${JSON.stringify(input.since)} is not a cursor; pass the nextCursor of an earlier project_logs result`);
    }
    const known = this.workloadOf(ref) !== null || this.actors.logs.cursor(ref) > 0;
    if (!known && this.actors.store.view().get(projectActorKey(ref.tenant, ref.name)) === null) {
      throw new ProjectApiError('NotFoundError', `project ${ref.tenant}/${ref.name} does not exist; see project_list`);
    }
    const page = this.actors.logs.query(ref, {
      ...(since === undefined ? { tail: input.tail ?? 100 } : { since }),
      ...(input.grep === undefined ? {} : { grep: input.grep }),
      stream: input.stream ?? 'both',
      limit: input.limit ?? 200,
    });
    // Keep the page under the character cap: a tail keeps its newest lines, a since-page its oldest.
    let lines: StoredLine[] = page.lines;
    let chars = 0;
    let cut = false;
    if (since === undefined) {
      let start = lines.length;
      while (start > 0 && chars + (lines[start - 1]?.line.length ?? 0) <= LOG_PAGE_CHARS_MAX) chars += lines[--start]?.line.length ?? 0;
      cut = start > 0;
      lines = lines.slice(start);
    } else {
      let end = 0;
      while (end < lines.length && chars + (lines[end]?.line.length ?? 0) <= LOG_PAGE_CHARS_MAX) chars += lines[end++]?.line.length ?? 0;
      cut = end < lines.length;
      lines = lines.slice(0, end);
    }
    const nextCursor = since !== undefined && cut ? (lines.at(-1)?.seq ?? since) : page.nextCursor;
    const out: LogLine[] = lines.map((line) => ({ seq: line.seq, time: new Date(line.timeMs).toISOString(), stream: line.stream, line: line.line }));
    return { lines: out, nextCursor: String(nextCursor), more: page.hasMore || (since !== undefined && cut) };
  }

  private async waitHere(input: WaitInput & { tenant: string }, progress: ProgressFn, signal: AbortSignal): Promise<WaitResult> {
    const ref = { tenant: input.tenant, name: input.name };
    const project = await this.projectCall(ref, { type: 'status' });
    const timeoutMs = input.timeoutMs ?? WAIT_DEFAULT_MS;
    const workload = this.workloadOf(ref);
    let check: HealthCheck;
    if (input.logRegex !== undefined) check = { type: 'log', regex: input.logRegex };
    else if (input.httpPath !== undefined) check = { type: 'http', path: input.httpPath, port: input.port ?? 'default' };
    else if (input.port !== undefined) check = { type: 'tcp', port: input.port };
    else check = (project.spec.healthCheck as HealthCheck | null) ?? { type: 'tcp', port: 'default' };
    const condition =
      check.type === 'log' ? `log line matching /${check.regex}/` : check.type === 'http' ? `GET ${check.path} on port ${check.port}` : `port ${check.port} accepting connections`;
    const probe = probeFor(this.probeOf(project, check, this.runCursor(ref, workload)), { logs: this.actors.logs, project: ref }, { attemptMsMax: 1000 });
    progress(`waiting for ${condition}`, 0);
    const result = await waitFor(probe, {
      timeoutMs,
      clock: systemClock,
      signal,
      intervalMs: 50,
      lastLines: () => this.actors.logs.lastLines(ref, 20),
      giveUp: () => {
        const now = this.workloadOf(ref);
        if (now === null) return project.desired === 'running' ? null : 'the project is stopped';
        return now.state === 'failed' || now.state === 'crashLoop' || (now.state === 'exited' && project.spec.restart === 'never') ? `the workload is ${now.state}${now.error === null ? '' : `: ${now.error}`}` : null;
      },
    });
    const fresh = await this.statusHere(ref, false);
    return { ok: result.ok, condition, elapsedMs: Math.round(result.elapsedMs), detail: result.detail, lastLines: result.ok ? [] : result.lastLines, status: fresh };
  }

  private async execHere(input: ExecInput & { tenant: string }, signal: AbortSignal): Promise<ExecResult> {
    const ref = { tenant: input.tenant, name: input.name };
    const project = await this.projectCall(ref, { type: 'status' });
    const workload = this.workloadOf(ref);
    const env = { ...project.spec.env, ...portEnv(project.status?.ports ?? {}) };
    const timeoutMs = input.timeoutMs ?? EXEC_DEFAULT_MS;
    if (project.spec.image !== null) {
      if (workload?.containerId === null || workload?.containerId === undefined || workload.state !== 'running') {
        throw new ProjectApiError('UnavailableError', `${ref.tenant}/${ref.name} has no running container to exec in; start it first (project_start)`);
      }
      const envArgs = Object.entries(env).flatMap(([key, value]) => ['-e', `${key}=${value}`]);
      return runExec({ argv: ['docker', 'exec', ...envArgs, workload.containerId, '/bin/sh', '-c', input.command], env: {} }, timeoutMs, signal);
    }
    const base: Record<string, string> = {};
    for (const name of BASE_ENV_NAMES) {
      const value = process.env[name];
      if (value !== undefined) base[name] = value;
    }
    return runExec({ argv: ['/bin/sh', '-c', input.command], ...(project.spec.cwd === null ? {} : { cwd: project.spec.cwd }), env: { ...base, ...env } }, timeoutMs, signal);
  }

  private async httpHere(input: HttpInput & { tenant: string }, signal: AbortSignal): Promise<HttpResult> {
    const ref = { tenant: input.tenant, name: input.name };
    const project = await this.projectCall(ref, { type: 'status' });
    const name = input.port ?? 'default';
    const port = project.status?.ports[name];
    if (port === undefined) {
      throw new ProjectApiError('InvalidInputError', `project ${ref.tenant}/${ref.name} has no port named '${name}'; its ports: ${Object.keys(project.status?.ports ?? {}).join(', ') || 'none'}`);
    }
    return runHttp({ port, method: input.method ?? 'GET', path: input.path ?? '/', headers: input.headers ?? {}, ...(input.body === undefined ? {} : { body: input.body }) }, input.timeoutMs ?? HTTP_DEFAULT_MS, signal);
  }

  // ---- ProjectApi ----------------------------------------------------------------------------------

  start(input: StartInput & { tenant: string }, progress: ProgressFn, signal: AbortSignal): Promise<ProjectView> {
    this.specOf(input);
    const owner = this.actors.host.placement().owner(projectActorKey(input.tenant, input.name));
    if (owner === this.self) return this.startHere(input, progress, signal);
    progress(`forwarding to ${owner ?? 'the owner'}, which runs ${input.tenant}/${input.name}`, 1, 3);
    return this.route(input, { op: 'start', input }, CALL_DEADLINE_MS + (input.waitMs ?? WAIT_DEFAULT_MS), signal);
  }

  stop(ref: ProjectRefInput): Promise<ProjectView> {
    return this.route(ref, { op: 'stop', ref }, CALL_DEADLINE_MS);
  }

  restart(ref: ProjectRefInput, progress: ProgressFn, signal: AbortSignal): Promise<ProjectView> {
    checkName(ref);
    const owner = this.actors.host.placement().owner(projectActorKey(ref.tenant, ref.name));
    if (owner === this.self) return this.restartHere(ref, WAIT_DEFAULT_MS, progress, signal);
    return this.route(ref, { op: 'restart', ref, waitMs: WAIT_DEFAULT_MS }, CALL_DEADLINE_MS + WAIT_DEFAULT_MS, signal);
  }

  remove(ref: ProjectRefInput): Promise<{ removed: boolean }> {
    return this.route(ref, { op: 'remove', ref }, CALL_DEADLINE_MS);
  }

  status(ref: ProjectRefInput): Promise<ProjectView> {
    return this.route(ref, { op: 'status', ref }, CALL_DEADLINE_MS);
  }

  async list(tenant: string): Promise<ProjectView[]> {
    checkName({ tenant, name: 'x' });
    const response = await this.callActor(tenantActorKey(tenant), { type: 'list' });
    if (response.type === 'error') throw actorError(response);
    if (response.type !== 'list') throw new ProjectApiError('UnavailableError', `unexpected answer '${response.type}' listing ${tenant}; retry`);
    return response.projects.map((project) => this.view(project, project.status?.node === this.self ? this.workloadOf(project) : null, null));
  }

  logs(input: LogsInput & { tenant: string }): Promise<LogsResult> {
    return this.route(input, { op: 'logs', input }, CALL_DEADLINE_MS);
  }

  wait(input: WaitInput & { tenant: string }, progress: ProgressFn, signal: AbortSignal): Promise<WaitResult> {
    checkName(input);
    const owner = this.actors.host.placement().owner(projectActorKey(input.tenant, input.name));
    if (owner === this.self) return this.waitHere(input, progress, signal);
    progress(`waiting on ${owner ?? 'the owner'}`, 0);
    return this.route(input, { op: 'wait', input }, CALL_DEADLINE_MS + (input.timeoutMs ?? WAIT_DEFAULT_MS), signal);
  }

  exec(input: ExecInput & { tenant: string }, signal: AbortSignal): Promise<ExecResult> {
    return this.route(input, { op: 'exec', input }, CALL_DEADLINE_MS + (input.timeoutMs ?? EXEC_DEFAULT_MS), signal);
  }

  http(input: HttpInput & { tenant: string }, signal: AbortSignal): Promise<HttpResult> {
    return this.route(input, { op: 'http', input }, CALL_DEADLINE_MS + (input.timeoutMs ?? HTTP_DEFAULT_MS), signal);
  }

  async usage(tenant: string): Promise<TenantUsage> {
    checkName({ tenant, name: 'x' });
    return this.usageOf(await this.callActor(tenantActorKey(tenant), { type: 'usage' }));
  }

  async setQuota(tenant: string, quota: { projects?: number; ports?: number; memoryMb?: number }): Promise<TenantUsage> {
    const current = await this.usage(tenant);
    const next = {
      projects: quota.projects ?? current.quota.projects,
      ports: quota.ports ?? current.quota.ports,
      memoryBytes: (quota.memoryMb ?? current.quota.memoryMb) * MB,
    };
    return this.usageOf(await this.callActor(tenantActorKey(tenant), { type: 'quotaSet', quota: next }));
  }

  private usageOf(response: ActorResponse): TenantUsage {
    if (response.type === 'error') throw actorError(response);
    if (response.type !== 'usage') throw new ProjectApiError('UnavailableError', `unexpected answer '${response.type}'; retry`);
    return {
      tenant: response.tenant,
      projects: response.usage.projects,
      ports: response.usage.ports,
      memoryMb: Math.round(response.usage.memoryBytes / MB),
      quota: { projects: response.quota.projects, ports: response.quota.ports, memoryMb: Math.round(response.quota.memoryBytes / MB) },
    };
  }

  followLogs(ref: ProjectRefInput, listener: (line: LogLine) => void): () => void {
    checkName(ref);
    const key = projectActorKey(ref.tenant, ref.name);
    const owner = this.actors.host.placement().owner(key);
    if (owner === null) return () => {};
    if (owner === this.self) return this.followHere(key, (payload) => listener(payload as LogLine));
    return this.actors.forwarder.follow(owner, key, (payload) => listener(payload as LogLine), () => {});
  }

  /** New log lines of `key`'s project on this node, as they are captured. */
  followHere = (key: string, onEvent: (payload: unknown) => void): (() => void) => {
    const [, tenant = '', name = ''] = key.split('/');
    return this.actors.runtime.subscribe((event) => {
      if (event.type !== 'log' || event.project.tenant !== tenant || event.project.name !== name) return;
      onEvent({ seq: 0, time: new Date(event.timeMs).toISOString(), stream: event.stream, line: event.line } satisfies LogLine);
    });
  };
}
