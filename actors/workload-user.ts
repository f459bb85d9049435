// Who a process workload runs as, where its home and default working directory are, and the
// fixed environment it starts from. When the node runs as root, each tenant's workloads run
// under a user id of their own (allocated on this node, kept in the state dir), so that one
// tenant's processes cannot read another's files; otherwise they run as the node's user. The
// choice and its limits: docs/security.md ("Workloads").
import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { RuntimeError, type ProjectRef } from './runtime.ts';

/** tenant: a uid per tenant (needs root); node: the node's own user. */
export type WorkloadUserMode = 'tenant' | 'node';

export interface WorkloadUserLimits {
  /** First uid (and gid) handed to a tenant: far from distributions' system and login ranges and from subuid ranges. */
  readonly uidBase: number;
  /** How many tenants one node can give a user to. */
  readonly uidCount: number;
}

export const WORKLOAD_USER_DEFAULTS: WorkloadUserLimits = { uidBase: 1_900_000_000, uidCount: 100_000 };

/** PATH of every workload and exec: the usual system directories, not the node's PATH. */
export const WORKLOAD_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(delimiter);
export const WORKLOAD_LANG = 'C.UTF-8';

/**
 * The fixed base every workload and exec starts from: PATH (the system directories, plus the
 * directory of the node's own `node` binary so that `node` and `npm` resolve as for the node),
 * HOME (the tenant's home on this node), LANG. Nothing is copied from the node's environment.
 */
export function workloadBaseEnv(home: string, nodeBinary: string = process.execPath): Record<string, string> {
  const nodeDir = dirname(nodeBinary);
  const path = WORKLOAD_PATH.split(delimiter).includes(nodeDir) ? WORKLOAD_PATH : `${WORKLOAD_PATH}${delimiter}${nodeDir}`;
  return { PATH: path, HOME: home, LANG: WORKLOAD_LANG };
}

export interface WorkloadIdentity {
  /** -1: the node's own user (no switch). */
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

interface UidFile {
  readonly version: 1;
  readonly uids: Record<string, number>;
}

/** A path segment for a name: never '.', '..' or holding '/'. */
const segment = (name: string): string => encodeURIComponent(name).replace(/^\.{1,2}$/, (dots) => '%2E'.repeat(dots.length));

export class WorkloadUsers {
  readonly #uids = new Map<string, number>();

  private constructor(
    readonly mode: WorkloadUserMode,
    /** Holds <tenant>/home and <tenant>/projects/<name>. */
    readonly workRoot: string,
    private readonly uidFile: string,
    private readonly limits: WorkloadUserLimits,
  ) {}

  /**
   * Opens the tenants' directories and, in tenant mode, the node's uid allocations. The work root is
   * 0711: tenants reach their own directory but cannot list the others.
   */
  static open(options: { readonly mode: WorkloadUserMode; readonly workRoot: string; readonly stateDir: string; readonly limits?: Partial<WorkloadUserLimits> }): WorkloadUsers {
    if (options.mode === 'tenant' && process.getuid?.() !== 0) {
      throw new RuntimeError('RuntimeUnavailableError', 'workloads can run as per-tenant users only when the node runs as root; run the node as root or choose the node user mode');
    }
    const limits = { ...WORKLOAD_USER_DEFAULTS, ...options.limits };
    if (!Number.isSafeInteger(limits.uidBase) || limits.uidBase < 1000 || !Number.isSafeInteger(limits.uidCount) || limits.uidCount < 1 || limits.uidBase + limits.uidCount > 2 ** 31) {
      throw new RuntimeError('InvalidSpecError', `workload uid range ${limits.uidBase}+${limits.uidCount} is not usable; give a base >= 1000 and a count >= 1 that stay below 2^31`);
    }
    mkdirSync(options.workRoot, { recursive: true, mode: 0o711 });
    chmodSync(options.workRoot, 0o711);
    const users = new WorkloadUsers(options.mode, options.workRoot, join(options.stateDir, 'tenant-uids.json'), limits);
    if (options.mode === 'tenant') users.#load();
    return users;
  }

  #load(): void {
    let text: string;
    try {
      text = readFileSync(this.uidFile, 'utf8');
    } catch {
      return;
    }
    const parsed = JSON.parse(text) as Partial<UidFile>;
    for (const [tenant, uid] of Object.entries(parsed.uids ?? {})) {
      if (Number.isSafeInteger(uid) && uid >= this.limits.uidBase && uid < this.limits.uidBase + this.limits.uidCount) this.#uids.set(tenant, uid);
    }
  }

  #save(): void {
    const file: UidFile = { version: 1, uids: Object.fromEntries(this.#uids) };
    const temporary = `${this.uidFile}.tmp`;
    mkdirSync(dirname(this.uidFile), { recursive: true });
    writeFileSync(temporary, JSON.stringify(file), { mode: 0o600 });
    renameSync(temporary, this.uidFile);
  }

  #uidOf(tenant: string): number {
    const known = this.#uids.get(tenant);
    if (known !== undefined) return known;
    const taken = new Set(this.#uids.values());
    for (let uid = this.limits.uidBase; uid < this.limits.uidBase + this.limits.uidCount; uid += 1) {
      if (taken.has(uid)) continue;
      this.#uids.set(tenant, uid);
      this.#save();
      return uid;
    }
    throw new RuntimeError('RuntimeUnavailableError', `this node has given all ${this.limits.uidCount} workload user ids to tenants; widen the range (uidCount)`);
  }

  /**
   * The user a tenant's processes run as on this node, with its home made. Layout: <workRoot>/<tenant>
   * and <tenant>/projects belong to the node (0711: pass, not list) so that a tenant cannot swap
   * them for links; its home and project directories are its own (0700).
   */
  identity(tenant: string): WorkloadIdentity {
    const uid = this.mode === 'tenant' ? this.#uidOf(tenant) : -1;
    const tenantDir = join(this.workRoot, segment(tenant));
    nodeDir(tenantDir);
    const home = join(tenantDir, 'home');
    ownedDir(home, uid);
    return { uid, gid: uid, home };
  }

  /** The working directory of a project that names none: made on first use, the tenant's own. */
  projectDir(project: ProjectRef, identity: WorkloadIdentity): string {
    const projects = join(this.workRoot, segment(project.tenant), 'projects');
    nodeDir(projects);
    const dir = join(projects, segment(project.name));
    ownedDir(dir, identity.uid);
    return dir;
  }
}

function nodeDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  const stat = lstatSync(dir);
  if (!stat.isDirectory()) throw new RuntimeError('RuntimeUnavailableError', `${dir} is not a directory; move it away so the runtime can make the tenant's directory`);
  if ((stat.mode & 0o777) !== 0o711) chmodSync(dir, 0o711);
}

function ownedDir(dir: string, uid: number): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (uid < 0) return;
  const stat = lstatSync(dir);
  if (!stat.isDirectory()) throw new RuntimeError('RuntimeUnavailableError', `${dir} is not a directory; move it away so the runtime can make the tenant's directory`);
  if (stat.uid !== uid || stat.gid !== uid) chownSync(dir, uid, uid);
  if ((stat.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
}

/**
 * The first directory on the way to `dir` that other users may not pass (no search permission
 * for others), or null when they can reach it: tenants' users must reach their homes by path.
 */
export function closedAncestor(dir: string): string | null {
  let current = dirname(resolve(dir));
  for (;;) {
    try {
      if ((statSync(current).mode & 0o001) === 0) return current;
    } catch {
      return current;
    }
    const parent = dirname(current);
    if (parent === current) return null;
    current = parent;
  }
}

/**
 * Whether a user may enter a directory (search permission on it, by its mode bits): a cwd the
 * workload's user cannot enter is refused before anything runs. Root may enter anything.
 */
export function userMayEnter(dir: string, uid: number, gid: number): boolean {
  if (uid <= 0) return true;
  const stat = statSync(dir);
  const mode = stat.mode;
  if (stat.uid === uid) return (mode & 0o100) !== 0;
  if (stat.gid === gid) return (mode & 0o010) !== 0;
  return (mode & 0o001) !== 0;
}
