// A status line for long commands (sim, chaos, bench) on a terminal: redrawn in place on stderr,
// cleared before any other output so the two never garble each other. Off when stderr is not a
// TTY and in --json mode, where the output is for programs.

/** At most this often a redraw: a sim seed can take under a millisecond, and a redraw per seed would cost more than the seed. */
export const PROGRESS_REDRAW_MS_MIN = 100;
/** How often a ticker redraws a line whose text depends on time (elapsed seconds). */
export const PROGRESS_TICK_MS = 250;

export interface ProgressStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): boolean;
}

export interface Progress {
  readonly enabled: boolean;
  /** The new status text; drawn now or at the next redraw slot. */
  update(text: string): void;
  /** Runs `write` (which prints ordinary output) with the status line out of the way, then redraws it. */
  print(write: () => void): void;
  /** Redraws `text()` every PROGRESS_TICK_MS until done(). */
  tick(text: () => string): void;
  /** Clears the line for good. */
  done(): void;
}

export function progressLine(stream: ProgressStream, options: { readonly json: boolean; readonly nowMs?: () => number }): Progress {
  const enabled = stream.isTTY === true && !options.json;
  const nowMs = options.nowMs ?? (() => performance.now());
  let text = '';
  let shown = false;
  let drawnAtMs = -Infinity;
  let ticker: NodeJS.Timeout | null = null;
  const clear = (): void => {
    if (shown) stream.write('\r\x1b[K');
    shown = false;
  };
  const draw = (): void => {
    // A pseudo-terminal may report 0 columns: then assume the common 80.
    const width = Math.max(20, (stream.columns || 80) - 1);
    stream.write(`\r\x1b[K${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
    shown = true;
    drawnAtMs = nowMs();
  };
  return {
    enabled,
    update(next) {
      text = next;
      if (enabled && nowMs() - drawnAtMs >= PROGRESS_REDRAW_MS_MIN) draw();
    },
    print(write) {
      if (!enabled) return write();
      clear();
      write();
      if (text !== '') draw();
    },
    tick(source) {
      if (!enabled) return;
      ticker = setInterval(() => {
        text = source();
        draw();
      }, PROGRESS_TICK_MS);
      ticker.unref();
    },
    done() {
      if (ticker !== null) clearInterval(ticker);
      ticker = null;
      if (enabled) clear();
      text = '';
    },
  };
}
