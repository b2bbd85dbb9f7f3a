// The streaming decode kernel (subgroups) in shapes other than the default one — no prefetch, queries
// held in registers, odd unroll, few lanes per key row, small and large workgroups, split GQA groups,
// f32 KV, block size 1 (table-window reloads inside a split) — against the f64 CPU reference, with the
// tolerance of attention-paged.test.ts (atol 2e-5 + rtol 1e-4; see there). Each shape is its own
// generated pipeline, so a wrong unrolling in one shape cannot hide behind another.
import { beforeAll, describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, subgroupTestGpu } from '../helpers/gpu';
import { buildKvFixture, checkAttention, decodeFixtureOptions, type KvFixtureOptions } from '../helpers/kv-fixture';
import { PagedAttentionKernel, type AttentionTuning } from '../../src/kernels/paged-attention';
import type { Gpu } from '../../src/gpu/create-gpu';

failOnUncapturedGpuErrors();

const TOL = { atol: 2e-5, rtol: 1e-4 };
let gpu: Gpu;
beforeAll(async () => {
  gpu = await subgroupTestGpu();
});

const SHAPES: Array<{ name: string; tuning: AttentionTuning; fixture: Partial<KvFixtureOptions> }> = [
  { name: 'no prefetch, queries in registers, unroll 3', tuning: { stream: { prefetch: false, queryInSmem: false, unroll: 3 } }, fixture: {} },
  { name: '2 lanes per row, 64-thread workgroups', tuning: { stream: { maxLanes: 2, workgroupSize: 64 } }, fixture: { kvDtype: 'f32', headDim: 32 } },
  { name: '2 heads of a group of 4 per workgroup, 256 threads, unroll 1', tuning: { stream: { maxHeads: 2, workgroupSize: 256, unroll: 1 } }, fixture: {} },
  { name: 'block size 1 (window reloads), f32, unroll 2', tuning: { stream: { unroll: 2 } }, fixture: { blockSize: 1, kvDtype: 'f32' } },
];

describe.each(SHAPES)('streaming decode: $name', ({ tuning, fixture }) => {
  it('matches the reference for contexts 1, 17, 300 and 700, with and without split-K', async () => {
    const fx = buildKvFixture(gpu.device, decodeFixtureOptions(21, fixture));
    try {
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true, tuning });
      expect(kernel.streamDecodeConfig, 'the streaming kernel applies to this shape').toBeDefined();
      const result = await checkAttention(gpu.device, kernel, fx, TOL, { forceSplits: [undefined, 1, 3] });
      expect(result.count, `${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
    } finally {
      fx.destroy();
    }
  });
});
