// Host (CPU) cost of one decode step of a large batch: appending one token to every sequence (block
// table bookkeeping), prepareAttention once (validation, incremental block-table upload, pins) and
// encodeAttention of the prepared batch for every layer (work-list plan reuse and dispatch recording).
// Invariants: the K/V shape is tiny (host cost does not depend on head count or head dim), the batch
// and context are the real ones; the encoded work is
// submitted once per step so pins are released, and GPU time is not part of the figure.
import { PagedKVCache } from '../src/cache/paged-kv-cache';
import type { Gpu } from '../src/gpu/create-gpu';
import { median } from './gpu-timing';

export interface HostCostResult {
  sequences: number;
  context: number;
  layers: number;
  steps: number;
  /** Median CPU microseconds per step: appends + encodeAttention for every layer. */
  stepMicros: number;
  /** Of which appendTokens for the whole batch. */
  appendMicros: number;
  /** Median CPU microseconds of prepareAttention (once per step: rows resolved, table rows uploaded, pins). */
  prepareMicros: number;
  /** Median CPU microseconds of one layer's encodeAttention of the prepared batch. */
  encodeMicrosPerLayer: number;
  /** Block-table entries uploaded per step (incremental upload). */
  tableEntriesPerStep: number;
}

export async function measureHostCost(gpu: Gpu, options: { sequences?: number; context?: number; layers?: number; steps?: number } = {}): Promise<HostCostResult> {
  const sequences = options.sequences ?? 256;
  const context = options.context ?? 512;
  const layers = options.layers ?? 4;
  const steps = options.steps ?? 20;
  const blockSize = 16;
  const headDim = 8;
  const numBlocks = sequences * (Math.ceil((context + steps) / blockSize) + 1);
  const cache = await PagedKVCache.create(gpu.device, {
    numLayers: layers, numKvHeads: 1, numQueryHeads: 1, headDim, blockSize, numBlocks, kvDtype: 'f16',
    maxSequences: sequences, maxSequenceLength: context + steps + blockSize,
  });
  try {
    const ids: number[] = [];
    const kv = new Float32Array(context * headDim);
    for (let s = 0; s < sequences; s++) {
      const id = cache.createSequence({ tokens: Array.from({ length: context }, (_, i) => (s * 7919 + i) % 50000) }).id;
      ids.push(id);
      for (let l = 0; l < layers; l++) await cache.writeKV(l, id, 0, kv, kv);
    }
    const row = new Float32Array(headDim);
    const device = gpu.device;
    const q = device.createBuffer({ size: sequences * headDim * 4, usage: GPUBufferUsage.STORAGE });
    const out = device.createBuffer({ size: sequences * headDim * 4, usage: GPUBufferUsage.STORAGE });
    const entries = ids.map((seqId) => ({ seqId }));
    const stepTimes: number[] = [];
    const appendTimes: number[] = [];
    const encodeTimes: number[] = [];
    const prepareTimes: number[] = [];
    let uploaded = 0;
    for (let step = 0; step < steps; step++) {
      const before = cache.stats().tableEntriesUploaded;
      const t0 = performance.now();
      for (const id of ids) cache.appendTokens(id, [step]);
      const t1 = performance.now();
      // The new tokens' K/V must exist before attention reads them: written outside the timing.
      for (const id of ids) for (let l = 0; l < layers; l++) await cache.writeKV(l, id, context + step, row, row);
      const encoder = device.createCommandEncoder();
      const p0 = performance.now();
      const batch = cache.prepareAttention(entries);
      const p1 = performance.now();
      prepareTimes.push(p1 - p0);
      for (let l = 0; l < layers; l++) {
        const e0 = performance.now();
        cache.encodeAttention(encoder, { layer: l, entries: batch, q, out });
        encodeTimes.push(performance.now() - e0);
      }
      stepTimes.push(t1 - t0 + (p1 - p0) + encodeTimes.slice(-layers).reduce((a, b) => a + b, 0));
      appendTimes.push(t1 - t0);
      uploaded += cache.stats().tableEntriesUploaded - before;
      await cache.submit([encoder.finish()]);
    }
    q.destroy();
    out.destroy();
    return {
      sequences, context, layers, steps,
      stepMicros: median(stepTimes) * 1e3,
      appendMicros: median(appendTimes) * 1e3,
      prepareMicros: median(prepareTimes) * 1e3,
      encodeMicrosPerLayer: median(encodeTimes) * 1e3,
      tableEntriesPerStep: uploaded / steps,
    };
  } finally {
    cache.destroy();
  }
}
