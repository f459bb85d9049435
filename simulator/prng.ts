// Seeded pseudo-random numbers for the simulator: xoshiro128** on 32-bit ints,
// seeded through splitmix32, with labelled forks so that every component draws
// from its own stream and one seed reproduces a whole run.
import assert from 'node:assert/strict';
import type { Random } from '../consensus/types.ts';

const UINT32_RANGE = 4294967296; // 2^32
const FLOAT53_SCALE = 1 / 9007199254740992; // 2^-53
const GOLDEN_RATIO_32 = 0x9e3779b9;

/** murmur3's 32-bit finaliser: a bijection with full avalanche. */
const mix32 = (value: number): number => {
  let x = value | 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
};

/** splitmix32 (Vigna): turns a counter into well-spread words for seeding. */
const splitmix32Words = (seed: number, count: number): number[] => {
  let state = seed >>> 0;
  const words: number[] = [];
  for (let i = 0; i < count; i++) {
    state = (state + GOLDEN_RATIO_32) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    words.push((z ^ (z >>> 15)) >>> 0);
  }
  return words;
};

const seedWords = (seed: number): number[] => {
  assert.ok(Number.isSafeInteger(seed) && seed >= 0, `prng: seed must be a non-negative safe integer, got ${seed}`);
  const low = seed >>> 0;
  const high = Math.floor(seed / UINT32_RANGE) >>> 0;
  return splitmix32Words(low ^ mix32(high + GOLDEN_RATIO_32), 4);
};

/**
 * A deterministic random source. Implements the core's `Random`.
 *
 * Forks: `fork(label)` is a pure function of this stream's *key* (the state it
 * was created with, never advanced) and the label. It draws nothing from the
 * parent, so a fork's sequence does not depend on how many numbers the parent
 * has produced, nor on which other forks were taken or in what order. Forking
 * the same label twice gives two identical streams: use distinct labels
 * (e.g. `node:n1:raft`, `network`, `disk:n2`).
 */
export class Prng implements Random {
  /** The seed this root stream was made from (forks report their root's seed). */
  readonly seed: number;
  private readonly key: readonly [number, number, number, number];
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number);
  /** A stream from an explicit xoshiro state (used by `fork`; also lets tests check reference outputs). */
  constructor(seed: number, key: readonly [number, number, number, number]);
  constructor(seed: number, key?: readonly [number, number, number, number]) {
    const words = key ?? seedWords(seed);
    const [w0 = 0, w1 = 0, w2 = 0, w3 = 0] = words;
    // xoshiro's one forbidden state; splitmix/mix32 output makes it ~impossible, but be exact.
    const allZero = (w0 | w1 | w2 | w3) === 0;
    this.seed = seed;
    this.key = allZero ? [GOLDEN_RATIO_32, 1, 2, 3] : [w0 >>> 0, w1 >>> 0, w2 >>> 0, w3 >>> 0];
    [this.s0, this.s1, this.s2, this.s3] = this.key;
  }

  /** Next raw 32-bit output of xoshiro128** (Blackman & Vigna). */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform integer in [0, maxExclusive), unbiased (rejection sampling); maxExclusive in [1, 2^32]. */
  int(maxExclusive: number): number {
    if (!(Number.isInteger(maxExclusive) && maxExclusive >= 1 && maxExclusive <= UINT32_RANGE)) {
      assert.fail(`prng.int: maxExclusive must be an integer in [1, 2^32], got ${maxExclusive}`);
    }
    // Largest multiple of maxExclusive that fits; draws at or above it are rejected (p < 1/2).
    const limit = UINT32_RANGE - (UINT32_RANGE % maxExclusive);
    for (;;) {
      const draw = this.nextUint32();
      if (draw < limit) return draw % maxExclusive;
    }
  }

  /** Uniform float in [0, 1) with 53 bits of precision (two draws). */
  float(): number {
    const high = this.nextUint32() >>> 5; // 27 bits
    const low = this.nextUint32() >>> 6; // 26 bits
    return (high * 67108864 + low) * FLOAT53_SCALE;
  }

  /** Uniform float in [lo, hi). */
  floatRange(lo: number, hi: number): number {
    assert.ok(lo <= hi, `prng.floatRange: lo ${lo} > hi ${hi}`);
    return lo + (hi - lo) * this.float();
  }

  /** Uniform integer in [lo, hiInclusive]; both ends inclusive. */
  range(lo: number, hiInclusive: number): number {
    assert.ok(Number.isInteger(lo) && Number.isInteger(hiInclusive) && lo <= hiInclusive, `prng.range: bad bounds [${lo}, ${hiInclusive}]`);
    return lo + this.int(hiInclusive - lo + 1);
  }

  /**
   * True with probability p. Draws nothing when p <= 0 or p >= 1, so a fault
   * switched fully off (or on) costs no randomness.
   */
  chance(p: number): boolean {
    if (p <= 0) return false;
    if (p >= 1) return true;
    return this.float() < p;
  }

  /** A uniformly chosen element; the array must not be empty. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) assert.fail('prng.pick: empty array');
    return items[this.int(items.length)] as T;
  }

  /** Fisher–Yates shuffle in place; returns the same array. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const swap = items[i] as T;
      items[i] = items[j] as T;
      items[j] = swap;
    }
    return items;
  }

  /** An independent stream derived from this stream's key and `label` (see the class comment). */
  fork(label: string): Prng {
    const child: [number, number, number, number] = [0, 0, 0, 0];
    for (let word = 0; word < 4; word++) {
      let h = mix32((this.key[word] ?? 0) ^ Math.imul(word + 1, GOLDEN_RATIO_32));
      for (let i = 0; i < label.length; i++) h = mix32(h ^ Math.imul(label.charCodeAt(i) + 1, 0xcc9e2d51));
      child[word] = mix32(h ^ label.length);
    }
    return new Prng(this.seed, child);
  }
}

const rotl = (x: number, k: number): number => (x << k) | (x >>> (32 - k));

/** The root stream of a run. */
export const prngFromSeed = (seed: number): Prng => new Prng(seed);
