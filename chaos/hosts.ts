// Hosts for a chaos run: one Linux network namespace per node, joined by veth
// pairs to a bridge that lives in a namespace of its own, plus one veth from
// the root namespace so the workload (an outside observer) reaches every node.
// Everything carries the run's prefix, so teardown (also from another process
// after a crash) finds exactly this run's things and nothing else. Faults are
// iptables rules inside the node namespaces: they vanish with them.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Third octet range of the 10.213.x.0/24 subnets a run may take. */
const SUBNET_BASE = '10.213';
/** Node slot i gets SUBNET.(NODE_HOST_FIRST + i); the root namespace gets .254. */
const NODE_HOST_FIRST = 11;
const ROOT_HOST = 254;
export const SLOTS_MAX = 32;

export class HostSetupError extends Error {
  override readonly name = 'HostSetupError';
}

/** Run a command; a failure says which command and what it printed. */
export async function sh(command: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run(command, args, { timeout: 15_000 });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new HostSetupError(`${command} ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim().split('\n')[0] ?? ''}`);
  }
}

/** A fresh run prefix: `dhc` and 6 hex digits (short enough for 15-byte link names). */
export function newRunPrefix(): string {
  return `dhc${randomBytes(3).toString('hex')}`;
}

export class Hosts {
  private readonly made = new Set<number>();
  private bridgeReady = false;

  private constructor(
    readonly prefix: string,
    /** The first three octets, e.g. 10.213.37 */
    readonly subnet: string,
  ) {}

  /** Checks that this machine can do it (root, ip, iptables) and picks an unused 10.213.x.0/24. */
  static async create(prefix: string): Promise<Hosts> {
    if (process.getuid?.() !== 0) throw new HostSetupError('the chaos suite needs root (network namespaces and iptables); run it as root or in CI');
    await sh('ip', ['-V']).catch(() => {
      throw new HostSetupError('iproute2 (`ip`) is missing; install it (apt-get install -y iproute2)');
    });
    await sh('iptables', ['--version']).catch(() => {
      throw new HostSetupError('iptables is missing; install it (apt-get install -y iptables)');
    });
    const used = `${await sh('ip', ['-4', 'addr'])}\n${await sh('ip', ['-4', 'route'])}`;
    const first = parseInt(prefix.slice(-2), 16);
    for (let i = 0; i < 250; i++) {
      const third = ((first + i) % 250) + 1;
      const subnet = `${SUBNET_BASE}.${third}`;
      if (!used.includes(`${subnet}.`)) return new Hosts(prefix, subnet);
    }
    throw new HostSetupError(`every ${SUBNET_BASE}.x.0/24 subnet is in use here; remove stale ones (ip -4 addr) and retry`);
  }

  get bridgeNamespace(): string {
    return `${this.prefix}-br`;
  }
  get rootLink(): string {
    return `${this.prefix}h`;
  }
  get rootAddress(): string {
    return `${this.subnet}.${ROOT_HOST}`;
  }
  namespace(slot: number): string {
    return `${this.prefix}-n${slot}`;
  }
  address(slot: number): string {
    if (!(slot >= 0 && slot < SLOTS_MAX)) throw new HostSetupError(`slot ${slot} out of range 0..${SLOTS_MAX - 1}`);
    return `${this.subnet}.${NODE_HOST_FIRST + slot}`;
  }

  /** The bridge namespace and the root namespace's way in. */
  private async ensureBridge(): Promise<void> {
    if (this.bridgeReady) return;
    const br = this.bridgeNamespace;
    await sh('ip', ['netns', 'add', br]);
    this.bridgeReady = true;
    await sh('ip', ['-n', br, 'link', 'add', 'br0', 'type', 'bridge']);
    await sh('ip', ['-n', br, 'link', 'set', 'br0', 'up']);
    await sh('ip', ['-n', br, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['link', 'add', this.rootLink, 'type', 'veth', 'peer', 'name', 'vroot', 'netns', br]);
    await sh('ip', ['-n', br, 'link', 'set', 'vroot', 'master', 'br0', 'up']);
    await sh('ip', ['addr', 'add', `${this.rootAddress}/24`, 'dev', this.rootLink]);
    await sh('ip', ['link', 'set', this.rootLink, 'up']);
  }

  /** A namespace for slot `slot` with its address on eth0, wired to the bridge. Idempotent. */
  async ensureHost(slot: number): Promise<void> {
    if (this.made.has(slot)) return;
    await this.ensureBridge();
    const ns = this.namespace(slot);
    const br = this.bridgeNamespace;
    await sh('ip', ['netns', 'add', ns]);
    this.made.add(slot);
    await sh('ip', ['-n', br, 'link', 'add', `v${slot}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await sh('ip', ['-n', br, 'link', 'set', `v${slot}`, 'master', 'br0', 'up']);
    await sh('ip', ['-n', ns, 'addr', 'add', `${this.address(slot)}/24`, 'dev', 'eth0']);
    await sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }

  /** Replace slot `slot`'s INPUT rules with drops from `fromSlots` and, if given, random loss from every peer. */
  async setInputRules(slot: number, fromSlots: readonly number[], lossProbability: number): Promise<void> {
    const ns = this.namespace(slot);
    const ipt = (...args: string[]): Promise<string> => sh('ip', ['netns', 'exec', ns, 'iptables', '-w', ...args]);
    await ipt('-F', 'INPUT');
    for (const from of fromSlots) await ipt('-A', 'INPUT', '-s', this.address(from), '-j', 'DROP');
    if (lossProbability > 0) {
      // Only peer traffic: the observer's own connections (from the root namespace) stay clean.
      await ipt('-A', 'INPUT', '-s', this.rootAddress, '-j', 'ACCEPT');
      await ipt('-A', 'INPUT', '-s', `${this.subnet}.0/24`, '-m', 'statistic', '--mode', 'random', '--probability', String(lossProbability), '-j', 'DROP');
    }
  }

  async clearRules(slot: number): Promise<void> {
    await this.setInputRules(slot, [], 0);
  }

  get slots(): number[] {
    return [...this.made].sort((a, b) => a - b);
  }

  /** Remove everything this run made. Never throws; returns what could not be removed. */
  async destroy(): Promise<string[]> {
    const problems = await sweep(this.prefix);
    this.made.clear();
    this.bridgeReady = false;
    return problems;
  }
}

/** What a run with `prefix` left on this machine: namespaces, root links, processes inside its namespaces. */
export async function leftovers(prefix: string): Promise<string[]> {
  const found: string[] = [];
  for (const ns of await namespacesOf(prefix)) {
    found.push(`netns ${ns}`);
    for (const pid of await pidsIn(ns)) found.push(`process ${pid} in ${ns}`);
  }
  const links = await sh('ip', ['-o', 'link', 'show']);
  for (const line of links.split('\n')) {
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1];
    if (name?.startsWith(prefix) === true) found.push(`link ${name}`);
  }
  // Rules are only ever added inside the run's namespaces; one in the root namespace would be a bug.
  for (const rule of (await sh('iptables', ['-w', '-S'])).split('\n')) if (rule.includes(`${SUBNET_BASE}.`)) found.push(`root iptables rule: ${rule}`);
  return found;
}

async function namespacesOf(prefix: string): Promise<string[]> {
  const out = await sh('ip', ['netns', 'list']);
  return out
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(`${prefix}-`));
}

async function pidsIn(ns: string): Promise<number[]> {
  const out = await sh('ip', ['netns', 'pids', ns]).catch(() => '');
  return out
    .split('\n')
    .map((line) => Number(line.trim()))
    .filter((pid) => Number.isInteger(pid) && pid > 0);
}

/** How long the processes of a run get to end on SIGTERM before SIGKILL: a node's spawner needs its 0.8 s grace and a little more. */
const SWEEP_GRACE_MS = 3000;

/**
 * Tear down whatever a run with `prefix` left: end the processes inside its
 * namespaces (SIGTERM, then SIGKILL; SIGCONT first, a stopped process cannot die), delete the
 * namespaces (which takes their veths and iptables rules along) and the root
 * link. Safe to call twice, and from another process.
 */
export async function sweep(prefix: string): Promise<string[]> {
  const problems: string[] = [];
  // SIGTERM first (SIGCONT before it: a stopped process acts on nothing): nodes and their spawners
  // then stop their workloads and remove their cgroups, which a SIGKILL of all at once leaves behind.
  const signal = (pids: readonly number[], last: 'SIGTERM' | 'SIGKILL'): void => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, last);
      } catch {
        // Already gone.
      }
    }
  };
  const inNamespaces = async (): Promise<number[]> => (await Promise.all((await namespacesOf(prefix).catch(() => [])).map((ns) => pidsIn(ns)))).flat();
  let pids = await inNamespaces();
  signal(pids, 'SIGTERM');
  for (const until = Date.now() + SWEEP_GRACE_MS; pids.length > 0 && Date.now() < until; pids = await inNamespaces()) await new Promise((resolve) => setTimeout(resolve, 100));
  signal(pids, 'SIGKILL');
  for (const ns of await namespacesOf(prefix).catch(() => [])) {
    // A dying process can hold the namespace a moment; retry briefly.
    let removed = false;
    for (let attempt = 0; attempt < 20 && !removed; attempt++) {
      const pids = await pidsIn(ns);
      if (pids.length === 0) {
        removed = await sh('ip', ['netns', 'delete', ns]).then(
          () => true,
          () => false,
        );
      }
      if (!removed) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (!removed) problems.push(`could not delete netns ${ns}`);
  }
  const link = `${prefix}h`;
  const links = await sh('ip', ['-o', 'link', 'show']).catch(() => '');
  if (links.includes(` ${link}:`) || links.includes(` ${link}@`)) {
    // Deleting the bridge namespace takes the pair's root end with it, a moment later: gone is fine.
    await sh('ip', ['link', 'delete', link]).catch((error: Error) => {
      if (!/Cannot find device/.test(error.message)) problems.push(error.message);
    });
  }
  return problems;
}
