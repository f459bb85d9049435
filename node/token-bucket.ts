// Node-local token buckets: the rate limit a node applies by itself when no
// Redis is configured or Redis does not answer. One bucket per key (a token
// id, a tenant); a call takes one token from each of its buckets or from
// none. Time comes from the injected clock.

export interface BucketLimit {
  /** Tokens added per second: the sustained rate. */
  readonly perSecond: number;
  /** Bucket size: how many calls may come at once after a quiet spell. */
  readonly burst: number;
}

export type TakeOutcome = { readonly ok: true } | { readonly ok: false; readonly retryAfterMs: number; readonly key: string };

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export class LocalBuckets {
  readonly #buckets = new Map<string, Bucket>();

  constructor(
    private readonly nowMs: () => number,
    /** Buckets tracked; past it the fullest (least recently used) ones are forgotten, which only ever lets calls through. */
    private readonly bucketsMax: number,
  ) {}

  /** Take one token from each of `keys`' buckets, or from none when any is empty. */
  take(keys: readonly { key: string; limit: BucketLimit }[]): TakeOutcome {
    const now = this.nowMs();
    const buckets = keys.map(({ key, limit }) => ({ key, limit, bucket: this.refill(key, limit, now) }));
    let worst: { key: string; retryAfterMs: number } | null = null;
    for (const { key, limit, bucket } of buckets) {
      if (bucket.tokens >= 1) continue;
      const retryAfterMs = Math.ceil(((1 - bucket.tokens) / limit.perSecond) * 1000);
      if (worst === null || retryAfterMs > worst.retryAfterMs) worst = { key, retryAfterMs };
    }
    if (worst !== null) return { ok: false, ...worst };
    for (const { bucket } of buckets) bucket.tokens -= 1;
    return { ok: true };
  }

  get size(): number {
    return this.#buckets.size;
  }

  private refill(key: string, limit: BucketLimit, now: number): Bucket {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.bucketsMax) this.evict();
      bucket = { tokens: limit.burst, updatedMs: now };
    } else {
      // Re-insert so that Map order is least recently used first.
      this.#buckets.delete(key);
      bucket.tokens = Math.min(limit.burst, bucket.tokens + ((now - bucket.updatedMs) / 1000) * limit.perSecond);
      bucket.updatedMs = now;
    }
    this.#buckets.set(key, bucket);
    return bucket;
  }

  private evict(): void {
    const oldest = this.#buckets.keys().next();
    if (!oldest.done) this.#buckets.delete(oldest.value);
  }
}
