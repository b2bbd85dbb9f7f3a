// writeKV → readKV round trips through fork and copy-on-write, for f16 and f32, on the real GPU path.
import { describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { roundToF16 } from '../../src/kernels/f16';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';

failOnUncapturedGpuErrors();

function rows(n: number, heads: number, dim: number, seed: number): Float32Array {
  const out = new Float32Array(n * heads * dim);
  for (let i = 0; i < out.length; i++) out[i] = Math.sin(seed * 12.9898 + i * 78.233) * 0.75;
  return out;
}

describe.each(['f16', 'f32'] as const)('round trip (%s)', (kvDtype) => {
  const stored = (x: Float32Array) => (kvDtype === 'f16' ? roundToF16(x) : x);

  it('reads back what was written, across blocks, forks and copy-on-write', async () => {
    const { device } = await testGpu();
    const cache = await PagedKVCache.create(device, {
      numLayers: 2, numKvHeads: 2, headDim: 16, numQueryHeads: 4, blockSize: 4, numBlocks: 32, kvDtype,
    });
    const heads = 2, dim = 16;
    const s = cache.createSequence({ tokens: [1, 2, 3, 4, 5, 6] });
    const k0 = rows(6, heads, dim, 1), v0 = rows(6, heads, dim, 2);
    for (let layer = 0; layer < 2; layer++) await cache.writeKV(layer, s.id, 0, k0, v0);
    const child = cache.fork(s.id);
    // The parent appends into the shared partial block: copy-on-write must keep the child's view.
    const pos = cache.appendTokens(s.id, [7, 8, 9]);
    expect(pos).toBe(6);
    const k1 = rows(3, heads, dim, 3), v1 = rows(3, heads, dim, 4);
    for (let layer = 0; layer < 2; layer++) await cache.writeKV(layer, s.id, 6, k1, v1);
    // The child overwrites position 1 (a shared full block): copy-on-write again.
    const kOver = rows(1, heads, dim, 5), vOver = rows(1, heads, dim, 6);
    await cache.writeKV(1, child, 1, kOver, vOver);

    const parent = await cache.readKV(1, s.id);
    expect(Array.from(parent.k)).toEqual(Array.from(stored(new Float32Array([...k0, ...k1]))));
    expect(Array.from(parent.v)).toEqual(Array.from(stored(new Float32Array([...v0, ...v1]))));
    const forked = await cache.readKV(1, child);
    const expectK = new Float32Array(k0);
    expectK.set(kOver, heads * dim);
    expect(Array.from(forked.k)).toEqual(Array.from(stored(expectK)));
    const forked0 = await cache.readKV(0, child);
    expect(Array.from(forked0.k)).toEqual(Array.from(stored(k0)));
    expect(cache.stats().cowCopies).toBe(2);
    cache.checkInvariants();
    cache.free(s.id);
    cache.free(child);
    // Registered prefix blocks stay cached (evictable) after their sequences are freed.
    const stats = cache.stats();
    expect(stats.blocksUsed).toBe(0);
    expect(stats.blocksFree + stats.blocksEvictable).toBe(32);
    cache.destroy();
  });
});
