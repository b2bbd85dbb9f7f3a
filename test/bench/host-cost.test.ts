// The bench's host-cost measurement (bench/host-cost.ts) on a tiny decode loop: what it collects before
// each step is what it says (V8's own record of the collections that ran, by kind), the young
// generation by default, and the step figures it reports hold together. Shapes are tiny: only the bookkeeping matters.
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { beforeAll, describe, expect, it } from 'vitest';
import { DecodeLoop, measureHostCost, type DecodeShape, type HostCostOptions } from '../../bench/host-cost';
import type { Gpu } from '../../src/gpu/create-gpu';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';

failOnUncapturedGpuErrors();

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});

const TINY: HostCostOptions = { sequences: 4, context: 40, layers: 2, numKvHeads: 1, numQueryHeads: 4, headDim: 16, steps: 6, encodeOnly: true };
/** measureHostCost runs this many untimed steps of the measured batch before the timed ones (its WARMUP_STEPS). */
const WARMUP_STEPS = 10;

/** Runs `work`, counting the garbage collections V8 reports while it runs, by kind. */
async function countCollections<T>(work: () => Promise<T>): Promise<{ result: T; minor: number; major: number }> {
  const entries: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => entries.push(...list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  try {
    const result = await work();
    await new Promise((resolve) => setTimeout(resolve, 50)); // gc entries are delivered asynchronously
    entries.push(...observer.takeRecords());
    const kinds = entries.map((e) => (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind);
    return {
      result,
      minor: kinds.filter((k) => k === constants.NODE_PERFORMANCE_GC_MINOR).length,
      major: kinds.filter((k) => k === constants.NODE_PERFORMANCE_GC_MAJOR).length,
    };
  } finally {
    observer.disconnect();
  }
}

describe('measureHostCost', () => {
  it('scavenges the young generation before each step by default, not the whole heap', async () => {
    const { result, minor, major } = await countCollections(() => measureHostCost(gpu, TINY));
    expect(result.collected).toBe('minor');
    expect(minor).toBeGreaterThanOrEqual(WARMUP_STEPS + TINY.steps!);
    expect(major).toBeLessThan(TINY.steps!);
    expect(result.heapBytesPerStep).toBeGreaterThanOrEqual(0);
    // What it reports holds together: the target's part (prepare + layers) lies within the whole step in
    // every step, so its median within the steps' median.
    expect(result.uploadEncodeMicros).toBeGreaterThan(0);
    expect(result.uploadEncodeMicros).toBeLessThanOrEqual(result.stepMicros + 1e-6);
    expect(result.uploadEncodeToGpu).toBeCloseTo(result.uploadEncodeMicros / result.gpuMicros, 12);
    expect(result.gpuObjectsPerStep.total).toBe(0);
    // Uploads are incremental (never the batch's rows whole each step), and the new blocks of a step wait
    // for a later step's write (TableUpload): fewer writes than steps.
    expect(result.tableEntriesPerStep).toBeLessThan(result.tableEntriesPerBatch);
    expect(result.tableWritesPerStep).toBeLessThan(1);
  });

  it("collects the whole heap before each step with collect: 'full'", async () => {
    const { result, major } = await countCollections(() => measureHostCost(gpu, { ...TINY, collect: 'full' }));
    expect(result.collected).toBe('full');
    expect(major).toBeGreaterThanOrEqual(WARMUP_STEPS + TINY.steps!);
    expect(result.heapBytesPerStep).toBeGreaterThanOrEqual(0);
  });

  it('collects nothing with collect: false, and then reports no allocation figure', async () => {
    const { result, major } = await countCollections(() => measureHostCost(gpu, { ...TINY, collect: false }));
    expect(result.collected).toBe(false);
    expect(result.heapBytesPerStep).toBeUndefined();
    expect(major).toBeLessThan(TINY.steps!);
  });
});

describe('DecodeLoop.step with pass calls skipped (bench/host-cost-split.ts)', () => {
  const shape: DecodeShape = { sequences: 4, context: 40, layers: 2, numKvHeads: 1, numQueryHeads: 4, headDim: 16 };

  it("records none of the layers' dispatches into the step's pass, and runs the rest of the step", async () => {
    const loop = await DecodeLoop.create(gpu, shape, 8, true, false);
    const prototype = GPUCommandEncoder.prototype;
    const begin = prototype.beginComputePass;
    let passCalls = 0;
    prototype.beginComputePass = function (this: GPUCommandEncoder, descriptor?: GPUComputePassDescriptor) {
      const pass = begin.call(this, descriptor);
      const dispatch = pass.dispatchWorkgroups;
      pass.dispatchWorkgroups = (...args: Parameters<GPUComputePassEncoder['dispatchWorkgroups']>) => {
        passCalls++;
        dispatch.apply(pass, args);
      };
      return pass;
    };
    try {
      const recorded = await loop.step(0, true);
      expect(passCalls).toBe(2 * shape.layers); // write-kv and attention per layer
      passCalls = 0;
      const skipped = await loop.step(1, true, true);
      expect(passCalls).toBe(0);
      expect(skipped.layers).toHaveLength(shape.layers);
      expect(recorded.layers).toHaveLength(shape.layers);
      // The cache goes on as after any step: the next one runs on the GPU without an error.
      await loop.step(2);
      expect(passCalls).toBe(2 * shape.layers);
      await expect(loop.step(3, false, true)).rejects.toThrow(/cannot be submitted/);
    } finally {
      prototype.beginComputePass = begin;
      loop.destroy();
    }
  });
});
