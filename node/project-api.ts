// What the MCP front end asks of the cluster, as zod schemas (inputs validated
// once, at the edge) and one interface. The cluster implementation routes each
// call to the project's owner; the MCP layer only maps it to tools.
import { z } from 'zod';

/** Project and tenant names: safe in keys, file names, labels and URIs. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const nameSchema = z
  .string()
  .regex(NAME_PATTERN, 'use 1-63 characters: lower-case letters, digits, ".", "_" or "-", starting with a letter or digit');
const portNameSchema = z.string().regex(/^[a-z][a-z0-9_]{0,30}$/, 'port names are lower-case letters, digits and "_", starting with a letter');

export const healthCheckSchema = z.union([
  z.object({ type: z.literal('http'), path: z.string().startsWith('/').default('/'), port: portNameSchema.default('default') }),
  z.object({ type: z.literal('tcp'), port: portNameSchema.default('default') }),
  z.object({ type: z.literal('log'), regex: z.string().min(1).max(1000) }),
]);
export type HealthCheck = z.infer<typeof healthCheckSchema>;

export const projectRefShape = {
  name: nameSchema.describe('project name'),
  tenant: nameSchema.optional().describe('tenant; defaults to the caller\'s tenant'),
};

export const startShape = {
  ...projectRefShape,
  command: z.string().min(1).max(8192).optional().describe('shell command to run (e.g. "npm run dev"); with image, runs inside the container instead of its default'),
  image: z.string().min(1).max(512).optional().describe('Docker image already present on the nodes: runs the project in a container'),
  cwd: z.string().max(4096).optional().describe('working directory (process runtime); must exist on the owner node'),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string().max(65536)).optional().describe('environment variables'),
  ports: z.array(portNameSchema).max(16).optional().describe('named ports to allocate; "default" is injected as PORT, others as PORT_<NAME>. Default ["default"]'),
  restart: z.enum(['never', 'on-failure', 'always']).optional().describe('restart policy; default on-failure'),
  healthCheck: healthCheckSchema.optional().describe('how to tell the project is up: http path, tcp port, or a log regex'),
  memoryMb: z.number().int().min(16).max(65536).optional().describe('memory limit (Docker runtime)'),
  waitMs: z.number().int().min(0).max(300_000).optional().describe('wait up to this long for the health check (or for the process to be running); default 30000'),
  ifVersion: z.number().int().min(0).optional().describe('only update if the project\'s current version is this (0 = must not exist)'),
};
export const startSchema = z.object(startShape);
export type StartInput = z.infer<typeof startSchema>;

export const projectViewShape = {
  tenant: z.string(),
  name: z.string(),
  version: z.number().describe('version of the desired spec; pass as ifVersion to update safely'),
  desired: z.enum(['running', 'stopped']),
  state: z.string().describe('starting, running, exited, crashLoop, stopped, failed, or unknown'),
  owner: z.string().nullable().describe('node that owns and runs the project'),
  runtime: z.string(),
  command: z.string().nullable(),
  image: z.string().nullable(),
  pid: z.number().nullable(),
  containerId: z.string().nullable(),
  ports: z.record(z.string(), z.number()),
  urls: z.record(z.string(), z.string()),
  restarts: z.number(),
  exitCode: z.number().nullable(),
  signal: z.string().nullable(),
  startedAt: z.string().nullable(),
  uptimeSeconds: z.number().nullable(),
  healthy: z.boolean().nullable(),
  error: z.string().nullable(),
};
export const projectViewSchema = z.object(projectViewShape);
export type ProjectView = z.infer<typeof projectViewSchema>;

export const logsShape = {
  ...projectRefShape,
  tail: z.number().int().min(1).max(1000).optional().describe('last N lines (default 100)'),
  since: z.string().optional().describe('cursor from a previous call: lines after it'),
  grep: z.string().max(1000).optional().describe('only lines matching this regular expression'),
  stream: z.enum(['stdout', 'stderr', 'both']).optional(),
  limit: z.number().int().min(1).max(1000).optional().describe('most lines per page (default 200)'),
};
export const logsSchema = z.object(logsShape);
export type LogsInput = z.infer<typeof logsSchema>;
export const logLineSchema = z.object({ seq: z.number(), time: z.string(), stream: z.enum(['stdout', 'stderr']), line: z.string() });
export type LogLine = z.infer<typeof logLineSchema>;
export const logsResultShape = {
  lines: z.array(logLineSchema),
  nextCursor: z.string().describe('pass as since to get the lines after these'),
  more: z.boolean().describe('more lines matched than this page holds'),
};
export type LogsResult = { lines: LogLine[]; nextCursor: string; more: boolean };

export const waitShape = {
  ...projectRefShape,
  logRegex: z.string().max(1000).optional().describe('wait until a log line matches'),
  port: portNameSchema.optional().describe('wait until this named port accepts TCP connections'),
  httpPath: z.string().startsWith('/').optional().describe('wait until GET on the default port (or `port`) answers 2xx/3xx'),
  timeoutMs: z.number().int().min(100).max(300_000).optional().describe('default 30000'),
};
export const waitSchema = z.object(waitShape);
export type WaitInput = z.infer<typeof waitSchema>;
export const waitResultShape = {
  ok: z.boolean(),
  condition: z.string(),
  elapsedMs: z.number(),
  detail: z.string().describe('what matched, or why it did not'),
  lastLines: z.array(z.string()).describe('the last log lines, to show why not'),
  status: projectViewSchema,
};
export type WaitResult = { ok: boolean; condition: string; elapsedMs: number; detail: string; lastLines: string[]; status: ProjectView };

export const execShape = {
  ...projectRefShape,
  command: z.string().min(1).max(8192).describe('shell command, run with the project\'s cwd and env (inside its container for Docker)'),
  timeoutMs: z.number().int().min(100).max(600_000).optional().describe('default 60000'),
};
export const execSchema = z.object(execShape);
export type ExecInput = z.infer<typeof execSchema>;
export const execResultShape = {
  exitCode: z.number().nullable(),
  signal: z.string().nullable(),
  timedOut: z.boolean(),
  stdout: z.string(),
  stderr: z.string(),
  truncated: z.boolean().describe('output was longer than the cap and was cut'),
  durationMs: z.number(),
};
export type ExecResult = { exitCode: number | null; signal: string | null; timedOut: boolean; stdout: string; stderr: string; truncated: boolean; durationMs: number };

export const httpShape = {
  ...projectRefShape,
  port: portNameSchema.optional().describe('named port (default "default")'),
  method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']).optional(),
  path: z.string().startsWith('/').max(8192).optional(),
  headers: z.record(z.string(), z.string()).optional(),
  body: z.string().max(1024 * 1024).optional(),
  timeoutMs: z.number().int().min(100).max(120_000).optional(),
};
export const httpSchema = z.object(httpShape);
export type HttpInput = z.infer<typeof httpSchema>;
export const httpResultShape = {
  status: z.number(),
  headers: z.record(z.string(), z.string()),
  body: z.string(),
  truncated: z.boolean(),
  durationMs: z.number(),
};
export type HttpResult = { status: number; headers: Record<string, string>; body: string; truncated: boolean; durationMs: number };

export const usageShape = {
  tenant: z.string(),
  projects: z.number(),
  ports: z.number(),
  memoryMb: z.number(),
  quota: z.object({ projects: z.number(), ports: z.number(), memoryMb: z.number() }),
};
export type TenantUsage = z.infer<z.ZodObject<typeof usageShape>>;
export const quotaSetShape = {
  tenant: nameSchema.optional(),
  projects: z.number().int().min(0).max(100_000).optional(),
  ports: z.number().int().min(0).max(100_000).optional(),
  memoryMb: z.number().int().min(0).max(10_000_000).optional(),
};

export interface ProjectRefInput {
  readonly tenant: string;
  readonly name: string;
}

/** Progress reported while a call runs (turned into MCP progress notifications). */
export type ProgressFn = (message: string, progress: number, total?: number) => void;

/** An expected failure with a message that says what to do next (becomes an MCP isError result). */
export class ProjectApiError extends Error {
  constructor(
    override readonly name: 'NotFoundError' | 'ConflictError' | 'QuotaExceededError' | 'InvalidInputError' | 'UnavailableError' | 'StartFailedError',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface ProjectApi {
  start(input: StartInput & { tenant: string }, progress: ProgressFn, signal: AbortSignal): Promise<ProjectView>;
  stop(ref: ProjectRefInput): Promise<ProjectView>;
  restart(ref: ProjectRefInput, progress: ProgressFn, signal: AbortSignal): Promise<ProjectView>;
  remove(ref: ProjectRefInput): Promise<{ removed: boolean }>;
  status(ref: ProjectRefInput): Promise<ProjectView>;
  list(tenant: string): Promise<ProjectView[]>;
  logs(input: LogsInput & { tenant: string }): Promise<LogsResult>;
  wait(input: WaitInput & { tenant: string }, progress: ProgressFn, signal: AbortSignal): Promise<WaitResult>;
  exec(input: ExecInput & { tenant: string }, signal: AbortSignal): Promise<ExecResult>;
  http(input: HttpInput & { tenant: string }, signal: AbortSignal): Promise<HttpResult>;
  usage(tenant: string): Promise<TenantUsage>;
  setQuota(tenant: string, quota: { projects?: number; ports?: number; memoryMb?: number }): Promise<TenantUsage>;
  /** Calls `listener` with each new log line of a project until the returned function is called. */
  followLogs(ref: ProjectRefInput, listener: (line: LogLine) => void): () => void;
}
