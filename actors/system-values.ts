// What each key under a system prefix may hold: one rule per prefix, naming the
// key shapes the cluster writes and the value each must carry. records.ts
// applies them at apply time (systemValueError), so a value that does not fit
// is a recorded rejection on every replica and never reaches an actor, the
// ring, the token verifier or the audit chain half-formed. A key under a
// system prefix that names no record of ours (`projects/x`, `cluster/other`) is
// refused as well: no reader expects it, and nothing writes it.
import { z } from 'zod';
import { parseTokenRecord, TOKENS_PREFIX } from './tokens.ts';
import { eventsRecordSchema, projectRecordSchema, quotaRecordSchema, statusRecordSchema, usageRecordSchema } from './schemas.ts';
import { parseActorKey, SYSTEM_PREFIXES } from './messages.ts';

/** Why a value may not be stored (the words after "value of <key>"), or null when it may. */
export type ValueCheck = (value: string) => string | null;

/** Node ids as `debughost node --id` accepts them. */
const NODE_ID_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;
/**
 * A member's gRPC address as its configuration change gave it (empty when it
 * gave none). Kept loose on purpose: only configuration entries write
 * `members/` (consensus/kv-machine.ts), and refusing one would leave a
 * configured member out of the ring.
 */
const MEMBER_ADDRESS_PATTERN = /^\S{0,1024}$/;
/** `ring/epoch` holds only the reason of the last ring change (its modRevision is the epoch): bounded free text. */
const RING_REASON_CHARS_MAX = 4096;
const TOKEN_ID_PATTERN = /^[0-9a-f]{1,64}$/;
/** Audit record keys end in the zero-padded sequence number (actors/audit.ts SEQ_DIGITS). */
const AUDIT_SEQ_PATTERN = /^\d{12}$/;
const HASH_PATTERN = /^[0-9a-f]{64}$/;
const PORT_MAX = 65_535;

const chainPointSchema = z.object({ seq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER), hash: z.string().regex(HASH_PATTERN) });
const auditRecordSchema = z.object({
  v: z.literal(1),
  node: z.string(),
  seq: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  prev: z.string().regex(HASH_PATTERN),
  hash: z.string().regex(HASH_PATTERN),
  timeMs: z.number().finite(),
  actor: z.object({}).passthrough(),
  action: z.string(),
  tenant: z.string().nullable(),
  target: z.string().nullable(),
  argsDigest: z.string(),
  outcome: z.enum(['ok', 'denied', 'error']),
  detail: z.string().nullable(),
});
const nospaceAlarmSchema = z.object({ stateBytes: z.number().nonnegative(), quotaBytes: z.number().nonnegative(), raisedBy: z.string() });

function json(schema: z.ZodType): ValueCheck {
  return (value) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      return 'is not JSON';
    }
    const result = schema.safeParse(parsed);
    if (result.success) return null;
    const issue = result.error.issues[0];
    return `does not fit its schema: ${issue === undefined ? 'invalid' : `${issue.path.join('.') || '(root)'}: ${issue.message}`}`;
  };
}

const refuse =
  (why: string): ValueCheck =>
  () =>
    why;

const namesNoRecord = (shape: string): ValueCheck => refuse(`is under a system prefix but its key names no record (the cluster writes only ${shape} there)`);

const PROJECT = json(projectRecordSchema);
const STATUS = json(statusRecordSchema);
const EVENTS = json(eventsRecordSchema);
const QUOTA = json(quotaRecordSchema);
const USAGE = json(usageRecordSchema);
const CHAIN_POINT = json(chainPointSchema);
const NOSPACE_ALARM = json(nospaceAlarmSchema);

const memberAddress: ValueCheck = (value) => (MEMBER_ADDRESS_PATTERN.test(value) ? null : 'is not a member address (no spaces, at most 1024 characters)');
const livenessMark: ValueCheck = (value) => (value === 'down' || value === 'draining' ? null : `is '${value.slice(0, 40)}', not a liveness mark (down or draining)`);
const ringReason: ValueCheck = (value) => (value.length <= RING_REASON_CHARS_MAX ? null : `is ${value.length} characters, more than the ${RING_REASON_CHARS_MAX} a ring change reason may have`);
const portOwner: ValueCheck = (value) => (parseActorKey(value)?.kind === 'project' ? null : 'does not name a project (projects/<tenant>/<name>) as the port\'s holder');

const tokenRecord =
  (id: string): ValueCheck =>
  (value) => {
    const record = parseTokenRecord(value);
    if (record === null) return 'is not a token record';
    return record.id === id ? null : `is the record of token '${record.id.slice(0, 64)}', not of '${id}'`;
  };

const auditRecord =
  (node: string, seq: string): ValueCheck =>
  (value) => {
    const shape = json(auditRecordSchema)(value);
    if (shape !== null) return shape;
    const record = JSON.parse(value) as { node: string; seq: number };
    return record.node === node && record.seq === Number(seq) ? null : `is record ${record.seq} of node '${record.node.slice(0, 64)}', not the one its key names`;
  };

function portKeyFits(node: string | undefined, port: string | undefined): boolean {
  return NODE_ID_PATTERN.test(node ?? '') && /^[1-9]\d{0,4}$/.test(port ?? '') && Number(port) <= PORT_MAX;
}

/** The check for `key`'s value; null when `key` is under no system prefix (any value may be stored). */
export function systemValueCheck(key: string): ValueCheck | null {
  const prefix = SYSTEM_PREFIXES.find((candidate) => key.startsWith(candidate));
  if (prefix === undefined) return null;
  const parts = key.split('/');
  const record = parseActorKey(key);
  switch (prefix) {
    case 'members/':
      return parts.length === 2 && NODE_ID_PATTERN.test(parts[1] ?? '') ? memberAddress : namesNoRecord('members/<node id>');
    case 'ring/':
      return key === 'ring/epoch' ? ringReason : namesNoRecord('ring/epoch');
    case 'liveness/':
      return parts.length === 2 && NODE_ID_PATTERN.test(parts[1] ?? '') ? livenessMark : namesNoRecord('liveness/<node id>');
    case 'projects/':
      return record?.kind === 'project' ? PROJECT : namesNoRecord('projects/<tenant>/<name>');
    case 'status/':
      return parseActorKey(`projects/${key.slice(prefix.length)}`)?.kind === 'project' ? STATUS : namesNoRecord('status/<tenant>/<name>');
    case 'events/':
      return parseActorKey(`projects/${key.slice(prefix.length)}`)?.kind === 'project' ? EVENTS : namesNoRecord('events/<tenant>/<name>');
    case 'tenants/': {
      const tenant = parseActorKey(parts.slice(0, 2).join('/'));
      if (parts.length === 3 && tenant?.kind === 'tenant' && parts[2] === 'quota') return QUOTA;
      if (parts.length === 3 && tenant?.kind === 'tenant' && parts[2] === 'usage') return USAGE;
      return namesNoRecord('tenants/<tenant>/quota and tenants/<tenant>/usage');
    }
    case 'ports/':
      return parts.length === 3 && portKeyFits(parts[1], parts[2]) ? portOwner : namesNoRecord('ports/<node id>/<port 1-65535>');
    case TOKENS_PREFIX: {
      const id = key.slice(TOKENS_PREFIX.length);
      return TOKEN_ID_PATTERN.test(id) ? tokenRecord(id) : namesNoRecord('tokens/<hex token id>');
    }
    case 'audit/': {
      if (!NODE_ID_PATTERN.test(parts[1] ?? '')) return namesNoRecord('audit/<node id>/…');
      if (parts.length === 3 && (parts[2] === 'head' || parts[2] === 'checkpoint')) return CHAIN_POINT;
      if (parts.length === 4 && parts[2] === 'r' && AUDIT_SEQ_PATTERN.test(parts[3] ?? '')) return auditRecord(parts[1] as string, parts[3] as string);
      return namesNoRecord('audit/<node>/head, audit/<node>/checkpoint and audit/<node>/r/<seq>');
    }
    case 'cluster/':
      return key === 'cluster/alarms/nospace' ? NOSPACE_ALARM : namesNoRecord('cluster/alarms/nospace');
    default:
      return refuse(`is under the system prefix '${prefix}', which has no value rule yet`);
  }
}
