// Goal: the Raft benchmark's option parsing and statistics are right (the benchmark itself never runs under npm test).
import test from 'ava';
import { BenchUsageError, RAFT_BENCH_DEFAULTS, median, parseRaftBenchArgs, percentile, summarize } from './raft-stats.ts';

test('no flags give the documented defaults; flags override them, seconds become milliseconds', (t) => {
  t.deepEqual(parseRaftBenchArgs([]), RAFT_BENCH_DEFAULTS);
  const options = parseRaftBenchArgs(['--clients', '128', '--channels', '8', '--duration-s', '3', '--warmup-s', '0', '--runs', '3', '--systems', 'etcd']);
  t.like(options, { clients: 128, channels: 8, durationMs: 3000, warmupMs: 0, runs: 3, systems: ['etcd'] });
});

test('bad flags are one-line usage errors that name the flag', (t) => {
  for (const [argv, mention] of [
    [['--clients', '0'], '--clients'],
    [['--clients', 'many'], '--clients'],
    [['--channels', '9', '--clients', '4'], '--channels'],
    [['--systems', 'zookeeper'], 'zookeeper'],
    [['--frobnicate'], 'frobnicate'],
  ] as const) {
    const error = t.throws(() => parseRaftBenchArgs([...argv]), { instanceOf: BenchUsageError });
    t.true(error.message.includes(mention), error.message);
    t.false(error.message.includes('\n'), 'one line');
  }
});

test('percentile is nearest-rank over sorted values', (t) => {
  const values = Float64Array.from({ length: 100 }, (_, i) => i + 1);
  t.is(percentile(values, 50), 50);
  t.is(percentile(values, 99), 99);
  t.is(percentile(values, 100), 100);
  t.is(percentile([7], 99), 7);
  t.true(Number.isNaN(percentile([], 50)));
  t.throws(() => percentile(values, 0), { instanceOf: RangeError });
});

test('median takes the middle, or the mean of the middle two', (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 3, 2]), 2.5);
  t.true(Number.isNaN(median([])));
});

test('summarize turns latencies in a window into writes per second and percentiles', (t) => {
  const latencies = Float64Array.from([5, 1, 4, 2, 3]);
  const result = summarize('etcd', 2, latencies, 500, 9, 1, 'boom');
  t.like(result, { system: 'etcd', completed: 5, completedTotal: 9, writesPerSecond: 10, latencyMsP50: 3, latencyMsP99: 5, latencyMsMax: 5, errors: 1, firstError: 'boom' });
});
