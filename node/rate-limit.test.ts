// Rate limits: local buckets refuse past the burst and refill with time; with a real redis-server the limit holds across two nodes' limiters (without Redis it would not); Redis killed mid-run: calls go on under the local limit and none waits past the deadline.
import { prerequisites } from '../actors/testing/prerequisites.ts';
import test, { type ExecutionContext } from 'ava';
import { performance } from 'node:perf_hooks';
import type { Identity } from '../actors/identity.ts';
import { RateLimiter, type RateOutcome } from './rate-limit.ts';
import { until } from './local-cluster.ts';
import { startRedis, type TestRedis } from './testing/redis-server.ts';
import { LocalBuckets } from './token-bucket.ts';

const alice = (tokenId: string): Identity => ({ tokenId, tokenName: tokenId, tenant: 'alice', role: 'developer' });

test('local buckets: the burst passes, the next call waits 1/rate, time refills; a call takes from both buckets or neither', (t) => {
  let now = 0;
  const buckets = new LocalBuckets(() => now, 100);
  const limit = { perSecond: 10, burst: 3 };
  const both = [
    { key: 'token:a', limit },
    { key: 'tenant:alice', limit: { perSecond: 10, burst: 4 } },
  ];
  t.true([1, 2, 3].every(() => buckets.take(both).ok));
  const refused = buckets.take(both);
  t.deepEqual(refused, { ok: false, retryAfterMs: 100, key: 'token:a' });
  // Another token of the tenant: its own bucket is full, the tenant's has one left.
  t.true(buckets.take([{ key: 'token:b', limit }, { key: 'tenant:alice', limit: { perSecond: 10, burst: 4 } }]).ok);
  const tenantFull = buckets.take([{ key: 'token:c', limit }, { key: 'tenant:alice', limit: { perSecond: 10, burst: 4 } }]);
  t.false(tenantFull.ok);
  if (!tenantFull.ok) t.is(tenantFull.key, 'tenant:alice');
  // token:c was not charged for the refused call: after the tenant refills it still has its whole burst.
  now += 1_000;
  t.true([1, 2, 3].every(() => buckets.take([{ key: 'token:c', limit }]).ok));
  t.false(buckets.take([{ key: 'token:c', limit }]).ok);
});

/** How many of `calls` calls, spread over `limiters` in turn and made at once, were allowed. */
async function burst(limiters: RateLimiter[], identity: Identity, calls: number): Promise<{ allowed: number; outcomes: RateOutcome[]; elapsedMs: number }> {
  const started = performance.now();
  const outcomes = await Promise.all(Array.from({ length: calls }, (_, i) => (limiters[i % limiters.length] as RateLimiter).take(identity)));
  return { allowed: outcomes.filter((o) => o.ok).length, outcomes, elapsedMs: performance.now() - started };
}

const CONFIG = { tokenPerSecond: 5, tokenBurst: 10, tenantPerSecond: 1_000, tenantBurst: 1_000 };

/** Tests that need a real redis-server: skipped with the reason where the package is missing (failing under CI). */
const withRedis = (await prerequisites('redis-server')).guard(test);

async function started(t: ExecutionContext): Promise<TestRedis> {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  return redis;
}

/** A limiter on a fresh redis-server, once it has connected. */
async function redisLimiter(t: ExecutionContext): Promise<{ redis: TestRedis; limiter: RateLimiter }> {
  const redis = await started(t);
  const limiter = new RateLimiter({ nowMs: () => performance.now(), clusterId: () => 'c1', redisUrl: redis.url }, CONFIG);
  t.teardown(() => limiter.close());
  await until('the limiter to reach Redis', 20_000, () => (limiter.redisReady ? true : null));
  return { redis, limiter };
}

withRedis('with Redis the limit holds across two nodes: 40 calls through two limiters let the burst through once, not twice', async (t) => {
  const redis = await started(t);
  const errors: string[] = [];
  // A generous command timeout: this test is about the shared budget, not about a loaded machine's event loop.
  const make = (clusterId: string): RateLimiter =>
    new RateLimiter({ nowMs: () => performance.now(), clusterId: () => clusterId, redisUrl: redis.url, onRedisError: (error) => errors.push(error.message) }, { ...CONFIG, redisCommandTimeoutMs: 2_000 });
  const [n1, n2] = [make('c1'), make('c1')];
  t.teardown(() => [n1, n2].forEach((l) => l.close()));
  await until('both limiters to reach Redis', 20_000, () => (n1.redisReady && n2.redisReady ? true : null));
  const shared = await burst([n1, n2], alice('t1'), 40);
  const refills = Math.ceil((shared.elapsedMs / 1000) * CONFIG.tokenPerSecond);
  t.log(`Redis: ${shared.allowed} of 40 allowed in ${shared.elapsedMs.toFixed(0)} ms (burst 10, ${CONFIG.tokenPerSecond}/s)`);
  t.true(shared.outcomes.every((o) => o.backend === 'redis'), `Redis decided every call (errors: ${errors.join('; ')})`);
  t.true(shared.allowed >= CONFIG.tokenBurst && shared.allowed <= CONFIG.tokenBurst + refills, `${shared.allowed} allowed`);
  const refusal = shared.outcomes.find((o) => !o.ok);
  t.true(refusal !== undefined && !refusal.ok && refusal.scope === 'token' && refusal.retryAfterMs > 0 && refusal.retryAfterMs <= 1000 / CONFIG.tokenPerSecond + 1);
  // The same two nodes without Redis: each applies the limit alone, so twice the burst gets through.
  const local = [new RateLimiter({ nowMs: () => performance.now(), clusterId: () => 'c1', redisUrl: null }, CONFIG), new RateLimiter({ nowMs: () => performance.now(), clusterId: () => 'c1', redisUrl: null }, CONFIG)];
  const apart = await burst(local, alice('t2'), 40);
  t.log(`local only: ${apart.allowed} of 40 allowed`);
  t.true(apart.allowed >= 2 * CONFIG.tokenBurst);
  // Another cluster sharing the Redis has its own budget.
  const other = make('c2');
  t.teardown(() => other.close());
  t.true((await other.take(alice('t1'))).ok);
});

withRedis('Redis killed mid-run: calls go on under the local limit, and none waits past the deadline', async (t) => {
  const { redis, limiter } = await redisLimiter(t);
  t.is((await limiter.take(alice('warm'))).backend, 'redis');
  await redis.kill();
  const deadlineMs = 250;
  const latencies: number[] = [];
  const outcomes: RateOutcome[] = [];
  for (let i = 0; i < 30; i += 1) {
    const started = performance.now();
    outcomes.push(await limiter.take(alice('after-kill')));
    latencies.push(performance.now() - started);
  }
  const slowest = Math.max(...latencies);
  t.log(`after the kill: slowest call ${slowest.toFixed(1)} ms, backends ${[...new Set(outcomes.map((o) => o.backend))].join(',')}, ${outcomes.filter((o) => o.ok).length} of 30 allowed`);
  t.true(slowest < deadlineMs, `a call took ${slowest.toFixed(1)} ms`);
  t.true(outcomes.every((o) => o.backend === 'local'), 'the local limit decides');
  const allowed = outcomes.filter((o) => o.ok).length;
  t.true(allowed >= CONFIG.tokenBurst && allowed <= CONFIG.tokenBurst + 2, `the local limit holds: ${allowed} allowed`);
});

withRedis('Redis paused (SIGSTOP, a hung server): one call pays the command timeout, the rest go local at once', async (t) => {
  const { redis, limiter } = await redisLimiter(t);
  redis.process.kill('SIGSTOP');
  t.teardown(() => void redis.process.kill('SIGCONT'));
  const latencies: number[] = [];
  const backends: string[] = [];
  for (let i = 0; i < 20; i += 1) {
    const started = performance.now();
    backends.push((await limiter.take(alice('paused'))).backend);
    latencies.push(performance.now() - started);
  }
  const [first, ...rest] = latencies;
  t.log(`first call ${first?.toFixed(1)} ms (command timeout ${limiter.config.redisCommandTimeoutMs} ms), the others at most ${Math.max(...rest).toFixed(1)} ms`);
  // Wide margins: a loaded 2-core machine delays timers.
  t.true((first ?? Infinity) < 1_000);
  t.true(Math.max(...rest) < 100);
  t.true(backends.every((b) => b === 'local'));
});
