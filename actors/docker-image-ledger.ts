// When each image was last used by a container of this node and by which
// projects: the engine does not record it (an image's "created" is when it was
// built), and pruning oldest-used first needs it. Kept in the runtime's state
// dir, so a node restart keeps it; bounded per image and in all.
import { join } from 'node:path';
import { z } from 'zod';
import { readJson, writeJsonAtomic } from './docker-state.ts';
import { projectKey, type ProjectRef } from './runtime.ts';

export interface ImageUse {
  readonly lastUsedAtMs: number;
  /** Projects whose containers started from the image, most recent first. */
  readonly projects: readonly { readonly project: ProjectRef; readonly lastUsedAtMs: number }[];
}

const FILE_VERSION = 1;
const projectSchema = z.object({ tenant: z.string().min(1).max(512), name: z.string().min(1).max(512) });
const useSchema = z.object({
  lastUsedAtMs: z.number().nonnegative(),
  projects: z.array(z.object({ project: projectSchema, lastUsedAtMs: z.number().nonnegative() })),
});
const fileSchema = z.object({ version: z.literal(FILE_VERSION), images: z.record(z.string().regex(/^sha256:[0-9a-f]{64}$/), useSchema) });

export interface ImageLedgerLimits {
  readonly imageProjectsMax: number;
  readonly imagesTrackedMax: number;
}

export class ImageLedger {
  readonly #path: string;
  readonly #uses = new Map<string, ImageUse>();

  /** Reads `<stateDir>/images.json`; a missing or invalid file starts an empty ledger (it only orders pruning). */
  constructor(
    stateDir: string,
    private readonly limits: ImageLedgerLimits,
  ) {
    this.#path = join(stateDir, 'images.json');
    const parsed = fileSchema.safeParse(readJson(this.#path));
    if (parsed.success) for (const [id, use] of Object.entries(parsed.data.images)) this.#uses.set(id, use);
  }

  get(imageId: string): ImageUse | null {
    return this.#uses.get(imageId) ?? null;
  }

  /** A container of `project` started from `imageId` at `atMs` (wall clock); written through to disk. */
  recordStart(imageId: string, project: ProjectRef, atMs: number): void {
    const previous = this.#uses.get(imageId);
    const others = (previous?.projects ?? []).filter((entry) => projectKey(entry.project) !== projectKey(project));
    const projects = [{ project: { tenant: project.tenant, name: project.name }, lastUsedAtMs: atMs }, ...others].slice(0, this.limits.imageProjectsMax);
    this.#uses.delete(imageId);
    this.#uses.set(imageId, { lastUsedAtMs: Math.max(atMs, previous?.lastUsedAtMs ?? 0), projects });
    this.#trim();
    this.#save();
  }

  /** Forgets pruned images. (One removed by hand stays until the bound drops it as least recently used.) */
  forget(imageIds: readonly string[]): void {
    const before = this.#uses.size;
    for (const id of imageIds) this.#uses.delete(id);
    if (this.#uses.size !== before) this.#save();
  }

  /** Over the bound: drops the least recently used entries. */
  #trim(): void {
    const excess = this.#uses.size - this.limits.imagesTrackedMax;
    if (excess <= 0) return;
    const byAge = [...this.#uses.entries()].sort(([, a], [, b]) => a.lastUsedAtMs - b.lastUsedAtMs);
    for (const [id] of byAge.slice(0, excess)) this.#uses.delete(id);
  }

  #save(): void {
    writeJsonAtomic(this.#path, { version: FILE_VERSION, images: Object.fromEntries(this.#uses) });
  }
}
