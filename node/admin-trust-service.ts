// The Admin RPCs of the trust boundary: token create / revoke / list and
// audit query / verify. The interceptor (grpc-auth.ts) has verified the
// caller's token and role; these handlers check the tenant the request names,
// call the token service or read the audit chains from this node's applied
// state, and record mutations in the audit trail.
import { create } from '@bufbuild/protobuf';
import type { GenService } from '@bufbuild/protobuf/codegenv2';
import * as grpc from '@grpc/grpc-js';
import { queryAudit, verifyAllChains } from '../actors/audit.ts';
import { authorize, isRole, type Identity, type Role } from '../actors/identity.ts';
import type { TokenRecord } from '../actors/tokens.ts';
import { parseTokenRecord, tokenKey } from '../actors/tokens.ts';
import {
  Admin,
  AuditChainSchema,
  AuditQueryResponseSchema,
  AuditVerifyResponseSchema,
  TokenCreateResponseSchema,
  TokenInfoSchema,
  TokenListResponseSchema,
  TokenRevokeResponseSchema,
  type TokenInfo,
} from '../proto/gen/admin_pb.ts';
import type { ServiceImplementation } from '../proto/grpc.ts';
import { methodPath, type Caller } from './grpc-auth.ts';
import { RpcError, unary } from './grpc-unary.ts';
import type { DebughostNode } from './node.ts';
import type { PeerCall } from './peer-auth.ts';
import type { TokenFailure } from './token-service.ts';

/** Runs a mutating call and records it (grpc-server.ts). */
export type Audited = <T>(caller: Caller | null, action: string, scope: { tenant: string | null; target: string | null; args: unknown }, run: () => Promise<T>) => Promise<T>;

const TOKEN_CREATE = methodPath(Admin, 'tokenCreate');
const TOKEN_REVOKE = methodPath(Admin, 'tokenRevoke');
const TOKEN_LIST = methodPath(Admin, 'tokenList');
const AUDIT_QUERY = methodPath(Admin, 'auditQuery');

export function tokenInfo(record: TokenRecord): TokenInfo {
  return create(TokenInfoSchema, {
    id: record.id,
    name: record.name,
    tenant: record.kind === 'client' ? record.tenant : '',
    role: record.kind === 'client' ? record.role : '',
    kind: record.kind,
    createdAtMs: BigInt(record.createdAtMs),
    expiresAtMs: BigInt(record.expiresAtMs ?? 0),
    revokedAtMs: BigInt(record.revokedAtMs ?? 0),
    createdBy: record.createdBy,
  });
}

const CODES: Record<TokenFailure['reason'], grpc.status> = {
  forbidden: grpc.status.PERMISSION_DENIED,
  invalid: grpc.status.INVALID_ARGUMENT,
  notFound: grpc.status.NOT_FOUND,
  unavailable: grpc.status.UNAVAILABLE,
};
const fail = (failure: TokenFailure): never => {
  throw new RpcError(CODES[failure.reason], failure.message);
};

type AdminMethods = typeof Admin extends GenService<infer Methods> ? Methods : never;
type TrustMethods = Pick<ServiceImplementation<AdminMethods>, 'tokenCreate' | 'tokenRevoke' | 'tokenList' | 'auditQuery' | 'auditVerify'>;

export function adminTrustHandlers(node: DebughostNode, callerOf: (path: string, call: PeerCall) => Caller | null, audited: Audited): TrustMethods {
  const trust = node.trust;
  /** The client identity of a call the interceptor admitted (only clients reach these methods). */
  const identityOf = (path: string, call: PeerCall): Identity => {
    const caller = callerOf(path, call);
    if (caller?.kind !== 'client') throw new RpcError(grpc.status.UNAUTHENTICATED, 'this call needs a bearer token');
    return caller.identity;
  };
  /** An empty tenant means the caller's own, except for an admin, for whom it means every tenant. */
  const tenantFilter = (identity: Identity, tenant: string): string | null => (tenant !== '' ? tenant : identity.role === 'admin' ? null : identity.tenant);

  return {
    tokenCreate: unary(async (request, call) => {
      const identity = identityOf(TOKEN_CREATE, call);
      const tenant = request.tenant === '' ? identity.tenant : request.tenant;
      if (!request.join && !isRole(request.role)) throw new RpcError(grpc.status.INVALID_ARGUMENT, `role '${request.role}' is not one of viewer, developer, exec, tenant-admin, admin`);
      const role: Role = request.join ? 'viewer' : (request.role as Role);
      const ttlMs = request.ttlMs === 0n ? null : Number(request.ttlMs);
      const args = { tenant, role: request.join ? null : role, ttlMs, name: request.name, join: request.join };
      const outcome = await audited(callerOf(TOKEN_CREATE, call), 'token create', { tenant: request.join ? null : tenant, target: request.name === '' ? null : request.name, args }, async () => {
        const created = await trust.tokens.create(identity, { join: request.join, tenant, role, name: request.name === '' ? null : request.name, ttlMs });
        return created.ok ? created : fail(created);
      });
      return create(TokenCreateResponseSchema, { token: outcome.token, info: tokenInfo(outcome.record) });
    }),
    tokenRevoke: unary(async (request, call) => {
      const identity = identityOf(TOKEN_REVOKE, call);
      const existing = node.store.view().get(tokenKey(request.id));
      const record = existing === null ? null : parseTokenRecord(existing.value);
      const tenant = record?.kind === 'client' ? record.tenant : null;
      const outcome = await audited(callerOf(TOKEN_REVOKE, call), 'token revoke', { tenant, target: request.id, args: { id: request.id } }, async () => {
        const revoked = await trust.tokens.revoke(identity, request.id);
        return revoked.ok ? revoked : fail(revoked);
      });
      return create(TokenRevokeResponseSchema, { info: tokenInfo(outcome.record), alreadyRevoked: outcome.alreadyRevoked });
    }),
    tokenList: unary(async (request, call) => {
      const identity = identityOf(TOKEN_LIST, call);
      const listed = trust.tokens.list(identity, tenantFilter(identity, request.tenant));
      if (!listed.ok) return fail(listed);
      return create(TokenListResponseSchema, { tokens: listed.records.map(tokenInfo) });
    }),
    auditQuery: unary(async (request, call) => {
      const identity = identityOf(AUDIT_QUERY, call);
      const tenant = tenantFilter(identity, request.tenant);
      const allowed = authorize(identity, 'tenant.audit', tenant);
      if (!allowed.ok) throw new RpcError(grpc.status.PERMISSION_DENIED, allowed.message);
      const page = queryAudit(node.store.view(), {
        ...(tenant === null ? {} : { tenant }),
        ...(request.identity === '' ? {} : { identity: request.identity }),
        ...(request.action === '' ? {} : { action: request.action }),
        ...(request.fromMs === 0n ? {} : { fromMs: Number(request.fromMs) }),
        ...(request.toMs === 0n ? {} : { toMs: Number(request.toMs) }),
        ...(request.cursor === '' ? {} : { cursor: request.cursor }),
        ...(request.limit === 0 ? {} : { limit: request.limit }),
      });
      return create(AuditQueryResponseSchema, { records: page.records.map((r) => JSON.stringify(r)), next: page.next ?? '' });
    }),
    auditVerify: unary(async () => {
      const chains = verifyAllChains(node.store.view()).map((verdict) =>
        verdict.ok
          ? create(AuditChainSchema, { node: verdict.node, ok: true, records: BigInt(verdict.records), fromSeq: BigInt(verdict.from.seq), headSeq: BigInt(verdict.head.seq), headHash: verdict.head.hash })
          : create(AuditChainSchema, { node: verdict.node, ok: false, brokenKey: verdict.key, reason: verdict.reason, headSeq: BigInt(verdict.seq ?? 0) }),
      );
      return create(AuditVerifyResponseSchema, { chains, node: node.id, appliedIndex: BigInt(node.raft?.machine.appliedIndex ?? 0) });
    }),
  };
}
