// Process groups and exit statuses: what the process runtime needs where no cgroup tracks a
// workload (the fallback), what the Docker runtime shares (a shell's exit status), and what
// tests and benchmarks use to look at real processes. The per-node spawner that supervises
// workloads is actors/spawner.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';

export interface SupervisedExit {
  readonly exitCode: number | null;
  readonly signal: string | null;
}

const signalNames = new Map<number, string>(Object.entries(constants.signals).map(([name, number]) => [number, name]));

/** Shell convention: a status above 128 is death by signal (status - 128). */
export function decodeShellStatus(status: number): SupervisedExit {
  if (status > 128 && signalNames.has(status - 128)) return { exitCode: null, signal: signalNames.get(status - 128) ?? null };
  return { exitCode: status, signal: null };
}

export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** A group is alive while any process is in it (signal 0 probes without sending; zombies count). */
export const groupAlive = (pgid: number): boolean => signalGroup(pgid, 0);

/** State, process group and the CPU time (utime + stime, clock ticks) of a process, from /proc/<pid>/stat. */
export function procStat(pid: number | string): { comm: string; state: string; pgrp: number; cpuTicks: number; startTicks: string } | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null; // exited while we looked
  }
  // Fields after the command name (which may hold spaces): state, ppid, pgrp, … utime (14), stime (15), starttime (22).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), state: fields[0] ?? '', pgrp: Number(fields[2]), cpuTicks: Number(fields[11]) + Number(fields[12]), startTicks: fields[19] ?? '' };
}

const isLive = (state: string): boolean => state !== 'Z' && state !== 'X';

/**
 * The live (not zombie) processes of each of the given groups, from one scan of /proc. Zombies
 * are left out: where PID 1 does not reap orphans they stay in the group, holding nothing.
 */
export function membersOfGroups(pgids: ReadonlySet<number>): Map<number, number[]> {
  const members = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return members;
  }
  for (const entry of entries) {
    if (entry.charCodeAt(0) < 48 || entry.charCodeAt(0) > 57) continue;
    const stat = procStat(entry);
    if (stat === null || !pgids.has(stat.pgrp) || !isLive(stat.state)) continue;
    const list = members.get(stat.pgrp) ?? [];
    list.push(Number(entry));
    members.set(stat.pgrp, list);
  }
  return members;
}

export const liveGroupMembers = (pgid: number): number[] => membersOfGroups(new Set([pgid])).get(pgid) ?? [];

/** /proc/<pid>/stat counts CPU time in USER_HZ ticks, 100 per second on Linux whatever the kernel's HZ. */
const NS_PER_USER_HZ_TICK = 10_000_000;

/** CPU time and resident memory summed over processes, from /proc (processes gone meanwhile are skipped). */
export function procFigures(pids: Iterable<number>): { cpuNs: number; rssBytes: number } {
  let cpuNs = 0;
  let rssBytes = 0;
  for (const pid of pids) {
    const stat = procStat(pid);
    if (stat === null || !isLive(stat.state)) continue;
    cpuNs += stat.cpuTicks * NS_PER_USER_HZ_TICK;
    try {
      const rssKb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
      rssBytes += Number(rssKb ?? 0) * 1024;
    } catch {
      // exited while we looked
    }
  }
  return { cpuNs, rssBytes };
}
