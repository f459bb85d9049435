// Real clock and small polling helpers for the runtime tests (real processes, real time).
import { readFileSync } from 'node:fs';
import type { Clock, TimerHandle } from '../../consensus/types.ts';
import { liveGroupMembers } from '../supervisor.ts';

export const realClock: Clock = {
  nowMs: () => performance.now(),
  setTimer: (delayMs, callback) => setTimeout(callback, delayMs) as unknown as TimerHandle,
  clearTimer: (handle) => clearTimeout(handle as unknown as NodeJS.Timeout),
};

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `predicate` holds; throws with `what` after timeoutMs. */
export async function eventually<T>(what: string, timeoutMs: number, predicate: () => T | undefined | null | false | Promise<T | undefined | null | false>): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value !== undefined && value !== null && value !== false) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** State letter and process group of a pid, from /proc; null if it does not exist. */
function statOf(pid: number): { state: string; pgrp: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', pgrp: Number(fields[2]) };
  } catch {
    return null;
  }
}

/** True while a process with this pid exists and is not a zombie. */
export function processRuns(pid: number): boolean {
  const stat = statOf(pid);
  return stat !== null && stat.state !== 'Z';
}

/** Live (non-zombie) processes of a process group. */
export const groupMembers = liveGroupMembers;

/** Ends stand-in node processes a test started, also SIGSTOPped ones (SIGCONT first, so none is left stopped). */
export function killStandIns(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}
