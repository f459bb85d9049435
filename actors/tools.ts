// The client surface of the cluster, without a transport: every project and
// tenant tool as (validated input, identity) -> one typed actor request on
// one key, and the actor's answer -> a structured result. node/mcp.ts serves
// these over MCP; the simulator calls the same functions over its simulated
// network, so both run one path: tool -> ActorHost.call -> owner's actor.
import { z } from 'zod';
import {
  errorResponse,
  PROJECT_EVENT_KINDS,
  projectActorKey,
  tenantActorKey,
  type ActorKey,
  type ActorRequest,
  type ActorResponse,
  type HealthCheckSpec,
  type Identity,
  type ProjectEventKind,
  type ProjectSpec,
  type ProjectView,
} from './messages.ts';
import {
  CALL_LIMITS,
  changeShape,
  eventsShape,
  execShape,
  httpShape,
  logsShape,
  projectRefShape,
  quotaSetShape,
  restartShape,
  startShape,
  waitShape,
} from './schemas.ts';

const MB = 1024 * 1024;
/** Time a lifecycle call may take besides what the caller asked to wait. */
export const CALL_DEADLINE_MS = 15_000;
const WAIT_DEFAULT_MS = 30_000;
const EXEC_DEFAULT_MS = 60_000;
const HTTP_DEFAULT_MS = 30_000;
const LOGS_TAIL_DEFAULT = 100;
const LOGS_LIMIT_DEFAULT = 200;
const EVENTS_LIMIT_DEFAULT = 100;

/** An expected refusal at the edge, before any actor is asked. */
export class ToolInputError extends Error {
  constructor(
    override readonly name: 'InvalidRequestError' | 'ForbiddenError',
    message: string,
  ) {
    super(message);
  }
}

/** The tenant a call acts on: the token's, or another one only for an admin token. */
export function tenantFor(identity: Identity, explicit: string | undefined): string {
  if (explicit === undefined || explicit === identity.tenant) return identity.tenant;
  if (identity.role === 'admin') return explicit;
  throw new ToolInputError('ForbiddenError', `your token is for tenant ${identity.tenant}; it cannot act on tenant ${explicit} (only an admin token can)`);
}

/** One call the tool makes: the actor, the request, how long to wait for it, and the caller's request id if given. */
export interface ToolCall {
  readonly key: ActorKey;
  readonly request: ActorRequest;
  readonly deadlineMs: number;
  readonly requestId: string | null;
}

const ref = (identity: Identity, args: { tenant?: string | undefined; name: string }): { tenant: string; name: string } => ({ tenant: tenantFor(identity, args.tenant), name: args.name });

type StartArgs = z.infer<z.ZodObject<typeof startShape>>;

/** A spec from project_start's arguments; exactly one of command or image is the thing to run. */
export function specOf(args: StartArgs): ProjectSpec {
  if (args.command === undefined && args.image === undefined) {
    throw new ToolInputError('InvalidRequestError', 'give command (a shell command to run) or image (a Docker image on the nodes)');
  }
  const ports = args.ports ?? ['default'];
  if (new Set(ports).size !== ports.length) throw new ToolInputError('InvalidRequestError', `port names must be different from each other, got ${ports.join(', ')}`);
  const check = (args.healthCheck ?? null) as HealthCheckSpec | null;
  if (check !== null && check.type !== 'log' && !ports.includes(check.port)) {
    throw new ToolInputError('InvalidRequestError', `the health check uses port '${check.port}', which is not among the ports (${ports.join(', ')}); add it to ports`);
  }
  return {
    command: args.command ?? null,
    image: args.image ?? null,
    cwd: args.cwd ?? null,
    env: args.env ?? {},
    ports,
    restart: args.restart ?? 'on-failure',
    healthCheck: check,
    memoryBytes: (args.memoryMb ?? 0) * MB,
  };
}

/** Builders of each actor tool's call, by tool name. */
export const toolCalls = {
  project_start: (identity: Identity, args: StartArgs): ToolCall => {
    const r = ref(identity, args);
    const waitMs = args.waitMs ?? WAIT_DEFAULT_MS;
    return {
      key: projectActorKey(r.tenant, r.name),
      request: { type: 'start', spec: specOf(args), ...(args.ifVersion === undefined ? {} : { ifVersion: args.ifVersion }), waitMs },
      deadlineMs: CALL_DEADLINE_MS + waitMs,
      requestId: args.requestId ?? null,
    };
  },
  project_stop: (identity: Identity, args: z.infer<z.ZodObject<typeof changeShape>>): ToolCall => {
    const r = ref(identity, args);
    return { key: projectActorKey(r.tenant, r.name), request: { type: 'stop', ...(args.ifVersion === undefined ? {} : { ifVersion: args.ifVersion }) }, deadlineMs: CALL_DEADLINE_MS, requestId: args.requestId ?? null };
  },
  project_restart: (identity: Identity, args: z.infer<z.ZodObject<typeof restartShape>>): ToolCall => {
    const r = ref(identity, args);
    const waitMs = args.waitMs ?? WAIT_DEFAULT_MS;
    return { key: projectActorKey(r.tenant, r.name), request: { type: 'restart', waitMs }, deadlineMs: CALL_DEADLINE_MS + waitMs, requestId: args.requestId ?? null };
  },
  project_remove: (identity: Identity, args: z.infer<z.ZodObject<typeof changeShape>>): ToolCall => {
    const r = ref(identity, args);
    return { key: projectActorKey(r.tenant, r.name), request: { type: 'remove', ...(args.ifVersion === undefined ? {} : { ifVersion: args.ifVersion }) }, deadlineMs: CALL_DEADLINE_MS, requestId: args.requestId ?? null };
  },
  project_status: (identity: Identity, args: z.infer<z.ZodObject<typeof projectRefShape>>): ToolCall => {
    const r = ref(identity, args);
    return { key: projectActorKey(r.tenant, r.name), request: { type: 'status' }, deadlineMs: CALL_DEADLINE_MS, requestId: null };
  },
  project_list: (identity: Identity, args: { tenant?: string | undefined }): ToolCall => ({
    key: tenantActorKey(tenantFor(identity, args.tenant)),
    request: { type: 'list' },
    deadlineMs: CALL_DEADLINE_MS,
    requestId: null,
  }),
  project_logs: (identity: Identity, args: z.infer<z.ZodObject<typeof logsShape>>): ToolCall => {
    const r = ref(identity, args);
    const since = args.since === undefined ? null : Number(args.since);
    if (since !== null && (!Number.isSafeInteger(since) || since < 0)) {
      throw new ToolInputError('InvalidRequestError', `since ${JSON.stringify(args.since)} is not a cursor; pass the nextCursor of an earlier project_logs result`);
    }
    return {
      key: projectActorKey(r.tenant, r.name),
      request: {
        type: 'logs',
        query: { tail: since === null ? (args.tail ?? LOGS_TAIL_DEFAULT) : null, since, grep: args.grep ?? null, stream: args.stream ?? 'both', limit: args.limit ?? LOGS_LIMIT_DEFAULT },
      },
      deadlineMs: CALL_DEADLINE_MS,
      requestId: null,
    };
  },
  project_wait: (identity: Identity, args: z.infer<z.ZodObject<typeof waitShape>>): ToolCall => {
    const r = ref(identity, args);
    let condition: HealthCheckSpec | null = null;
    if (args.logRegex !== undefined) condition = { type: 'log', regex: args.logRegex };
    else if (args.httpPath !== undefined) condition = { type: 'http', path: args.httpPath, port: args.port ?? 'default' };
    else if (args.port !== undefined) condition = { type: 'tcp', port: args.port };
    const timeoutMs = args.timeoutMs ?? WAIT_DEFAULT_MS;
    return { key: projectActorKey(r.tenant, r.name), request: { type: 'wait', condition, timeoutMs }, deadlineMs: CALL_DEADLINE_MS + timeoutMs, requestId: null };
  },
  project_exec: (identity: Identity, args: z.infer<z.ZodObject<typeof execShape>>): ToolCall => {
    const r = ref(identity, args);
    const timeoutMs = args.timeoutMs ?? EXEC_DEFAULT_MS;
    return { key: projectActorKey(r.tenant, r.name), request: { type: 'exec', command: args.command, timeoutMs }, deadlineMs: CALL_DEADLINE_MS + timeoutMs, requestId: null };
  },
  project_http: (identity: Identity, args: z.infer<z.ZodObject<typeof httpShape>>): ToolCall => {
    const r = ref(identity, args);
    const timeoutMs = args.timeoutMs ?? HTTP_DEFAULT_MS;
    return {
      key: projectActorKey(r.tenant, r.name),
      request: {
        type: 'http',
        call: { port: args.port ?? 'default', method: args.method ?? 'GET', path: args.path ?? '/', headers: args.headers ?? {}, body: args.body ?? null, timeoutMs },
      },
      deadlineMs: CALL_DEADLINE_MS + timeoutMs,
      requestId: null,
    };
  },
  project_events: (identity: Identity, args: z.infer<z.ZodObject<typeof eventsShape>>): ToolCall => {
    const r = ref(identity, args);
    const waitMs = args.waitMs ?? 0;
    return {
      key: projectActorKey(r.tenant, r.name),
      request: { type: 'events', since: args.since ?? 0, kinds: (args.kinds ?? []) as ProjectEventKind[], limit: args.limit ?? EVENTS_LIMIT_DEFAULT, waitMs },
      deadlineMs: CALL_DEADLINE_MS + waitMs,
      requestId: null,
    };
  },
  tenant_usage: (identity: Identity, args: { tenant?: string | undefined }): ToolCall => ({
    key: tenantActorKey(tenantFor(identity, args.tenant)),
    request: { type: 'usage' },
    deadlineMs: CALL_DEADLINE_MS,
    requestId: null,
  }),
} as const;

export type ActorToolName = keyof typeof toolCalls | 'tenant_quota_set';

/** tenant_quota_set: fields not given stay as they are, so it reads the quota first (usage) and then sets it. */
export function quotaSetCall(identity: Identity, args: z.infer<z.ZodObject<typeof quotaSetShape>>, current: { projects: number; ports: number; memoryBytes: number; storedBytes: number }): ToolCall {
  const tenant = tenantFor(identity, args.tenant);
  return {
    key: tenantActorKey(tenant),
    request: {
      type: 'quotaSet',
      quota: {
        projects: args.projects ?? current.projects,
        ports: args.ports ?? current.ports,
        memoryBytes: args.memoryMb === undefined ? current.memoryBytes : args.memoryMb * MB,
        storedBytes: args.storedMb === undefined ? current.storedBytes : args.storedMb * MB,
      },
    },
    deadlineMs: CALL_DEADLINE_MS,
    requestId: null,
  };
}

// ---- results ------------------------------------------------------------------------

/** A project as tools show it: flat, with URLs, live figures when its owner answered. */
export const projectOutShape = {
  tenant: z.string(),
  name: z.string(),
  version: z.number().describe('version of the desired spec; pass as ifVersion to update safely'),
  desired: z.enum(['running', 'stopped']),
  state: z.string().describe('starting, running, exited, crashLoop, stopped, failed, or unknown'),
  owner: z.string().nullable().describe('node that owns and runs the project'),
  runtime: z.string(),
  command: z.string().nullable(),
  image: z.string().nullable(),
  pid: z.number().nullable(),
  containerId: z.string().nullable(),
  ports: z.record(z.string(), z.number()),
  urls: z.record(z.string(), z.string()),
  restarts: z.number(),
  exitCode: z.number().nullable(),
  signal: z.string().nullable(),
  startedAt: z.string().nullable(),
  uptimeSeconds: z.number().nullable(),
  healthy: z.boolean().nullable(),
  error: z.string().nullable(),
  cpuPercent: z.number().nullable().describe('CPU over the last few seconds, percent of one core'),
  memoryBytes: z.number().nullable(),
  usageSampledAt: z.string().nullable(),
};
export const projectOutSchema = z.object(projectOutShape);
export type ProjectOut = z.infer<typeof projectOutSchema>;

/** The flat form of a project; `hostOf` gives the address part of URLs for a node. */
export function projectOut(view: ProjectView, nowMs: number, hostOf: (node: string) => string | null): ProjectOut {
  const status = view.status;
  const live = view.live;
  const owner = status?.node ?? null;
  const host = owner === null ? null : hostOf(owner);
  const ports = status?.ports ?? {};
  const urls: Record<string, string> = {};
  if (host !== null && view.desired === 'running') for (const [name, port] of Object.entries(ports)) urls[name] = `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
  const state = live?.state ?? status?.state ?? 'unknown';
  const startedAtMs = live?.startedAtMs ?? null;
  const running = state === 'running' && startedAtMs !== null;
  return {
    tenant: view.tenant,
    name: view.name,
    version: view.version,
    desired: view.desired,
    state,
    owner,
    runtime: view.spec.image !== null ? 'docker' : 'process',
    command: view.spec.command,
    image: view.spec.image,
    pid: live?.pid ?? null,
    containerId: live?.containerId ?? null,
    ports: { ...ports },
    urls,
    restarts: live?.restarts ?? status?.restarts ?? 0,
    exitCode: live?.exitCode ?? status?.exitCode ?? null,
    signal: live?.signal ?? null,
    startedAt: startedAtMs === null ? null : new Date(startedAtMs).toISOString(),
    uptimeSeconds: running ? Math.max(0, Math.round((nowMs - startedAtMs) / 1000)) : null,
    healthy: view.healthy,
    error: live?.error ?? status?.error ?? null,
    cpuPercent: live?.usage === null || live?.usage === undefined ? null : Math.round(live.usage.cpuPercent * 10) / 10,
    memoryBytes: live?.usage?.memoryBytes ?? null,
    usageSampledAt: live?.usage === null || live?.usage === undefined ? null : new Date(live.usage.sampledAtMs).toISOString(),
  };
}

export const eventOutShape = {
  seq: z.number(),
  time: z.string(),
  kind: z.enum(PROJECT_EVENT_KINDS as [string, ...string[]]),
  node: z.string(),
  exitCode: z.number().nullable(),
  signal: z.string().nullable(),
  detail: z.string(),
};

/** Bounds of the request ids the edge makes when the caller gives none. */
export const requestIdOf = (given: string | null, make: () => string): string => given ?? make();

/** An answer that is not the one a tool expects: say what came instead, as an unavailable error. */
export const unexpected = (response: ActorResponse, wanted: string): ActorResponse =>
  response.type === 'error' ? response : errorResponse('UnavailableError', `unexpected answer '${response.type}' where ${wanted} was expected; retry`);

export { CALL_LIMITS };
