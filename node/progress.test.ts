// Goal: the progress line of long commands draws only on a terminal and never with --json, redraws at most every
// PROGRESS_REDRAW_MS_MIN, steps aside for ordinary output, fits the terminal's width, and leaves nothing when done.
import test from 'ava';
import { PROGRESS_REDRAW_MS_MIN, progressLine } from './progress.ts';

function fakeTerminal(isTTY: boolean, columns = 40): { stream: { isTTY: boolean; columns: number; write(text: string): boolean }; written: string[] } {
  const written: string[] = [];
  return { written, stream: { isTTY, columns, write: (text: string) => written.push(text) > 0 } };
}

test('off when the stream is not a terminal, and with --json even on one', (t) => {
  for (const [isTTY, json] of [[false, false], [true, true]] as const) {
    const { stream, written } = fakeTerminal(isTTY);
    const progress = progressLine(stream, { json });
    progress.update('sim: seed 1/3');
    let printed = false;
    progress.print(() => (printed = true));
    progress.done();
    t.false(progress.enabled);
    t.true(printed, 'ordinary output still goes out');
    t.deepEqual(written, []);
  }
});

test('redraws in place at most every PROGRESS_REDRAW_MS_MIN, steps aside for output, truncates, and clears at the end', (t) => {
  let nowMs = 0;
  const { stream, written } = fakeTerminal(true, 30);
  const progress = progressLine(stream, { json: false, nowMs: () => nowMs });
  progress.update('sim: seed 1/500');
  progress.update('sim: seed 2/500');
  nowMs += PROGRESS_REDRAW_MS_MIN;
  progress.update('sim: seed 3/500');
  t.deepEqual(written, ['\r\x1b[Ksim: seed 1/500', '\r\x1b[Ksim: seed 3/500']);
  written.length = 0;
  progress.print(() => written.push('seed 3 FAILED\n'));
  t.deepEqual(written, ['\r\x1b[K', 'seed 3 FAILED\n', '\r\x1b[Ksim: seed 3/500']);
  written.length = 0;
  nowMs += PROGRESS_REDRAW_MS_MIN;
  progress.update('sim: seed 4/500, 1 failed, a long tail that does not fit');
  t.is(written[0], '\r\x1b[Ksim: seed 4/500, 1 failed, a…', 'one column short of the 30, so the cursor never wraps');
  written.length = 0;
  progress.done();
  t.deepEqual(written, ['\r\x1b[K']);
});
