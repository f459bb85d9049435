// Opening real process runtimes in tests: a temp root that tenants' users can pass (so per-tenant
// users are active when the tests run as root), a registry that closes every runtime and log
// store and removes the root afterwards, and probes of what the machine offers (cgroup modes).
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCgroups, nodeRootName, type CgroupMode } from '../cgroups.ts';
import { LogStore } from '../logs.ts';
import { ProcessRuntime, type ProcessRuntimeOptions } from '../runtime-process.ts';
import type { WorkloadSpec } from '../runtime.ts';
import { realClock } from './real.ts';

export interface OpenedRuntime {
  readonly runtime: ProcessRuntime;
  readonly logs: LogStore;
  readonly dataDir: string;
  readonly lines: string[];
}

export class RuntimeFixture {
  readonly root: string;
  readonly #runtimes: ProcessRuntime[] = [];
  readonly #stores: LogStore[] = [];
  #count = 0;

  constructor(prefix: string) {
    this.root = mkdtempSync(join(tmpdir(), prefix));
    // mkdtemp makes 0700: tenants' users must pass it to reach their homes below.
    chmodSync(this.root, 0o711);
  }

  newLogs(dir: string): LogStore {
    const store = new LogStore({ dir, wallNowMs: () => Date.now() });
    this.#stores.push(store);
    return store;
  }

  async open(options: Partial<ProcessRuntimeOptions> = {}): Promise<OpenedRuntime> {
    this.#count += 1;
    const dataDir = join(this.root, `node-${this.#count}`);
    const logs = this.newLogs(join(dataDir, 'logs'));
    const lines: string[] = [];
    const runtime = await ProcessRuntime.open({
      node: 'n1',
      stateDir: join(dataDir, 'runtime', 'process'),
      logs,
      clock: realClock,
      wallNowMs: () => Date.now(),
      stopGraceMs: 2000,
      log: (level, message) => lines.push(`${level}: ${message}`),
      ...options,
    });
    this.#runtimes.push(runtime);
    return { runtime, logs, dataDir, lines };
  }

  adopt(runtime: ProcessRuntime): void {
    this.#runtimes.push(runtime);
  }

  async close(): Promise<void> {
    for (const runtime of this.#runtimes) await runtime.close();
    // Stores flush on the next turn: close them before removing their directories.
    for (const store of this.#stores) await store.close();
    rmSync(this.root, { recursive: true, force: true });
  }
}

export const commandSpec = (name: string, command: string, extra: Partial<WorkloadSpec> = {}): WorkloadSpec => ({
  project: { tenant: 't1', name },
  command,
  env: {},
  ports: {},
  restart: 'never',
  node: 'n1',
  ...extra,
});

export interface ModeHere {
  readonly mode: Exclude<CgroupMode, 'off'>;
  /** Why the mode cannot run here, or null. */
  readonly skip: string | null;
  /** Which limits it can enforce here. */
  readonly memory: boolean;
  readonly pids: boolean;
}

/** Which cgroup modes work here, each checked by creating (and removing) a probe root. */
export function cgroupModesHere(): ModeHere[] {
  return (['auto', 'v1', 'v2'] as const).map((mode) => {
    const opened = openCgroups({ mode, rootName: nodeRootName(`probe${process.pid}`, mode) });
    for (const hierarchy of opened.layout?.hierarchies ?? []) rmdirSync(hierarchy.root);
    const layout = opened.layout;
    return { mode, skip: layout === null ? opened.description : null, memory: layout?.memory != null, pids: layout?.pids != null };
  });
}

/** Live processes carrying `NAME=value` in their environment (root reads every process's environ). */
export function processesWithEnv(name: string, value: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.charAt(stat.lastIndexOf(')') + 2) === 'Z') continue;
      if (readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(`${name}=${value}`)) pids.push(Number(entry));
    } catch {
      // ended while we looked
    }
  }
  return pids;
}

/** Directories named like a node root of this test process anywhere in the cgroup mounts. */
export function cgroupRootsLeft(rootName: string): string[] {
  const found: string[] = [];
  const visit = (dir: string, depth: number): void => {
    if (depth > 4) return;
    let entries: string[];
    try {
      entries = readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(dir, entry);
      if (entry === rootName) found.push(path);
      else if (!entry.startsWith('debughost-')) visit(path, depth + 1);
    }
  };
  if (existsSync('/sys/fs/cgroup')) visit('/sys/fs/cgroup', 0);
  return found;
}
