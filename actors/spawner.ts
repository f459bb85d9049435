// The node's side of its spawner (actors/spawner.pl): one long-lived process per node that forks
// every workload into its cgroups, relays its output, reaps it, kills what it leaves, stops
// everything when the node dies, and freezes the node's workloads when its lease heartbeats stop.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { closeSync, constants as fsConstants, existsSync, openSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Clock, TimerHandle } from '../consensus/types.ts';
import {
  decodeWaitStatus,
  FrameReader,
  heartbeatCommand,
  killCommand,
  muteCommand,
  signalCommand,
  signalNumber,
  spawnCommand,
  type Frame,
  type ProcessExit,
  type SpawnRequest,
  type Target,
} from './spawner-protocol.ts';

export const SPAWNER_SCRIPT = join(import.meta.dirname, 'spawner.pl');

/** A cgroup hierarchy the spawner works in: the first non-cgx one tracks processes; cgx is only removed at the end. */
export interface SpawnerRoot {
  readonly kind: 'cg2' | 'cg1f' | 'cg1' | 'cgx';
  readonly dir: string;
}

export interface SpawnerOptions {
  readonly roots: readonly SpawnerRoot[];
  /** SIGTERM-to-SIGKILL grace when the node is gone. */
  readonly orphanGraceMs: number;
  /** Bound on the spawner being ready; it first kills a previous run's leftovers (itself bounded by 5 s). */
  readonly readyTimeoutMs: number;
  readonly clock: Clock;
  /** The perl interpreter (perl-base, Essential on Debian). */
  readonly perl?: string;
  /**
   * Where the spawner makes its beats FIFO (a path in a directory private to the node), which
   * takes heartbeats from outside the main event loop (actors/lease-beats.ts). Opened for writing
   * once the spawner is ready, and its name removed at once. Without it: heartbeats on fd 0 only.
   */
  readonly beatsFifo?: string;
}

export interface RunEnd {
  readonly exit: ProcessExit;
  /** The raw wait status of the run's first process. */
  readonly status: number;
  /** Why the run failed before its program ran (cgroup, user, cwd, exec), or null. */
  readonly failure: string | null;
}

export interface RunCallbacks {
  onOutput(stream: 'stdout' | 'stderr', chunk: Buffer): void;
  /** Once: the run's first process ended and nothing of its target is left; all output came before. */
  onEnd(end: RunEnd): void;
}

export type FenceState = 'frozen' | 'thawed' | 'killed';

export class SpawnerError extends Error {
  override readonly name = 'SpawnerError';
}

interface Run {
  readonly callbacks: RunCallbacks;
  pid: number | null;
  failure: string | null;
  started: { resolve: (value: { run: number; pid: number }) => void; reject: (error: Error) => void } | null;
}

/** The last bytes of the spawner's stderr kept for the error that reports its death. */
const STDERR_TAIL_BYTES_MAX = 4096;

export class Spawner {
  readonly leftovers: string[] = [];
  #nextRun = 1;
  #nextRequest = 1;
  readonly #runs = new Map<number, Run>();
  readonly #kills = new Map<number, (outcome: 'done' | 'timeout') => void>();
  #stderrTail = '';
  #dead: string | null = null;
  #closing = false;
  /** Why the beats FIFO could not be opened, or null. */
  beatsProblem: string | null = null;
  /** The write end of the beats FIFO until someone takes it (takeBeatsFd); null: none or taken. */
  #beatsFd: number | null = null;
  readonly #exited: Promise<void>;
  /** What the watchdog did; set by the runtime. */
  onFence: (state: FenceState) => void = () => undefined;
  /** The spawner ended without close(): every run was ended as killed; the runtime starts a new one. */
  onDeath: (why: string) => void = () => undefined;
  onWarning: (text: string) => void = () => undefined;

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    readonly pid: number,
  ) {
    this.#exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      this.#died(signal !== null ? `killed by ${signal}` : `exited with code ${String(code)}`);
      resolve();
    }));
  }

  /** Starts the spawner and waits until it has killed a previous run's leftovers and is ready. */
  static start(options: SpawnerOptions): Promise<Spawner> {
    const perl = options.perl ?? (existsSync('/usr/bin/perl') ? '/usr/bin/perl' : 'perl');
    const args = [SPAWNER_SCRIPT, String(options.orphanGraceMs), ...options.roots.map((root) => `${root.kind}:${root.dir}`), ...(options.beatsFifo === undefined ? [] : [`beats:${options.beatsFifo}`])];
    // detached: its own session, so signals to the node's process group (Ctrl-C, a group kill) miss it.
    // Its environment is fixed: the node's own never reaches it, nor through it any workload.
    const child = spawn(perl, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: { PATH: '/usr/bin:/bin', LANG: 'C' } });
    return new Promise((resolve, reject) => {
      let spawner: Spawner | null = null;
      let timer: TimerHandle | null = null;
      const fail = (error: Error): void => {
        if (timer !== null) options.clock.clearTimer(timer);
        child.kill('SIGKILL');
        reject(error);
      };
      child.once('error', (error) => fail(new SpawnerError(`cannot start the spawner (${perl} ${SPAWNER_SCRIPT}): ${error.message}; install perl-base`, { cause: error })));
      child.once('spawn', () => {
        const instance = new Spawner(child, child.pid as number);
        spawner = instance;
        instance.#attach(() => {
          if (timer !== null) options.clock.clearTimer(timer);
          if (options.beatsFifo !== undefined) instance.#openBeats(options.beatsFifo);
          resolve(instance);
        });
        child.once('exit', () => reject(new SpawnerError(`the spawner ended before it was ready: ${instance.#dead ?? ''}${instance.#stderrTail === '' ? '' : `; it said: ${instance.#stderrTail.trim()}`}`)));
      });
      timer = options.clock.setTimer(options.readyTimeoutMs, () => {
        timer = null;
        fail(new SpawnerError(`the spawner was not ready within ${options.readyTimeoutMs} ms${spawner === null ? '' : ` (pid ${spawner.pid})`}`));
      });
    });
  }

  #attach(ready: () => void): void {
    const reader = new FrameReader();
    this.child.stdout.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch (error) {
        this.onWarning((error as Error).message);
        this.child.kill('SIGKILL');
        return;
      }
      for (const frame of frames) this.#onFrame(frame, ready);
    });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (text: string) => {
      this.#stderrTail = (this.#stderrTail + text).slice(-STDERR_TAIL_BYTES_MAX);
    });
    this.child.stdin.on('error', () => undefined);
    this.#holdLoop();
  }

  /**
   * An idle spawner does not keep the node's event loop alive (the node decides when it ends); one
   * with runs or kills in flight does, as the workloads' own pipes did before.
   */
  #holdLoop(): void {
    const busy = this.#runs.size + this.#kills.size > 0 && this.#dead === null;
    const streams = [this.child, this.child.stdout, this.child.stderr, this.child.stdin] as unknown as { ref?: () => void; unref?: () => void }[];
    for (const stream of streams) {
      if (busy) stream.ref?.();
      else stream.unref?.();
    }
  }

  #onFrame(frame: Frame, ready: () => void): void {
    switch (frame.type) {
      case 'R':
        ready();
        return;
      case 'L':
        this.leftovers.push(frame.payload.toString('utf8'));
        return;
      case 'P': {
        const run = this.#runs.get(frame.id);
        if (run === undefined) return;
        run.pid = Number(frame.payload.toString('latin1'));
        run.started?.resolve({ run: frame.id, pid: run.pid });
        run.started = null;
        return;
      }
      case 'F': {
        const run = this.#runs.get(frame.id);
        if (run !== undefined) run.failure = frame.payload.toString('utf8');
        return;
      }
      case 'O':
      case 'D':
        this.#runs.get(frame.id)?.callbacks.onOutput(frame.type === 'O' ? 'stdout' : 'stderr', frame.payload);
        return;
      case 'X': {
        const run = this.#runs.get(frame.id);
        if (run === undefined) return;
        this.#runs.delete(frame.id);
        this.#holdLoop();
        const status = Number(frame.payload.toString('latin1'));
        if (run.started !== null) {
          run.started.reject(new SpawnerError(run.failure ?? 'the spawner could not start the process'));
          return;
        }
        run.callbacks.onEnd({ exit: decodeWaitStatus(status), status, failure: run.failure });
        return;
      }
      case 'k': {
        const done = this.#kills.get(frame.id);
        this.#kills.delete(frame.id);
        this.#holdLoop();
        done?.(frame.payload.length === 0 ? 'done' : 'timeout');
        return;
      }
      case 'Z':
        this.onFence(frame.payload.toString('latin1') as FenceState);
        return;
      case 'W':
        this.onWarning(frame.payload.toString('utf8'));
        return;
      default: {
        const never: never = frame.type;
        throw new Error(`unhandled frame ${String(never)}`);
      }
    }
  }

  /**
   * The spawner has made its FIFO (it holds the read end, so opening does not wait and writes
   * never fail for want of a reader while it lives). Non-blocking: a spawner that stops reading
   * makes a beat fail at once, and its watchdog acts on the silence. A failure here leaves the
   * heartbeats on fd 0, said in a warning.
   */
  #openBeats(path: string): void {
    try {
      this.#beatsFd = openSync(path, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
      unlinkSync(path);
    } catch (error) {
      this.beatsProblem = `cannot open the beats FIFO ${path} (${(error as Error).message})`;
    }
  }

  /** The beats FIFO's write end, once: the taker owns it (closes it). null: there is none, or it was taken. */
  takeBeatsFd(): number | null {
    const fd = this.#beatsFd;
    this.#beatsFd = null;
    return fd;
  }

  #closeBeats(): void {
    if (this.#beatsFd !== null) closeSync(this.#beatsFd);
    this.#beatsFd = null;
  }

  get alive(): boolean {
    return this.#dead === null;
  }

  /** Forks a run; resolves with its pid once forked (a failure before exec ends it with `failure`). */
  spawn(request: SpawnRequest, callbacks: RunCallbacks): Promise<{ run: number; pid: number }> {
    if (this.#dead !== null) return Promise.reject(new SpawnerError(`the spawner is gone (${this.#dead})`));
    const id = this.#nextRun;
    this.#nextRun += 1;
    const line = spawnCommand(id, request);
    return new Promise((resolve, reject) => {
      this.#runs.set(id, { callbacks, pid: null, failure: null, started: { resolve, reject } });
      this.#holdLoop();
      this.child.stdin.write(line);
    });
  }

  signal(target: Target, signal: NodeJS.Signals): void {
    if (this.#dead === null) this.child.stdin.write(signalCommand(signalNumber(signal), target));
  }

  /** Kills every process of the target; resolves once none is left ('timeout' after the spawner's bound). */
  kill(target: Target): Promise<'done' | 'timeout'> {
    if (this.#dead !== null) return Promise.resolve('timeout');
    const id = this.#nextRequest;
    this.#nextRequest += 1;
    return new Promise((resolve) => {
      this.#kills.set(id, resolve);
      this.#holdLoop();
      this.child.stdin.write(killCommand(id, target));
    });
  }

  /** Drops a run's output from now on (an exec past its output cap). */
  mute(run: number): void {
    if (this.#dead === null) this.child.stdin.write(muteCommand(run));
  }

  /** Freeze every workload after freezeAfterMs without a new heartbeat, kill them after killAfterMs; 0 disarms. */
  heartbeat(freezeAfterMs: number, killAfterMs: number): void {
    if (this.#dead === null) this.child.stdin.write(heartbeatCommand(freezeAfterMs, killAfterMs));
  }

  /** Ends the spawner: it stops what still runs (SIGTERM, then SIGKILL after its grace), removes the cgroups and exits. */
  async close(): Promise<void> {
    this.#closing = true;
    // Keep the event loop alive until the spawner has stopped everything and exited.
    this.child.ref();
    if (this.#dead === null) this.child.stdin.end();
    await this.#exited;
  }

  #died(why: string): void {
    if (this.#dead !== null) return;
    this.#dead = why;
    this.#closeBeats();
    const detail = `${why}${this.#stderrTail === '' ? '' : `: ${this.#stderrTail.trim().split('\n').slice(-3).join(' | ')}`}`;
    for (const [id, run] of this.#runs) {
      this.#runs.delete(id);
      if (run.started !== null) run.started.reject(new SpawnerError(`the spawner died (${detail})`));
      else run.callbacks.onEnd({ exit: { exitCode: null, signal: 'SIGKILL' }, status: 9, failure: null });
    }
    for (const [id, done] of this.#kills) {
      this.#kills.delete(id);
      done('timeout');
    }
    if (!this.#closing) this.onDeath(detail);
  }
}
