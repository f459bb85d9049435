// A node's lease heartbeats from a thread of its own (actors/lease-beats-thread.js), so that a
// busy main event loop (a failover on a loaded machine holds it for a second and more) does not
// look like a lost lease to the spawner's watchdog. The main thread publishes, in shared memory,
// until when its owner lease is valid; the thread beats while the monotonic clock is before that,
// through the spawner's beats FIFO (its own channel: the spawner's pipes belong to the main loop).
// Why this keeps the fence's guarantee: actors/lease-fence.ts.
import { closeSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Clock } from '../consensus/types.ts';
import type { FenceTiming } from './lease-fence.ts';
import { heartbeatCommand } from './spawner-protocol.ts';

export const LEASE_BEATS_THREAD = join(import.meta.dirname, 'lease-beats-thread.js');

/** The thread holds a timer and a few numbers; its heap is bounded so that nothing there can grow the node (≈10 MB RSS in all). */
const THREAD_OLD_GENERATION_MB_MAX = 16;
const THREAD_YOUNG_GENERATION_MB_MAX = 2;

/** CLOCK_MONOTONIC in ns: the clock of process.hrtime, performance.now (from another origin) and the spawner's now_ms. */
const monotonicNs = (): bigint => process.hrtime.bigint();

export class LeaseBeats {
  /** Until when (CLOCK_MONOTONIC ns) the owner lease is valid; 0: not valid. Written here, read by the thread. */
  readonly #validUntil = new BigInt64Array(new SharedArrayBuffer(BigInt64Array.BYTES_PER_ELEMENT));
  readonly #thread: Worker;
  /** FIFO write ends handed to the thread and not yet closed; the last is the one it writes. */
  readonly #fds: number[] = [];
  /** The FIFO the thread said it writes (it beat into it once already), or null. */
  #using: number | null = null;
  #alive = true;

  constructor(timing: FenceTiming, onWarning: (text: string) => void) {
    this.#thread = new Worker(LEASE_BEATS_THREAD, {
      // Plain JavaScript: no TypeScript loader in the thread, whatever the node was started with.
      execArgv: [],
      workerData: { validUntil: this.#validUntil.buffer, heartbeatMs: timing.heartbeatMs, command: heartbeatCommand(timing.validForMs, timing.validForMs + timing.killAfterMs).trimEnd() },
      resourceLimits: { maxOldGenerationSizeMb: THREAD_OLD_GENERATION_MB_MAX, maxYoungGenerationSizeMb: THREAD_YOUNG_GENERATION_MB_MAX },
    });
    // The node decides when it ends, not this thread.
    this.#thread.unref();
    this.#thread.on('message', (message: { warning?: string; using?: number }) => {
      if (message.warning !== undefined) onWarning(message.warning);
      // The thread writes that FIFO now, never one handed before it: those are closed here, never under its feet.
      if (message.using !== undefined) {
        this.#using = message.using;
        this.#closeFds(this.#fds.slice(0, Math.max(0, this.#fds.indexOf(message.using))));
      }
    });
    const died = (why: string): void => {
      if (!this.#alive) return;
      this.#alive = false;
      this.#closeFds([...this.#fds]);
      onWarning(`the lease heartbeat thread ended (${why}); heartbeats come from the main event loop again`);
    };
    this.#thread.on('error', (error) => died(error.message));
    this.#thread.on('exit', (code) => died(`exit code ${code}`));
  }

  /**
   * The thread is running and writes the FIFO `fd` (it said so, after its first beat into it).
   * Until then (a thread starting takes a second and more on a loaded machine) or once it ended,
   * the caller beats from its own loop.
   */
  beatsInto(fd: number): boolean {
    return this.#alive && this.#using === fd;
  }

  /**
   * The owner lease is valid until `untilMs` on `clock` (the host's clock, which must be this
   * process's monotonic clock). Converted conservatively: the monotonic clock is read before
   * `clock`, so the published time is never later than the lease's end.
   */
  publish(clock: Clock, untilMs: number): void {
    const beforeNs = monotonicNs();
    const remainingMs = untilMs - clock.nowMs();
    Atomics.store(this.#validUntil, 0, remainingMs <= 0 ? 0n : beforeNs + BigInt(Math.floor(remainingMs * 1e6)));
  }

  /** The write end of a (new) spawner's beats FIFO: the thread beats into it from now on; this object closes it. */
  connect(fd: number): void {
    if (!this.#alive) {
      closeSync(fd);
      return;
    }
    this.#fds.push(fd);
    this.#thread.postMessage({ fd });
  }

  async close(): Promise<void> {
    Atomics.store(this.#validUntil, 0, 0n);
    this.#alive = false;
    await this.#thread.terminate();
    this.#closeFds([...this.#fds]);
  }

  #closeFds(fds: readonly number[]): void {
    for (const fd of fds) {
      const index = this.#fds.indexOf(fd);
      if (index < 0) continue;
      this.#fds.splice(index, 1);
      try {
        closeSync(fd);
      } catch {
        // already closed: nothing to release
      }
    }
  }
}
