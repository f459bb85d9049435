// project_batch: many start/stop/restart/remove operations over many projects
// (on many owners) in one call, run in parallel up to a bound. Each item is
// validated on its own (a bad item fails alone, with its reason), goes the
// one routing path as a tool call would, and gets its own result; progress
// is reported as items finish. A batch retried with the same requestId
// retries each item with its own derived id, so done items are not done twice.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { ActorResponse, Identity, ProgressFn } from '../actors/messages.ts';
import { changeShape, nameSchema, requestIdSchema, restartShape, startShape } from '../actors/schemas.ts';
import { projectOut, projectOutSchema, toolCalls, ToolInputError, type ProjectOut, type ToolCall } from '../actors/tools.ts';

export const BATCH_LIMITS = Object.freeze({
  itemsMax: 500,
  concurrencyDefault: 8,
  concurrencyMax: 32,
});

const ops = ['start', 'stop', 'restart', 'remove'] as const;
type BatchOp = (typeof ops)[number];

/** Loose at the edge on purpose: each item is checked by its own op's schema, so one bad item cannot sink the rest. */
export const batchShape = {
  items: z
    .array(z.object({ op: z.enum(ops), name: z.string().max(256) }).loose())
    .min(1)
    .max(BATCH_LIMITS.itemsMax)
    .describe('operations: {op: "start", name, command|image, ...project_start fields} or {op: "stop"|"restart"|"remove", name}'),
  concurrency: z.number().int().min(1).max(BATCH_LIMITS.concurrencyMax).optional().describe(`items in flight at once (default ${BATCH_LIMITS.concurrencyDefault})`),
  requestId: requestIdSchema.optional().describe('your id for the batch: a retry with the same id applies each item once'),
};

export const batchItemOutShape = {
  index: z.number(),
  op: z.enum(ops),
  name: z.string(),
  ok: z.boolean(),
  error: z.string().nullable().describe('why this item failed, in one line'),
  errorName: z.string().nullable(),
  project: projectOutSchema.nullable(),
  removed: z.boolean().nullable(),
};
export const batchOutShape = {
  items: z.array(z.object(batchItemOutShape)),
  succeeded: z.number(),
  failed: z.number(),
  elapsedMs: z.number(),
};

export type BatchItemOut = z.infer<z.ZodObject<typeof batchItemOutShape>>;

const itemSchemas = {
  start: z.object(startShape).strict(),
  stop: z.object(changeShape).strict(),
  restart: z.object(restartShape).strict(),
  remove: z.object(changeShape).strict(),
} as const;

/** The call one item makes, or why it cannot be made. */
function itemCall(identity: Identity, op: BatchOp, fields: Record<string, unknown>): ToolCall {
  const { op: _op, ...rest } = fields;
  const parsed = itemSchemas[op].safeParse(rest);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ToolInputError('InvalidRequestError', `${issue?.path.join('.') || 'item'}: ${issue?.message ?? 'invalid'}`);
  }
  switch (op) {
    case 'start':
      return toolCalls.project_start(identity, parsed.data as z.infer<typeof itemSchemas.start>);
    case 'stop':
      return toolCalls.project_stop(identity, parsed.data as z.infer<typeof itemSchemas.stop>);
    case 'restart':
      return toolCalls.project_restart(identity, parsed.data as z.infer<typeof itemSchemas.restart>);
    case 'remove':
      return toolCalls.project_remove(identity, parsed.data as z.infer<typeof itemSchemas.remove>);
    default: {
      const never: never = op;
      return never;
    }
  }
}

export interface BatchBackend {
  call(identity: Identity, call: ToolCall, progress: ProgressFn | null): Promise<ActorResponse>;
  hostOf(node: string): string | null;
  nowMs(): number;
}

/** Run every item, `concurrency` at a time; never throws for an item, every item gets a result. */
export async function runBatch(
  backend: BatchBackend,
  identity: Identity,
  input: { items: readonly ({ op: BatchOp; name: string } & Record<string, unknown>)[]; concurrency?: number | undefined; requestId?: string | undefined },
  progress: ProgressFn,
): Promise<{ items: BatchItemOut[]; succeeded: number; failed: number; elapsedMs: number }> {
  const started = backend.nowMs();
  const batchId = input.requestId ?? randomUUID();
  const results: BatchItemOut[] = new Array(input.items.length);
  let next = 0;
  let done = 0;
  const total = input.items.length;
  const one = async (index: number): Promise<BatchItemOut> => {
    const item = input.items[index] as { op: BatchOp; name: string } & Record<string, unknown>;
    const base = { index, op: item.op, name: typeof item.name === 'string' ? item.name : '' };
    try {
      if (!nameSchema.safeParse(item.name).success) throw new ToolInputError('InvalidRequestError', `name ${JSON.stringify(item.name)}: use 1-63 lower-case letters, digits, ".", "_" or "-"`);
      const call = itemCall(identity, item.op, item);
      const response = await backend.call(identity, { ...call, requestId: call.requestId ?? `${batchId}.${index}` }, null);
      return outOf(base, response, backend);
    } catch (error) {
      return { ...base, ok: false, error: (error as Error).message.split('\n')[0] ?? 'failed', errorName: (error as Error).name, project: null, removed: null };
    }
  };
  const worker = async (): Promise<void> => {
    while (next < total) {
      const index = next;
      next += 1;
      const result = await one(index);
      results[index] = result;
      done += 1;
      progress(`${done}/${total}: ${result.op} ${result.name} ${result.ok ? 'done' : `failed: ${result.error ?? ''}`}`, done, total);
    }
  };
  const concurrency = Math.min(input.concurrency ?? BATCH_LIMITS.concurrencyDefault, total);
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
  const succeeded = results.filter((result) => result.ok).length;
  return { items: results, succeeded, failed: total - succeeded, elapsedMs: Math.round(backend.nowMs() - started) };
}

function outOf(base: { index: number; op: BatchOp; name: string }, response: ActorResponse, backend: BatchBackend): BatchItemOut {
  switch (response.type) {
    case 'project': {
      const project: ProjectOut = projectOut(response.project, backend.nowMs(), (node) => backend.hostOf(node));
      return { ...base, ok: true, error: null, errorName: null, project, removed: null };
    }
    case 'removed':
      return { ...base, ok: true, error: null, errorName: null, project: null, removed: response.existed };
    case 'error':
      return { ...base, ok: false, error: response.message, errorName: response.name, project: null, removed: null };
    default:
      return { ...base, ok: false, error: `unexpected answer '${response.type}'; retry the batch with the same requestId`, errorName: 'UnavailableError', project: null, removed: null };
  }
}

/** The batch's text: one line per item, failures first so they are not missed. */
export function renderBatch(result: { items: readonly BatchItemOut[]; succeeded: number; failed: number; elapsedMs: number }): string {
  const failed = result.items.filter((item) => !item.ok).map((item) => `✗ ${item.index} ${item.op} ${item.name}: ${item.error ?? ''}`);
  const ok = result.items
    .filter((item) => item.ok)
    .map((item) => `✓ ${item.index} ${item.op} ${item.name}${item.project !== null ? `: ${item.project.state} on ${item.project.owner ?? '-'}` : item.removed === false ? ': did not exist' : ''}`);
  return [`${result.succeeded} of ${result.items.length} done, ${result.failed} failed, in ${result.elapsedMs} ms`, ...failed, ...ok].join('\n');
}
