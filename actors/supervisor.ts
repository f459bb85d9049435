// The supervisor: a small /bin/sh script between the node and each workload, so that
// a workload never outlives its node. It leads its own process group (the workload
// runs inside it) and holds a pipe from the node on its stdin; when that pipe closes
// (the node exited, crashed or was SIGKILLed: the kernel closes its fds) it stops the
// whole group, SIGTERM then SIGKILL. It reports the workload's pid and exit status on
// fd 3, and kills leftovers of the workload's tree when the workload itself exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import type { Readable } from 'node:stream';
import type { Clock, TimerHandle } from '../consensus/types.ts';

/**
 * $1 = command, $2 = grace in seconds. fd 0: the node's liveness pipe; fd 3: status to the node.
 * The pipe moves to fd 4 first: sh gives a background job /dev/null as its stdin, so the watcher
 * reads fd 4. The watcher is forked first, so that a node dying at once still takes the workload
 * with it. The workload is forked before any trap, so it does not inherit an ignored SIGTERM. SIGPIPE is ignored too: once the node is gone, reporting the exit on fd 3 must
 * not kill the supervisor before it kills the group. dash's kill needs `-s SIG --` for a group.
 */
export const SUPERVISOR_SCRIPT = `
exec 4<&0 </dev/null
(
  trap '' TERM
  while read -r _ <&4; do :; done
  kill -s TERM -- -$$
  sleep "$2"
  kill -s KILL -- -$$
) >/dev/null 2>&1 3>&- &
/bin/sh -c "$1" 3>&- 4<&- &
child=$!
exec 4<&-
trap '' TERM PIPE
echo "pid $child" >&3 2>/dev/null
wait $child
code=$?
echo "exit $code" >&3 2>/dev/null
kill -s KILL -- -$$
`;

export interface SupervisedExit {
  readonly exitCode: number | null;
  readonly signal: string | null;
}

export interface SupervisedOptions {
  readonly command: string;
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
  /** How long the supervisor waits between SIGTERM and SIGKILL when the node is gone. */
  readonly orphanGraceSeconds: number;
  readonly shell?: string;
}

const signalNames = new Map<number, string>(Object.entries(constants.signals).map(([name, number]) => [number, name]));

/** Shell convention: a status above 128 is death by signal (status - 128). */
export function decodeShellStatus(status: number): SupervisedExit {
  if (status > 128 && signalNames.has(status - 128)) return { exitCode: null, signal: signalNames.get(status - 128) ?? null };
  return { exitCode: status, signal: null };
}

/** One supervised workload: its process group, output streams and exit. */
export class Supervised {
  readonly child: ChildProcess;
  /** The process group id (the supervisor's pid). */
  readonly pgid: number;
  /** The workload's own pid, once the supervisor reported it. */
  workloadPid: number | null = null;
  readonly exited: Promise<SupervisedExit>;
  private reported: SupervisedExit | null = null;

  private constructor(child: ChildProcess, pgid: number) {
    this.child = child;
    this.pgid = pgid;
    const status = child.stdio[3] as Readable;
    let text = '';
    status.setEncoding('utf8');
    status.on('data', (chunk: string) => {
      text += chunk;
      for (;;) {
        const newline = text.indexOf('\n');
        if (newline < 0) break;
        this.onStatusLine(text.slice(0, newline));
        text = text.slice(newline + 1);
      }
    });
    status.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        // The status pipe may still hold the "exit" line: read it to its end first.
        const finish = (): void => resolve(this.reported ?? (signal !== null ? { exitCode: null, signal } : decodeShellStatus(code ?? 0)));
        if (status.readableEnded || status.destroyed) finish();
        else {
          status.once('close', finish);
          status.once('end', finish);
        }
      });
    });
  }

  static launch(options: SupervisedOptions): Promise<Supervised> {
    return new Promise((resolve, reject) => {
      const child = spawn(options.shell ?? '/bin/sh', ['-c', SUPERVISOR_SCRIPT, 'debughost-supervisor', options.command, String(options.orphanGraceSeconds)], {
        cwd: options.cwd,
        env: options.env,
        // detached: the supervisor calls setsid(), so it leads a new process group that holds the workload.
        detached: true,
        stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      });
      child.once('error', reject);
      child.once('spawn', () => {
        const pid = child.pid;
        if (pid === undefined) {
          reject(new Error('supervisor did not start'));
          return;
        }
        child.stdin?.on('error', () => undefined);
        resolve(new Supervised(child, pid));
      });
    });
  }

  get stdout(): Readable {
    return this.child.stdout as Readable;
  }

  get stderr(): Readable {
    return this.child.stderr as Readable;
  }

  /** Signals the whole group; false if it is already gone. */
  signalGroup(signal: NodeJS.Signals): boolean {
    return signalGroup(this.pgid, signal);
  }

  /**
   * Stops the group: SIGTERM, then SIGKILL if the workload has not ended after graceMs.
   * Waits on the supervisor's exit, not on the group (orphaned zombies may linger in it
   * where init does not reap); when the workload ends the supervisor kills the rest.
   */
  async stop(graceMs: number, clock: Clock): Promise<SupervisedExit> {
    this.signalGroup('SIGTERM');
    let timer: TimerHandle | null = null;
    const graceOver = new Promise<false>((resolve) => {
      timer = clock.setTimer(graceMs, () => resolve(false));
    });
    const ended = await Promise.race([this.exited.then(() => true), graceOver]);
    // Clear the timer: a pending grace timer would hold a shutting-down node for graceMs.
    if (timer !== null) clock.clearTimer(timer);
    if (!ended) this.signalGroup('SIGKILL');
    const exit = await this.exited;
    await this.groupGone(clock);
    return exit;
  }

  /**
   * The supervisor's last act is SIGKILL to its group, but a killed process needs CPU time to
   * actually exit (and close its sockets); on a busy machine that is milliseconds. Waits until
   * no live member is left, so that after stop() the ports are free. Bounded: SIGKILL again
   * every 100 ms, give up after groupGoneMsMax.
   */
  private async groupGone(clock: Clock, groupGoneMsMax = 2000): Promise<void> {
    const stepMs = 10;
    for (let waitedMs = 0; waitedMs < groupGoneMsMax; waitedMs += stepMs) {
      if (liveGroupMembers(this.pgid).length === 0) return;
      if (waitedMs % 100 === 0) this.signalGroup('SIGKILL');
      await new Promise<void>((resolve) => clock.setTimer(stepMs, resolve));
    }
  }

  private onStatusLine(line: string): void {
    const [kind, value] = line.split(' ');
    const number = Number.parseInt(value ?? '', 10);
    if (!Number.isInteger(number)) return;
    if (kind === 'pid') this.workloadPid = number;
    if (kind === 'exit') this.reported = decodeShellStatus(number);
  }
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

/**
 * The live (not zombie) processes of a group, from /proc. Zombies are excluded because where
 * PID 1 does not reap orphans they stay in the group forever, holding nothing.
 */
export function liveGroupMembers(pgid: number): number[] {
  const members: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return members;
  }
  for (const entry of entries) {
    if (entry.charCodeAt(0) < 48 || entry.charCodeAt(0) > 57) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    // Fields after the command name (which may hold spaces): state, ppid, pgrp, …
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ', 3);
    if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') members.push(Number(entry));
  }
  return members;
}
