// A long causal prefill (more query rows than one prefill tile, several tiles of keys) through the
// cache equals the CPU reference, for small and large head dims — positions past the first tiles were
// once where indexing mistakes showed up (NaN at query 64+ with head dim 16).
import { describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { attentionRef } from '../../src/kernels/attention.ref';
import { roundToF16 } from '../../src/kernels/f16';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';

failOnUncapturedGpuErrors();

describe.each([16, 64])('long prefill, head dim %i', (dim) => {
  it('matches the reference for every query of a 150-token causal prefill starting after a cached prefix', async () => {
    const { device } = await testGpu();
    const kvHeads = 1, qHeads = 2, n = 150, cached = 20;
    const cache = await PagedKVCache.create(device, { numLayers: 1, numKvHeads: kvHeads, headDim: dim, numQueryHeads: qHeads, blockSize: 16, numBlocks: 16 });
    const total = cached + n;
    const s = cache.createSequence({ tokens: Array.from({ length: total }, (_, i) => i) }).id;
    const k = new Float32Array(total * dim).map((_, i) => Math.sin(i * 0.37) * 0.8);
    const v = new Float32Array(total * dim).map((_, i) => Math.cos(i * 0.11) * 0.8);
    await cache.writeKV(0, s, 0, k, v);
    const q = new Float32Array(n * qHeads * dim).map((_, i) => Math.sin(i * 0.05 + 1));
    const [out] = await cache.attend(0, [{ seqId: s, q, queryStart: cached }]);
    const expected = attentionRef({ q, k: [roundToF16(k)], v: [roundToF16(v)], numQueries: n, queryStart: cached, numQueryHeads: qHeads, headDim: dim, scale: 1 / Math.sqrt(dim) });
    const bad: number[] = [];
    for (let i = 0; i < expected.length; i++) {
      if (!(Math.abs(out![i]! - expected[i]!) <= 2e-5 + 1e-4 * Math.abs(expected[i]!))) bad.push(i);
    }
    expect(bad.slice(0, 5).map((i) => `query ${Math.floor(i / (qHeads * dim))}: ${out![i]} vs ${expected[i]}`)).toEqual([]);
    cache.destroy();
  });
});
