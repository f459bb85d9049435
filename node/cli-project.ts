// `debughost project batch FILE`: many starts, stops, restarts and removes in one
// project_batch call over MCP (the same tool an agent calls), with progress on
// stderr as items finish and one line per item. The file is checked against the
// tool's own input schema before anything is sent, so a bad file changes nothing.
import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { z } from 'zod';
import { resolveToken, CLIENT_FLAGS } from './cli-auth.ts';
import { parse } from './cli-node.ts';
import { batchShape, BATCH_LIMITS, type BatchItemOut } from './mcp-batch.ts';
import { UsageError } from './usage-error.ts';

/** The first node of `npm start` (`debughost up`). */
const DEFAULT_URL = 'http://127.0.0.1:2601/mcp';
/** A batch of the largest size, each item waiting for its process, on a busy node: minutes, not hours. */
const BATCH_CALL_MS_MAX = 15 * 60_000;

const PROJECT_HELP = `usage: debughost project batch FILE [--url URL] [--concurrency N] [--token TOKEN] [--data-dir DIR] [--json]

Runs the operations in FILE as one project_batch call on the node at --url
(default ${DEFAULT_URL}, the first node of npm start; any node will do: each
item goes to its project's owner). FILE is JSON: a list of items, or
{"items": [...], "concurrency": N, "requestId": "..."}. An item is
  {"op": "start", "name": "web", "command": "npm run dev", "cwd": "/app", ...}  (any project_start field)
  {"op": "stop" | "restart" | "remove", "name": "web"}
at most ${BATCH_LIMITS.itemsMax} items, ${BATCH_LIMITS.concurrencyDefault} in flight unless --concurrency (at most ${BATCH_LIMITS.concurrencyMax}).
Progress goes to stderr as items finish, one line per item to stdout (--json: the
tool's structured result). Exit 0 when every item succeeded, 1 when any failed.
The token: --token, else $DEBUGHOST_TOKEN, else DIR/admin-token (DIR: --data-dir, default ./data).`;


/** The file's batch, checked against the tool's schema; a bad file is one line saying where. */
export function readBatchFile(path: string, concurrency: number | undefined): z.infer<z.ZodObject<typeof batchShape>> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${path} is not JSON (${(error as Error).message}); write a list of items or {"items": [...]}`);
  }
  // A bare list is the items; an object is the whole tool input. Either way the tool's own schema checks it.
  const batch: unknown = Array.isArray(json) ? { items: json } : json;
  const merged = concurrency === undefined || batch === null || typeof batch !== 'object' ? batch : { ...batch, concurrency };
  const checked = z.object(batchShape).strict().safeParse(merged);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    const at = Array.isArray(json) && issue?.path[0] === 'items' ? issue.path.slice(1) : (issue?.path ?? []);
    const where = at.length === 0 ? '' : ` at ${at.join('.')}`;
    throw new UsageError(
      `${path}${where}: ${issue?.message ?? 'not a batch'}; write a list of items, each with "op" (start, stop, restart or remove) and "name", at most ${BATCH_LIMITS.itemsMax} (debughost project --help)`,
    );
  }
  return checked.data;
}

function itemLine(item: BatchItemOut): string {
  const head = `${item.ok ? 'ok  ' : 'FAIL'} ${item.op} ${item.name}`;
  if (!item.ok) return `${head}: ${item.error ?? 'failed'}`;
  if (item.op === 'remove') return `${head}: ${item.removed === false ? 'was not there' : 'removed'}`;
  return item.project === null ? head : `${head}: ${item.project.state} on ${item.project.owner}`;
}

export async function projectCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { url: { type: 'string' }, concurrency: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...CLIENT_FLAGS }, 'project', true);
  const [verb, file] = positionals;
  if (values.help === true || verb === undefined) {
    process.stdout.write(`${PROJECT_HELP}\n`);
    return values.help === true ? 0 : 2;
  }
  if (verb !== 'batch') throw new UsageError(`unknown project verb '${verb}'; use batch (project_start and the other tools are for MCP clients)`);
  if (file === undefined || positionals.length > 2) throw new UsageError('usage: debughost project batch FILE (see debughost project --help)');
  let concurrency: number | undefined;
  if (values.concurrency !== undefined) {
    concurrency = Number(values.concurrency);
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > BATCH_LIMITS.concurrencyMax) throw new UsageError(`--concurrency needs a whole number from 1 to ${BATCH_LIMITS.concurrencyMax}, got '${values.concurrency}'`);
  }
  let url: URL;
  try {
    url = new URL(values.url ?? DEFAULT_URL);
  } catch {
    throw new UsageError(`--url needs a URL such as ${DEFAULT_URL}, got '${values.url ?? ''}'`);
  }
  const batch = readBatchFile(file, concurrency);
  const token = resolveToken(values);
  if (token === null) throw new UsageError(`no token: pass --token, set DEBUGHOST_TOKEN, or run from the directory whose ./data holds the admin-token of npm start (--data-dir DIR)`);

  const client = new Client({ name: 'debughost-cli', version: '1' });
  try {
    try {
      await client.connect(new StreamableHTTPClientTransport(url, { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    } catch (error) {
      throw new UsageError(`cannot reach the MCP endpoint at ${url.href} (${(error as Error).message.split('\n')[0] ?? ''}); is a node running there? (--url)`);
    }
    const result = (await client.callTool({ name: 'project_batch', arguments: batch }, undefined, {
      timeout: BATCH_CALL_MS_MAX,
      resetTimeoutOnProgress: true,
      onprogress: (progress) => process.stderr.write(`${progress.progress}/${progress.total ?? batch.items.length} ${progress.message ?? ''}\n`),
    })) as { isError?: boolean; content: { type: string; text: string }[]; structuredContent?: { items: BatchItemOut[]; succeeded: number; failed: number; elapsedMs: number } };
    if (result.isError === true || result.structuredContent === undefined) {
      process.stderr.write(`debughost project batch: ${result.content.map((part) => part.text).join(' ')}\n`);
      return 1;
    }
    const outcome = result.structuredContent;
    if (values.json === true) process.stdout.write(`${JSON.stringify(outcome)}\n`);
    else for (const item of outcome.items) process.stdout.write(`${itemLine(item)}\n`);
    process.stderr.write(`${outcome.succeeded} succeeded, ${outcome.failed} failed, in ${(outcome.elapsedMs / 1000).toFixed(1)} s\n`);
    return outcome.failed === 0 ? 0 : 1;
  } finally {
    await client.close().catch(() => {});
  }
}
