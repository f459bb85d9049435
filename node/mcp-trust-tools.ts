// The trust tools of the MCP endpoint (token_create, token_revoke, token_list,
// audit_query): the same TokenService, audit records and audit query as the
// Admin RPCs behind `debughost token` and `debughost audit`, so an agent with a
// tenant-admin token can hand a narrower token to a sub-agent, and see who did
// what in its tenant, without a shell on the node. Role checks live in the
// service (never a role above the caller's own; a tenant-admin sees only its
// own tenant's records).
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { AUDIT_PAGE_RECORDS_MAX, queryAudit, type AuditActor } from '../actors/audit.ts';
import { authorize, isRole, ROLES, type Identity } from '../actors/identity.ts';
import type { KvView } from '../actors/placement.ts';
import type { Identity as CallIdentity } from '../actors/messages.ts';
import { TOKEN_NAME_PATTERN, TOKEN_TTL_MS_MAX, TOKEN_TTL_MS_MIN, type TokenRecord } from '../actors/tokens.ts';
import { ok, ToolError, type ToolContext } from './mcp.ts';
import type { TokenFailure, TokenService } from './token-service.ts';
import type { AuditWriter } from './audit-writer.ts';

export interface TrustToolsBackend {
  readonly tokens: TokenService;
  readonly audit: Pick<AuditWriter, 'record'>;
  /** The applied state this node reads the audit trail from. */
  readonly view: () => KvView;
}

const tokenOutShape = {
  id: z.string(),
  name: z.string().nullable(),
  tenant: z.string().nullable(),
  role: z.string().nullable(),
  kind: z.string(),
  createdAtMs: z.number(),
  expiresAtMs: z.number().nullable(),
  revokedAtMs: z.number().nullable(),
  createdBy: z.string(),
};

const tokenOut = (record: TokenRecord): z.infer<z.ZodObject<typeof tokenOutShape>> => ({
  id: record.id,
  name: record.name ?? null,
  tenant: record.kind === 'client' ? record.tenant : null,
  role: record.kind === 'client' ? record.role : null,
  kind: record.kind,
  createdAtMs: record.createdAtMs,
  expiresAtMs: record.expiresAtMs,
  revokedAtMs: record.revokedAtMs,
  createdBy: record.createdBy,
});

const renderToken = (t: ReturnType<typeof tokenOut>): string =>
  `${t.id}${t.name === null ? '' : ` (${t.name})`}: ${t.kind === 'join' ? 'join token' : `${t.role ?? '?'} of tenant ${t.tenant ?? '?'}`}` +
  `${t.revokedAtMs === null ? '' : ', revoked'}${t.expiresAtMs === null ? '' : `, expires ${new Date(t.expiresAtMs).toISOString()}`}`;

const failure = (outcome: TokenFailure): never => {
  throw new ToolError(outcome.reason === 'forbidden' ? 'ForbiddenError' : 'InvalidRequestError', outcome.message);
};

const CHANGE: ToolAnnotations = { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false };
const REVOKE: ToolAnnotations = { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false };
const READ_ONLY: ToolAnnotations = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };

/** The endpoint's verified identity with its role checked against the role table (a role it does not know grants nothing). */
export function withRole(identity: CallIdentity): Identity {
  if (!isRole(identity.role)) throw new ToolError('ForbiddenError', `role ${JSON.stringify(identity.role)} of token ${identity.tokenId} is unknown to this node; use a token with one of ${ROLES.join(', ')}`);
  return { ...identity, role: identity.role };
}

const actorName = (actor: AuditActor): string => ('node' in actor ? `node ${actor.node}` : `${actor.tokenName} (${actor.role})`);

export function registerTrustTools(server: McpServer, context: ToolContext, backend: TrustToolsBackend): void {
  const { guard } = context;
  const identityOf = (extra: Parameters<ToolContext['identityOf']>[0]): Identity => withRole(context.identityOf(extra));
  /** Runs a token change and records it; `tenantOf` names the tenant the change acted on (for a revoke: the token's). */
  const audited = async <T extends { ok: boolean }>(identity: Identity, action: string, tenantOf: (outcome: T) => string | null, target: string | null, args: unknown, run: () => Promise<T>): Promise<T> => {
    const outcome = await run();
    const detail = outcome.ok ? null : (outcome as unknown as TokenFailure).message;
    void backend.audit.record({ actor: identity, action, tenant: tenantOf(outcome), target, args, outcome: outcome.ok ? 'ok' : (outcome as unknown as TokenFailure).reason === 'forbidden' ? 'denied' : 'error', detail });
    return outcome;
  };

  server.registerTool(
    'token_create',
    {
      title: 'Create a token',
      description:
        'Issue a bearer token for a tenant with a role no higher than your own (viewer < developer < exec < tenant-admin < admin). ' +
        'The token is shown once, in this answer; only its hash is stored. Revoke it with token_revoke.',
      inputSchema: {
        tenant: z.string().describe('tenant the token acts as; default: your own').optional(),
        role: z.enum(ROLES).describe('what the token may do'),
        name: z.string().regex(TOKEN_NAME_PATTERN).describe('a label for lists and the audit trail').optional(),
        ttlMs: z.number().int().min(TOKEN_TTL_MS_MIN).max(TOKEN_TTL_MS_MAX).describe('lifetime in ms; default: no expiry').optional(),
      },
      outputSchema: { token: z.string(), info: z.object(tokenOutShape) },
      annotations: CHANGE,
    },
    guard(async (args, extra) => {
      const identity = identityOf(extra);
      const tenant = args.tenant ?? identity.tenant;
      const request = { join: false, tenant, role: args.role, name: args.name ?? null, ttlMs: args.ttlMs ?? null };
      const created = await audited(identity, 'token create', () => tenant, args.name ?? null, { tenant, role: args.role, name: request.name, ttlMs: request.ttlMs }, () => backend.tokens.create(identity, request));
      if (!created.ok) return failure(created);
      const info = tokenOut(created.record);
      return ok(`${created.token}\n${renderToken(info)}\nkeep it now: it is not shown again`, { token: created.token, info });
    }),
  );

  server.registerTool(
    'token_revoke',
    {
      title: 'Revoke a token',
      description: 'End a token by its id (from token_list or token_create): every node refuses it from then on. Revoking a revoked token is a no-op.',
      inputSchema: { id: z.string().min(1).max(64).describe('the token id (the middle part of dht.<id>.<secret>)') },
      outputSchema: { alreadyRevoked: z.boolean(), info: z.object(tokenOutShape) },
      annotations: REVOKE,
    },
    guard(async (args, extra) => {
      const identity = identityOf(extra);
      const revoked = await audited(identity, 'token revoke', (outcome) => (outcome.ok && outcome.record.kind === 'client' ? outcome.record.tenant : null), args.id, { id: args.id }, () => backend.tokens.revoke(identity, args.id));
      if (!revoked.ok) return failure(revoked);
      const info = tokenOut(revoked.record);
      return ok(`${revoked.alreadyRevoked ? 'already revoked' : 'revoked'}: ${renderToken(info)}`, { alreadyRevoked: revoked.alreadyRevoked, info });
    }),
  );

  server.registerTool(
    'token_list',
    {
      title: 'List tokens',
      description: "The tokens of a tenant (default: your own; an admin may leave it out for every tenant's), never their secrets.",
      inputSchema: { tenant: z.string().describe('tenant whose tokens to list').optional() },
      outputSchema: { tokens: z.array(z.object(tokenOutShape)) },
      annotations: READ_ONLY,
    },
    guard(async (args, extra) => {
      const identity = identityOf(extra);
      const tenant = args.tenant ?? (identity.role === 'admin' ? null : identity.tenant);
      const listed = backend.tokens.list(identity, tenant);
      if (!listed.ok) return failure(listed);
      const tokens = listed.records.map(tokenOut);
      return ok(tokens.length === 0 ? 'no tokens' : tokens.map(renderToken).join('\n'), { tokens });
    }),
  );
  server.registerTool(
    'audit_query',
    {
      title: 'Query the audit trail',
      description:
        'Who did what: records of changes and refusals (tool or verb, caller, tenant, outcome), oldest first, a page at a time. ' +
        "A tenant-admin sees its own tenant's records; an admin may leave tenant out for all.",
      inputSchema: {
        tenant: z.string().describe("tenant whose records to show; default: your own (an admin: every tenant's)").optional(),
        identity: z.string().max(128).describe('only calls by this token id or token name').optional(),
        action: z.string().max(64).describe('only this tool or verb, e.g. project_exec or "token create"').optional(),
        fromMs: z.number().int().nonnegative().describe('from this time (ms since the epoch, inclusive)').optional(),
        toMs: z.number().int().nonnegative().describe('until this time (ms since the epoch, exclusive)').optional(),
        cursor: z.string().max(256).describe("the previous page's next").optional(),
        limit: z.number().int().min(1).max(AUDIT_PAGE_RECORDS_MAX).describe('records per page').optional(),
      },
      outputSchema: { records: z.array(z.record(z.string(), z.unknown())), next: z.string().nullable() },
      annotations: READ_ONLY,
    },
    guard(async (args, extra) => {
      const identity = identityOf(extra);
      const tenant = args.tenant ?? (identity.role === 'admin' ? null : identity.tenant);
      const allowed = authorize(identity, 'tenant.audit', tenant);
      if (!allowed.ok) throw new ToolError('ForbiddenError', allowed.message);
      const page = queryAudit(backend.view(), {
        ...(tenant === null ? {} : { tenant }),
        ...(args.identity === undefined ? {} : { identity: args.identity }),
        ...(args.action === undefined ? {} : { action: args.action }),
        ...(args.fromMs === undefined ? {} : { fromMs: args.fromMs }),
        ...(args.toMs === undefined ? {} : { toMs: args.toMs }),
        ...(args.cursor === undefined ? {} : { cursor: args.cursor }),
        ...(args.limit === undefined ? {} : { limit: args.limit }),
      });
      const lines = page.records.map((r) => `${new Date(r.timeMs).toISOString()} ${r.node}#${r.seq} ${actorName(r.actor)} ${r.action}${r.tenant === null ? '' : ` ${r.tenant}`}${r.target === null ? '' : `/${r.target}`}: ${r.outcome}${r.detail === null ? '' : ` (${r.detail})`}`);
      const text = (lines.length === 0 ? 'no records' : lines.join('\n')) + (page.next === null ? '' : `\nmore: call again with cursor ${page.next}`);
      return ok(text, { records: page.records as unknown as Record<string, unknown>[], next: page.next ?? null });
    }),
  );
}
