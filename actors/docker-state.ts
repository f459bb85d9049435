// The Docker runtime's state dir: the spec each of this node's containers was
// created from (so a restarted node adopts its containers and keeps applying
// their restart policy without putting the spec, env included, in a label), and
// small JSON files written atomically. Files are 0600: specs hold tenants' env.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { WorkloadSpec } from './runtime.ts';

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/** Writes `value` as JSON to `path` through a temporary file and a rename, so a crash leaves the old or the new file, never half of one. */
export function writeJsonAtomic(path: string, value: unknown): void {
  const temporary = `${path}.tmp`;
  writeFileSync(temporary, JSON.stringify(value), { mode: FILE_MODE });
  renameSync(temporary, path);
}

/** The parsed file, or null when it is missing or not JSON (the caller validates the shape). */
export function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as unknown;
  } catch {
    return null;
  }
}

const nameSchema = z.string().min(1).max(512);
const workloadSpecSchema = z.object({
  project: z.object({ tenant: nameSchema, name: nameSchema }),
  command: z.string().optional(),
  image: z.string().min(1).optional(),
  cwd: z.string().optional(),
  env: z.record(z.string(), z.string()),
  ports: z.record(z.string(), z.number().int().min(1).max(65535)),
  restart: z.enum(['never', 'on-failure', 'always']),
  limits: z.object({ memoryBytes: z.number().int().positive().optional(), cpus: z.number().positive().optional(), pids: z.number().int().positive().optional() }).optional(),
  node: nameSchema,
});
const containerRecordSchema = z.object({ containerId: z.string().regex(/^[0-9a-f]{12,64}$/), spec: workloadSpecSchema });

export interface ContainerRecord {
  readonly containerId: string;
  readonly spec: WorkloadSpec;
}

/** One record per container of this node, named by the container's name. */
export class ContainerRecords {
  readonly #dir: string;

  constructor(stateDir: string) {
    this.#dir = join(stateDir, 'containers');
    mkdirSync(this.#dir, { recursive: true, mode: DIR_MODE });
  }

  /** The record of this container, or null when there is none or it does not hold a valid spec for this container id. */
  read(containerName: string, containerId: string): ContainerRecord | null {
    const parsed = containerRecordSchema.safeParse(readJson(this.#path(containerName)));
    if (!parsed.success || parsed.data.containerId !== containerId) return null;
    return parsed.data as ContainerRecord;
  }

  write(containerName: string, record: ContainerRecord): void {
    writeJsonAtomic(this.#path(containerName), record);
  }

  remove(containerName: string): void {
    rmSync(this.#path(containerName), { force: true });
  }

  /** Drops records whose container is gone (removed while the node was down). */
  removeAllBut(containerNames: ReadonlySet<string>): void {
    for (const file of readdirSync(this.#dir)) {
      if (!containerNames.has(file.replace(/\.json(\.tmp)?$/, ''))) rmSync(join(this.#dir, file), { force: true });
    }
  }

  #path(containerName: string): string {
    return join(this.#dir, `${containerName}.json`);
  }
}
