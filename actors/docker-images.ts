// The images of a node's engine: what is there, when a container of ours last
// started from each and for which projects; pruning down to a disk budget
// (oldest-used first, never an image someone keeps or a container uses); and
// prewarming from local tarballs. Nothing here pulls: no registry is used.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { ImageLedger } from './docker-image-ledger.ts';
import { LABELS } from './docker-container-spec.ts';
import { oneLine, statusCode } from './docker-errors.ts';
import { RuntimeError, type ProjectRef } from './runtime.ts';

export interface NodeImage {
  /** The engine's image id (`sha256:…`). */
  readonly id: string;
  /** Of the first reference; `<none>` for an untagged image. */
  readonly repository: string;
  readonly tag: string;
  /** Every `repository:tag` that names it. */
  readonly references: readonly string[];
  readonly sizeBytes: number;
  readonly createdAtMs: number;
  /** When a container of this node last started from it (wall clock); null if never, as far as this node remembers. */
  readonly lastUsedAtMs: number | null;
  /** Projects whose containers started from it, most recent first. */
  readonly usedBy: readonly { readonly project: ProjectRef; readonly lastUsedAtMs: number }[];
  /** Projects with a container of this node on it now (running or not): it is not pruned. */
  readonly inUseBy: readonly ProjectRef[];
  /** Containers of anyone on this engine using it; Docker refuses to remove such an image, and so do we. */
  readonly containers: number;
}

export interface PruneRequest {
  /** The node's images must fit in this many bytes (the sum of their sizes). */
  readonly budgetBytes: number;
  /** Images never removed: every image a desired-running project of the cluster needs (references or ids). */
  readonly keep: readonly string[];
}

export interface PrunedImage {
  readonly id: string;
  readonly references: readonly string[];
  readonly sizeBytes: number;
  readonly lastUsedAtMs: number | null;
}

export interface PruneOutcome {
  readonly budgetBytes: number;
  readonly totalBytesBefore: number;
  readonly totalBytesAfter: number;
  readonly freedBytes: number;
  /** totalBytesAfter ≤ budgetBytes. */
  readonly fits: boolean;
  /** Oldest-used first, as removed. */
  readonly removed: readonly PrunedImage[];
  /** Images it tried to remove and the engine refused, with its reason. */
  readonly failed: readonly (PrunedImage & { readonly error: string })[];
  /** When the budget is not reached: the images that had to stay, and why. Empty when it fits. */
  readonly kept: readonly (PrunedImage & { readonly reason: 'keep' | 'inUse' })[];
}

export type PrewarmResult =
  | { readonly image: string; readonly outcome: 'present'; readonly id: string }
  | { readonly image: string; readonly outcome: 'loaded'; readonly id: string; readonly tarball: string }
  | { readonly image: string; readonly outcome: 'missing' | 'failed'; readonly detail: string };

export interface PrewarmOptions {
  /** Where `docker save` tarballs lie, named after the image: `node_20.tar` (or .tar.gz, .tgz) for `node:20`. */
  readonly tarballDir?: string;
}

/** At most this many images per prewarm or keep list: a bound on one request's work, far above a node's real image count. */
export const IMAGE_REFERENCES_MAX = 10_000;

// ---- references ----------------------------------------------------------------------------

// Docker's reference grammar, simplified: lowercase path components, an optional registry host with a port, tag, digest.
const DOMAIN = String.raw`[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?`;
const COMPONENT = String.raw`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`;
const REFERENCE_PATTERN = new RegExp(String.raw`^(?:${DOMAIN}/)?${COMPONENT}(?:/${COMPONENT})*(?::\w[\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$`);
const ID_PATTERN = /^(?:sha256:)?([0-9a-f]{12,64})$/;

/** One line that says what to fix, or null if `reference` is a valid image reference or id. */
export function referenceProblem(reference: unknown): string | null {
  if (typeof reference !== 'string' || reference.length === 0) return `image reference ${JSON.stringify(reference)} must be a non-empty string such as node:20`;
  if (reference.length > 512) return `image reference ${reference.slice(0, 40)}… is longer than 512 characters; give a shorter name`;
  if (ID_PATTERN.test(reference) || REFERENCE_PATTERN.test(reference)) return null;
  return `image reference ${JSON.stringify(reference)} is not valid; give name[:tag] (lowercase, e.g. node:20 or registry.local:5000/team/app:1) or an image id`;
}

/** The familiar form Docker lists: no `docker.io/` or `library/` prefix, `:latest` when no tag or digest is given. */
export function normalizeReference(reference: string): string {
  let name = reference.replace(/^(?:docker\.io|index\.docker\.io)\//, '').replace(/^library\//, '');
  const digestAt = name.indexOf('@');
  const path = digestAt < 0 ? name : name.slice(0, digestAt);
  const hasTag = path.lastIndexOf(':') > path.lastIndexOf('/');
  if (digestAt < 0 && !hasTag) name = `${name}:latest`;
  return name;
}

export interface ImageFacts {
  readonly id: string;
  readonly references: readonly string[];
  readonly digests: readonly string[];
}

/** Whether `reference` (a name, name:tag, name@digest, id or id prefix of 12+ hex digits) names this image. */
export function imageMatches(image: ImageFacts, reference: string): boolean {
  const id = ID_PATTERN.exec(reference);
  if (id !== null && image.id.replace(/^sha256:/, '').startsWith(id[1] ?? '')) return true;
  const wanted = normalizeReference(reference);
  if (wanted.includes('@')) return image.digests.some((digest) => normalizeReference(digest) === wanted);
  return image.references.some((name) => normalizeReference(name) === wanted);
}

// ---- the prune plan (pure) ---------------------------------------------------------------------

export interface PruneCandidate extends ImageFacts {
  readonly sizeBytes: number;
  readonly createdAtMs: number;
  readonly lastUsedAtMs: number | null;
  /** Some container (anyone's) uses it. */
  readonly inUse: boolean;
}

export interface PrunePlan {
  readonly totalBytes: number;
  /** In removal order: never used first, then oldest used; ties by age of the image, then id. */
  readonly remove: readonly PruneCandidate[];
  /** Images that stay while the budget is not reached, with the reason. */
  readonly blocked: readonly (PruneCandidate & { readonly reason: 'keep' | 'inUse' })[];
}

export function planPrune(images: readonly PruneCandidate[], budgetBytes: number, keep: readonly string[]): PrunePlan {
  const totalBytes = images.reduce((sum, image) => sum + image.sizeBytes, 0);
  const protectedBy = (image: PruneCandidate): 'keep' | 'inUse' | null => (keep.some((reference) => imageMatches(image, reference)) ? 'keep' : image.inUse ? 'inUse' : null);
  const removable = images
    .filter((image) => protectedBy(image) === null)
    .sort((a, b) => (a.lastUsedAtMs ?? -1) - (b.lastUsedAtMs ?? -1) || a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id));
  const remove: PruneCandidate[] = [];
  let remaining = totalBytes;
  for (const image of removable) {
    if (remaining <= budgetBytes) break;
    remove.push(image);
    remaining -= image.sizeBytes;
  }
  const blocked =
    remaining <= budgetBytes ? [] : images.flatMap((image) => {
        const reason = protectedBy(image);
        return reason === null ? [] : [{ ...image, reason }];
      });
  return { totalBytes, remove, blocked };
}

// ---- against the engine ------------------------------------------------------------------------

/** Many starts at once, or one prune: a prune never removes an image between a start's check and its container's creation. */
export class StartPruneLock {
  #starts = 0;
  #prune: Promise<void> | null = null;
  #startsDone: (() => void) | null = null;

  async whileStarting<T>(action: () => Promise<T>): Promise<T> {
    while (this.#prune !== null) await this.#prune;
    this.#starts += 1;
    try {
      return await action();
    } finally {
      this.#starts -= 1;
      if (this.#starts === 0) this.#startsDone?.();
    }
  }

  async whilePruning<T>(action: () => Promise<T>): Promise<T> {
    while (this.#prune !== null) await this.#prune;
    let release = (): void => undefined;
    this.#prune = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      if (this.#starts > 0) {
        await new Promise<void>((resolve) => {
          this.#startsDone = resolve;
        });
        this.#startsDone = null;
      }
      return await action();
    } finally {
      this.#prune = null;
      release();
    }
  }
}

export interface NodeImagesOptions {
  /** A client with a request timeout, for listing and removing. */
  readonly docker: Docker;
  /** A client without one: loading a tarball may take long. */
  readonly streams: Docker;
  readonly node: string;
  readonly ledger: ImageLedger;
  readonly lock: StartPruneLock;
  /** Only images matching this Docker `reference` filter are listed, counted and pruned (default: all of the engine's). */
  readonly reference?: string;
}

export class NodeImages {
  constructor(private readonly options: NodeImagesOptions) {}

  async list(): Promise<NodeImage[]> {
    const { images, containers } = await this.#read();
    return images.map((image) => {
      const use = this.options.ledger.get(image.Id);
      const [first] = image.RepoTags ?? [];
      const split = first === undefined ? null : splitReference(first);
      return {
        id: image.Id,
        repository: split?.repository ?? '<none>',
        tag: split?.tag ?? '<none>',
        references: referencesOf(image),
        sizeBytes: image.Size,
        createdAtMs: image.Created * 1000,
        lastUsedAtMs: use?.lastUsedAtMs ?? null,
        usedBy: use?.projects ?? [],
        inUseBy: containers.filter((container) => container.ImageID === image.Id && container.Labels[LABELS.node] === this.options.node).flatMap((container) => projectOf(container)),
        containers: containers.filter((container) => container.ImageID === image.Id).length,
      };
    });
  }

  async prune(request: PruneRequest): Promise<PruneOutcome> {
    checkPruneRequest(request);
    return this.options.lock.whilePruning(async () => {
      const before = await this.#candidates();
      const plan = planPrune(before, request.budgetBytes, request.keep);
      const removed: PrunedImage[] = [];
      const failed: (PrunedImage & { error: string })[] = [];
      for (const image of plan.remove) {
        const error = await this.#remove(image);
        if (error === null) removed.push(pruned(image));
        else failed.push({ ...pruned(image), error });
      }
      this.options.ledger.forget(removed.map((image) => image.id));
      const after = await this.#candidates();
      const totalBytesAfter = after.reduce((sum, image) => sum + image.sizeBytes, 0);
      const fits = totalBytesAfter <= request.budgetBytes;
      return {
        budgetBytes: request.budgetBytes,
        totalBytesBefore: plan.totalBytes,
        totalBytesAfter,
        freedBytes: Math.max(0, plan.totalBytes - totalBytesAfter),
        fits,
        removed,
        failed,
        kept: fits ? [] : planPrune(after, request.budgetBytes, request.keep).blocked.map((image) => ({ ...pruned(image), reason: image.reason })),
      };
    });
  }

  /** Makes sure each image is on the engine, loading a missing one from `<tarballDir>/<name>.tar` where there is one. */
  async prewarm(images: readonly string[], options: PrewarmOptions = {}): Promise<PrewarmResult[]> {
    if (!Array.isArray(images) || images.length > IMAGE_REFERENCES_MAX) throw new RuntimeError('InvalidSpecError', `prewarm takes a list of at most ${IMAGE_REFERENCES_MAX} image references`);
    for (const image of images) {
      const problem = referenceProblem(image);
      if (problem !== null) throw new RuntimeError('InvalidSpecError', problem);
    }
    if (options.tarballDir !== undefined && !existsSync(options.tarballDir)) {
      throw new RuntimeError('InvalidSpecError', `tarball dir ${options.tarballDir} does not exist; create it and put docker save tarballs in it, or leave it out`);
    }
    const results: PrewarmResult[] = [];
    for (const image of images) results.push(await this.#prewarmOne(image, options.tarballDir));
    return results;
  }

  async #prewarmOne(image: string, tarballDir: string | undefined): Promise<PrewarmResult> {
    const present = await this.#idOf(image);
    if (present !== null) return { image, outcome: 'present', id: present };
    const noPull = 'this runtime never pulls (no registry is used)';
    if (tarballDir === undefined) return { image, outcome: 'missing', detail: `image ${image} is not on this node's engine and no tarball dir was given; ${noPull}: give one holding docker save tarballs` };
    const tarball = tarballCandidates(image).map((name) => join(tarballDir, name)).find((path) => existsSync(path));
    if (tarball === undefined) {
      return { image, outcome: 'missing', detail: `image ${image} is not on this node's engine and ${join(tarballDir, tarballCandidates(image)[0] ?? '')} does not exist; ${noPull}: make it with docker save ${image} -o <that path>` };
    }
    const loadError = await this.#load(tarball);
    if (loadError !== null) return { image, outcome: 'failed', detail: `docker load of ${tarball} failed: ${loadError}` };
    const loaded = await this.#idOf(image);
    if (loaded === null) return { image, outcome: 'failed', detail: `${tarball} loaded but holds no image ${image}; make it with docker save ${image}` };
    return { image, outcome: 'loaded', id: loaded, tarball };
  }

  async #idOf(image: string): Promise<string | null> {
    try {
      return (await this.options.docker.getImage(image).inspect()).Id;
    } catch (error) {
      if (statusCode(error) === 404) return null;
      throw error;
    }
  }

  /** null once loaded; else the engine's one-line reason. */
  async #load(tarball: string): Promise<string | null> {
    try {
      const stream = (await this.options.streams.loadImage(tarball)) as NodeJS.ReadableStream;
      let text = '';
      for await (const chunk of stream) if (text.length < 64 * 1024) text += String(chunk);
      const error = /"error(?:Detail)?":\s*(?:\{"message":)?"([^"]*)"/.exec(text);
      return error === null ? null : (error[1] ?? 'unknown error');
    } catch (error) {
      return oneLine(error);
    }
  }

  async #read(): Promise<{ images: Docker.ImageInfo[]; containers: Docker.ContainerInfo[] }> {
    const filters = this.options.reference === undefined ? {} : { filters: { reference: [this.options.reference] } };
    const [images, containers] = await Promise.all([this.options.docker.listImages(filters), this.options.docker.listContainers({ all: true })]);
    // The engine lists images created in the same second in no fixed order; newest first, then by id, so two listings compare equal.
    images.sort((a, b) => b.Created - a.Created || (a.Id < b.Id ? -1 : a.Id > b.Id ? 1 : 0));
    return { images, containers };
  }

  async #candidates(): Promise<PruneCandidate[]> {
    const { images, containers } = await this.#read();
    const used = new Set(containers.map((container) => container.ImageID));
    return images.map((image) => ({
      id: image.Id,
      references: referencesOf(image),
      digests: image.RepoDigests ?? [],
      sizeBytes: image.Size,
      createdAtMs: image.Created * 1000,
      lastUsedAtMs: this.options.ledger.get(image.Id)?.lastUsedAtMs ?? null,
      inUse: used.has(image.Id),
    }));
  }

  /** Untags each name (the last untag deletes the image; Docker refuses if a container uses it); an untagged image by id. null on success. */
  async #remove(image: PruneCandidate): Promise<string | null> {
    const names = image.references.length === 0 ? [image.id] : image.references;
    for (const name of names) {
      try {
        await this.options.docker.getImage(name).remove();
      } catch (error) {
        if (statusCode(error) !== 404) return oneLine(error);
      }
    }
    return null;
  }
}

function checkPruneRequest(request: PruneRequest): void {
  if (!Number.isSafeInteger(request.budgetBytes) || request.budgetBytes < 0) {
    throw new RuntimeError('InvalidSpecError', `image budget ${String(request.budgetBytes)} must be a whole number of bytes ≥ 0 (--image-budget-mb × 1048576)`);
  }
  if (!Array.isArray(request.keep) || request.keep.length > IMAGE_REFERENCES_MAX) throw new RuntimeError('InvalidSpecError', `keep must be a list of at most ${IMAGE_REFERENCES_MAX} image references`);
  for (const reference of request.keep) {
    const problem = referenceProblem(reference);
    if (problem !== null) throw new RuntimeError('InvalidSpecError', `keep: ${problem}`);
  }
}

function referencesOf(image: Docker.ImageInfo): string[] {
  return (image.RepoTags ?? []).filter((name) => name !== '<none>:<none>');
}

function pruned(image: PruneCandidate): PrunedImage {
  return { id: image.id, references: image.references, sizeBytes: image.sizeBytes, lastUsedAtMs: image.lastUsedAtMs };
}

function splitReference(reference: string): { repository: string; tag: string } {
  const colon = reference.lastIndexOf(':');
  return colon > reference.lastIndexOf('/') ? { repository: reference.slice(0, colon), tag: reference.slice(colon + 1) } : { repository: reference, tag: 'latest' };
}

function projectOf(container: Docker.ContainerInfo): ProjectRef[] {
  const tenant = container.Labels[LABELS.tenant];
  const name = container.Labels[LABELS.name];
  return tenant === undefined || name === undefined ? [] : [{ tenant, name }];
}

/** `node:20` → node_20.tar, node_20.tar.gz, node_20.tgz. */
export function tarballCandidates(image: string): string[] {
  const base = image.replace(/[/:@]/g, '_');
  return [`${base}.tar`, `${base}.tar.gz`, `${base}.tgz`];
}

