// Bad input gets a typed error naming the problem and leaves the cache exactly as it was.
import { beforeAll, describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { CacheDestroyedError, ConfigError, InvalidArgumentError } from '../../src/errors';
import { InvalidTokenError, OutOfBlocksError, SequenceTooLongError, UnknownSequenceError } from '../../src/table/errors';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';

failOnUncapturedGpuErrors();

const shape = { numLayers: 2, numKvHeads: 2, headDim: 16, numQueryHeads: 4, blockSize: 4, numBlocks: 8 } as const;
const ROW = shape.numKvHeads * shape.headDim;

/** Everything observable about the cache's state. */
function snapshot(cache: PagedKVCache) {
  const { lock: _lock, ...stats } = cache.stats();
  const sequences = cache.table.sequenceIds().map((id) => ({
    id,
    length: cache.length(id),
    tokens: Array.from(cache.tokens(id)),
    blocks: Array.from(cache.table.blocksOf(id)),
    written: [0, 1].map((l) => cache.writtenLength(id, l)),
  }));
  return { stats, sequences };
}

describe('bad input', () => {
  let cache: PagedKVCache;
  let a: number;
  beforeAll(async () => {
    const { device } = await testGpu();
    cache = await PagedKVCache.create(device, { ...shape, maxSequenceLength: 16 });
    a = cache.createSequence({ tokens: [1, 2, 3, 4, 5] }).id;
    await cache.writeKV(0, a, 0, new Float32Array(5 * ROW), new Float32Array(5 * ROW));
  });

  async function expectUnchanged(action: () => unknown, errorClass: new (...args: never[]) => Error, message?: RegExp) {
    const before = snapshot(cache);
    let caught: unknown;
    try {
      await action();
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(errorClass);
    if (message) expect((caught as Error).message).toMatch(message);
    expect(snapshot(cache)).toEqual(before);
    cache.checkInvariants();
  }

  it('rejects unknown and freed sequence ids', async () => {
    const b = cache.createSequence({ tokens: [9] }).id;
    cache.free(b);
    await expectUnchanged(() => cache.appendTokens(b, [1]), UnknownSequenceError);
    await expectUnchanged(() => cache.fork(12345), UnknownSequenceError);
    await expectUnchanged(() => cache.free(b), UnknownSequenceError);
    await expectUnchanged(() => cache.writeKV(0, b, 0, new Float32Array(ROW), new Float32Array(ROW)), UnknownSequenceError);
    await expectUnchanged(() => cache.readKV(0, b), UnknownSequenceError);
    await expectUnchanged(() => cache.attend(0, [{ seqId: b, q: new Float32Array(64) }]), UnknownSequenceError);
  });

  it('rejects bad tokens', async () => {
    for (const bad of [1.5, -1, 2 ** 32, NaN, Infinity]) {
      await expectUnchanged(() => cache.appendTokens(a, [7, bad]), InvalidTokenError);
      await expectUnchanged(() => cache.createSequence({ tokens: [bad] }), InvalidTokenError);
    }
  });

  it('rejects sequences beyond the configured maximum and an exhausted pool', async () => {
    await expectUnchanged(() => cache.createSequence({ tokens: new Array(17).fill(1) }), SequenceTooLongError);
    await expectUnchanged(() => cache.appendTokens(a, new Array(12).fill(1)), SequenceTooLongError);
    const big = cache.createSequence({ tokens: new Array(16).fill(2) }).id; // 4 blocks, 2 + 4 used of 8
    await expectUnchanged(() => cache.createSequence({ tokens: new Array(12).fill(3) }), OutOfBlocksError, /free|numBlocks|memory/i);
    try {
      cache.createSequence({ tokens: new Array(12).fill(3) });
    } catch (error) {
      expect(error).toMatchObject({ requested: 3, available: 2 });
    }
    cache.free(big);
  });

  it('rejects writes past the length and wrong array sizes', async () => {
    await expectUnchanged(() => cache.writeKV(0, a, 4, new Float32Array(2 * ROW), new Float32Array(2 * ROW)), InvalidArgumentError, /length/);
    await expectUnchanged(() => cache.writeKV(0, a, 0, new Float32Array(ROW + 1), new Float32Array(ROW + 1)), InvalidArgumentError, /rows/);
    await expectUnchanged(() => cache.writeKV(0, a, 0, new Float32Array(ROW), new Float32Array(2 * ROW)), InvalidArgumentError, /rows/);
    await expectUnchanged(() => cache.writeKV(2, a, 0, new Float32Array(ROW), new Float32Array(ROW)), InvalidArgumentError, /layer/);
    await expectUnchanged(() => cache.writeKV(0, a, -1, new Float32Array(ROW), new Float32Array(ROW)), InvalidArgumentError, /startPos/);
    await expectUnchanged(() => cache.writeKV(0, a, 0, [1, 2] as unknown as Float32Array, new Float32Array(ROW)), InvalidArgumentError, /Float32Array/);
  });

  it('refuses to attend or read positions whose K/V were never written', async () => {
    const q = new Float32Array(shape.numQueryHeads * shape.headDim);
    await expectUnchanged(() => cache.attend(1, [{ seqId: a, q }]), InvalidArgumentError, /no K\/V written/);
    await expectUnchanged(() => cache.readKV(1, a), InvalidArgumentError, /no K\/V written/);
    await expectUnchanged(() => cache.attend(0, [{ seqId: a, q: new Float32Array(3) }]), InvalidArgumentError, /rows/);
    await expectUnchanged(() => cache.attend(0, []), InvalidArgumentError);
    await expectUnchanged(() => cache.attend(0, [{ seqId: a, q, queryStart: 5 }]), InvalidArgumentError, /length/);
  });

  it('rejects configs that do not fit', async () => {
    const { device } = await testGpu();
    await expect(PagedKVCache.create(device, { ...shape, headDim: 12 })).rejects.toBeInstanceOf(ConfigError);
    await expect(PagedKVCache.create(device, { ...shape, headDim: 512 })).rejects.toBeInstanceOf(ConfigError);
    await expect(PagedKVCache.create(device, { ...shape, numQueryHeads: 3 })).rejects.toThrow(/multiple of numKvHeads/);
    await expect(PagedKVCache.create(device, { ...shape, blockSize: 0 })).rejects.toBeInstanceOf(ConfigError);
    await expect(PagedKVCache.create(device, { ...shape, numBlocks: undefined })).rejects.toThrow(/numBlocks or memoryBudgetBytes/);
    await expect(PagedKVCache.create(device, { ...shape, numBlocks: undefined, memoryBudgetBytes: 10 })).rejects.toThrow(/smaller than one block/);
    await expect(PagedKVCache.create(device, { ...shape, kvDtype: 'bf16' as never })).rejects.toBeInstanceOf(ConfigError);
    await expect(PagedKVCache.create(device, { ...shape, decodeWritesKv: 'yes' as never })).rejects.toThrow(/decodeWritesKv must be true or false/);
  });

  it('sizes the pool from a memory budget without exceeding it', async () => {
    const { device } = await testGpu();
    const budget = 100_000;
    const c = await PagedKVCache.create(device, { ...shape, numBlocks: undefined, memoryBudgetBytes: budget, kvDtype: 'f32' });
    const s = c.stats();
    expect(s.bytes).toBeLessThanOrEqual(budget);
    expect(s.bytes + s.bytesPerBlock).toBeGreaterThan(budget);
    c.destroy();
  });

  it('throws CacheDestroyedError after destroy', async () => {
    const { device } = await testGpu();
    const c = await PagedKVCache.create(device, shape);
    const s = c.createSequence({ tokens: [1] }).id;
    c.destroy();
    c.destroy(); // idempotent
    expect(() => c.appendTokens(s, [2])).toThrow(CacheDestroyedError);
    expect(() => c.stats()).toThrow(CacheDestroyedError);
    await expect(c.readKV(0, s)).rejects.toBeInstanceOf(CacheDestroyedError);
  });
});
