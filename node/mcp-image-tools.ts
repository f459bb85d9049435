// The image tools of the MCP endpoint (admin only: images are shared by every
// tenant of a node): image_list shows the Docker images of the node that serves
// the call, with size and which projects last used each; image_prune removes the
// ones no desired-running project of the cluster names, oldest-used first, down
// to a budget. Each acts on the node whose URL the client called (cluster_status
// lists them all), as `docker image ls` and `docker image prune` act on one engine.
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { NodeImage, PruneOutcome } from '../actors/docker-images.ts';
import { authorize } from '../actors/identity.ts';
import { ok, ToolError, type ToolContext } from './mcp.ts';
import { withRole } from './mcp-trust-tools.ts';

const MB = 1024 * 1024;
/** A budget above this (1 PiB) is a typo, not a disk. */
const BUDGET_MB_MAX = 1024 ** 3;

export interface ImageToolsBackend {
  readonly node: string;
  /** The node's --image-budget-mb in bytes; null when it has none. */
  budgetBytes(): number | null;
  /** This node's images; throws RuntimeError without a Docker engine. */
  images(): Promise<NodeImage[]>;
  prune(budgetBytes: number): Promise<PruneOutcome>;
}

const READ_ONLY: ToolAnnotations = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };
const DESTRUCTIVE: ToolAnnotations = { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false };

const imageOut = {
  id: z.string(),
  repository: z.string(),
  tag: z.string(),
  references: z.array(z.string()),
  sizeMb: z.number(),
  lastUsed: z.string().nullable(),
  usedBy: z.array(z.string()).describe('projects whose containers started from it, most recent first'),
  inUseBy: z.array(z.string()).describe('projects with a container of this node on it now: never pruned'),
};
const prunedOut = { id: z.string(), references: z.array(z.string()), sizeMb: z.number() };

const mb = (bytes: number): number => Math.round((bytes / MB) * 10) / 10;
const refName = (image: { references: readonly string[]; id: string }): string => image.references[0] ?? image.id.slice(0, 19);

/** A runtime failure (no engine, the engine refused) as a tool error that says what to do. */
async function engine<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const name = (error as Error).name;
    throw new ToolError(name === 'RuntimeUnavailableError' ? 'UnavailableError' : 'RuntimeFailedError', (error as Error).message.split('\n')[0] ?? 'the Docker engine failed');
  }
}

export function registerImageTools(server: McpServer, context: ToolContext, backend: ImageToolsBackend): void {
  const { guard } = context;
  const admitted = (extra: Parameters<ToolContext['identityOf']>[0]): void => {
    const allowed = authorize(withRole(context.identityOf(extra)), 'cluster.images', null);
    if (!allowed.ok) throw new ToolError('ForbiddenError', allowed.message);
  };

  server.registerTool(
    'image_list',
    {
      title: 'List Docker images',
      description: "The Docker images of the node you called: repository, tag, size, when a project's container last started from each and which projects. Admin only.",
      inputSchema: {},
      outputSchema: { node: z.string(), images: z.array(z.object(imageOut)), totalMb: z.number(), budgetMb: z.number().nullable() },
      annotations: READ_ONLY,
    },
    guard(async (_args, extra) => {
      admitted(extra);
      const images = (await engine(() => backend.images())).map((image) => ({
        id: image.id,
        repository: image.repository,
        tag: image.tag,
        references: [...image.references],
        sizeMb: mb(image.sizeBytes),
        lastUsed: image.lastUsedAtMs === null ? null : new Date(image.lastUsedAtMs).toISOString(),
        usedBy: image.usedBy.map((use) => `${use.project.tenant}/${use.project.name}`),
        inUseBy: image.inUseBy.map((project) => `${project.tenant}/${project.name}`),
      }));
      const totalMb = mb(images.reduce((sum, image) => sum + image.sizeMb * MB, 0));
      const budget = backend.budgetBytes();
      const lines = images.map((image) => `${image.repository}:${image.tag} ${image.sizeMb} MB, last used ${image.lastUsed ?? 'never'}${image.usedBy.length === 0 ? '' : ` by ${image.usedBy.join(', ')}`}`);
      const head = `node ${backend.node}: ${images.length} images, ${totalMb} MB${budget === null ? '' : ` of a ${mb(budget)} MB budget`}`;
      return ok([head, ...lines].join('\n'), { node: backend.node, images, totalMb, budgetMb: budget === null ? null : mb(budget) });
    }),
  );

  server.registerTool(
    'image_prune',
    {
      title: 'Prune Docker images',
      description:
        "Remove the node's images that no desired-running project of the cluster names and no container uses, oldest-used first, until the rest fit in budgetMb " +
        '(default: the node\'s --image-budget-mb). Acts on the node you called. Admin only.',
      inputSchema: { budgetMb: z.number().int().min(0).max(BUDGET_MB_MAX).describe('the images that stay must fit in this many MiB').optional() },
      outputSchema: {
        node: z.string(),
        budgetMb: z.number(),
        beforeMb: z.number(),
        afterMb: z.number(),
        fits: z.boolean(),
        removed: z.array(z.object(prunedOut)),
        failed: z.array(z.object({ ...prunedOut, error: z.string() })),
        kept: z.array(z.object({ ...prunedOut, reason: z.string() })),
      },
      annotations: DESTRUCTIVE,
    },
    guard(async (args, extra) => {
      admitted(extra);
      const budgetBytes = args.budgetMb === undefined ? backend.budgetBytes() : args.budgetMb * MB;
      if (budgetBytes === null) throw new ToolError('InvalidRequestError', `node ${backend.node} has no --image-budget-mb; give budgetMb`);
      const outcome = await engine(() => backend.prune(budgetBytes));
      const pruned = (image: { id: string; references: readonly string[]; sizeBytes: number }): z.infer<z.ZodObject<typeof prunedOut>> => ({ id: image.id, references: [...image.references], sizeMb: mb(image.sizeBytes) });
      const text = [
        `node ${backend.node}: ${mb(outcome.totalBytesBefore)} MB → ${mb(outcome.totalBytesAfter)} MB (budget ${mb(outcome.budgetBytes)} MB, ${outcome.fits ? 'fits' : 'does not fit'})`,
        ...outcome.removed.map((image) => `removed ${refName(image)} (${mb(image.sizeBytes)} MB)`),
        ...outcome.failed.map((image) => `could not remove ${refName(image)}: ${image.error}`),
        ...outcome.kept.map((image) => `kept ${refName(image)} (${mb(image.sizeBytes)} MB): ${image.reason === 'inUse' ? 'a container uses it' : 'a desired-running project needs it'}`),
      ].join('\n');
      return ok(text, {
        node: backend.node,
        budgetMb: mb(outcome.budgetBytes),
        beforeMb: mb(outcome.totalBytesBefore),
        afterMb: mb(outcome.totalBytesAfter),
        fits: outcome.fits,
        removed: outcome.removed.map(pruned),
        failed: outcome.failed.map((image) => ({ ...pruned(image), error: image.error })),
        kept: outcome.kept.map((image) => ({ ...pruned(image), reason: image.reason })),
      });
    }),
  );
}
