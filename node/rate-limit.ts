// Request rates per token and per tenant. With `--redis URL` the limit holds
// cluster-wide: one Lua script applies GCRA to both keys atomically in Redis,
// on Redis's own clock. Without Redis, or while it does not answer, each node
// applies the same limits with local token buckets: it fails open to the
// local limit rather than closed (docs/security.md says why). A Redis call
// never waits past `redisCommandTimeoutMs`, and after a failure the node stays
// local for `redisRetryAfterFailureMs` before trying Redis again.
import { Redis } from 'ioredis';
import type { Identity } from '../actors/identity.ts';
import { LocalBuckets, type BucketLimit } from './token-bucket.ts';

export interface RateLimitConfig {
  /** Sustained calls per second of one token, and how many may come at once. */
  readonly tokenPerSecond: number;
  readonly tokenBurst: number;
  /** The same for all tokens of one tenant together. */
  readonly tenantPerSecond: number;
  readonly tenantBurst: number;
  /** Longest a call waits for Redis before the local limit decides: well under any call's deadline. */
  readonly redisCommandTimeoutMs: number;
  /** Longest a (re)connection attempt to Redis may take. */
  readonly redisConnectTimeoutMs: number;
  /** After Redis failed a call, the local limit decides for this long (no call pays a timeout meanwhile). */
  readonly redisRetryAfterFailureMs: number;
  /** Local buckets kept per node (two per active token). */
  readonly localBucketsMax: number;
}

export const RATE_LIMIT_CONFIG_DEFAULT: RateLimitConfig = Object.freeze({
  // An agent makes a few calls a second at most; 20/s with a burst of 40 never slows one down and stops a runaway loop.
  tokenPerSecond: 20,
  tokenBurst: 40,
  // A tenant runs a handful of agents.
  tenantPerSecond: 100,
  tenantBurst: 200,
  // A Redis round trip on a LAN is well under a millisecond; 100 ms means Redis (or this node) is in trouble.
  redisCommandTimeoutMs: 100,
  redisConnectTimeoutMs: 500,
  redisRetryAfterFailureMs: 1_000,
  localBucketsMax: 100_000,
});

export class InvalidRateLimitConfigError extends Error {
  override readonly name = 'InvalidRateLimitConfigError';
}

export function validateRateLimitConfig(config: RateLimitConfig): RateLimitConfig {
  for (const [name, value] of Object.entries(config)) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new InvalidRateLimitConfigError(`rate limit ${name} is ${value}; give a positive number`);
  }
  if (config.tokenBurst < 1 || config.tenantBurst < 1) throw new InvalidRateLimitConfigError('rate limit bursts must be at least 1');
  return config;
}

export type RateScope = 'token' | 'tenant';
export type RateBackend = 'redis' | 'local';

export type RateOutcome =
  | { readonly ok: true; readonly backend: RateBackend }
  | { readonly ok: false; readonly backend: RateBackend; readonly scope: RateScope; readonly retryAfterMs: number; readonly message: string };

/**
 * GCRA over two keys at once: a call is allowed only if both keys allow it,
 * and then both advance. KEYS: token, tenant. ARGV: per key its emission
 * interval and burst offset in ms (interval · burst). Returns {1, 0, 0} or
 * {0, retryAfterMs, index of the key that refused (1 or 2)}.
 */
const GCRA_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local news = {}
local worst, worstKey = 0, 0
for i = 1, 2 do
  local interval = tonumber(ARGV[i * 2 - 1])
  local offset = tonumber(ARGV[i * 2])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local new = tat + interval
  local wait = new - offset - now
  if wait > worst then worst, worstKey = wait, i end
  news[i] = new
end
if worstKey > 0 then return {0, math.ceil(worst), worstKey} end
for i = 1, 2 do
  redis.call('SET', KEYS[i], string.format('%.3f', news[i]), 'PX', math.ceil(news[i] - now) + 1000)
end
return {1, 0, 0}
`;

type GcraClient = Redis & { debughostRateTake(tokenKey: string, tenantKey: string, ...args: number[]): Promise<[number, number, number]> };

export interface RateLimiterComponents {
  /** Monotonic ms, for the local buckets. */
  readonly nowMs: () => number;
  /** Keys in Redis are namespaced by cluster, so clusters may share one Redis. */
  readonly clusterId: () => string;
  readonly redisUrl: string | null;
  readonly onRedisError?: (error: Error) => void;
}

export class RateLimiter {
  readonly config: RateLimitConfig;
  readonly #local: LocalBuckets;
  readonly #redis: GcraClient | null;
  #redisDownUntilMs = 0;
  readonly #tokenLimit: BucketLimit;
  readonly #tenantLimit: BucketLimit;
  /** Calls decided by each backend, and refused by scope (for metrics and tests). */
  readonly decided = { redis: 0, local: 0 };
  readonly refused = { token: 0, tenant: 0 };

  constructor(
    private readonly components: RateLimiterComponents,
    config: Partial<RateLimitConfig> = {},
  ) {
    this.config = validateRateLimitConfig({ ...RATE_LIMIT_CONFIG_DEFAULT, ...config });
    this.#tokenLimit = { perSecond: this.config.tokenPerSecond, burst: this.config.tokenBurst };
    this.#tenantLimit = { perSecond: this.config.tenantPerSecond, burst: this.config.tenantBurst };
    this.#local = new LocalBuckets(components.nowMs, this.config.localBucketsMax);
    this.#redis = components.redisUrl === null ? null : this.connect(components.redisUrl);
  }

  private connect(url: string): GcraClient {
    const redis = new Redis(url, {
      // A command while disconnected fails at once instead of waiting in a queue: the local limit decides.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: this.config.redisConnectTimeoutMs,
      commandTimeout: this.config.redisCommandTimeoutMs,
      // Keep reconnecting in the background, at most every 2 s.
      retryStrategy: (times) => Math.min(times * 100, 2_000),
      lazyConnect: false,
    });
    redis.on('error', (error: Error) => this.components.onRedisError?.(error));
    redis.defineCommand('debughostRateTake', { numberOfKeys: 2, lua: GCRA_LUA });
    return redis as GcraClient;
  }

  /** Whether Redis decides calls now (connected, and not in the pause after a failure). */
  get redisReady(): boolean {
    return this.#redis !== null && this.#redis.status === 'ready' && this.components.nowMs() >= this.#redisDownUntilMs;
  }

  /** Take one call of `identity`'s budget; an over-limit call gets how long to wait. */
  async take(identity: Identity): Promise<RateOutcome> {
    const redis = this.#redis;
    // Until the connection is up (and for a while after a failure) the local limit decides without trying.
    if (redis !== null && redis.status === 'ready' && this.components.nowMs() >= this.#redisDownUntilMs) {
      try {
        const outcome = await this.takeRedis(redis, identity);
        this.decided.redis += 1;
        return outcome;
      } catch (error) {
        this.#redisDownUntilMs = this.components.nowMs() + this.config.redisRetryAfterFailureMs;
        this.components.onRedisError?.(error as Error);
      }
    }
    this.decided.local += 1;
    return this.takeLocal(identity);
  }

  private async takeRedis(redis: GcraClient, identity: Identity): Promise<RateOutcome> {
    const prefix = `debughost:${this.components.clusterId()}:rate`;
    const tokenInterval = 1000 / this.#tokenLimit.perSecond;
    const tenantInterval = 1000 / this.#tenantLimit.perSecond;
    const [allowed, retryAfterMs, which] = await redis.debughostRateTake(
      `${prefix}:token:${identity.tokenId}`,
      `${prefix}:tenant:${identity.tenant}`,
      tokenInterval,
      tokenInterval * this.#tokenLimit.burst,
      tenantInterval,
      tenantInterval * this.#tenantLimit.burst,
    );
    if (allowed === 1) return { ok: true, backend: 'redis' };
    return this.refusal('redis', which === 2 ? 'tenant' : 'token', identity, Math.max(1, retryAfterMs));
  }

  private takeLocal(identity: Identity): RateOutcome {
    const tokenKey = `token:${identity.tokenId}`;
    const outcome = this.#local.take([
      { key: tokenKey, limit: this.#tokenLimit },
      { key: `tenant:${identity.tenant}`, limit: this.#tenantLimit },
    ]);
    if (outcome.ok) return { ok: true, backend: 'local' };
    return this.refusal('local', outcome.key === tokenKey ? 'token' : 'tenant', identity, outcome.retryAfterMs);
  }

  private refusal(backend: RateBackend, scope: RateScope, identity: Identity, retryAfterMs: number): RateOutcome {
    this.refused[scope] += 1;
    const what = scope === 'token' ? `token '${identity.tokenName}' (${this.config.tokenPerSecond}/s)` : `tenant '${identity.tenant}' (${this.config.tenantPerSecond}/s for all its tokens)`;
    return { ok: false, backend, scope, retryAfterMs, message: `rate limit of ${what} reached; retry in ${retryAfterMs} ms` };
  }

  close(): void {
    this.#redis?.disconnect(false);
  }
}
