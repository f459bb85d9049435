// Which cgroup hierarchies the process runtime uses on this machine, found at open: cgroup v2
// (the unified hierarchy: tracking, kill, freeze, CPU time; memory/pids/cpu where the parent
// delegates them), cgroup v1 (freezer, memory, pids, cpuacct, cpu), or both (v2 tracks, v1 gives
// the controllers v2 lacks). The node's cgroups live under its own cgroup in each hierarchy, in
// one root directory per node named after its state dir, so a restarted node finds its
// predecessor's and nothing else.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

/** auto: the best per function; v2 / v1: only that version; off: process groups. */
export type CgroupMode = 'auto' | 'v2' | 'v1' | 'off';
export const CGROUP_MODES: readonly CgroupMode[] = ['auto', 'v2', 'v1', 'off'];

export interface CgroupMount {
  readonly version: 1 | 2;
  readonly mountPoint: string;
  /** The cgroup path the mount shows at its mount point (not '/' for a bind mount of a subtree). */
  readonly root: string;
  /** v1: the controllers bound to it (cpu, memory, …); v2: empty (see cgroup.controllers). */
  readonly controllers: ReadonlySet<string>;
}

/** The cgroup mounts in /proc/self/mountinfo (v1 hierarchies without a controller, like name=systemd, are left out). */
export function parseMountinfo(text: string): CgroupMount[] {
  const mounts: CgroupMount[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const fields = left.split(' ');
    const [fsType, , superOptions] = right.split(' ');
    const root = unescapeMount(fields[3] ?? '');
    const mountPoint = unescapeMount(fields[4] ?? '');
    if (fsType === 'cgroup2') mounts.push({ version: 2, mountPoint, root, controllers: new Set() });
    if (fsType === 'cgroup') {
      const controllers = new Set((superOptions ?? '').split(',').filter((option) => KNOWN_V1_CONTROLLERS.has(option)));
      if (controllers.size > 0) mounts.push({ version: 1, mountPoint, root, controllers });
    }
  }
  return mounts;
}

const KNOWN_V1_CONTROLLERS = new Set(['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'net_cls', 'blkio', 'perf_event', 'net_prio', 'hugetlb', 'pids', 'rdma', 'misc']);

/** mountinfo escapes space, tab, newline and backslash as octal. */
const unescapeMount = (text: string): string => text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));

/** This process's cgroup per hierarchy from /proc/self/cgroup: key 'v2', or a v1 hierarchy's controllers sorted and comma-joined. */
export function parseProcCgroup(text: string): Map<string, string> {
  const paths = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (match === null) continue;
    const [, id, controllers, path] = match as unknown as [string, string, string, string];
    if (id === '0' && controllers === '') paths.set('v2', path);
    else paths.set(controllerKey(controllers.split(',').filter((name) => KNOWN_V1_CONTROLLERS.has(name))), path);
  }
  return paths;
}

const controllerKey = (controllers: Iterable<string>): string => [...controllers].sort().join(',');

/** One hierarchy as the runtime uses it. */
export interface Hierarchy {
  readonly version: 1 | 2;
  /** v1: the controllers of the hierarchy; v2: the controllers enabled for the node's projects. */
  readonly controllers: ReadonlySet<string>;
  /** This node's root directory in it. */
  readonly root: string;
}

export type TrackKind = 'cg2' | 'cg1f' | 'cg1';

export interface CgroupLayout {
  /** Where processes are counted, signalled, killed and frozen. */
  readonly track: Hierarchy;
  readonly trackKind: TrackKind;
  readonly memory: Hierarchy | null;
  readonly pids: Hierarchy | null;
  /** CPU time: v2's cpu.stat (always there), or v1's cpuacct. */
  readonly cpuUsage: Hierarchy | null;
  readonly cpuLimit: Hierarchy | null;
  /** Every hierarchy used, track first. */
  readonly hierarchies: readonly Hierarchy[];
}

export interface CgroupsOpened {
  readonly layout: CgroupLayout | null;
  /** One line for the node's log: what was chosen, or why process groups serve instead. */
  readonly description: string;
}

/** The node's root directory name in every hierarchy: its id and a digest of its state dir. */
export function nodeRootName(node: string, stateDir: string): string {
  const digest = createHash('sha256').update(resolve(stateDir)).digest('hex').slice(0, 12);
  return `debughost-${node.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40)}-${digest}`;
}

export interface OpenCgroupsOptions {
  readonly mode: CgroupMode;
  readonly rootName: string;
  /** Overrides for tests: the text of /proc/self/mountinfo and /proc/self/cgroup. */
  readonly mountinfo?: string;
  readonly procCgroup?: string;
}

/** A hierarchy we could use: where the node's root would be. */
interface Candidate {
  readonly version: 1 | 2;
  readonly controllers: ReadonlySet<string>;
  readonly root: string;
}

/** Finds the hierarchies, creates the node's root in those it uses, and says what it chose. */
export function openCgroups(options: OpenCgroupsOptions): CgroupsOpened {
  if (options.mode === 'off') return { layout: null, description: 'cgroups turned off: workloads are tracked by process group (a workload that calls setsid escapes stop; memory, pids and cpu limits are not enforced)' };
  let mounts: CgroupMount[];
  let own: Map<string, string>;
  try {
    mounts = parseMountinfo(options.mountinfo ?? readFileSync('/proc/self/mountinfo', 'utf8'));
    own = parseProcCgroup(options.procCgroup ?? readFileSync('/proc/self/cgroup', 'utf8'));
  } catch (error) {
    return { layout: null, description: `cannot read /proc/self/mountinfo or /proc/self/cgroup (${(error as Error).message}): workloads are tracked by process group` };
  }
  const candidates: Candidate[] = [];
  const refused: string[] = [];
  for (const mount of mounts) {
    if (mount.version === 2 && options.mode === 'v1') continue;
    if (mount.version === 1 && options.mode === 'v2') continue;
    const ownPath = own.get(mount.version === 2 ? 'v2' : controllerKey(mount.controllers));
    if (ownPath === undefined) continue;
    const inside = relative(mount.root, ownPath);
    if (inside.startsWith('..')) continue; // our cgroup is outside what this mount shows
    const root = join(mount.mountPoint, inside, options.rootName);
    try {
      mkdirSync(root, { recursive: true });
    } catch (error) {
      refused.push(`${root}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      continue;
    }
    candidates.push({ version: mount.version, controllers: mount.version === 2 ? enableV2Controllers(root) : mount.controllers, root });
  }
  const v2 = candidates.find((candidate) => candidate.version === 2) ?? null;
  const v1 = (controller: string): Candidate | null => candidates.find((candidate) => candidate.version === 1 && candidate.controllers.has(controller)) ?? null;
  const track = v2 ?? v1('freezer') ?? v1('pids') ?? v1('memory') ?? v1('cpuacct') ?? null;
  if (track === null) {
    removeRoots(candidates);
    const tried = refused.length > 0 ? ` (${refused.join('; ')})` : ' (none mounted)';
    return { layout: null, description: `no writable cgroup hierarchy${tried}: workloads are tracked by process group (a workload that calls setsid escapes stop; memory, pids and cpu limits are not enforced)` };
  }
  const controller = (name: string): Candidate | null => (v2 !== null && v2.controllers.has(name) ? v2 : v1(name));
  const layout = {
    track,
    trackKind: (track.version === 2 ? 'cg2' : track.controllers.has('freezer') ? 'cg1f' : 'cg1') as TrackKind,
    memory: controller('memory'),
    pids: controller('pids'),
    cpuUsage: v2 ?? v1('cpuacct'),
    cpuLimit: controller('cpu'),
  };
  const used = new Set<Candidate>([layout.track, ...[layout.memory, layout.pids, layout.cpuUsage, layout.cpuLimit].filter((h): h is Candidate => h !== null)]);
  removeRoots(candidates.filter((candidate) => !used.has(candidate)));
  const name = (h: Candidate | null): string => (h === null ? 'none' : `v${h.version}`);
  return {
    layout: { ...layout, hierarchies: [...used] },
    description: `cgroups: tracking and kill by v${track.version}${layout.trackKind === 'cg1' ? ' (no freezer: a fenced node kills instead of freezing)' : ''}, memory ${name(layout.memory)}, pids ${name(layout.pids)}, cpu time ${name(layout.cpuUsage)}, cpu limit ${name(layout.cpuLimit)}; roots ${[...used].map((h) => h.root).join(', ')}`,
  };
}

/**
 * v2 gives a child a controller only when its parent enables it in cgroup.subtree_control; enable
 * in the node's root those its parent offers (on this machine often none: v1 holds them).
 */
function enableV2Controllers(root: string): Set<string> {
  const enabled = new Set<string>();
  let offered: string[];
  try {
    offered = readFileSync(join(root, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
  } catch {
    return enabled;
  }
  for (const name of ['memory', 'pids', 'cpu']) {
    if (!offered.includes(name)) continue;
    try {
      writeFileSync(join(root, 'cgroup.subtree_control'), `+${name}`);
      enabled.add(name);
    } catch {
      // Not delegated to us: v1 or nothing serves it.
    }
  }
  return enabled;
}

/** Removes the node's (empty) roots of a layout no spawner took over: a runtime that failed to start. */
export function removeLayoutRoots(layout: CgroupLayout | null): void {
  removeRoots(layout?.hierarchies ?? []);
}

function removeRoots(candidates: readonly { readonly root: string }[]): void {
  for (const candidate of candidates) {
    try {
      rmdirSync(candidate.root);
    } catch {
      // In use or already gone: the spawner removes it at the end.
    }
  }
}

/**
 * The node roots (debughost-*) under this process's own cgroup in every mounted hierarchy: where
 * nodes this process starts make theirs. For tests and teardown checks; reads only.
 */
export function nodeCgroupRootsHere(): string[] {
  let mounts: CgroupMount[];
  let own: Map<string, string>;
  try {
    mounts = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
    own = parseProcCgroup(readFileSync('/proc/self/cgroup', 'utf8'));
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const mount of mounts) {
    const ownPath = own.get(mount.version === 2 ? 'v2' : controllerKey(mount.controllers));
    if (ownPath === undefined) continue;
    const inside = relative(mount.root, ownPath);
    if (inside.startsWith('..')) continue;
    const base = join(mount.mountPoint, inside);
    try {
      for (const entry of readdirSync(base, { withFileTypes: true })) if (entry.isDirectory() && entry.name.startsWith('debughost-')) found.push(join(base, entry.name));
    } catch {
      // unreadable: nothing of ours there
    }
  }
  return found.sort();
}

/** The spawner's view of the layout: track first, the others only to be removed at the end. */
export function spawnerRoots(layout: CgroupLayout | null): { kind: TrackKind | 'cgx'; dir: string }[] {
  if (layout === null) return [];
  return layout.hierarchies.map((hierarchy) => ({ kind: hierarchy === layout.track ? layout.trackKind : 'cgx', dir: hierarchy.root }));
}
