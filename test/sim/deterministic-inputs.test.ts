import { describe, expect, it } from 'vitest';
import { SeededRandom, hash2, hashInts, mix32, unitFromHash } from '../../src/sim/hash';
import { keyValueRows, queryRows } from '../../src/sim/qkv';
import { generateTokens, nextToken, sampleSeed } from '../../src/sim/tokens';
import type { ModelShape } from '../../src/sim/model-shape';

const shape: ModelShape = { numLayers: 2, numQueryHeads: 4, numKvHeads: 2, headDim: 32, kvDtype: 'f16' };

describe('hashing and seeded randomness', () => {
  it('is deterministic and uint32', () => {
    expect(mix32(12345)).toBe(mix32(12345));
    expect(hash2(1, 2)).not.toBe(hash2(2, 1));
    expect(hashInts([1, 2, 3])).toBe(hashInts([1, 2, 3]));
    for (let i = 0; i < 100; i++) {
      const h = hash2(i, 7);
      expect(Number.isInteger(h) && h >= 0 && h < 2 ** 32).toBe(true);
      expect(unitFromHash(h)).toBeGreaterThanOrEqual(0);
      expect(unitFromHash(h)).toBeLessThan(1);
    }
  });

  it('replays the same stream for the same seed', () => {
    const a = new SeededRandom(42);
    const b = new SeededRandom(42);
    const c = new SeededRandom(43);
    const xs = Array.from({ length: 10 }, () => a.nextUint32());
    expect(Array.from({ length: 10 }, () => b.nextUint32())).toEqual(xs);
    expect(Array.from({ length: 10 }, () => c.nextUint32())).not.toEqual(xs);
    const r = new SeededRandom(1);
    for (let i = 0; i < 200; i++) {
      const v = r.int(3, 5);
      expect(v >= 3 && v <= 5).toBe(true);
    }
  });
});

describe('token generation', () => {
  it('is a pure function of the previous token and the sample seed', () => {
    const seq = generateTokens(17, 99, 8, 1000);
    expect(seq).toEqual(generateTokens(17, 99, 8, 1000));
    expect(seq[0]).toBe(nextToken(17, 99, 1000));
    expect(seq[1]).toBe(nextToken(seq[0]!, 99, 1000));
    expect(seq.every((t) => t >= 0 && t < 1000)).toBe(true);
    expect(sampleSeed(5, 0)).not.toBe(sampleSeed(5, 1));
  });
});

describe('deterministic Q/K/V', () => {
  it('has the documented layout and value range', () => {
    const tokens = [5, 6, 7, 8];
    const q = queryRows(tokens, 1, 4, 0, shape);
    const { k, v } = keyValueRows(tokens, 0, 4, 1, shape);
    expect(q.length).toBe(3 * 4 * 32);
    expect(k.length).toBe(4 * 2 * 32);
    expect(v.length).toBe(4 * 2 * 32);
    for (const arr of [q, k, v]) for (const x of arr) expect(Math.abs(x)).toBeLessThanOrEqual(1);
  });

  it('depends only on (token, position, layer, head)', () => {
    const a = keyValueRows([1, 2, 3, 4], 2, 4, 0, shape);
    const b = keyValueRows([9, 9, 3, 4], 2, 4, 0, shape);
    expect(b.k).toEqual(a.k);
    expect(b.v).toEqual(a.v);
    const whole = keyValueRows([1, 2, 3, 4], 0, 4, 0, shape);
    expect(whole.k.subarray(2 * 64)).toEqual(a.k);
    expect(keyValueRows([1, 2, 3, 4], 2, 4, 1, shape).k).not.toEqual(a.k);
    expect(keyValueRows([1, 2, 3, 5], 2, 4, 0, shape).k.subarray(64)).not.toEqual(a.k.subarray(64));
    expect(keyValueRows([4, 3], 0, 2, 0, shape).k).not.toEqual(a.k);
  });
});
