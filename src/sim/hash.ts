// Deterministic integer hashing and a seeded random source for the simulation.
// Invariants: every function is pure in its integer arguments (same inputs give the same outputs on
// every platform), hashes are uint32, unit values lie in [0, 1) and signed ones in [-1, 1).

/** Finalizer of a 32-bit integer hash (lowbias32): full avalanche, bijective on uint32. */
export function mix32(x: number): number {
  x = x >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Hash of an ordered pair. */
export function hash2(a: number, b: number): number {
  return mix32(mix32(a) ^ Math.imul((b >>> 0) + 0x9e3779b9, 0x85ebca6b));
}

/** Hash of an ordered list of integers. */
export function hashInts(values: readonly number[]): number {
  let h = 0x811c9dc5;
  for (const v of values) h = hash2(h, v);
  return h;
}

/** Maps a uint32 hash to [0, 1). */
export function unitFromHash(h: number): number {
  return (h >>> 0) / 4294967296;
}

/** Seeded pseudo-random source (splitmix32): the same seed always yields the same stream. */
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = mix32(seed ^ 0x2545f491) || 1;
  }

  /** Next uint32. */
  nextUint32(): number {
    this.state = (this.state + 0x9e3779b9) >>> 0;
    return mix32(this.state);
  }

  /** Uniform in [0, 1). */
  next(): number {
    return unitFromHash(this.nextUint32());
  }

  /** Uniform integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  /** Exponentially distributed with the given rate (mean 1/rate). */
  exponential(rate: number): number {
    return -Math.log(1 - this.next()) / rate;
  }
}
