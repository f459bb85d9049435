// One schema per message, shared by every boundary: the MCP tools' inputs, the
// forwarded calls (actors/wire.ts checks decoded requests against the same
// bounds), and every record read back from the replicated state
// (actors/records.ts). Bounds live here, named, once.
import { z } from 'zod';
import { ACTOR_NAME_PATTERN, PROJECT_EVENT_KINDS } from './messages.ts';

/** Limits of one project spec and of the calls about a project; each says what a caller sees when it is hit. */
export const SPEC_LIMITS = Object.freeze({
  commandCharsMax: 8192,
  imageCharsMax: 512,
  cwdCharsMax: 4096,
  envEntriesMax: 256,
  envNameCharsMax: 256,
  envValueCharsMax: 65_536,
  /** All env names and values of one spec together: bounds the record below the KV value limit. */
  envCharsMax: 256 * 1024,
  portsMax: 16,
  regexCharsMax: 1000,
  pathCharsMax: 8192,
  memoryMbMin: 16,
  memoryMbMax: 65_536,
});

export const CALL_LIMITS = Object.freeze({
  waitMsMax: 300_000,
  execMsMax: 600_000,
  httpMsMax: 120_000,
  httpBodyCharsMax: 1024 * 1024,
  httpHeadersMax: 64,
  logLinesMax: 1000,
  eventsMax: 200,
  eventsWaitMsMax: 60_000,
  /** Ids of recent changes a project record remembers for idempotent retries. */
  requestIdsRemembered: 8,
  requestIdCharsMax: 128,
  quotaProjectsMax: 100_000,
  quotaPortsMax: 100_000,
  quotaMemoryMbMax: 10_000_000,
  quotaStoredMbMax: 1_000_000,
});

export const nameSchema = z
  .string()
  .regex(ACTOR_NAME_PATTERN, 'use 1-63 characters: lower-case letters, digits, ".", "_" or "-", starting with a letter or digit');
export const portNameSchema = z.string().regex(/^[a-z][a-z0-9_]{0,30}$/, 'port names are lower-case letters, digits and "_", starting with a letter');
const envNameSchema = z.string().max(SPEC_LIMITS.envNameCharsMax).regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'env names are letters, digits and "_", not starting with a digit');
export const requestIdSchema = z
  .string()
  .min(1)
  .max(CALL_LIMITS.requestIdCharsMax)
  .regex(/^[A-Za-z0-9._:-]+$/, 'request ids are letters, digits, ".", "_", ":" or "-"');

export const healthCheckSchema = z.union([
  z.object({ type: z.literal('http'), path: z.string().startsWith('/').max(SPEC_LIMITS.pathCharsMax).default('/'), port: portNameSchema.default('default') }),
  z.object({ type: z.literal('tcp'), port: portNameSchema.default('default') }),
  z.object({ type: z.literal('log'), regex: z.string().min(1).max(SPEC_LIMITS.regexCharsMax) }),
]);

const envSchema = z
  .record(envNameSchema, z.string().max(SPEC_LIMITS.envValueCharsMax))
  .refine((env) => Object.keys(env).length <= SPEC_LIMITS.envEntriesMax, `at most ${SPEC_LIMITS.envEntriesMax} env variables`)
  .refine(
    (env) => Object.entries(env).reduce((sum, [key, value]) => sum + key.length + value.length, 0) <= SPEC_LIMITS.envCharsMax,
    `env names and values together must stay under ${SPEC_LIMITS.envCharsMax} characters; keep large data in files`,
  );

// ---- tool inputs (MCP) ----------------------------------------------------------------

export const projectRefShape = {
  name: nameSchema.describe('project name'),
  tenant: nameSchema.optional().describe('tenant; defaults to your token\'s tenant (only an admin token may name another)'),
};
const requestIdField = requestIdSchema.optional().describe('your id for this change: a retry with the same id is applied once');

export const startShape = {
  ...projectRefShape,
  command: z.string().min(1).max(SPEC_LIMITS.commandCharsMax).optional().describe('shell command to run (e.g. "npm run dev"); with image, runs inside the container instead of its default'),
  image: z.string().min(1).max(SPEC_LIMITS.imageCharsMax).optional().describe('Docker image already present on the nodes: runs the project in a container'),
  cwd: z.string().max(SPEC_LIMITS.cwdCharsMax).optional().describe('working directory (process runtime); must exist on the owner node'),
  env: envSchema.optional().describe('environment variables'),
  ports: z.array(portNameSchema).max(SPEC_LIMITS.portsMax).optional().describe('named ports to allocate; "default" is injected as PORT, others as PORT_<NAME>. Default ["default"]'),
  restart: z.enum(['never', 'on-failure', 'always']).optional().describe('restart policy; default on-failure'),
  healthCheck: healthCheckSchema.optional().describe('how to tell the project is up: http path, tcp port, or a log regex'),
  memoryMb: z.number().int().min(SPEC_LIMITS.memoryMbMin).max(SPEC_LIMITS.memoryMbMax).optional().describe('memory limit'),
  waitMs: z.number().int().min(0).max(CALL_LIMITS.waitMsMax).optional().describe('wait up to this long for the health check (or for the process to be running); default 30000'),
  ifVersion: z.number().int().min(0).optional().describe('only update if the project\'s current version is this (0 = must not exist)'),
  requestId: requestIdField,
};
export const startSchema = z.object(startShape);
export type StartInput = z.infer<typeof startSchema>;

export const changeShape = { ...projectRefShape, ifVersion: startShape.ifVersion, requestId: requestIdField };
export const restartShape = { ...projectRefShape, waitMs: startShape.waitMs, requestId: requestIdField };

export const logsShape = {
  ...projectRefShape,
  tail: z.number().int().min(1).max(CALL_LIMITS.logLinesMax).optional().describe('last N lines (default 100)'),
  since: z.string().max(32).optional().describe('cursor from a previous call: lines after it'),
  grep: z.string().max(SPEC_LIMITS.regexCharsMax).optional().describe('only lines matching this regular expression (RE2 syntax)'),
  stream: z.enum(['stdout', 'stderr', 'both']).optional(),
  limit: z.number().int().min(1).max(CALL_LIMITS.logLinesMax).optional().describe('most lines per page (default 200)'),
};

export const waitShape = {
  ...projectRefShape,
  logRegex: z.string().min(1).max(SPEC_LIMITS.regexCharsMax).optional().describe('wait until a log line of the current run matches'),
  port: portNameSchema.optional().describe('wait until this named port accepts TCP connections'),
  httpPath: z.string().startsWith('/').max(SPEC_LIMITS.pathCharsMax).optional().describe('wait until GET on the default port (or `port`) answers 2xx/3xx'),
  timeoutMs: z.number().int().min(100).max(CALL_LIMITS.waitMsMax).optional().describe('default 30000'),
};

export const execShape = {
  ...projectRefShape,
  command: z.string().min(1).max(SPEC_LIMITS.commandCharsMax).describe('shell command, run with the project\'s cwd and env (inside its container for Docker)'),
  timeoutMs: z.number().int().min(100).max(CALL_LIMITS.execMsMax).optional().describe('default 60000'),
};

export const httpShape = {
  ...projectRefShape,
  port: portNameSchema.optional().describe('named port (default "default")'),
  method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']).optional(),
  path: z.string().startsWith('/').max(SPEC_LIMITS.pathCharsMax).optional(),
  headers: z
    .record(z.string().max(256), z.string().max(8192))
    .refine((headers) => Object.keys(headers).length <= CALL_LIMITS.httpHeadersMax, `at most ${CALL_LIMITS.httpHeadersMax} headers`)
    .optional(),
  body: z.string().max(CALL_LIMITS.httpBodyCharsMax).optional(),
  timeoutMs: z.number().int().min(100).max(CALL_LIMITS.httpMsMax).optional(),
};

export const eventsShape = {
  ...projectRefShape,
  since: z.number().int().min(0).optional().describe('cursor: events after this seq (default 0: all kept)'),
  kinds: z.array(z.enum(PROJECT_EVENT_KINDS as [string, ...string[]])).max(PROJECT_EVENT_KINDS.length).optional().describe('only these kinds'),
  limit: z.number().int().min(1).max(CALL_LIMITS.eventsMax).optional(),
  waitMs: z.number().int().min(0).max(CALL_LIMITS.eventsWaitMsMax).optional().describe('long poll: wait up to this long for a new event when none is there'),
};

export const quotaSetShape = {
  tenant: nameSchema.optional(),
  projects: z.number().int().min(0).max(CALL_LIMITS.quotaProjectsMax).optional(),
  ports: z.number().int().min(0).max(CALL_LIMITS.quotaPortsMax).optional(),
  memoryMb: z.number().int().min(0).max(CALL_LIMITS.quotaMemoryMbMax).optional(),
  storedMb: z.number().int().min(0).max(CALL_LIMITS.quotaStoredMbMax).optional().describe('MB of stored specs (running or stopped)'),
};

// ---- stored records (read back from the replicated state) ---------------------------

export const specRecordSchema = z.object({
  command: z.string().min(1).max(SPEC_LIMITS.commandCharsMax).nullable(),
  image: z.string().min(1).max(SPEC_LIMITS.imageCharsMax).nullable(),
  cwd: z.string().max(SPEC_LIMITS.cwdCharsMax).nullable(),
  env: envSchema,
  ports: z.array(portNameSchema).max(SPEC_LIMITS.portsMax),
  restart: z.enum(['never', 'on-failure', 'always']),
  healthCheck: healthCheckSchema.nullable(),
  memoryBytes: z.number().int().min(0).max(SPEC_LIMITS.memoryMbMax * 1024 * 1024),
}).refine((spec) => spec.command !== null || spec.image !== null, 'a spec needs a command or an image');

export const projectRecordSchema = z.object({
  spec: specRecordSchema,
  desired: z.enum(['running', 'stopped']),
  generation: z.number().int().min(0),
  requests: z.array(requestIdSchema).max(CALL_LIMITS.requestIdsRemembered).default([]),
});

const safeCount = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const statusRecordSchema = z.object({
  state: z.enum(['starting', 'running', 'exited', 'crashLoop', 'stopped', 'failed', 'unknown']),
  node: z.string().min(1).max(64),
  epoch: safeCount,
  ports: z.record(portNameSchema, z.number().int().min(1).max(65_535)),
  generation: safeCount,
  restarts: safeCount,
  exitCode: z.number().int().nullable(),
  error: z.string().max(4096).nullable(),
  /** Written by the named node after its copy stopped, once it no longer owns the project (actors/handoff.ts). */
  released: z.boolean().optional(),
});

export const quotaRecordSchema = z.object({
  projects: safeCount,
  ports: safeCount,
  memoryBytes: safeCount,
  storedBytes: safeCount.default(64 * 1024 ** 2),
});

export const usageRecordSchema = z.object({
  projects: safeCount,
  ports: safeCount,
  memoryBytes: safeCount,
  storedBytes: safeCount.default(0),
});

export const eventsRecordSchema = z.object({
  events: z
    .array(
      z.object({
        seq: safeCount,
        timeMs: safeCount,
        kind: z.enum(PROJECT_EVENT_KINDS as [string, ...string[]]),
        node: z.string().min(1).max(64),
        exitCode: z.number().int().nullable(),
        signal: z.string().max(32).nullable(),
        detail: z.string().max(1024),
      }),
    )
    .max(1000),
});

// ---- requests as actors take them (forwarded calls are checked against this) ------------

const ifVersionField = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional();
const specSchema = specRecordSchema;

export const actorRequestSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('start'), spec: specSchema, ifVersion: ifVersionField, waitMs: z.number().int().min(0).max(CALL_LIMITS.waitMsMax) }),
  z.object({ type: z.literal('stop'), ifVersion: ifVersionField }),
  z.object({ type: z.literal('restart'), waitMs: z.number().int().min(0).max(CALL_LIMITS.waitMsMax) }),
  z.object({ type: z.literal('remove'), ifVersion: ifVersionField }),
  z.object({ type: z.literal('status') }),
  z.object({
    type: z.literal('logs'),
    query: z.object({
      tail: z.number().int().min(1).max(CALL_LIMITS.logLinesMax).nullable(),
      since: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable(),
      grep: z.string().max(SPEC_LIMITS.regexCharsMax).nullable(),
      stream: z.enum(['stdout', 'stderr', 'both']),
      limit: z.number().int().min(1).max(CALL_LIMITS.logLinesMax),
    }),
  }),
  z.object({ type: z.literal('wait'), condition: healthCheckSchema.nullable(), timeoutMs: z.number().int().min(1).max(CALL_LIMITS.waitMsMax) }),
  z.object({ type: z.literal('exec'), command: z.string().min(1).max(SPEC_LIMITS.commandCharsMax), timeoutMs: z.number().int().min(1).max(CALL_LIMITS.execMsMax) }),
  z.object({
    type: z.literal('http'),
    call: z.object({
      port: portNameSchema,
      method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']),
      path: z.string().startsWith('/').max(SPEC_LIMITS.pathCharsMax),
      headers: httpShape.headers.unwrap(),
      body: z.string().max(CALL_LIMITS.httpBodyCharsMax).nullable(),
      timeoutMs: z.number().int().min(1).max(CALL_LIMITS.httpMsMax),
    }),
  }),
  z.object({
    type: z.literal('events'),
    since: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    kinds: z.array(z.enum(PROJECT_EVENT_KINDS as [string, ...string[]])).max(PROJECT_EVENT_KINDS.length),
    limit: z.number().int().min(1).max(CALL_LIMITS.eventsMax),
    waitMs: z.number().int().min(0).max(CALL_LIMITS.eventsWaitMsMax),
  }),
  z.object({ type: z.literal('usage') }),
  z.object({ type: z.literal('list') }),
  z.object({
    type: z.literal('quotaSet'),
    quota: z.object({
      projects: z.number().int().min(0).max(CALL_LIMITS.quotaProjectsMax),
      ports: z.number().int().min(0).max(CALL_LIMITS.quotaPortsMax),
      memoryBytes: z.number().int().min(0).max(CALL_LIMITS.quotaMemoryMbMax * 1024 * 1024),
      storedBytes: z.number().int().min(0).max(CALL_LIMITS.quotaStoredMbMax * 1024 * 1024),
    }),
  }),
]);
