// Who a caller is and what it may do: the identity a verified token gives, the
// role table, and the one authorization check every entry point uses (MCP
// tools, the gRPC client plane, the CLI verbs behind it). Pure: no I/O, no
// clock. docs/security.md shows the same table; identity.test.ts checks that
// the two agree.
import type { Identity as CallIdentity } from './messages.ts';

/**
 * Roles form a ladder: each has every right of the one below it. `exec` is a
 * rung of its own above `developer` (as Nomad keeps `alloc-exec` apart from
 * submitting jobs) rather than a flag on any role: anyone who may mint tokens
 * of a tenant could mint an exec token anyway, so tenant-admin and admin must
 * include it, and a flag beside the ladder would only allow combinations
 * (a viewer that may exec) that no one asked for.
 */
export const ROLES = ['viewer', 'developer', 'exec', 'tenant-admin', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/**
 * What a call needs. Tenant-scoped rights are checked against the tenant the
 * call touches; cluster-scoped ones against no tenant.
 */
export const RIGHTS = {
  /** project_status, project_list, project_logs, project_events, log resources and subscriptions. */
  'project.read': { scope: 'tenant', lowestRole: 'viewer' },
  /** tenant_usage. */
  'tenant.read': { scope: 'tenant', lowestRole: 'viewer' },
  /** cluster_status (the caller sees only its own tenants' projects in it). */
  'cluster.read': { scope: 'cluster', lowestRole: 'viewer' },
  /** project_start, project_stop, project_restart, project_remove, project_batch. */
  'project.lifecycle': { scope: 'tenant', lowestRole: 'developer' },
  /** project_wait, project_http: requests against a running workload. */
  'project.interact': { scope: 'tenant', lowestRole: 'developer' },
  /** project_exec: a command inside the workload's environment, secrets included. */
  'project.exec': { scope: 'tenant', lowestRole: 'exec' },
  /** tenant_quota_set. */
  'tenant.quota': { scope: 'tenant', lowestRole: 'tenant-admin' },
  /** token_create, token_revoke, token_list (never a role above the caller's own). */
  'tenant.tokens': { scope: 'tenant', lowestRole: 'tenant-admin' },
  /** audit_query over the records of the tenant. */
  'tenant.audit': { scope: 'tenant', lowestRole: 'tenant-admin' },
  /** Membership, leadership transfer, join tokens, backups. */
  'cluster.admin': { scope: 'cluster', lowestRole: 'admin' },
  /** The client KV API (reads anywhere, writes outside the system prefixes). */
  'cluster.kv': { scope: 'cluster', lowestRole: 'admin' },
  /** image_list, image_prune: Docker images are shared by every tenant of a node. */
  'cluster.images': { scope: 'cluster', lowestRole: 'admin' },
} as const satisfies Record<string, { scope: 'tenant' | 'cluster'; lowestRole: Role }>;
export type Right = keyof typeof RIGHTS;

/**
 * Who a verified token says the caller is: the identity a call carries
 * (actors/messages.ts), with a role this table knows. `tokenId` is public (it
 * names the token); the secret never leaves the verifier.
 */
export type Identity = Omit<CallIdentity, 'role'> & { readonly role: Role };

/** The identity of every client of a node started with --insecure-no-auth (loopback only). */
export const ANONYMOUS_ADMIN: Identity = Object.freeze({ tokenId: 'anonymous', tokenName: 'anonymous (--insecure-no-auth)', tenant: 'default', role: 'admin' });

export type AuthorizeOutcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'missingRight'; readonly right: Right; readonly message: string }
  | { readonly ok: false; readonly reason: 'otherTenant'; readonly right: Right; readonly tenant: string | null; readonly message: string };

export const roleRank = (role: Role): number => ROLES.indexOf(role);

export const isRole = (text: string): text is Role => (ROLES as readonly string[]).includes(text);

export function roleHas(role: Role, right: Right): boolean {
  return roleRank(role) >= roleRank(RIGHTS[right].lowestRole);
}

/** Every right a role carries, in table order. */
export const rightsOf = (role: Role): Right[] => (Object.keys(RIGHTS) as Right[]).filter((right) => roleHas(role, right));

/**
 * May `identity` use `right` on `tenant`? `tenant` is the tenant the call
 * touches; null means every tenant (an unfiltered listing, the whole audit
 * trail) and, for a cluster-scoped right, the cluster itself.
 */
export function authorize(identity: Identity, right: Right, tenant: string | null): AuthorizeOutcome {
  if (!roleHas(identity.role, right)) {
    const needed = RIGHTS[right].lowestRole;
    return {
      ok: false,
      reason: 'missingRight',
      right,
      message: `token '${identity.tokenName}' (role ${identity.role}) lacks the right '${right}', which needs role ${needed} or above; ask an admin for a token with that role`,
    };
  }
  if (RIGHTS[right].scope === 'cluster' || identity.role === 'admin' || tenant === identity.tenant) return { ok: true };
  return {
    ok: false,
    reason: 'otherTenant',
    right,
    tenant,
    message:
      tenant === null
        ? `token '${identity.tokenName}' belongs to tenant '${identity.tenant}' and may use '${right}' only there; name tenant '${identity.tenant}' (every tenant needs an admin token)`
        : `token '${identity.tokenName}' belongs to tenant '${identity.tenant}', not '${tenant}'; use a token of tenant '${tenant}' or leave the tenant out`,
  };
}

/** May `identity` issue a token of `role` for `tenant`? Only within its rights, and never above its own role. */
export function authorizeIssue(identity: Identity, tenant: string, role: Role): AuthorizeOutcome {
  const allowed = authorize(identity, 'tenant.tokens', tenant);
  if (!allowed.ok) return allowed;
  if (roleRank(role) > roleRank(identity.role)) {
    return {
      ok: false,
      reason: 'missingRight',
      right: 'tenant.tokens',
      message: `token '${identity.tokenName}' (role ${identity.role}) cannot issue a token of role ${role}, which is above its own; ask an admin`,
    };
  }
  return { ok: true };
}

/**
 * The right each MCP tool needs. The lead's tool × role test reads the live
 * tool list and fails on a tool missing here, so no tool can skip the check.
 */
export const TOOL_RIGHTS = {
  project_status: 'project.read',
  project_list: 'project.read',
  project_logs: 'project.read',
  project_events: 'project.read',
  tenant_usage: 'tenant.read',
  cluster_status: 'cluster.read',
  project_start: 'project.lifecycle',
  project_stop: 'project.lifecycle',
  project_restart: 'project.lifecycle',
  project_remove: 'project.lifecycle',
  project_batch: 'project.lifecycle',
  project_wait: 'project.interact',
  project_http: 'project.interact',
  project_exec: 'project.exec',
  tenant_quota_set: 'tenant.quota',
  token_create: 'tenant.tokens',
  token_revoke: 'tenant.tokens',
  token_list: 'tenant.tokens',
  audit_query: 'tenant.audit',
  image_list: 'cluster.images',
  image_prune: 'cluster.images',
} as const satisfies Record<string, Right>;
export type ToolName = keyof typeof TOOL_RIGHTS;

/** MCP resources (log follow) need the same right as project_logs. */
export const RESOURCE_RIGHT: Right = 'project.read';

/**
 * The right each CLI verb needs on the server (what the node checks on the
 * gRPC call behind it). `null`: no token needed (the verb runs locally, or
 * only reads the public status that /status also serves).
 */
export const CLI_VERB_RIGHTS = {
  up: null,
  node: null,
  init: null,
  status: null,
  'kv get': 'cluster.kv',
  'kv watch': 'cluster.kv',
  'kv put': 'cluster.kv',
  'kv del': 'cluster.kv',
  'kv txn': 'cluster.kv',
  leave: 'cluster.admin',
  'token create': 'tenant.tokens',
  'token create --join': 'cluster.admin',
  'token revoke': 'tenant.tokens',
  'token list': 'tenant.tokens',
  'audit verify': 'cluster.admin',
  'audit query': 'tenant.audit',
} as const satisfies Record<string, Right | null>;
