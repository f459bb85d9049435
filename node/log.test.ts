// Logs carry no secrets: objects with tokens, Authorization headers, env maps, passwords and a token inside a message or an error come out redacted, and ids and names stay readable.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { issueToken } from '../actors/tokens.ts';
import { pino } from 'pino';
import { createLogger } from './log.ts';

test('no token, authorization header, env value or password appears in the log output', (t) => {
  const lines: string[] = [];
  const log = createLogger('n1', 'debug', { write: (line: string) => void lines.push(line) });
  const { token } = issueToken({ kind: 'client', tenant: 'alice', role: 'admin', ttlMs: null, createdBy: 'x' }, randomBytes, 0);
  const join = issueToken({ kind: 'join', ttlMs: null, createdBy: 'x' }, randomBytes, 0).token;
  const secrets = [token, join, 'sk-live-4242', 'hunter2', 'cookie-value-77', 'Bearer opaque-xyz', 'proof-abcdef'];
  log.info({ token, tokenId: 'public-id', name: 'ci' }, 'issued a token');
  log.info({ headers: { authorization: `Bearer ${token}`, Cookie: 'cookie-value-77', 'x-debughost-peer-proof': 'proof-abcdef' } }, 'request');
  log.warn({ request: { headers: { Authorization: 'Bearer opaque-xyz' } } }, 'nested deeper');
  log.info({ spec: { command: 'npm start', env: { API_KEY: 'sk-live-4242', PORT: '3000' } } }, 'starting');
  log.info({ user: { password: 'hunter2' }, args: ['--join-token', join] }, 'flags');
  log.error({ error: new Error(`refused ${token}`) }, `failed with ${token}`);
  log.info(`plain message with ${join}`);
  const output = lines.join('');
  t.is(lines.length, 7);
  for (const secret of secrets) t.false(output.includes(secret), `${secret.slice(0, 12)}… leaked: ${output}`);
  // What is not secret stays.
  t.true(output.includes('public-id'));
  t.true(output.includes('"API_KEY":"[redacted]"'), 'env names stay, values go');
  t.true(output.includes('npm start'));
  t.true(output.includes('[redacted]'));
});

test('a planted leak is caught: the same check fails on a logger without redaction', (t) => {
  const lines: string[] = [];
  // What the node logged with before: pino without the redacting formatter and hook.
  const plain = pino({ base: { node: 'n1' } }, { write: (line: string) => void lines.push(line) });
  const { token } = issueToken({ kind: 'client', tenant: 'alice', role: 'admin', ttlMs: null, createdBy: 'x' }, randomBytes, 0);
  plain.info({ token }, 'issued');
  t.true(lines.join('').includes(token), 'without redaction the token is in the output, so the test above would fail');
});
