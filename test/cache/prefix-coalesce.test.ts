// Coalescing concurrent identical prompts: a second request waits for the first one's prefix and reuses
// it (writing nothing for the shared part), falls back to computing it after its timeout, or at once
// when the first request is freed before registering.
import { describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { AbortError } from '../../src/errors';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';

failOnUncapturedGpuErrors();

const shape = { numLayers: 2, numKvHeads: 1, headDim: 8, blockSize: 4, numBlocks: 32 } as const;
const ROW = shape.numKvHeads * shape.headDim;
const tick = (ms = 20) => new Promise((resolve) => setTimeout(resolve, ms));
const prompt = (base: number) => Array.from({ length: 10 }, (_, i) => base + i); // 2 full blocks + 2

async function writeLayer(cache: PagedKVCache, layer: number, id: number, from: number, to: number): Promise<void> {
  const rows = new Float32Array((to - from) * ROW).map((_, i) => Math.sin(i + layer));
  await cache.writeKV(layer, id, from, rows, rows);
}

describe('coalescing identical prompts', () => {
  it('covers waiting, reuse, timeout fallback, freed-producer fallback and abort', async () => {
    const { device } = await testGpu();
    const cache = await PagedKVCache.create(device, shape);
    try {
      // 1. The second request waits until the first registered its blocks, then reuses them.
      const p1 = prompt(100);
      const first = cache.createSequence({ tokens: p1 });
      let settled = false;
      const pending = cache.createSequenceAsync({ tokens: p1 }).then((s) => ((settled = true), s));
      await tick();
      expect(settled).toBe(false);
      expect(cache.stats().prefixWaiters).toBe(1);
      await writeLayer(cache, 0, first.id, 0, 10);
      await tick();
      expect(settled).toBe(false); // layer 1 is not written yet: nothing is registered
      const allocationsBefore = cache.stats().allocations;
      await writeLayer(cache, 1, first.id, 0, 10);
      const second = await pending;
      expect(second.cachedTokens).toBe(8);
      expect(cache.stats().allocations - allocationsBefore).toBe(1); // only its last block is new
      expect(Array.from(cache.table.blocksOf(second.id).subarray(0, 2))).toEqual(Array.from(cache.table.blocksOf(first.id).subarray(0, 2)));
      expect([0, 1].map((l) => cache.writtenLength(second.id, l))).toEqual([8, 8]); // nothing to write below 8
      expect(cache.stats()).toMatchObject({ prefixWaiters: 0, cowCopies: 0 });

      // 2. The first request never writes: the second computes the prefix itself after its timeout.
      const p2 = prompt(200);
      const stalled = cache.createSequence({ tokens: p2 });
      const started = performance.now();
      const fallback = await cache.createSequenceAsync({ tokens: p2 }, { timeoutMs: 60 });
      expect(performance.now() - started).toBeGreaterThanOrEqual(50);
      expect(fallback.cachedTokens).toBe(0);
      // Both compute it; the later one to finish adopts the earlier one's blocks (no duplicates kept).
      for (const id of [fallback.id, stalled.id]) for (const layer of [0, 1]) await writeLayer(cache, layer, id, 0, 10);
      expect(cache.stats().prefixAdoptions).toBe(2);
      expect(Array.from(cache.table.blocksOf(stalled.id).subarray(0, 2))).toEqual(Array.from(cache.table.blocksOf(fallback.id).subarray(0, 2)));

      // 3. The first request is freed before registering: the waiter falls back at once.
      const p3 = prompt(300);
      const doomed = cache.createSequence({ tokens: p3 });
      const waiting = cache.createSequenceAsync({ tokens: p3 }, { timeoutMs: 5000 });
      await tick();
      const freedAt = performance.now();
      cache.free(doomed.id);
      const alone = await waiting;
      expect(performance.now() - freedAt).toBeLessThan(1000);
      expect(alone.cachedTokens).toBe(0);

      // 4. An aborted wait rejects with AbortError and leaves nothing behind.
      const p4 = prompt(400);
      const producer = cache.createSequence({ tokens: p4 });
      const controller = new AbortController();
      const aborted = cache.createSequenceAsync({ tokens: p4 }, { signal: controller.signal });
      await tick(5);
      controller.abort();
      await expect(aborted).rejects.toBeInstanceOf(AbortError);
      expect(cache.stats().prefixWaiters).toBe(0);

      cache.checkInvariants();
      for (const id of [first.id, second.id, stalled.id, fallback.id, alone.id, producer.id]) cache.free(id);
      expect(cache.stats()).toMatchObject({ sequences: 0, blocksUsed: 0 });
      cache.checkInvariants();
    } finally {
      cache.destroy();
    }
  });
});
