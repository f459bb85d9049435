// Bearer tokens: high-entropy opaque strings whose SHA-256 alone is kept in the
// replicated state (`tokens/<id>`), so every node verifies a token against its
// own applied copy, and a revocation reaches every node as one committed
// entry. Format `dht.<id>.<secret>` (a client token) or `dhj.<id>.<secret>`
// (a join token): the id is public and names the token in logs and audit; the
// 256-bit secret is shown once, at creation. Why not JWTs: docs/security.md.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { KvView } from './placement.ts';
import { ACTOR_NAME_PATTERN } from './messages.ts';
import { isRole, type Identity, type Role } from './identity.ts';

export const TOKENS_PREFIX = 'tokens/';
export const tokenKey = (id: string): string => `${TOKENS_PREFIX}${id}`;

/** Random bytes of a token id: public, only needs to be unique (64 bits; a collision is caught by the create-if-absent txn). */
export const TOKEN_ID_BYTES = 8;
/** Random bytes of a token secret: 256 bits, beyond guessing, so a fast hash is enough (no password stretching). */
export const TOKEN_SECRET_BYTES = 32;
/** Longest TTL a token may be given: ten years. */
export const TOKEN_TTL_MS_MAX = 10 * 365 * 24 * 3600_000;
/** Shortest TTL: below this a token expires before an operator can paste it. */
export const TOKEN_TTL_MS_MIN = 1_000;
/** Join tokens expire by default after an hour: long enough to start a node, short enough to be harmless later. */
export const JOIN_TOKEN_TTL_MS_DEFAULT = 3600_000;
/** Parsed token records a verifier keeps (one per token in use); past it the cache starts over. */
export const VERIFIER_CACHE_TOKENS_MAX = 10_000;

export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export type TokenKind = 'client' | 'join';
const PREFIX_OF: Record<TokenKind, string> = { client: 'dht', join: 'dhj' };
const TOKEN_PATTERN = /^(dht|dhj)\.([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$/;

interface TokenRecordBase {
  readonly v: 1;
  readonly id: string;
  readonly name: string;
  /** Hex SHA-256 of the secret part. */
  readonly hash: string;
  readonly createdAtMs: number;
  readonly expiresAtMs: number | null;
  readonly revokedAtMs: number | null;
  /** Token id of the issuer, or 'bootstrap' for the first admin token. */
  readonly createdBy: string;
}

export interface ClientTokenRecord extends TokenRecordBase {
  readonly kind: 'client';
  readonly tenant: string;
  readonly role: Role;
}

/** A join token admits a new node (it receives the cluster secret); it is no client identity. */
export interface JoinTokenRecord extends TokenRecordBase {
  readonly kind: 'join';
}

export type TokenRecord = ClientTokenRecord | JoinTokenRecord;

export interface ParsedToken {
  readonly kind: TokenKind;
  readonly id: string;
  readonly secret: string;
}

export function parseToken(text: string): ParsedToken | null {
  const match = TOKEN_PATTERN.exec(text);
  if (match === null) return null;
  return { kind: match[1] === 'dhj' ? 'join' : 'client', id: match[2] as string, secret: match[3] as string };
}

export const hashSecret = (secret: string): Buffer => createHash('sha256').update(secret).digest();

export interface TokenSpec {
  readonly kind: TokenKind;
  /** Client tokens only. */
  readonly tenant?: string;
  readonly role?: Role;
  readonly name?: string;
  readonly ttlMs: number | null;
  readonly createdBy: string;
}

/** A new token from `randomBytes` (injected: crypto.randomBytes on a node), and the record to store for it. */
export function issueToken(spec: TokenSpec, randomBytes: (count: number) => Uint8Array, nowMs: number): { token: string; record: TokenRecord } {
  const id = Buffer.from(randomBytes(TOKEN_ID_BYTES)).toString('hex');
  const secret = Buffer.from(randomBytes(TOKEN_SECRET_BYTES)).toString('base64url');
  return { token: `${PREFIX_OF[spec.kind]}.${id}.${secret}`, record: recordFor(spec, id, secret, nowMs) };
}

/** The record of an existing token string (the bootstrap admin token read from its file). */
export function recordForToken(token: string, spec: TokenSpec, nowMs: number): TokenRecord | null {
  const parsed = parseToken(token);
  if (parsed === null || parsed.kind !== spec.kind) return null;
  return recordFor(spec, parsed.id, parsed.secret, nowMs);
}

function recordFor(spec: TokenSpec, id: string, secret: string, nowMs: number): TokenRecord {
  const base = {
    v: 1 as const,
    id,
    hash: hashSecret(secret).toString('hex'),
    createdAtMs: nowMs,
    expiresAtMs: spec.ttlMs === null ? null : nowMs + spec.ttlMs,
    revokedAtMs: null,
    createdBy: spec.createdBy,
  };
  if (spec.kind === 'join') return { ...base, kind: 'join', name: spec.name ?? `join-${id.slice(0, 6)}` };
  const role = spec.role ?? 'viewer';
  return { ...base, kind: 'client', tenant: spec.tenant ?? 'default', role, name: spec.name ?? `${role}-${id.slice(0, 6)}` };
}

/** Check a stored value: null unless it is a well-formed record (a corrupt record never authenticates anyone). */
export function parseTokenRecord(value: string): TokenRecord | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return null;
  }
  const r = parsed as Omit<Partial<ClientTokenRecord>, 'kind'> & { kind?: unknown };
  const nullableNumber = (x: unknown): boolean => x === null || (typeof x === 'number' && Number.isFinite(x));
  const baseOk =
    typeof r === 'object' &&
    r !== null &&
    r.v === 1 &&
    typeof r.id === 'string' &&
    typeof r.name === 'string' &&
    typeof r.hash === 'string' &&
    /^[0-9a-f]{64}$/.test(r.hash) &&
    typeof r.createdAtMs === 'number' &&
    nullableNumber(r.expiresAtMs) &&
    nullableNumber(r.revokedAtMs) &&
    typeof r.createdBy === 'string';
  if (!baseOk) return null;
  if (r.kind === 'join') return r as unknown as JoinTokenRecord;
  if (r.kind === 'client' && typeof r.tenant === 'string' && typeof r.role === 'string' && isRole(r.role)) return r as ClientTokenRecord;
  return null;
}

export type TokenFailureReason = 'missing' | 'malformed' | 'unknown' | 'revoked' | 'expired' | 'wrongKind';

export type VerifyOutcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: TokenFailureReason; readonly message: string };

export type BearerOutcome = VerifyOutcome<Identity>;

const HOW_TO_GET_ONE = 'debughost up prints an admin token; `debughost token create` issues more';

/**
 * Verifies tokens against the local applied state. Only the hash of the
 * secret is compared, in constant time; a record parsed once is reused until
 * its key's modRevision changes (a revocation rewrites it).
 */
export class TokenVerifier {
  readonly #cache = new Map<string, { readonly modRevision: number; readonly record: TokenRecord | null; readonly hash: Buffer | null }>();

  constructor(
    private readonly view: () => KvView,
    private readonly wallNowMs: () => number,
  ) {}

  /** The value of an HTTP `Authorization` header (or gRPC metadata of that name). */
  authenticateBearer(header: string | undefined | null): BearerOutcome {
    if (header === undefined || header === null || header === '') {
      return { ok: false, reason: 'missing', message: `no bearer token: send 'Authorization: Bearer <token>' (${HOW_TO_GET_ONE})` };
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match === null) return { ok: false, reason: 'malformed', message: `the Authorization header must be 'Bearer <token>' (${HOW_TO_GET_ONE})` };
    const verified = this.verify(match[1] as string, 'client');
    if (!verified.ok) return verified;
    const record = verified.value as ClientTokenRecord;
    return { ok: true, value: { tokenId: record.id, tokenName: record.name, tenant: record.tenant, role: record.role } };
  }

  /** A join token presented by a node that wants to join. */
  verifyJoinToken(token: string): VerifyOutcome<JoinTokenRecord> {
    return this.verify(token, 'join') as VerifyOutcome<JoinTokenRecord>;
  }

  private verify(token: string, kind: TokenKind): VerifyOutcome<TokenRecord> {
    const parsed = parseToken(token);
    if (parsed === null) return { ok: false, reason: 'malformed', message: `that is not a debughost token (they look like dht.<id>.<secret>; ${HOW_TO_GET_ONE})` };
    if (parsed.kind !== kind) {
      return { ok: false, reason: 'wrongKind', message: kind === 'join' ? 'a client token cannot join a node; issue one with `debughost token create --join`' : 'a join token is no client credential; use a client token' };
    }
    const entry = this.lookup(parsed.id);
    // Hash first, whatever the lookup found, so the time taken does not depend on the secret.
    const presented = hashSecret(parsed.secret);
    if (entry === null || entry.record === null || entry.hash === null || entry.record.kind !== kind) {
      return { ok: false, reason: 'unknown', message: `token ${parsed.id} is not known to this cluster (${HOW_TO_GET_ONE})` };
    }
    if (!timingSafeEqual(presented, entry.hash)) return { ok: false, reason: 'unknown', message: `token ${parsed.id} is not known to this cluster (${HOW_TO_GET_ONE})` };
    const record = entry.record;
    if (record.revokedAtMs !== null) return { ok: false, reason: 'revoked', message: `token ${record.id} (${record.name}) was revoked; ask for a new one` };
    if (record.expiresAtMs !== null && this.wallNowMs() >= record.expiresAtMs) {
      return { ok: false, reason: 'expired', message: `token ${record.id} (${record.name}) expired at ${new Date(record.expiresAtMs).toISOString()}; ask for a new one` };
    }
    return { ok: true, value: record };
  }

  private lookup(id: string): { record: TokenRecord | null; hash: Buffer | null } | null {
    const kv = this.view().get(tokenKey(id));
    if (kv === null) {
      this.#cache.delete(id);
      return null;
    }
    const cached = this.#cache.get(id);
    if (cached !== undefined && cached.modRevision === kv.modRevision) return cached;
    const record = parseTokenRecord(kv.value);
    const entry = { modRevision: kv.modRevision, record, hash: record === null ? null : Buffer.from(record.hash, 'hex') };
    if (this.#cache.size >= VERIFIER_CACHE_TOKENS_MAX) this.#cache.clear();
    this.#cache.set(id, entry);
    return entry;
  }
}

/** "30d", "12h", "15m", "90s" (or a bare number of seconds) in milliseconds; null when malformed or out of bounds. */
export function parseTtl(text: string): number | null {
  const match = /^(\d{1,9})([smhd]?)$/.exec(text.trim());
  if (match === null) return null;
  const unitMs = { '': 1000, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
  const ms = Number(match[1]) * unitMs;
  return ms >= TOKEN_TTL_MS_MIN && ms <= TOKEN_TTL_MS_MAX ? ms : null;
}

/** Tenant names follow the actor names (they appear in keys). */
export const isTenantName = (tenant: string): boolean => ACTOR_NAME_PATTERN.test(tenant);
