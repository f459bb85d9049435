// Tokens: issued, verified against the state by hash, refused when wrong, revoked, expired, of the wrong kind or malformed; records parsed strictly; TTLs parsed.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { KvStateMachine, encodeCommand, type KvCommand } from '../consensus/kv-state-machine.ts';
import type { LogIndex } from '../consensus/types.ts';
import { issueToken, parseToken, parseTokenRecord, parseTtl, recordForToken, tokenKey, TokenVerifier, type TokenRecord } from './tokens.ts';

/** A KV store fed commands directly, as the applied state of one node. */
function store(): { kv: KvStateMachine; apply: (command: KvCommand) => void } {
  const kv = new KvStateMachine();
  let index = 0;
  return { kv, apply: (command) => void kv.apply(++index as LogIndex, encodeCommand(command)) };
}

const put = (record: TokenRecord): KvCommand => ({ type: 'put', key: tokenKey(record.id), value: JSON.stringify(record) });

test('an issued token verifies to its identity; the stored record holds only the hash', (t) => {
  const { kv, apply } = store();
  let now = 1_000;
  const { token, record } = issueToken({ kind: 'client', tenant: 'alice', role: 'developer', name: 'ci', ttlMs: null, createdBy: 'x' }, randomBytes, now);
  apply(put(record));
  const verifier = new TokenVerifier(() => kv, () => now);
  const outcome = verifier.authenticateBearer(`Bearer ${token}`);
  t.deepEqual(outcome, { ok: true, value: { tokenId: record.id, tokenName: 'ci', tenant: 'alice', role: 'developer' } });
  const stored = kv.get(tokenKey(record.id))?.value ?? '';
  const secret = parseToken(token)?.secret ?? 'none';
  t.false(stored.includes(secret), 'the secret is not in the state');
  t.regex(token, /^dht\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$/);
  now += 1;
  t.true(verifier.authenticateBearer(`bearer   ${token}`).ok, 'the scheme is case-insensitive');
});

test('refusals: missing, not Bearer, malformed, unknown id, wrong secret of the same length, revoked, expired, a join token as a client token', (t) => {
  const { kv, apply } = store();
  let now = 10_000;
  const verifier = new TokenVerifier(() => kv, () => now);
  const { token, record } = issueToken({ kind: 'client', tenant: 'alice', role: 'viewer', ttlMs: 60_000, createdBy: 'x' }, randomBytes, now);
  apply(put(record));
  const reason = (header: string | undefined): string => {
    const outcome = verifier.authenticateBearer(header);
    return outcome.ok ? 'ok' : outcome.reason;
  };
  t.is(reason(undefined), 'missing');
  t.is(reason(''), 'missing');
  t.is(reason(`Basic ${token}`), 'malformed');
  t.is(reason('Bearer hello'), 'malformed');
  const parsed = parseToken(token);
  if (parsed === null) return t.fail('token does not parse');
  const otherSecret = `${parsed.secret.slice(0, -1)}${parsed.secret.endsWith('A') ? 'B' : 'A'}`;
  t.is(reason(`Bearer dht.${parsed.id}.${otherSecret}`), 'unknown', 'a wrong secret is refused like an unknown token');
  t.is(reason(`Bearer dht.0123456789abcdef.${parsed.secret}`), 'unknown');
  t.is(reason(`Bearer dhj.${parsed.id}.${parsed.secret}`), 'wrongKind');
  t.is(reason(`Bearer ${token}`), 'ok');
  now += 60_000;
  t.is(reason(`Bearer ${token}`), 'expired');
  now -= 30_000;
  apply(put({ ...record, revokedAtMs: now }));
  const revoked = verifier.authenticateBearer(`Bearer ${token}`);
  t.is(revoked.ok ? 'ok' : revoked.reason, 'revoked', 'a revocation is seen at once: the cache follows the modRevision');
  if (!revoked.ok) t.regex(revoked.message, /was revoked; ask for a new one/);
  // A join token verifies as a join token and never as a client.
  const join = issueToken({ kind: 'join', ttlMs: 60_000, createdBy: 'x' }, randomBytes, now);
  apply(put(join.record));
  t.true(verifier.verifyJoinToken(join.token).ok);
  t.is(reason(`Bearer ${join.token}`), 'wrongKind');
  const asJoin = verifier.verifyJoinToken(token);
  t.is(asJoin.ok ? 'ok' : asJoin.reason, 'wrongKind');
});

test('a corrupt record authenticates no one', (t) => {
  const { kv, apply } = store();
  const verifier = new TokenVerifier(() => kv, () => 0);
  const { token, record } = issueToken({ kind: 'client', tenant: 'alice', role: 'admin', ttlMs: null, createdBy: 'x' }, randomBytes, 0);
  for (const value of ['not json', JSON.stringify({ ...record, role: 'root' }), JSON.stringify({ ...record, hash: 'short' }), JSON.stringify({ ...record, v: 2 }), 'null']) {
    apply({ type: 'put', key: tokenKey(record.id), value });
    const outcome = verifier.authenticateBearer(`Bearer ${token}`);
    t.false(outcome.ok, value);
    t.is(parseTokenRecord(value), null, value);
  }
});

test('the bootstrap record of a token string matches what issueToken stores; parseTtl reads s, m, h, d within bounds', (t) => {
  const { token, record } = issueToken({ kind: 'client', tenant: 'default', role: 'admin', ttlMs: null, createdBy: 'bootstrap', name: 'admin (bootstrap)' }, randomBytes, 5);
  t.deepEqual(recordForToken(token, { kind: 'client', tenant: 'default', role: 'admin', ttlMs: null, createdBy: 'bootstrap', name: 'admin (bootstrap)' }, 5), record);
  t.is(recordForToken('nope', { kind: 'client', ttlMs: null, createdBy: 'x' }, 0), null);
  t.is(parseTtl('30d'), 30 * 86_400_000);
  t.is(parseTtl('12h'), 12 * 3600_000);
  t.is(parseTtl('15m'), 15 * 60_000);
  t.is(parseTtl('90s'), 90_000);
  t.is(parseTtl('90'), 90_000);
  t.is(parseTtl('0s'), null);
  t.is(parseTtl('4000d'), null);
  t.is(parseTtl('1w'), null);
  t.is(parseTtl('-5m'), null);
});
