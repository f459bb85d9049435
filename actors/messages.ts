// What actors receive and answer, as tagged unions (the forwarder carries them
// between nodes as protobuf, actors/wire.ts), plus the records the actors keep
// in the KV store and the keys they live under.
import type { ExecOutcome, RestartPolicy, WorkloadState, WorkloadStatus, WorkloadUsage } from './runtime.ts';

/** `projects/<tenant>/<name>` or `tenants/<tenant>`: the unit of placement and of turn-taking. */
export type ActorKey = string & { readonly __brand: 'ActorKey' };

/** Tenant and project names: safe in keys, labels, file names and URIs. */
export const ACTOR_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export const projectActorKey = (tenant: string, name: string): ActorKey => `projects/${tenant}/${name}` as ActorKey;
export const tenantActorKey = (tenant: string): ActorKey => `tenants/${tenant}` as ActorKey;
export const statusKey = (tenant: string, name: string): string => `status/${tenant}/${name}`;
export const eventsKey = (tenant: string, name: string): string => `events/${tenant}/${name}`;
export const quotaKey = (tenant: string): string => `tenants/${tenant}/quota`;
export const usageKey = (tenant: string): string => `tenants/${tenant}/usage`;
export const portKey = (node: string, port: number): string => `ports/${node}/${port}`;
export const LIVENESS_PREFIX = 'liveness/';
export const livenessKey = (node: string): string => `${LIVENESS_PREFIX}${node}`;
export const MEMBERS_PREFIX = 'members/';
export const PROJECTS_PREFIX = 'projects/';
export const STATUS_PREFIX = 'status/';

/**
 * Prefixes that change only through the actor and membership paths, which
 * validate what they write; the client KV API refuses writes under them.
 */
export const SYSTEM_PREFIXES: readonly string[] = ['members/', 'ring/', 'liveness/', 'projects/', 'status/', 'events/', 'ports/', 'tenants/', 'tokens/', 'audit/', 'cluster/'];

export type ParsedActorKey =
  | { readonly kind: 'project'; readonly tenant: string; readonly name: string }
  | { readonly kind: 'tenant'; readonly tenant: string };

/** Parse an actor key; null when it names no actor. */
export function parseActorKey(key: string): ParsedActorKey | null {
  const parts = key.split('/');
  if (parts[0] === 'projects' && parts.length === 3 && ACTOR_NAME_PATTERN.test(parts[1] ?? '') && ACTOR_NAME_PATTERN.test(parts[2] ?? '')) {
    return { kind: 'project', tenant: parts[1] as string, name: parts[2] as string };
  }
  if (parts[0] === 'tenants' && parts.length === 2 && ACTOR_NAME_PATTERN.test(parts[1] ?? '')) return { kind: 'tenant', tenant: parts[1] as string };
  return null;
}

// ---- identity ----------------------------------------------------------------------

/** Who calls, as verified from a bearer token at the edge (and checked again on the owner). */
export interface Identity {
  readonly tokenId: string;
  readonly tokenName: string;
  readonly tenant: string;
  readonly role: string;
}

// ---- stored records ----------------------------------------------------------

export type HealthCheckSpec =
  /** GET `path` on the named port answers 2xx or 3xx. */
  | { readonly type: 'http'; readonly path: string; readonly port: string }
  /** The named port accepts TCP connections. */
  | { readonly type: 'tcp'; readonly port: string }
  /** A log line of the current run matches the regular expression (RE2 syntax). */
  | { readonly type: 'log'; readonly regex: string };

/** The desired spec of a project, as a user gave it (validated at the edge and again when read back). */
export interface ProjectSpec {
  readonly command: string | null;
  readonly image: string | null;
  readonly cwd: string | null;
  readonly env: Readonly<Record<string, string>>;
  /** Port names to allocate on the owner node ('default' is PORT). */
  readonly ports: readonly string[];
  readonly restart: RestartPolicy;
  readonly healthCheck: HealthCheckSpec | null;
  readonly memoryBytes: number;
}

export type DesiredState = 'running' | 'stopped';

/** Value of `projects/<tenant>/<name>`; its KV version is the project's version. */
export interface ProjectRecord {
  readonly spec: ProjectSpec;
  readonly desired: DesiredState;
  /** Bumped by every restart request, so that the owner restarts even an unchanged spec. */
  readonly generation: number;
  /** Ids of the last changes applied to this record, so that a retry reaching any owner is applied once. */
  readonly requests: readonly string[];
}

/** Value of `status/<tenant>/<name>`: observed state, written by the owner under its fence. */
export interface ProjectStatusRecord {
  readonly state: WorkloadState | 'unknown';
  readonly node: string;
  /** The ring epoch the writer owned the project at (what the simulator checks fencing against). */
  readonly epoch: number;
  readonly ports: Readonly<Record<string, number>>;
  readonly generation: number;
  readonly restarts: number;
  readonly exitCode: number | null;
  readonly error: string | null;
  /**
   * The named node no longer runs a copy and gave the project up: a new owner may launch it
   * (actors/handoff.ts). Absent on every record an owner writes about its own copy.
   */
  readonly released?: boolean;
}

/** Value of `tenants/<tenant>/quota`. */
export interface TenantQuota {
  /** Desired-running projects. */
  readonly projects: number;
  readonly ports: number;
  readonly memoryBytes: number;
  /** Bytes of stored specs, running or stopped: a stopped project still costs the cluster its record. */
  readonly storedBytes: number;
}

/** Value of `tenants/<tenant>/usage`: changed in the txn that changes the projects it counts. */
export type TenantUsage = TenantQuota;

export const USAGE_ZERO: TenantUsage = Object.freeze({ projects: 0, ports: 0, memoryBytes: 0, storedBytes: 0 });
/** A tenant without a quota record gets this (an operator changes it with tenant_quota_set). */
export const QUOTA_DEFAULT: TenantQuota = Object.freeze({ projects: 100, ports: 200, memoryBytes: 64 * 1024 ** 3, storedBytes: 64 * 1024 ** 2 });

/** What happened to a project; the runtime's kinds plus those only its owner sees. */
export type ProjectEventKind = 'started' | 'ready' | 'unhealthy' | 'exited' | 'oomKilled' | 'restarted' | 'crashLoop' | 'moved' | 'stopped' | 'removed';
export const PROJECT_EVENT_KINDS: readonly ProjectEventKind[] = ['started', 'ready', 'unhealthy', 'exited', 'oomKilled', 'restarted', 'crashLoop', 'moved', 'stopped', 'removed'];

export interface ProjectEvent {
  /** Per project, rising by one per event; a cursor for project_events. */
  readonly seq: number;
  readonly timeMs: number;
  readonly kind: ProjectEventKind;
  /** The node that saw it. */
  readonly node: string;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly detail: string;
}

/** Value of `events/<tenant>/<name>`: the newest events of one project, bounded. */
export interface ProjectEventsRecord {
  readonly events: readonly ProjectEvent[];
}

// ---- requests and responses ----------------------------------------------------

export interface LogsQuery {
  /** The last N lines; ignored when `since` is given. */
  readonly tail: number | null;
  /** Lines after this cursor. */
  readonly since: number | null;
  readonly grep: string | null;
  readonly stream: 'stdout' | 'stderr' | 'both';
  readonly limit: number;
}

export interface HttpCall {
  readonly port: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | null;
  readonly timeoutMs: number;
}

export type ProjectRequest =
  | { readonly type: 'start'; readonly spec: ProjectSpec; readonly ifVersion?: number; readonly waitMs: number }
  | { readonly type: 'stop'; readonly ifVersion?: number }
  | { readonly type: 'restart'; readonly waitMs: number }
  | { readonly type: 'remove'; readonly ifVersion?: number }
  | { readonly type: 'status' }
  | { readonly type: 'logs'; readonly query: LogsQuery }
  /** condition null: the project's own health check, else its default port accepting connections. */
  | { readonly type: 'wait'; readonly condition: HealthCheckSpec | null; readonly timeoutMs: number }
  | { readonly type: 'exec'; readonly command: string; readonly timeoutMs: number }
  | { readonly type: 'http'; readonly call: HttpCall }
  | { readonly type: 'events'; readonly since: number; readonly kinds: readonly ProjectEventKind[]; readonly limit: number; readonly waitMs: number };

export type TenantRequest =
  | { readonly type: 'quotaSet'; readonly quota: TenantQuota }
  | { readonly type: 'usage' }
  | { readonly type: 'list' };

export type ActorRequest = ProjectRequest | TenantRequest;

/** Requests that change desired state: remembered by request id, audited, retried only when safe. */
export const isChange = (request: ActorRequest): boolean =>
  request.type === 'start' || request.type === 'stop' || request.type === 'restart' || request.type === 'remove' || request.type === 'quotaSet';

/** What the owner sees of a workload right now: its runtime status, without what the caller knows already. */
export type LiveWorkload = Omit<WorkloadStatus, 'project' | 'exitedAtMs' | 'usage'> & { readonly usage: WorkloadUsage | null };

export interface ProjectView {
  readonly tenant: string;
  readonly name: string;
  readonly version: number;
  readonly desired: DesiredState;
  readonly spec: ProjectSpec;
  readonly status: ProjectStatusRecord | null;
  /** The workload as its owner sees it now; null when the answer comes from the replicated state alone. */
  readonly live: LiveWorkload | null;
  /** The owner's last health check of the current run: null when none ran. */
  readonly healthy: boolean | null;
  readonly healthDetail: string | null;
}

export interface LogLineView {
  readonly seq: number;
  readonly timeMs: number;
  readonly stream: 'stdout' | 'stderr';
  readonly line: string;
}

/** What a one-off command did (project_exec). */
export type ExecAnswer = ExecOutcome;

export interface HttpAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly truncated: boolean;
  readonly durationMs: number;
}

/** Stable names of the conditions a caller may see; each maps to one MCP error text and one gRPC status. */
export type ActorErrorName =
  | 'QuotaExceededError'
  | 'VersionConflictError'
  | 'NotFoundError'
  | 'InvalidRequestError'
  | 'ForbiddenError'
  | 'RateLimitedError'
  | 'MailboxFullError'
  /** Certainly not done: no leader, no owner, a node stopping. Safe to retry. */
  | 'UnavailableError'
  /** May or may not have been done (a lost answer, a deadline): read the state before retrying. */
  | 'OutcomeUnknownError'
  | 'DeadlineExceededError'
  | 'OwnershipMovedError'
  /** The workload could not be started (command not found, missing image, no free port). */
  | 'RuntimeFailedError'
  /** It started but ended or crash-looped before it was ready. */
  | 'StartFailedError'
  /** The actor failed on an internal error; it restarts with back-off. */
  | 'ActorFailedError';

export const ACTOR_ERROR_NAMES: readonly ActorErrorName[] = [
  'QuotaExceededError',
  'VersionConflictError',
  'NotFoundError',
  'InvalidRequestError',
  'ForbiddenError',
  'RateLimitedError',
  'MailboxFullError',
  'UnavailableError',
  'OutcomeUnknownError',
  'DeadlineExceededError',
  'OwnershipMovedError',
  'RuntimeFailedError',
  'StartFailedError',
  'ActorFailedError',
];

export type ActorResponse =
  | { readonly type: 'project'; readonly project: ProjectView; readonly settleDetail: string | null }
  | { readonly type: 'removed'; readonly tenant: string; readonly name: string; readonly existed: boolean }
  | { readonly type: 'logs'; readonly lines: readonly LogLineView[]; readonly nextCursor: number; readonly more: boolean }
  | { readonly type: 'wait'; readonly ok: boolean; readonly condition: string; readonly elapsedMs: number; readonly detail: string; readonly lastLines: readonly string[]; readonly project: ProjectView }
  | ({ readonly type: 'exec' } & ExecAnswer)
  | ({ readonly type: 'http' } & HttpAnswer)
  | { readonly type: 'events'; readonly events: readonly ProjectEvent[]; readonly nextCursor: number; readonly more: boolean }
  | { readonly type: 'usage'; readonly tenant: string; readonly quota: TenantQuota; readonly usage: TenantUsage }
  | { readonly type: 'list'; readonly tenant: string; readonly projects: readonly ProjectView[]; readonly more: boolean }
  /** The receiving node does not own the key at its epoch; the caller re-routes (not shown to users). */
  | { readonly type: 'notOwner'; readonly epoch: number; readonly ownerHint: string | null }
  | { readonly type: 'error'; readonly name: ActorErrorName; readonly message: string };

export const errorResponse = (name: ActorErrorName, message: string): ActorResponse => ({ type: 'error', name, message });

/** Progress of a call, sent before its answer (MCP progress notifications). */
export type ProgressFn = (message: string, step: number, total: number) => void;
