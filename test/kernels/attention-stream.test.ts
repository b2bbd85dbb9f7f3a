// The streaming decode kernel (subgroups) in shapes other than the default one — no prefetch, queries
// held in registers, odd unroll, few lanes per key row, small and large workgroups (512 and 1024
// invocations where the device runs them), split GQA groups, f32 KV, block size 1 (table-window reloads
// inside a split), lazy rescaling at several thresholds (peaky queries make the running max move
// often), the portable shared reduction (workgroup memory instead of subgroup shuffles, also on a
// kernel without subgroups), merge rounds of one and of three key groups (little workgroup memory), a
// device with WebGPU's default 16 KiB of workgroup memory — against the f64 CPU reference, with the
// tolerance of attention-paged.test.ts (atol 2e-5 + rtol 1e-4; see there). Each shape is its own
// generated pipeline, so a wrong unrolling in one shape cannot hide behind another.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, subgroupTestGpu } from '../helpers/gpu';
import { buildKvFixture, checkAttention, decodeFixtureOptions, type KvFixtureOptions } from '../helpers/kv-fixture';
import { PagedAttentionKernel, type AttentionTuning } from '../../src/kernels/paged-attention';
import { createGpu, type Gpu } from '../../src/gpu/create-gpu';
import { MAX_RESCALE_THRESHOLD, type StreamDecodeConfig } from '../../src/kernels/attention-config';
import { ConfigError } from '../../src/errors';

failOnUncapturedGpuErrors();

const TOL = { atol: 2e-5, rtol: 1e-4 };
let gpu: Gpu;
beforeAll(async () => {
  gpu = await subgroupTestGpu();
});

const SHAPES: Array<{ name: string; tuning: AttentionTuning; fixture: Partial<KvFixtureOptions>; config?: Partial<StreamDecodeConfig> }> = [
  // A GPU's default shape (a software adapter defaults to 64 threads: SOFTWARE_ADAPTER_TUNING).
  { name: 'the GPU default shape, 128 threads', tuning: { stream: { workgroupSize: 128 } }, fixture: {} },
  { name: 'no prefetch, queries in registers, unroll 3', tuning: { stream: { prefetch: false, queryInSmem: false, unroll: 3 } }, fixture: {} },
  { name: '2 lanes per row, 64-thread workgroups', tuning: { stream: { maxLanes: 2, workgroupSize: 64 } }, fixture: { kvDtype: 'f32', headDim: 32 } },
  { name: '2 heads of a group of 4 per workgroup, 256 threads, unroll 1', tuning: { stream: { maxHeads: 2, workgroupSize: 256, unroll: 1 } }, fixture: {} },
  { name: 'block size 1 (window reloads), f32, unroll 2', tuning: { stream: { unroll: 2 } }, fixture: { blockSize: 1, kvDtype: 'f32' } },
  { name: 'lazy rescale, threshold 8', tuning: { stream: { rescaleThreshold: 8 } }, fixture: {} },
  { name: 'lazy rescale, threshold 0, peaky softmax, f32, unroll 2', tuning: { stream: { rescaleThreshold: 0, unroll: 2 } }, fixture: { kvDtype: 'f32', qMagnitude: 8 } },
  { name: 'lazy rescale, largest threshold (32), peaky softmax', tuning: { stream: { rescaleThreshold: MAX_RESCALE_THRESHOLD } }, fixture: { qMagnitude: 6 } },
  { name: 'shared reduction, 8 lanes, f16', tuning: { stream: { reduction: 'shared' } }, fixture: {} },
  { name: 'shared reduction, 4 lanes, no prefetch, f32, lazy rescale 0', tuning: { stream: { reduction: 'shared', maxLanes: 4, prefetch: false, rescaleThreshold: 0 } }, fixture: { kvDtype: 'f32', qMagnitude: 8 } },
  { name: 'shared reduction, 16 lanes, 2 heads of 4, 256 threads, block 1', tuning: { stream: { reduction: 'shared', maxLanes: 16, maxHeads: 2, workgroupSize: 256 } }, fixture: { blockSize: 1 } },
  // Merge rounds of one key group (the least workgroup memory), and of three of 32 groups (a short last round).
  { name: 'one key group per merge round, 128 threads', tuning: { stream: { workgroupSize: 128, mergeBytes: 16 } }, fixture: {}, config: { roundGroups: 1 } },
  {
    name: 'three key groups per merge round of 32 groups, 4 lanes, queries in registers',
    tuning: { stream: { maxLanes: 4, workgroupSize: 128, queryInSmem: false, mergeBytes: 3 * 16 * (4 * 4 + 4) } },
    fixture: { kvDtype: 'f32', headDim: 16 },
    config: { roundGroups: 3, keyGroups: 32 },
  },
];

describe.each(SHAPES)('streaming decode: $name', ({ tuning, fixture, config }) => {
  it('matches the reference for contexts 1, 17, 300 and 700, with and without split-K', async () => {
    const fx = buildKvFixture(gpu.device, decodeFixtureOptions(21, fixture));
    try {
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true, tuning });
      expect(kernel.streamDecodeConfig, 'the streaming kernel applies to this shape').toBeDefined();
      if (config) expect(kernel.streamDecodeConfig).toMatchObject(config);
      const result = await checkAttention(gpu.device, kernel, fx, TOL, { forceSplits: [undefined, 1, 3] });
      expect(result.count, `${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
    } finally {
      fx.destroy();
    }
  });
});

// 512 and 1024 invocations: 64 and 128 key groups (merged in rounds), steps of 128 keys (the table
// window), on devices that run that many invocations per workgroup (not SwiftShader's 256).
const LARGE_WORKGROUPS: Array<{ name: string; tuning: AttentionTuning; fixture: Partial<KvFixtureOptions>; config: Partial<StreamDecodeConfig> }> = [
  { name: '512 threads', tuning: { stream: { workgroupSize: 512 } }, fixture: {}, config: { workgroupSize: 512, keysPerStep: 128 } },
  { name: '1024 threads, f32, block size 1', tuning: { stream: { workgroupSize: 1024 } }, fixture: { kvDtype: 'f32', blockSize: 1 }, config: { workgroupSize: 1024, keysPerStep: 128 } },
];
const maxInvocations = () => gpu.device.limits.maxComputeInvocationsPerWorkgroup;

describe.each(LARGE_WORKGROUPS)('streaming decode in large workgroups: $name', ({ tuning, fixture, config }) => {
  it('matches the reference for contexts 1, 17, 300 and 700, with and without split-K, where the device runs it', async (context) => {
    if (maxInvocations() < config.workgroupSize!) context.skip();
    const fx = buildKvFixture(gpu.device, decodeFixtureOptions(24, fixture));
    try {
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true, tuning });
      expect(kernel.streamDecodeConfig).toMatchObject(config);
      const result = await checkAttention(gpu.device, kernel, fx, TOL, { forceSplits: [undefined, 1, 3] });
      expect(result.count, `${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
    } finally {
      fx.destroy();
    }
  });
});

describe('streaming decode workgroup size', () => {
  it('is refused with a ConfigError naming the limit when the device runs fewer invocations', (context) => {
    if (maxInvocations() >= 1024) context.skip();
    const fx = buildKvFixture(gpu.device, decodeFixtureOptions(25));
    try {
      const options = { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true, tuning: { stream: { workgroupSize: 1024 as const } } };
      expect(() => new PagedAttentionKernel(gpu.device, fx.layout, options)).toThrow(ConfigError);
      expect(() => new PagedAttentionKernel(gpu.device, fx.layout, options)).toThrow(`maxComputeInvocationsPerWorkgroup ${maxInvocations()}`);
    } finally {
      fx.destroy();
    }
  });
});

describe('streaming decode: lazy rescale threshold', () => {
  it('is refused outside [0, MAX_RESCALE_THRESHOLD] with a ConfigError', () => {
    const fx = buildKvFixture(gpu.device, decodeFixtureOptions(22));
    try {
      for (const bad of [-1, MAX_RESCALE_THRESHOLD + 1, Number.NaN, Number.POSITIVE_INFINITY]) {
        const options = { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true, tuning: { stream: { rescaleThreshold: bad } } };
        expect(() => new PagedAttentionKernel(gpu.device, fx.layout, options)).toThrow(ConfigError);
      }
    } finally {
      fx.destroy();
    }
  });
});

describe('streaming decode without subgroups (shared reduction)', () => {
  it('runs on a kernel made with subgroups: false and matches the reference, with and without split-K', async () => {
    const fx = buildKvFixture(gpu.device, decodeFixtureOptions(23));
    try {
      const options = { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: false };
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, options); // the shared reduction is the default here
      expect(kernel.streamDecodeConfig).toMatchObject({ reduction: 'shared', lanes: 8 });
      expect(kernel.writesKvFor(fx.entries)).toBe(false); // storing K/V from the decode needs the subgroup reduction
      const result = await checkAttention(gpu.device, kernel, fx, TOL, { forceSplits: [undefined, 1, 3] });
      expect(result.count, `${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
      // Asking for subgroup shuffles (or no streaming decode) on a kernel without subgroups leaves decode to the tile engine.
      const tileEngine = [{ stream: { reduction: 'subgroup' as const } }, { streamDecode: false }].map(
        (tuning) => new PagedAttentionKernel(gpu.device, fx.layout, { ...options, tuning }).streamDecodeConfig,
      );
      expect(tileEngine).toEqual([undefined, undefined]);
    } finally {
      fx.destroy();
    }
  });
});

describe('streaming decode on a device with the WebGPU default limits (16 KiB of workgroup memory)', () => {
  let small: Gpu;
  beforeAll(async () => {
    small = await createGpu({ defaultLimits: true });
  });
  afterAll(() => small.device.destroy());

  for (const subgroups of [true, false]) {
    it(`runs the streaming kernel (${subgroups ? 'subgroup shuffles' : 'shared reduction'}) there and matches the reference`, async () => {
      expect(small.device.limits.maxComputeWorkgroupStorageSize).toBe(16384);
      // Head dim 128, f16, 4 heads per kv head: the H100 bench shape's workgroup (128 threads, the GPU
      // default; a software adapter's own is 64), at 15748 bytes here.
      const fx = buildKvFixture(small.device, decodeFixtureOptions(24, { headDim: 128 }));
      try {
        const kernel = new PagedAttentionKernel(small.device, fx.layout, {
          numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups, tuning: { stream: { workgroupSize: 128 } },
        });
        expect(kernel.streamDecodeConfig).toMatchObject({ reduction: subgroups ? 'subgroup' : 'shared', unroll: subgroups ? 4 : 3, roundGroups: 6, workgroupBytes: 15748 });
        small.device.pushErrorScope('validation');
        const result = await checkAttention(small.device, kernel, fx, TOL, { forceSplits: [undefined, 3] });
        expect(await small.device.popErrorScope()).toBeNull();
        expect(result.count, `${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
      } finally {
        fx.destroy();
      }
    });
  }
});
