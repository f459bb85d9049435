// `debughost token`, `debughost audit` and `debughost init`: the CLI side of
// the trust boundary, over the Admin RPCs (authenticated by a bearer token:
// --token, DEBUGHOST_TOKEN, or the admin token file in the data dir).
import { mkdir } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import { create } from '@bufbuild/protobuf';
import type { AuditRecord } from '../actors/audit.ts';
import { isRole, ROLES } from '../actors/identity.ts';
import { parseToken, parseTtl, TOKEN_TTL_MS_MAX } from '../actors/tokens.ts';
import {
  Admin,
  AuditQueryRequestSchema,
  AuditVerifyRequestSchema,
  TokenCreateRequestSchema,
  TokenListRequestSchema,
  TokenRevokeRequestSchema,
  type TokenInfo,
} from '../proto/gen/admin_pb.ts';
import { callUnary, makeClientConstructor } from '../proto/grpc.ts';
import { clientCredentials, CLIENT_FLAGS, type ClientFlagValues } from './cli-auth.ts';
import { adminTokenPath, clusterSecretPath, ensureAdminToken, ensureClusterSecret, SecretFileError } from './cluster-files.ts';
import { deadlineIn } from './peer-clients.ts';
import { endpointsOf, parse, withEndpoint } from './cli-node.ts';
import { UsageError, parseIntegerFlag } from './usage-error.ts';

const AdminClient = makeClientConstructor(Admin);
type AdminClientType = InstanceType<typeof AdminClient>;

/** A token or audit call answers within this (it is one proposal, or a read of local state). */
const ADMIN_CALL_MS_MAX = 10_000;

const COMMON = { endpoints: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...CLIENT_FLAGS } as const;

/** Call one Admin method on the first endpoint that answers; refusals come back as one line saying what to do. */
function admin<T>(values: { endpoints?: string | undefined } & ClientFlagValues, call: (client: AdminClientType) => Promise<T>): Promise<T> {
  const credentials = clientCredentials(values);
  return withEndpoint(endpointsOf(values.endpoints), (address) => {
    const client = new AdminClient(address, credentials);
    return call(client).finally(() => client.close());
  });
}

const iso = (ms: bigint): string => (ms === 0n ? '-' : new Date(Number(ms)).toISOString());

function tokenLine(info: TokenInfo): string {
  const who = info.kind === 'join' ? 'join token' : `${info.role.padEnd(12)} tenant ${info.tenant}`;
  const state = info.revokedAtMs !== 0n ? `revoked ${iso(info.revokedAtMs)}` : info.expiresAtMs !== 0n ? `expires ${iso(info.expiresAtMs)}` : 'no expiry';
  return `${info.id}  ${info.name.padEnd(24)} ${who}  ${state}`;
}

const infoJson = (info: TokenInfo) => ({
  id: info.id,
  name: info.name,
  kind: info.kind,
  tenant: info.tenant,
  role: info.role,
  createdAtMs: Number(info.createdAtMs),
  expiresAtMs: info.expiresAtMs === 0n ? null : Number(info.expiresAtMs),
  revokedAtMs: info.revokedAtMs === 0n ? null : Number(info.revokedAtMs),
  createdBy: info.createdBy,
});

const TOKEN_HELP = `usage: debughost token create --tenant T --role ROLE [--ttl 30d] [--name N]
       debughost token create --join [--ttl 1h]          (a join token for debughost node --join-token)
       debughost token revoke ID
       debughost token list [--tenant T]
       [--endpoints HOST:PORT,...] [--token TOKEN] [--json] [--tls-cert F --tls-key F --tls-ca F]

Roles: ${ROLES.join(', ')} (docs/security.md has the table). A tenant-admin issues
and revokes tokens of its own tenant up to its own role; an admin any. The new
token is printed once, on stdout; the cluster keeps only its hash. Revoking
takes effect on every node within a second. The caller's token comes from
--token, $DEBUGHOST_TOKEN, or data/admin-token (written by debughost up).`;

export async function tokenCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...COMMON, tenant: { type: 'string' }, role: { type: 'string' }, ttl: { type: 'string' }, name: { type: 'string' }, join: { type: 'boolean' } }, 'token', true);
  const [verb, argument] = positionals;
  if (values.help === true || verb === undefined) {
    process.stdout.write(`${TOKEN_HELP}\n`);
    return verb === undefined && values.help !== true ? 2 : 0;
  }
  const deadline = () => ({ deadline: deadlineIn(ADMIN_CALL_MS_MAX) });
  switch (verb) {
    case 'create': {
      const join = values.join === true;
      if (!join && (values.role === undefined || !isRole(values.role))) throw new UsageError(`--role needs one of ${ROLES.join(', ')}`);
      let ttlMs = 0;
      if (values.ttl !== undefined) {
        const parsed = parseTtl(values.ttl);
        if (parsed === null) throw new UsageError(`--ttl needs a duration such as 90s, 15m, 12h or 30d (at most ${TOKEN_TTL_MS_MAX / 86_400_000} days), got '${values.ttl}'`);
        ttlMs = parsed;
      }
      const request = create(TokenCreateRequestSchema, { tenant: values.tenant ?? '', role: join ? '' : values.role, ttlMs: BigInt(ttlMs), name: values.name ?? '', join });
      const response = await admin(values, (c) => callUnary(c, 'tokenCreate', request, deadline()));
      const info = response.info;
      if (values.json === true) {
        process.stdout.write(`${JSON.stringify({ token: response.token, ...(info === undefined ? {} : infoJson(info)) })}\n`);
      } else {
        process.stdout.write(`${response.token}\n`);
        if (info !== undefined) process.stderr.write(`created ${tokenLine(info)}; the token above is shown only this once\n`);
      }
      return 0;
    }
    case 'revoke': {
      if (argument === undefined) throw new UsageError('usage: debughost token revoke ID (the id is the middle part of dht.<id>.<secret>)');
      const id = parseToken(argument)?.id ?? argument;
      if (!/^[0-9a-f]{16}$/.test(id)) throw new UsageError(`'${argument}' is not a token id (16 hex digits; debughost token list shows them)`);
      const response = await admin(values, (c) => callUnary(c, 'tokenRevoke', create(TokenRevokeRequestSchema, { id }), deadline()));
      if (values.json === true) process.stdout.write(`${JSON.stringify({ alreadyRevoked: response.alreadyRevoked, ...(response.info === undefined ? {} : infoJson(response.info)) })}\n`);
      else process.stdout.write(`${response.alreadyRevoked ? 'already revoked' : 'revoked'} ${response.info === undefined ? id : tokenLine(response.info)}\n`);
      return 0;
    }
    case 'list': {
      const response = await admin(values, (c) => callUnary(c, 'tokenList', create(TokenListRequestSchema, { tenant: values.tenant ?? '' }), deadline()));
      if (values.json === true) process.stdout.write(`${JSON.stringify(response.tokens.map(infoJson))}\n`);
      else for (const info of response.tokens) process.stdout.write(`${tokenLine(info)}\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown token verb '${verb}'; use create, revoke or list`);
  }
}

const AUDIT_HELP = `usage: debughost audit verify
       debughost audit query [--tenant T] [--identity TOKEN_ID_OR_NAME] [--action VERB] [--since T] [--until T] [--limit N] [--cursor C]
       [--endpoints HOST:PORT,...] [--token TOKEN] [--json]

verify walks every node's hash chain from its checkpoint and names the first
broken link (exit 1 when one is broken). query lists records oldest first;
--since/--until take an ISO time or ms since the epoch; --cursor continues
from the line 'next: …' of the previous page.`;

function parseTime(flag: string, text: string | undefined): bigint {
  if (text === undefined) return 0n;
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(ms) || ms < 0) throw new UsageError(`--${flag} needs an ISO time (2025-01-31T12:00:00Z) or ms since the epoch, got '${text}'`);
  return BigInt(ms);
}

export async function auditCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { ...COMMON, tenant: { type: 'string' }, identity: { type: 'string' }, action: { type: 'string' }, since: { type: 'string' }, until: { type: 'string' }, limit: { type: 'string' }, cursor: { type: 'string' } },
    'audit',
    true,
  );
  const [verb] = positionals;
  if (values.help === true || verb === undefined) {
    process.stdout.write(`${AUDIT_HELP}\n`);
    return verb === undefined && values.help !== true ? 2 : 0;
  }
  const deadline = () => ({ deadline: deadlineIn(ADMIN_CALL_MS_MAX) });
  switch (verb) {
    case 'verify': {
      const response = await admin(values, (c) => callUnary(c, 'auditVerify', create(AuditVerifyRequestSchema, {}), deadline()));
      const broken = response.chains.filter((chain) => !chain.ok);
      if (values.json === true) {
        process.stdout.write(`${JSON.stringify({ node: response.node, appliedIndex: Number(response.appliedIndex), ok: broken.length === 0, chains: response.chains.map((c) => ({ node: c.node, ok: c.ok, records: Number(c.records), fromSeq: Number(c.fromSeq), headSeq: Number(c.headSeq), headHash: c.headHash, brokenKey: c.brokenKey, reason: c.reason })) })}\n`);
      } else {
        process.stdout.write(`audit chains as ${response.node} has applied them (index ${response.appliedIndex}):\n`);
        for (const chain of response.chains) {
          process.stdout.write(chain.ok ? `  ${chain.node}: ok, ${chain.records} records from seq ${chain.fromSeq + 1n} to ${chain.headSeq}, head ${chain.headHash.slice(0, 16)}…\n` : `  ${chain.node}: BROKEN at ${chain.brokenKey}: ${chain.reason}\n`);
        }
        if (response.chains.length === 0) process.stdout.write('  (no audit records yet)\n');
      }
      return broken.length === 0 ? 0 : 1;
    }
    case 'query': {
      const limit = values.limit === undefined ? 0 : parseIntegerFlag('limit', values.limit, 1, 1000);
      const request = create(AuditQueryRequestSchema, {
        tenant: values.tenant ?? '',
        identity: values.identity ?? '',
        action: values.action ?? '',
        fromMs: parseTime('since', values.since),
        toMs: parseTime('until', values.until),
        cursor: values.cursor ?? '',
        limit,
      });
      const response = await admin(values, (c) => callUnary(c, 'auditQuery', request, deadline()));
      const records = response.records.map((text) => JSON.parse(text) as AuditRecord);
      if (values.json === true) {
        process.stdout.write(`${JSON.stringify({ records, next: response.next === '' ? null : response.next })}\n`);
        return 0;
      }
      for (const r of records) {
        const who = 'node' in r.actor ? `node ${r.actor.node}` : `${r.actor.tokenName} (${r.actor.role}@${r.actor.tenant})`;
        process.stdout.write(`${new Date(r.timeMs).toISOString()} ${r.node}#${r.seq} ${who} ${r.action}${r.target === null ? '' : ` ${r.target}`}${r.tenant === null ? '' : ` tenant=${r.tenant}`} → ${r.outcome}${r.detail === null ? '' : ` (${r.detail})`}\n`);
      }
      if (response.next !== '') process.stdout.write(`next: ${response.next}\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown audit verb '${verb}'; use verify or query`);
  }
}

const INIT_HELP = `usage: debughost init DIR

Makes what separately started founders share, each file readable by its owner
only: DIR/cluster-secret (peers prove membership with it) and DIR/admin-token
(the first admin token). Give every founder the same two files:
  debughost node … --cluster-secret-file DIR/cluster-secret --admin-token-file DIR/admin-token
Existing files are kept. (debughost up does this by itself in its data dir.)`;

export async function initCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { help: { type: 'boolean', short: 'h' } }, 'init', true);
  const [dirArgument] = positionals;
  if (values.help === true || dirArgument === undefined) {
    process.stdout.write(`${INIT_HELP}\n`);
    return values.help === true ? 0 : 2;
  }
  const dir = resolvePath(dirArgument);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await ensureClusterSecret(clusterSecretPath(dir));
    const { created } = await ensureAdminToken(adminTokenPath(dir), Date.now());
    process.stdout.write(`${created ? 'wrote' : 'kept'} ${clusterSecretPath(dir)} and ${adminTokenPath(dir)} (mode 600)\n`);
    process.stdout.write(`start each founder with: --cluster-secret-file ${clusterSecretPath(dir)} --admin-token-file ${adminTokenPath(dir)}\n`);
    return 0;
  } catch (error) {
    throw new UsageError(error instanceof SecretFileError ? error.message : `cannot write to ${dir}: ${(error as Error).message}`);
  }
}
