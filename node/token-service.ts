// Issuing, revoking and listing tokens: authorization against the caller's
// identity, then one txn on `tokens/<id>` through the Raft leader. Revoking
// rewrites the record with `revokedAtMs` (rather than deleting it) so that a
// node restarted with the bootstrap token file cannot bring a revoked token
// back. Used by the Admin RPCs (the CLI) and the token_* MCP tools; each
// caller writes its own audit record.
import { prefixEnd, type KvCommand } from '../consensus/kv-state-machine.ts';
import type { ActorStore, StoreWriteOutcome } from '../actors/components.ts';
import { authorize, authorizeIssue, type Identity, type Role } from '../actors/identity.ts';
import {
  issueToken,
  isTenantName,
  JOIN_TOKEN_TTL_MS_DEFAULT,
  parseTokenRecord,
  TOKEN_NAME_PATTERN,
  TOKEN_TTL_MS_MAX,
  TOKEN_TTL_MS_MIN,
  tokenKey,
  TOKENS_PREFIX,
  type TokenRecord,
} from '../actors/tokens.ts';

export type TokenFailure = { readonly ok: false; readonly reason: 'forbidden' | 'invalid' | 'notFound' | 'unavailable'; readonly message: string };

export type TokenCreateOutcome = { readonly ok: true; readonly token: string; readonly record: TokenRecord } | TokenFailure;
export type TokenRevokeOutcome = { readonly ok: true; readonly record: TokenRecord; readonly alreadyRevoked: boolean } | TokenFailure;

export interface TokenCreateRequest {
  /** A join token admits a node; a client token carries a tenant and a role. */
  readonly join: boolean;
  readonly tenant: string;
  readonly role: Role;
  readonly name: string | null;
  /** null: never expires (join tokens default to an hour). */
  readonly ttlMs: number | null;
}

export interface TokenServiceComponents {
  readonly store: Pick<ActorStore, 'view' | 'propose'>;
  readonly randomBytes: (count: number) => Uint8Array;
  readonly wallNowMs: () => number;
}

const proposeAsync = (store: TokenServiceComponents['store'], command: KvCommand): Promise<StoreWriteOutcome> => new Promise((resolve) => store.propose(command, resolve));

const unavailable = (outcome: Extract<StoreWriteOutcome, { ok: false }>): TokenFailure => ({
  ok: false,
  reason: 'unavailable',
  message: outcome.reason === 'unknown' ? `the write may or may not have been applied (${outcome.detail}); list the tokens before retrying` : `the cluster could not take the write (${outcome.detail}); retry shortly`,
});

export class TokenService {
  constructor(private readonly components: TokenServiceComponents) {}

  async create(caller: Identity, request: TokenCreateRequest): Promise<TokenCreateOutcome> {
    const invalid = this.validate(request);
    if (invalid !== null) return { ok: false, reason: 'invalid', message: invalid };
    const allowed = request.join ? authorize(caller, 'cluster.admin', null) : authorizeIssue(caller, request.tenant, request.role);
    if (!allowed.ok) return { ok: false, reason: 'forbidden', message: allowed.message };
    const ttlMs = request.ttlMs ?? (request.join ? JOIN_TOKEN_TTL_MS_DEFAULT : null);
    const { token, record } = issueToken(
      { kind: request.join ? 'join' : 'client', tenant: request.tenant, role: request.role, ttlMs, createdBy: caller.tokenId, ...(request.name === null ? {} : { name: request.name }) },
      this.components.randomBytes,
      this.components.wallNowMs(),
    );
    const key = tokenKey(record.id);
    const outcome = await proposeAsync(this.components.store, {
      type: 'txn',
      compare: [{ key, target: 'createRevision', op: '==', operand: 0 }],
      success: [{ type: 'put', key, value: JSON.stringify(record) }],
      failure: [],
    });
    if (!outcome.ok) return unavailable(outcome);
    if (outcome.result.succeeded !== true) return { ok: false, reason: 'unavailable', message: 'a token with the same id exists (a 1 in 2^64 chance); retry' };
    return { ok: true, token, record };
  }

  async revoke(caller: Identity, id: string): Promise<TokenRevokeOutcome> {
    const key = tokenKey(id);
    const kv = this.components.store.view().get(key);
    const record = kv === null ? null : parseTokenRecord(kv.value);
    if (kv === null || record === null) return { ok: false, reason: 'notFound', message: `no token ${id}; list them with debughost token list` };
    const allowed = record.kind === 'join' ? authorize(caller, 'cluster.admin', null) : authorizeIssue(caller, record.tenant, record.role);
    if (!allowed.ok) return { ok: false, reason: 'forbidden', message: allowed.message };
    if (record.revokedAtMs !== null) return { ok: true, record, alreadyRevoked: true };
    const revoked: TokenRecord = { ...record, revokedAtMs: this.components.wallNowMs() };
    const outcome = await proposeAsync(this.components.store, {
      type: 'txn',
      compare: [{ key, target: 'modRevision', op: '==', operand: kv.modRevision }],
      success: [{ type: 'put', key, value: JSON.stringify(revoked) }],
      failure: [{ type: 'get', key }],
    });
    if (!outcome.ok) return unavailable(outcome);
    if (outcome.result.succeeded !== true) {
      // Changed since we read it: by another revoke, most likely; read again and answer from that.
      const first = outcome.result.results?.[0];
      const now = first?.type === 'get' && first.kv !== null ? parseTokenRecord(first.kv.value) : null;
      if (now !== null && now.revokedAtMs !== null) return { ok: true, record: now, alreadyRevoked: true };
      return { ok: false, reason: 'unavailable', message: `token ${id} changed while it was being revoked; retry` };
    }
    return { ok: true, record: revoked, alreadyRevoked: false };
  }

  /** Tokens the caller may manage: those of `tenant` (null: every tenant, admins only), never their secrets. */
  list(caller: Identity, tenant: string | null): { ok: true; records: TokenRecord[] } | TokenFailure {
    const allowed = authorize(caller, 'tenant.tokens', tenant);
    if (!allowed.ok) return { ok: false, reason: 'forbidden', message: allowed.message };
    const records: TokenRecord[] = [];
    for (const kv of this.components.store.view().range(TOKENS_PREFIX, prefixEnd(TOKENS_PREFIX))) {
      const record = parseTokenRecord(kv.value);
      if (record === null) continue;
      if (record.kind === 'join' ? caller.role === 'admin' && tenant === null : tenant === null || record.tenant === tenant) records.push(record);
    }
    return { ok: true, records };
  }

  /**
   * Put the bootstrap admin token's record if no record has its id yet. A
   * revoked one stays revoked: its record is present, so nothing is written.
   */
  async ensureRecord(record: TokenRecord): Promise<'written' | 'present' | StoreWriteOutcome> {
    const key = tokenKey(record.id);
    if (this.components.store.view().get(key) !== null) return 'present';
    const outcome = await proposeAsync(this.components.store, {
      type: 'txn',
      compare: [{ key, target: 'createRevision', op: '==', operand: 0 }],
      success: [{ type: 'put', key, value: JSON.stringify(record) }],
      failure: [],
    });
    if (!outcome.ok) return outcome;
    return outcome.result.succeeded === true ? 'written' : 'present';
  }

  private validate(request: TokenCreateRequest): string | null {
    if (!request.join && !isTenantName(request.tenant)) return `tenant '${request.tenant}' is not a valid name (lowercase letters, digits, '.', '_', '-'; up to 63)`;
    if (request.name !== null && !TOKEN_NAME_PATTERN.test(request.name)) return `token name '${request.name}' must be 1-64 letters, digits, '.', '_', '@' or '-'`;
    if (request.ttlMs !== null && (!Number.isSafeInteger(request.ttlMs) || request.ttlMs < TOKEN_TTL_MS_MIN || request.ttlMs > TOKEN_TTL_MS_MAX)) {
      return `a TTL must be between ${TOKEN_TTL_MS_MIN / 1000} s and ${TOKEN_TTL_MS_MAX / 86_400_000} days`;
    }
    return null;
  }
}
