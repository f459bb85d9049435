// One project's cgroup in every hierarchy the runtime uses: <root>/<project>/ holds the limits;
// its workload runs in <project>/main, each exec in <project>/x<n> (so limits cover both, and a
// workload's restart does not kill a running exec). Limits, usage and OOM counts are read and
// written here; processes are joined, signalled and killed by the spawner.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CgroupLayout, Hierarchy } from './cgroups.ts';
import { projectKey, type ProjectRef, type ResourceLimits } from './runtime.ts';

/** cpu.max / cfs period: 100 ms, the kernel's default. */
const CPU_PERIOD_US = 100_000;

/** A project's directory name: reversible (for the leftovers a restarted node reports) and never a control file's name. */
export const projectCgroupName = (project: ProjectRef): string => `p:${encodeURIComponent(project.tenant)}:${encodeURIComponent(project.name)}`;

export function projectOfCgroupName(name: string): ProjectRef | null {
  const match = /^p:([^:/]+):([^:/]+)$/.exec(name);
  if (match === null) return null;
  try {
    return { tenant: decodeURIComponent(match[1] as string), name: decodeURIComponent(match[2] as string) };
  } catch {
    return null;
  }
}

export interface CgroupUsage {
  /** CPU time of everything the project ran, since its cgroup was made; null when no hierarchy counts it. */
  readonly cpuNs: number | null;
  /** Memory in use without reclaimable file cache (as `docker stats` shows it); null without a memory controller. */
  readonly memoryBytes: number | null;
}

export class ProjectCgroup {
  readonly name: string;

  constructor(
    private readonly layout: CgroupLayout,
    readonly project: ProjectRef,
  ) {
    this.name = projectCgroupName(project);
  }

  private dir(hierarchy: Hierarchy, sub?: string): string {
    return sub === undefined ? join(hierarchy.root, this.name) : join(hierarchy.root, this.name, sub);
  }

  /** Makes <project>/<sub> in every hierarchy (idempotent; the spawner removes them when it restarts). */
  ensure(sub: string): void {
    for (const hierarchy of this.layout.hierarchies) mkdirSync(this.dir(hierarchy, sub), { recursive: true });
  }

  /** The directory of `sub` (or of the whole project) in the tracking hierarchy: the spawner's target. */
  trackDir(sub?: string): string {
    return this.dir(this.layout.track, sub);
  }

  /** The files a process writes its pid into to join `sub` everywhere. */
  procsFiles(sub: string): string[] {
    return this.layout.hierarchies.map((hierarchy) => join(this.dir(hierarchy, sub), 'cgroup.procs'));
  }

  /**
   * Sets (or clears) the project's limits; returns one line per limit this node cannot enforce.
   * Errors from the kernel (a limit below current use) surface as the project's start error.
   */
  applyLimits(limits: ResourceLimits | undefined): string[] {
    const unenforced: string[] = [];
    const memory = this.layout.memory;
    if (memory === null) {
      if (limits?.memoryBytes !== undefined) unenforced.push('memory limit (no memory cgroup controller on this node)');
    } else if (memory.version === 2) {
      writeFileSync(join(this.dir(memory), 'memory.max'), limits?.memoryBytes === undefined ? 'max' : String(limits.memoryBytes));
      // Without this, a limited workload would swap instead of being OOM-killed at its limit.
      writeIfPresent(join(this.dir(memory), 'memory.swap.max'), limits?.memoryBytes === undefined ? 'max' : '0');
    } else {
      const dir = this.dir(memory);
      // memsw (memory + swap) must stay >= the limit: lift it first, then set both.
      writeIfPresent(join(dir, 'memory.memsw.limit_in_bytes'), '-1');
      writeFileSync(join(dir, 'memory.limit_in_bytes'), limits?.memoryBytes === undefined ? '-1' : String(limits.memoryBytes));
      if (limits?.memoryBytes !== undefined) writeIfPresent(join(dir, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes));
    }
    const pids = this.layout.pids;
    if (pids === null) {
      if (limits?.pids !== undefined) unenforced.push('pids limit (no pids cgroup controller on this node)');
    } else {
      writeFileSync(join(this.dir(pids), 'pids.max'), limits?.pids === undefined ? 'max' : String(limits.pids));
    }
    const cpu = this.layout.cpuLimit;
    const quotaUs = limits?.cpus === undefined ? null : Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_US));
    if (cpu === null) {
      if (limits?.cpus !== undefined) unenforced.push('cpu limit (no cpu cgroup controller on this node)');
    } else if (cpu.version === 2) {
      writeFileSync(join(this.dir(cpu), 'cpu.max'), `${quotaUs === null ? 'max' : String(quotaUs)} ${CPU_PERIOD_US}`);
    } else {
      writeFileSync(join(this.dir(cpu), 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
      writeFileSync(join(this.dir(cpu), 'cpu.cfs_quota_us'), quotaUs === null ? '-1' : String(quotaUs));
    }
    return unenforced;
  }

  usage(): CgroupUsage {
    return { cpuNs: this.cpuNs(), memoryBytes: this.memoryBytes() };
  }

  private cpuNs(): number | null {
    const hierarchy = this.layout.cpuUsage;
    if (hierarchy === null) return null;
    if (hierarchy.version === 2) {
      const usec = statField(readOrNull(join(this.dir(hierarchy), 'cpu.stat')), 'usage_usec');
      return usec === null ? null : usec * 1000;
    }
    const text = readOrNull(join(this.dir(hierarchy), 'cpuacct.usage'));
    return text === null ? null : Number(text.trim());
  }

  private memoryBytes(): number | null {
    const hierarchy = this.layout.memory;
    if (hierarchy === null) return null;
    const dir = this.dir(hierarchy);
    const stat = readOrNull(join(dir, 'memory.stat'));
    if (hierarchy.version === 2) {
      const current = readOrNull(join(dir, 'memory.current'));
      return current === null ? null : Math.max(0, Number(current.trim()) - (statField(stat, 'inactive_file') ?? 0));
    }
    const usage = readOrNull(join(dir, 'memory.usage_in_bytes'));
    return usage === null ? null : Math.max(0, Number(usage.trim()) - (statField(stat, 'total_inactive_file') ?? 0));
  }

  /**
   * Processes the kernel's OOM killer killed in this project so far; null without a memory
   * controller. v2's memory.events counts the subtree; v1 counts where the victim was (main, x<n>).
   */
  oomKills(): number | null {
    const hierarchy = this.layout.memory;
    if (hierarchy === null) return null;
    const dir = this.dir(hierarchy);
    if (hierarchy.version === 2) return statField(readOrNull(join(dir, 'memory.events')), 'oom_kill');
    let total: number | null = null;
    for (const path of [dir, ...listDirs(dir).map((entry) => join(dir, entry))]) {
      const count = statField(readOrNull(join(path, 'memory.oom_control')), 'oom_kill');
      if (count !== null) total = (total ?? 0) + count;
    }
    return total;
  }

  /** Live processes of the project (its workload and execs), from the tracking hierarchy. */
  pids(): number[] {
    return subtreePids(this.dir(this.layout.track));
  }

  /**
   * Removes `sub`'s directories (empty ones only; the kernel refuses others). Off the event loop:
   * removing a memory cgroup waits for the kernel (milliseconds on a busy machine).
   */
  async removeSub(sub: string): Promise<void> {
    await Promise.all(this.layout.hierarchies.map((hierarchy) => rmdirQuietly(this.dir(hierarchy, sub))));
  }

  /** Removes the project's directories everywhere once the spawner has emptied them. */
  async remove(): Promise<void> {
    await Promise.all(
      this.layout.hierarchies.map(async (hierarchy) => {
        const dir = this.dir(hierarchy);
        await Promise.all(listDirs(dir).map((entry) => rmdirQuietly(join(dir, entry))));
        await rmdirQuietly(dir);
      }),
    );
  }

  toString(): string {
    return `cgroup of ${projectKey(this.project)}`;
  }
}

function writeIfPresent(path: string, value: string): void {
  try {
    writeFileSync(path, value);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** `name value` lines (cpu.stat, memory.stat, memory.events, memory.oom_control). */
export function statField(text: string | null, name: string): number | null {
  if (text === null) return null;
  const match = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return match === null ? null : Number(match[1]);
}

function listDirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
  } catch {
    return [];
  }
}

async function rmdirQuietly(dir: string): Promise<void> {
  // Gone already, or still busy: the spawner removes every dir at its end.
  await rmdir(dir).catch(() => undefined);
}

/** Pids in a cgroup and its subdirectories. */
export function subtreePids(dir: string): number[] {
  const pids: number[] = [];
  const text = readOrNull(join(dir, 'cgroup.procs'));
  if (text !== null) for (const word of text.split('\n')) if (word !== '') pids.push(Number(word));
  for (const entry of listDirs(dir)) pids.push(...subtreePids(join(dir, entry)));
  return pids;
}
