// Kernels that need device features no software adapter has — subgroup matrices (the prefill on tensor
// cores) and shader-f16 (the decode computing scores in f16) — validated by Dawn on a machine without
// them: Dawn's null backend (no GPU; it runs nothing) with allow_unsafe_apis offers
// chromium-experimental-subgroup-matrix and shader-f16, and its front end parses, type-checks and runs
// the uniformity analysis on every generated shader exactly as on a GPU. Numerics are tested where a
// device runs them (attention-mma.test.ts, attention-half-scores.test.ts); here every shape the
// generators support must compile, and its pipeline must be accepted where the null device's limits
// allow one (for subgroup matrices, workgroups a multiple of its 128-lane maximum subgroup size; at most
// its 256 invocations, 16 KiB of workgroup memory and 8 storage buffers per stage). A kernel made there also shows which
// subgroup-matrix shape it falls back to when the one asked for does not fit.
import { beforeAll, describe, expect, it } from 'vitest';
import { createGpu, type Gpu } from '../../src/gpu/create-gpu';
import { MMA_KEY_TILES, MMA_SUBGROUP_COUNTS, mmaPrefillConfig, mmaPrefillConstants, streamConstants, streamDecodeConfig, type StreamDecodeTuning } from '../../src/kernels/attention-config';
import { decodeStreamShader, prefillMmaShader, type ShaderSource } from '../../src/kernels/attention-shaders';
import { bytesPerBlock, computeKvLayout } from '../../src/pool/kv-layout';
import { PagedAttentionKernel, type AttentionTuning } from '../../src/kernels/paged-attention';

const NO_LIMITS = { maxComputeWorkgroupStorageSize: 1 << 20, maxComputeInvocationsPerWorkgroup: 1024 };
const NULL_MAX_SUBGROUP = 128;

let gpu: Gpu;
beforeAll(async () => {
  gpu = await createGpu({ dawnOptions: ['backend=null'], subgroupMatrix: true });
  expect(`${gpu.info.architecture} ${gpu.info.device}`).toMatch(/null/i); // not a GPU that could run it
  expect(gpu.features.subgroupMatrix && gpu.features.shaderF16).toBe(true);
});

/** The validation error of a compute pipeline of `shader` with these constants, if any. */
async function pipelineError(shader: ShaderSource, constants: Record<string, number>): Promise<string | undefined> {
  gpu.device.pushErrorScope('validation');
  gpu.device.createComputePipeline({ layout: 'auto', compute: { module: gpu.device.createShaderModule({ code: shader.code }), entryPoint: shader.entryPoint, constants } });
  return (await gpu.device.popErrorScope())?.message;
}

async function compileErrors(code: string): Promise<string[]> {
  const info = await gpu.device.createShaderModule({ code }).getCompilationInfo();
  return info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
}

// Every 16 × 16 shape; for 8 × 8 matrices (Mesa's lavapipe) every subgroup size, with the
// smallest and largest subgroup counts and key tiles.
const SHAPES = [32, 64, 128, 256].flatMap((headDim) => [
  ...[16, 32, 64].flatMap((subgroupSize) =>
    MMA_SUBGROUP_COUNTS.flatMap((subgroups) => MMA_KEY_TILES.map((keyTile) => ({ headDim, matrixSize: 16 as const, subgroupSize, subgroups, keyTile }))),
  ),
  ...[8, 16, 32, 64].flatMap((subgroupSize) =>
    [1, 8].flatMap((subgroups) => [16, 64].map((keyTile) => ({ headDim, matrixSize: 8 as const, subgroupSize, subgroups, keyTile }))),
  ),
]).map((shape) => ({ ...shape, directKv: false }));
// K/V matrices loaded from the pool: both matrix sizes, one and several subgroups, short and long steps.
const DIRECT_SHAPES = [64, 128].flatMap((headDim) =>
  ([[16, 32], [8, 8]] as const).flatMap(([matrixSize, subgroupSize]) =>
    [1, 4].flatMap((subgroups) => [16, 64].map((keyTile) => ({ headDim, matrixSize, subgroupSize, subgroups, keyTile, directKv: true }))),
  ),
);

// Two row tiles per subgroup: both matrix sizes, staged and from the pool, the largest head dim.
const ROW_TILE_SHAPES = [64, 256].flatMap((headDim) =>
  ([[16, 32], [8, 16]] as const).flatMap(([matrixSize, subgroupSize]) =>
    [false, true].map((directKv) => ({ headDim, matrixSize, subgroupSize, subgroups: 2, keyTile: 32, directKv, rowTiles: 2 })),
  ),
);

// Loads moved earlier (V before the softmax, the next step's K after the scores; pool-read steps only):
// each alone and both, both matrix sizes, one and two row tiles, short and long steps.
const EARLY_LOAD_SHAPES = ([[false, true], [true, false], [true, true]] as const).flatMap(([earlyV, nextK]) =>
  ([[16, 32], [8, 16]] as const).flatMap(([matrixSize, subgroupSize]) =>
    ([[1, 16, 1], [2, 64, 1], [2, 32, 2]] as const).map(([subgroups, keyTile, rowTiles]) => ({
      headDim: 128, matrixSize, subgroupSize, subgroups, keyTile, rowTiles, directKv: true, earlyV, nextK,
    })),
  ),
);

// A staged step's V into K's place (half the staging area): both matrix sizes, staged and from the pool,
// Q rows in one round and in several (8 subgroups, 2 row tiles), short and long steps.
const REUSE_K_SHAPES = [64, 256].flatMap((headDim) =>
  ([[16, 32], [8, 16]] as const).flatMap(([matrixSize, subgroupSize]) =>
    ([[2, 16, 1, true], [8, 16, 1, false], [2, 64, 2, true], [4, 32, 2, false]] as const).map(([subgroups, keyTile, rowTiles, directKv]) => ({
      headDim, matrixSize, subgroupSize, subgroups, keyTile, rowTiles, directKv, earlyV: directKv, nextK: directKv, reuseKForV: true,
    })),
  ),
);

describe('subgroup-matrix prefill WGSL on Dawn\'s null backend', () => {
  it.each([...SHAPES, ...DIRECT_SHAPES, ...ROW_TILE_SHAPES, ...EARLY_LOAD_SHAPES, ...REUSE_K_SHAPES].map((shape) => ({ rowTiles: 1, earlyV: false, nextK: false, reuseKForV: false, ...shape })))('head dim $headDim, $matrixSize × $matrixSize matrices, subgroup size $subgroupSize, $subgroups subgroup(s) of $rowTiles row tile(s), $keyTile keys per step, K/V from the pool $directKv, V early $earlyV, next K early $nextK, V in K\'s place $reuseKForV: compiles, and its pipeline is accepted where the device allows one', async ({ headDim, matrixSize, subgroupSize, subgroups, rowTiles, keyTile, directKv, earlyV, nextK, reuseKForV }) => {
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 2, headDim, blockSize: 16, numBlocks: 64, kvDtype: 'f16' }, 1 << 27);
    const config = mmaPrefillConfig(layout, 4, subgroupSize, NO_LIMITS, { subgroups, rowTiles, keyTile, matrixSize, directKv, earlyV, nextK, reuseKForV })!;
    expect([config.workgroupSize, config.keyTile, config.directKv, config.queriesPerWorkgroup]).toEqual([subgroups * subgroupSize, keyTile, directKv, (matrixSize * subgroups * rowTiles) / 4]);
    expect([config.earlyV, config.nextK, config.reuseKForV]).toEqual([earlyV, nextK, reuseKForV]);
    const shader = prefillMmaShader(config, headDim);
    expect(await compileErrors(shader.code)).toEqual([]);
    const limits = gpu.device.limits;
    if (config.workgroupSize % NULL_MAX_SUBGROUP !== 0 || config.workgroupSize > limits.maxComputeWorkgroupSizeX || config.workgroupBytes > limits.maxComputeWorkgroupStorageSize) return;
    expect(await pipelineError(shader, mmaPrefillConstants(config, layout))).toBeUndefined();
  });

  it('a kernel asked for a shape whose memory does not fit the device falls back to one subgroup of 16 keys, still on subgroup matrices (prefill and decode)', () => {
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 8, headDim: 128, blockSize: 16, numBlocks: 64, kvDtype: 'f16' }, 1 << 27);
    // What Dawn reports for an NVIDIA GPU; the null device's own subgroup sizes (4–128) vary.
    const adapterInfo = { subgroupMinSize: 32, subgroupMaxSize: 32, subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 }] };
    const mmaOf = (tuning: AttentionTuning) => {
      const kernel = new PagedAttentionKernel(gpu.device, layout, { numQueryHeads: 32, rowStride: 8, subgroups: true, adapterInfo, tuning });
      kernel.destroy();
      return kernel.prefillMmaConfig && [kernel.prefillMmaConfig.subgroups, kernel.prefillMmaConfig.keyTile, kernel.prefillMmaConfig.workgroupBytes <= 16384];
    };
    expect(gpu.device.limits.maxComputeWorkgroupStorageSize).toBe(16384);
    expect(mmaOf({ prefillMatrixSubgroups: 2 })).toEqual([2, 16, true]); // 11.9 KiB fits
    // The Q rows go through the K/V area in rounds, so subgroups add only their S and P tiles: 4 fit
    // (15.3 KiB), 8 (22.0 KiB) do not.
    expect(mmaOf({ prefillMatrixSubgroups: 4 })).toEqual([4, 16, true]);
    expect(mmaOf({ prefillMatrixSubgroups: 8 })).toEqual([1, 16, true]);
    expect(mmaOf({ prefillMatrixKeyTile: 64 })).toEqual([1, 16, true]);
    // A step's V in K's place halves the K/V area: 2 subgroups × 32 keys then fit (22.9 → 14.9 KiB).
    expect(mmaOf({ prefillMatrixSubgroups: 2, prefillMatrixKeyTile: 32 })).toEqual([1, 16, true]);
    expect(mmaOf({ prefillMatrixSubgroups: 2, prefillMatrixKeyTile: 32, prefillMatrixReuseKForV: true })).toEqual([2, 32, true]);
    expect(mmaOf({ prefillMatrix: false })).toBeUndefined();
    // Decode on subgroup matrices likewise: 64 keys per step (32 KiB of K/V at head dim 128) fall back to 16.
    const decodeOf = (tuning: AttentionTuning) => {
      const kernel = new PagedAttentionKernel(gpu.device, layout, { numQueryHeads: 32, rowStride: 8, subgroups: true, adapterInfo, tuning });
      kernel.destroy();
      return kernel.decodeMmaConfig && [kernel.decodeMmaConfig.keyTile, kernel.decodeMmaConfig.directKv, kernel.writesKvFor([])];
    };
    expect(decodeOf({ decodeMatrix: true })).toEqual([16, true, false]); // K/V from the pool, and no storing decode
    expect(decodeOf({ decodeMatrix: true, decodeMatrixKeyTile: 64 })).toEqual([16, true, false]);
    expect(decodeOf({})).toBeUndefined();
  });

  it('Mesa\'s lavapipe gets subgroup matrices only with subgroups of 8 (its matrix operations crash the process at other sizes)', () => {
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 2, headDim: 64, blockSize: 16, numBlocks: 64, kvDtype: 'f16' }, 1 << 27);
    const configs = [{ componentType: 'f16', resultComponentType: 'f32', M: 8, N: 8, K: 8 }];
    const matrixSizeWith = (description: string, subgroupSize: number) => {
      const adapterInfo = { description, subgroupMinSize: subgroupSize, subgroupMaxSize: subgroupSize, subgroupMatrixConfigs: configs };
      const kernel = new PagedAttentionKernel(gpu.device, layout, { numQueryHeads: 8, rowStride: 2, subgroups: true, adapterInfo, tuning: { decodeMatrix: true } });
      kernel.destroy();
      return [kernel.prefillMmaConfig?.matrixSize, kernel.decodeMmaConfig?.matrixSize];
    };
    expect(matrixSizeWith('llvmpipe: Mesa 26.2.6-1 (LLVM 22.1.8)', 8)).toEqual([8, 8]);
    expect(matrixSizeWith('llvmpipe: Mesa 26.2.6-1 (LLVM 22.1.8)', 16)).toEqual([undefined, undefined]);
    expect(matrixSizeWith('llvmpipe: Mesa 26.2.6-1 (LLVM 22.1.8)', 32)).toEqual([undefined, undefined]);
    expect(matrixSizeWith('another driver', 16)).toEqual([8, 8]);
  });

  it('validates for real: per-subgroup matrix offsets are refused without the uniformity diagnostic turned off', async () => {
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 2, headDim: 64, blockSize: 16, numBlocks: 64, kvDtype: 'f16' }, 1 << 27);
    const code = prefillMmaShader(mmaPrefillConfig(layout, 4, 32, NO_LIMITS, { subgroups: 4 })!, 64).code;
    const directive = 'diagnostic(off, chromium.subgroup_matrix_uniformity);';
    expect(code).toContain(directive);
    expect((await compileErrors(code.replace(directive, '')))[0]).toMatch(/subgroupMatrix(Load|Store)' requires argument 1 to be uniform/);
    expect(prefillMmaShader(mmaPrefillConfig(layout, 4, 32, NO_LIMITS)!, 64).code).not.toContain(directive);
  });
});

const HALF_SCORE_SHAPES: Array<{ name: string; tuning: StreamDecodeTuning; headDim: number; chunks: number; writesKv: boolean }> = [
  { name: 'default shape', tuning: {}, headDim: 128, chunks: 1, writesKv: false },
  { name: 'storing its K/V', tuning: {}, headDim: 128, chunks: 1, writesKv: true },
  { name: 'two chunks, no prefetch, unroll 3', tuning: { prefetch: false, unroll: 3 }, headDim: 128, chunks: 2, writesKv: false },
  { name: 'lazy rescale, 2 heads per workgroup, head dim 64', tuning: { rescaleThreshold: 8, maxHeads: 2 }, headDim: 64, chunks: 1, writesKv: false },
  { name: 'shared reduction, 16 lanes, head dim 256', tuning: { reduction: 'shared', maxLanes: 16 }, headDim: 256, chunks: 2, writesKv: false },
  { name: 'queries in workgroup memory asked for (registers win), storing its K/V', tuning: { queryInSmem: true, unroll: 2 }, headDim: 64, chunks: 1, writesKv: true },
];

describe('streaming decode with f16 scores (stream.halfScores) on Dawn\'s null backend', () => {
  it.each(HALF_SCORE_SHAPES)('$name: compiles, and its pipeline is accepted', async ({ tuning, headDim, chunks, writesKv }) => {
    const spec = { numLayers: 1, numKvHeads: 2, headDim, blockSize: 16, numBlocks: 64, kvDtype: 'f16' as const };
    const layout = computeKvLayout(spec, chunks === 1 ? 1 << 27 : 32 * bytesPerBlock(spec));
    expect(layout.numChunks).toBe(chunks);
    const config = streamDecodeConfig(layout, 4, 32, gpu.device.limits.maxComputeWorkgroupStorageSize, { ...tuning, halfScores: true })!;
    expect([config.halfScores, config.queryInSmem]).toEqual([true, false]);
    const shader = decodeStreamShader(config, true, layout.numChunks, writesKv);
    expect(shader.code.startsWith('enable f16;')).toBe(true);
    expect(await compileErrors(shader.code)).toEqual([]);
    // The decode storing K/V binds the layer's chunks and 8 more storage buffers: a device allowing
    // fewer refuses the pipeline (and the kernel never offers that decode there: writesKvFor).
    const storageBuffers = layout.numChunks + (writesKv ? 8 : 4);
    const error = await pipelineError(shader, streamConstants(config, layout));
    if (storageBuffers <= gpu.device.limits.maxStorageBuffersPerShaderStage) expect(error).toBeUndefined();
    else expect(error).toMatch(/number of storage buffers \(\d+\)/);
  });

  it('is not asked of f32 K/V', () => {
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 2, headDim: 64, blockSize: 16, numBlocks: 8, kvDtype: 'f32' }, 1 << 27);
    expect(streamDecodeConfig(layout, 4, 32, 16384, { halfScores: true })!.halfScores).toBe(false);
  });
});
