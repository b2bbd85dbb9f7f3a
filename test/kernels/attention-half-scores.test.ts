// The streaming decode computing q·k in f16 (stream.halfScores) against the f64 CPU reference, where the
// device has shader-f16 (a GPU; SwiftShader has not, and there the knob must change nothing). Its WGSL
// is compiled on every machine by kernel-compile.test.ts.
// Tolerance, |gpu − ref| ≤ atol + rtol·|ref| with atol 3e-3, rtol 1e-2: the queries (pre-scaled by
// 1/√d, |q| ≤ 0.18 for d ≥ 32) are rounded to f16 (relative 2^-11) and each 16-byte word's 8 products
// are summed in f16 (relative 2^-11 per addition on partial sums ≤ 8 · 0.18), so a score moves by at
// most about 1e-3; the outputs are convex combinations of V in [-1, 1], which bounds their error near
// 2e-3. Indexing or pairing bugs (a wrong half of a word, a wrong head) give errors ≥ 0.05.
import { beforeAll, describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, subgroupTestGpu } from '../helpers/gpu';
import { buildKvFixture, checkAttention, decodeFixtureOptions, type KvFixtureOptions } from '../helpers/kv-fixture';
import { PagedAttentionKernel, type AttentionTuning } from '../../src/kernels/paged-attention';
import { KernelChecker } from '../../src/tuning/kernel-check';
import type { Gpu } from '../../src/gpu/create-gpu';

failOnUncapturedGpuErrors();

const TOL = { atol: 3e-3, rtol: 1e-2 };
let gpu: Gpu;
beforeAll(async () => {
  gpu = await subgroupTestGpu();
});
const shaderF16 = (await subgroupTestGpu()).features.shaderF16;

describe('f16 scores where the device has no shader-f16', () => {
  it.skipIf(shaderF16)('are ignored: the default streaming kernel runs, with queries staged as asked', () => {
    const fx = buildKvFixture(gpu.device, decodeFixtureOptions(31));
    try {
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true, tuning: { stream: { halfScores: true } } });
      const plain = new PagedAttentionKernel(gpu.device, fx.layout, { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true });
      expect(kernel.streamDecodeConfig).toEqual(plain.streamDecodeConfig);
      expect(kernel.streamDecodeConfig!.halfScores).toBe(false);
      expect(kernel.describeKernels().decode).not.toMatch(/f16 scores/);
      kernel.destroy();
      plain.destroy();
    } finally {
      fx.destroy();
    }
  });
});

const SHAPES: Array<{ name: string; tuning: AttentionTuning; fixture: Partial<KvFixtureOptions> }> = [
  { name: 'default shape', tuning: {}, fixture: {} },
  { name: 'no prefetch, unroll 3, 2 heads of 4 per workgroup', tuning: { stream: { prefetch: false, unroll: 3, maxHeads: 2 } }, fixture: {} },
  { name: 'lazy rescale 8, peakier queries, block size 8', tuning: { stream: { rescaleThreshold: 8 } }, fixture: { qMagnitude: 3, blockSize: 8 } },
  { name: 'shared reduction, 16 lanes, head dim 128', tuning: { stream: { reduction: 'shared', maxLanes: 16 } }, fixture: { headDim: 128 } },
];

describe.skipIf(!shaderF16)('streaming decode with f16 scores', () => {
  it.each(SHAPES)('$name matches the reference for contexts 1, 17, 300 and 700, with and without split-K', async ({ tuning, fixture }) => {
    const fx = buildKvFixture(gpu.device, decodeFixtureOptions(32, fixture));
    try {
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, {
        numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true, tuning: { ...tuning, stream: { ...tuning.stream, halfScores: true } },
      });
      expect(kernel.streamDecodeConfig?.halfScores).toBe(true);
      expect(kernel.describeKernels().decode).toMatch(/f16 scores/);
      const result = await checkAttention(gpu.device, kernel, fx, TOL, { forceSplits: [undefined, 1, 3] });
      expect(result.count, `${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
      kernel.destroy();
    } finally {
      fx.destroy();
    }
  });

  it('stores its K/V word for word and attends over them (the autotuner\'s check of a storing decode)', async () => {
    const heads = { numKvHeads: 2, numQueryHeads: 8, headDim: 128, kvDtype: 'f16' as const, blockSize: 16 };
    const checker = new KernelChecker(gpu.device, heads);
    const kernel = new PagedAttentionKernel(gpu.device, checker.layout, {
      numQueryHeads: heads.numQueryHeads, rowStride: checker.rowStride, subgroups: true, tuning: { stream: { halfScores: true }, decodeWritesKv: true },
    });
    try {
      expect(kernel.writesKvFor(checker.storingEntries)).toBe(true);
      expect(await checker.check(kernel, { storesKv: true })).toBeUndefined();
      expect(await checker.check(kernel)).toBeUndefined();
    } finally {
      kernel.destroy();
      checker.destroy();
    }
  });
});
