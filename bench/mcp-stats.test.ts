// The actors and MCP benchmarks' pure helpers: the pool bounds concurrency and visits each item once, summaries use nearest-rank percentiles, bad flags say what to give.
import test from 'ava';
import { pool, summarize, wholeNumberFlag } from './mcp-stats.ts';
import { BenchUsageError } from './raft-stats.ts';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('pool visits every item once with at most `concurrency` in flight', async (t) => {
  const items = Array.from({ length: 25 }, (_, i) => i);
  const seen: number[] = [];
  let inFlight = 0;
  let inFlightMax = 0;
  await pool(items, 4, async (item) => {
    inFlight += 1;
    inFlightMax = Math.max(inFlightMax, inFlight);
    await tick();
    seen.push(item);
    inFlight -= 1;
  });
  t.deepEqual([...seen].sort((a, b) => a - b), items);
  t.is(inFlightMax, 4);
});

test('pool rejects with the first failure and starts no new items after it', async (t) => {
  const started: number[] = [];
  const error = await t.throwsAsync(
    pool([1, 2, 3, 4, 5, 6], 2, async (item) => {
      started.push(item);
      await tick();
      if (item === 2) throw new Error('item 2 failed');
    }),
  );
  t.is(error?.message, 'item 2 failed');
  t.true(started.length < 6, `started ${started.join(',')}`);
});

test('summarize gives nearest-rank p50 and p99 and the maximum, whatever the order', (t) => {
  const samples = Array.from({ length: 200 }, (_, i) => 200 - i);
  t.deepEqual(summarize(samples), { count: 200, p50Ms: 100, p99Ms: 198, maxMs: 200 });
  t.true(Number.isNaN(summarize([]).p50Ms));
});

test('wholeNumberFlag keeps the default, accepts a number in range, rejects anything else with the usage', (t) => {
  t.is(wholeNumberFlag('projects', undefined, 1000, 3, 10_000, 'USAGE'), 1000);
  t.is(wholeNumberFlag('projects', '300', 1000, 3, 10_000, 'USAGE'), 300);
  for (const bad of ['2', '10001', '1.5', 'many', '']) {
    const error = t.throws(() => wholeNumberFlag('projects', bad, 1000, 3, 10_000, 'USAGE'), { instanceOf: BenchUsageError });
    t.regex(error?.message ?? '', /^--projects must be a whole number from 3 to 10000, got .*; usage: USAGE$/);
  }
});
