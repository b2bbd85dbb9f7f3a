// Attention through reused prefix blocks equals attention without reuse: the same prompt's K/V, read
// from blocks another sequence wrote and registered, give bit-identical outputs to a sequence that wrote
// them itself (a namespace of its own keeps it from reusing anything).
import { describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';

failOnUncapturedGpuErrors();

const shape = { numLayers: 2, numKvHeads: 2, headDim: 16, numQueryHeads: 4, blockSize: 4, numBlocks: 32 } as const;
const KV_ROW = shape.numKvHeads * shape.headDim;
const Q_ROW = shape.numQueryHeads * shape.headDim;

/** K or V rows [from, to) of `tokens` in `layer`: each row depends on every token up to its position. */
function kvRows(tokens: readonly number[], from: number, to: number, layer: number, salt: number): Float32Array {
  const out = new Float32Array((to - from) * KV_ROW);
  let h = 0x811c9dc5;
  for (let p = 0; p < to; p++) {
    h = Math.imul(h ^ tokens[p]!, 0x01000193);
    if (p < from) continue;
    for (let e = 0; e < KV_ROW; e++) out[(p - from) * KV_ROW + e] = Math.sin((h >>> 8) * 1e-4 + e * 0.37 + layer * 1.3 + salt);
  }
  return out;
}

function queries(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n * Q_ROW }, (_, i) => Math.cos(seed * 7.1 + i * 0.61));
}

async function writeAll(cache: PagedKVCache, id: number, tokens: number[], from: number): Promise<void> {
  for (let layer = 0; layer < shape.numLayers; layer++) {
    await cache.writeKV(layer, id, from, kvRows(tokens, from, tokens.length, layer, 0), kvRows(tokens, from, tokens.length, layer, 9));
  }
}

describe('attention through reused prefix blocks', () => {
  it('is bit-identical to attention over K/V the sequence wrote itself', async () => {
    const { device } = await testGpu();
    const cache = await PagedKVCache.create(device, shape);
    try {
      const p = [5, 9, 2, 7, 1, 8, 3, 6, 4, 0, 11]; // 2 full blocks + 3 tokens
      const a = cache.createSequence({ tokens: p });
      await writeAll(cache, a.id, p, 0);
      expect(cache.stats()).toMatchObject({ blocksRegistered: 2, blocksProtected: 2 });

      const q = [...p.slice(0, 8), 90, 91];
      const before = cache.stats();
      const reused = cache.createSequence({ tokens: q });
      expect(reused.cachedTokens).toBe(8);
      expect(cache.stats().allocations - before.allocations).toBe(1); // only the tail block is new
      expect(Array.from(cache.table.blocksOf(reused.id).subarray(0, 2))).toEqual(Array.from(cache.table.blocksOf(a.id).subarray(0, 2)));
      await writeAll(cache, reused.id, q, reused.cachedTokens); // the shared part is not written again
      expect([0, 1].map((l) => cache.writtenLength(reused.id, l))).toEqual([10, 10]);
      expect(cache.stats().cowCopies).toBe(0);

      const fresh = cache.createSequence({ tokens: q, namespace: 'no-reuse' });
      expect(fresh.cachedTokens).toBe(0);
      await writeAll(cache, fresh.id, q, 0);

      for (let layer = 0; layer < shape.numLayers; layer++) {
        const kvReused = await cache.readKV(layer, reused.id);
        const kvFresh = await cache.readKV(layer, fresh.id);
        expect(Array.from(kvReused.k)).toEqual(Array.from(kvFresh.k));
        expect(Array.from(kvReused.v)).toEqual(Array.from(kvFresh.v));
        const prefill = queries(3, layer); // the last 3 positions, causal: they read the shared blocks
        const decode = queries(1, layer + 5);
        const [viaCache, viaCacheDecode] = await cache.attend(layer, [
          { seqId: reused.id, q: prefill, queryStart: 7 },
          { seqId: reused.id, q: decode },
        ]);
        const [own, ownDecode] = await cache.attend(layer, [
          { seqId: fresh.id, q: prefill, queryStart: 7 },
          { seqId: fresh.id, q: decode },
        ]);
        expect(viaCache!.every(Number.isFinite)).toBe(true);
        expect(new Set(viaCache).size).toBeGreaterThan(Q_ROW);
        expect(Array.from(viaCache!)).toEqual(Array.from(own!));
        expect(Array.from(viaCacheDecode!)).toEqual(Array.from(ownDecode!));
      }
      cache.checkInvariants();
      for (const id of [a.id, reused.id, fresh.id]) cache.free(id);
      const stats = cache.stats();
      expect(stats.blocksUsed).toBe(0);
      expect(stats.blocksEvictable + stats.blocksFree).toBe(shape.numBlocks);
      expect(cache.clearPrefixCache()).toBe(stats.blocksEvictable);
      expect(cache.stats().blocksFree).toBe(shape.numBlocks);
      cache.checkInvariants();
    } finally {
      cache.destroy();
    }
  });
});
