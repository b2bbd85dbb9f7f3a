// The subgroup-matrix prefill's WGSL, validated by Dawn on a machine without subgroup matrices: Dawn's
// null backend (no GPU; it runs nothing) with allow_unsafe_apis offers chromium-experimental-subgroup-matrix
// and shader-f16, and its front end parses, type-checks and runs the uniformity analysis on every
// generated shader exactly as on a GPU. Numerics are tested where a device runs them
// (attention-mma.test.ts); here every head dim, subgroup size and subgroup count the generator
// supports must compile, and its pipeline must be accepted where the null device's limits allow one
// (workgroups a multiple of its 128-lane maximum subgroup size, at most its 16 KiB of workgroup memory).
import { beforeAll, describe, expect, it } from 'vitest';
import { createGpu, type Gpu } from '../../src/gpu/create-gpu';
import { MMA_SUBGROUP_COUNTS, mmaPrefillConfig, mmaPrefillConstants } from '../../src/kernels/attention-config';
import { prefillMmaShader } from '../../src/kernels/attention-shaders';
import { computeKvLayout } from '../../src/pool/kv-layout';

const NO_LIMITS = { maxComputeWorkgroupStorageSize: 1 << 20, maxComputeInvocationsPerWorkgroup: 1024 };
const NULL_MAX_SUBGROUP = 128;

let gpu: Gpu;
beforeAll(async () => {
  gpu = await createGpu({ dawnOptions: ['backend=null'], subgroupMatrix: true });
  expect(`${gpu.info.architecture} ${gpu.info.device}`).toMatch(/null/i); // not a GPU that could run it
  expect(gpu.features.subgroupMatrix).toBe(true);
});

async function compileErrors(code: string): Promise<string[]> {
  const info = await gpu.device.createShaderModule({ code }).getCompilationInfo();
  return info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
}

const SHAPES = [32, 64, 128, 256].flatMap((headDim) =>
  [16, 32, 64].flatMap((subgroupSize) => MMA_SUBGROUP_COUNTS.map((subgroups) => ({ headDim, subgroupSize, subgroups }))),
);

describe('subgroup-matrix prefill WGSL on Dawn\'s null backend', () => {
  it.each(SHAPES)('head dim $headDim, subgroup size $subgroupSize, $subgroups subgroup(s): compiles, and its pipeline is accepted where the device allows one', async ({ headDim, subgroupSize, subgroups }) => {
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 2, headDim, blockSize: 16, numBlocks: 64, kvDtype: 'f16' }, 1 << 27);
    const config = mmaPrefillConfig(layout, 4, subgroupSize, NO_LIMITS, 8, subgroups)!;
    expect(config.workgroupSize).toBe(subgroups * subgroupSize);
    const shader = prefillMmaShader(config, headDim);
    expect(await compileErrors(shader.code)).toEqual([]);
    if (config.workgroupSize % NULL_MAX_SUBGROUP !== 0 || config.workgroupBytes > gpu.device.limits.maxComputeWorkgroupStorageSize) return;
    gpu.device.pushErrorScope('validation');
    gpu.device.createComputePipeline({
      layout: 'auto',
      compute: { module: gpu.device.createShaderModule({ code: shader.code }), entryPoint: shader.entryPoint, constants: mmaPrefillConstants(config, layout) },
    });
    expect((await gpu.device.popErrorScope())?.message).toBeUndefined();
  });

  it('validates for real: per-subgroup matrix offsets are refused without the uniformity diagnostic turned off', async () => {
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 2, headDim: 64, blockSize: 16, numBlocks: 64, kvDtype: 'f16' }, 1 << 27);
    const code = prefillMmaShader(mmaPrefillConfig(layout, 4, 32, NO_LIMITS, 8, 4)!, 64).code;
    const directive = 'diagnostic(off, chromium.subgroup_matrix_uniformity);';
    expect(code).toContain(directive);
    expect((await compileErrors(code.replace(directive, '')))[0]).toMatch(/subgroupMatrix(Load|Store)' requires argument 1 to be uniform/);
    expect(prefillMmaShader(mmaPrefillConfig(layout, 4, 32, NO_LIMITS, 8, 1)!, 64).code).not.toContain(directive);
  });
});
