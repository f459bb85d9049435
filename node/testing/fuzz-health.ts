// Test support for the issue 11 fuzz suite: what must hold after every batch of
// hostile input against a live cluster. Every node process is alive, some node
// leads, each sentinel workload started before the batch runs exactly once (its
// processes are counted in /proc, so a second copy on any node is seen), the
// members the ring is built from are the Raft configuration's, and no node
// wrote an uncaught exception to stderr.
import { readdir, readFile } from 'node:fs/promises';
import { Role } from '../../proto/gen/admin_pb.ts';
import { sleep, type LocalCluster } from '../local-cluster.ts';

/** What an uncaught exception or unhandled rejection leaves on a node's stderr (pino writes one JSON line per record, never a bare stack frame). */
const CRASH_PATTERN = /^\s+at \S.*$|uncaught|unhandled/im;

/** Processes whose argv is exactly `argv` (any path for argv[0]), across the machine. */
export async function processesWithArgv(argv: readonly string[]): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let text: string;
    try {
      text = await readFile(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const parts = text.split('\0').filter((part, index, all) => part !== '' || index < all.length - 1);
    if (parts.length !== argv.length) continue;
    const [first, ...rest] = parts;
    if ((first ?? '').split('/').pop() === argv[0] && rest.every((part, index) => part === argv[index + 1])) pids.push(Number(entry));
  }
  return pids;
}

export interface HealthOptions {
  /** Each sentinel's argv (a unique `sleep N`); several, so a ring with a wrong member owns at least one of them. */
  readonly sentinels: readonly (readonly string[])[];
  /** How long the cluster may take to elect a leader and restart a moved sentinel after a batch. */
  readonly settleMs: number;
}

/** Where each node's stderr stood at the last check: only new output is judged. */
export class StderrCursor {
  readonly #seen = new Map<string, string>();

  /** New stderr of each member since the last call, by member id. */
  take(cluster: LocalCluster): Map<string, string> {
    const fresh = new Map<string, string>();
    for (const member of cluster.members) {
      const before = this.#seen.get(member.id) ?? '';
      const now = member.stderrTail;
      // stderrTail keeps the last 20,000 characters: when it rolled over, judge all of it.
      fresh.set(member.id, now.startsWith(before) ? now.slice(before.length) : now);
      this.#seen.set(member.id, now);
    }
    return fresh;
  }
}

/** Problems found after a batch (empty: healthy). Waits up to settleMs for a leader and for the sentinel to run once. */
export async function clusterProblems(cluster: LocalCluster, cursor: StderrCursor, options: HealthOptions): Promise<string[]> {
  const problems: string[] = [];
  for (const member of cluster.members) {
    if (!cluster.running(member)) problems.push(`${member.id} exited (code ${String(member.process?.exitCode ?? 'unknown')}); stderr: ${member.stderrTail.slice(-2000)}`);
  }
  const end = Date.now() + options.settleMs;
  let leader: string | null = null;
  let copies: number[][] = [];
  const duplicated = new Map<number, number[]>();
  while (Date.now() < end) {
    const statuses = await Promise.all(cluster.members.filter((m) => cluster.running(m)).map((m) => cluster.status(m)));
    leader = statuses.find((status) => status !== null && status.role === Role.LEADER)?.id ?? null;
    copies = await Promise.all(options.sentinels.map((argv) => processesWithArgv(argv)));
    copies.forEach((pids, index) => {
      if (pids.length > 1 && !duplicated.has(index)) duplicated.set(index, pids);
    });
    if (leader !== null && copies.every((pids) => pids.length === 1)) break;
    await sleep(200);
  }
  if (leader === null) problems.push(`no leader within ${options.settleMs} ms`);
  for (const [index, pids] of duplicated) problems.push(`sentinel ${index} ran ${pids.length} times at once (pids ${pids.join(', ')})`);
  copies.forEach((pids, index) => {
    if (pids.length !== 1) problems.push(`sentinel ${index} runs ${pids.length} times (pids ${pids.join(', ')}), not once, ${options.settleMs} ms after the batch`);
  });
  const ring = await ringMemberProblem(cluster);
  if (ring !== null) problems.push(ring);
  for (const [id, text] of cursor.take(cluster)) {
    const crash = CRASH_PATTERN.exec(text);
    if (crash !== null) problems.push(`${id} wrote what an uncaught exception writes: ${text.slice(Math.max(0, crash.index - 1500), crash.index + 1500)}`);
  }
  return problems;
}

/** Whether the members the ring is built from (`members/` keys) are the Raft configuration's; a message when not. */
async function ringMemberProblem(cluster: LocalCluster): Promise<string | null> {
  const member = cluster.members.find((m) => cluster.running(m));
  if (member === undefined) return 'no node runs';
  try {
    const [status, stored] = await Promise.all([cluster.status(member), cluster.readPrefix(member, 'members/', 'members0')]);
    if (status === null) return `${member.id} does not answer Status`;
    const configured = status.members.map((m) => `${m.id}=${m.address}`).sort();
    const ring = [...stored].map(([key, address]) => `${key.slice('members/'.length)}=${address}`).sort();
    return configured.join(' ') === ring.join(' ') ? null : `the ring's members (${ring.join(' ')}) are not the configuration's (${configured.join(' ')})`;
  } catch (error) {
    return `members/ could not be read through ${member.id}: ${(error as Error).message}`;
  }
}
