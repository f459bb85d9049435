// What actors receive and answer: plain JSON-serialisable tagged unions, so a
// forwarder can carry them between nodes as bytes, plus the records the
// actors keep in the KV store and the keys they live under.
import type { RestartPolicy, WorkloadState } from './runtime.ts';

/** `projects/<tenant>/<name>` or `tenants/<tenant>`: the unit of placement and of turn-taking. */
export type ActorKey = string & { readonly __brand: 'ActorKey' };

/** Tenant and project names: safe in keys, labels and file names. */
export const ACTOR_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export const projectActorKey = (tenant: string, name: string): ActorKey => `projects/${tenant}/${name}` as ActorKey;
export const tenantActorKey = (tenant: string): ActorKey => `tenants/${tenant}` as ActorKey;
export const statusKey = (tenant: string, name: string): string => `status/${tenant}/${name}`;
export const quotaKey = (tenant: string): string => `tenants/${tenant}/quota`;
export const usageKey = (tenant: string): string => `tenants/${tenant}/usage`;
export const portKey = (node: string, port: number): string => `ports/${node}/${port}`;
export const LIVENESS_PREFIX = 'liveness/';
export const livenessKey = (node: string): string => `${LIVENESS_PREFIX}${node}`;
export const MEMBERS_PREFIX = 'members/';
export const PROJECTS_PREFIX = 'projects/';

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

// ---- stored records ----------------------------------------------------------

/** The desired spec of a project, as a user gave it (validated at the edge). */
export interface ProjectSpec {
  readonly command: string | null;
  readonly image: string | null;
  readonly cwd: string | null;
  readonly env: Readonly<Record<string, string>>;
  /** Port names to allocate on the owner node ('default' is PORT). */
  readonly ports: readonly string[];
  readonly restart: RestartPolicy;
  readonly healthCheck: unknown;
  readonly memoryBytes: number;
}

export type DesiredState = 'running' | 'stopped';

/** Value of `projects/<tenant>/<name>`; its KV version is the project's version. */
export interface ProjectRecord {
  readonly spec: ProjectSpec;
  readonly desired: DesiredState;
  /** Bumped by every restart request, so that the owner restarts even an unchanged spec. */
  readonly generation: number;
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
}

/** Value of `tenants/<tenant>/quota`. */
export interface TenantQuota {
  readonly projects: number;
  readonly ports: number;
  readonly memoryBytes: number;
}

/** Value of `tenants/<tenant>/usage`: what desired-running projects hold; changed in the txn that changes them. */
export interface TenantUsage {
  readonly projects: number;
  readonly ports: number;
  readonly memoryBytes: number;
}

export const USAGE_ZERO: TenantUsage = Object.freeze({ projects: 0, ports: 0, memoryBytes: 0 });
/** A tenant without a quota record gets this (an operator raises it with tenant_quota_set). */
export const QUOTA_DEFAULT: TenantQuota = Object.freeze({ projects: 100, ports: 200, memoryBytes: 64 * 1024 ** 3 });

// ---- requests and responses ----------------------------------------------------

export type ProjectRequest =
  | { readonly type: 'start'; readonly spec: ProjectSpec; readonly ifVersion?: number }
  | { readonly type: 'stop'; readonly ifVersion?: number }
  | { readonly type: 'restart' }
  | { readonly type: 'remove'; readonly ifVersion?: number }
  | { readonly type: 'status' };

export type TenantRequest =
  | { readonly type: 'quotaSet'; readonly quota: TenantQuota }
  | { readonly type: 'usage' }
  | { readonly type: 'list' };

export type ActorRequest = ProjectRequest | TenantRequest;

export interface ProjectView {
  readonly tenant: string;
  readonly name: string;
  readonly version: number;
  readonly desired: DesiredState;
  readonly spec: ProjectSpec;
  readonly status: ProjectStatusRecord | null;
}

/** Stable names of the conditions a caller may see; each maps to one MCP error text and one gRPC status. */
export type ActorErrorName =
  | 'QuotaExceededError'
  | 'VersionConflictError'
  | 'NotFoundError'
  | 'InvalidRequestError'
  | 'MailboxFullError'
  | 'UnavailableError'
  | 'DeadlineExceededError'
  | 'OwnershipMovedError'
  | 'RuntimeFailedError';

export type ActorResponse =
  | { readonly type: 'project'; readonly project: ProjectView }
  | { readonly type: 'removed'; readonly tenant: string; readonly name: string }
  | { readonly type: 'usage'; readonly tenant: string; readonly quota: TenantQuota; readonly usage: TenantUsage }
  | { readonly type: 'list'; readonly tenant: string; readonly projects: readonly ProjectView[] }
  /** The receiving node does not own the key at its epoch; the caller re-routes (not shown to users). */
  | { readonly type: 'notOwner'; readonly epoch: number; readonly ownerHint: string | null }
  | { readonly type: 'error'; readonly name: ActorErrorName; readonly message: string };

export const errorResponse = (name: ActorErrorName, message: string): ActorResponse => ({ type: 'error', name, message });

/** Throwable form of an error response, for callers that prefer exceptions (node/ maps these to MCP and gRPC). */
export class ActorCallError extends Error {
  constructor(
    override readonly name: ActorErrorName,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Parse a stored JSON record; null when absent or not an object (a corrupt record is reported, not trusted). */
export function parseRecord<T>(value: string | undefined): T | null {
  if (value === undefined) return null;
  try {
    const parsed: unknown = JSON.parse(value);
    return typeof parsed === 'object' && parsed !== null ? (parsed as T) : null;
  } catch {
    return null;
  }
}
