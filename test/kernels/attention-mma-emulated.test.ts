// The subgroup-matrix kernel (prefill and decode) against the f64 CPU reference on emulated subgroup
// matrices (test/helpers/emulated-subgroup-matrices.ts), at every matrix size n (8, 16) the device's
// subgroup size can carry: the kernel's indexing, masking, lane-to-row logic and non-finite V handling
// at combinations no device here offers in hardware. Needs subgroups, shader-f16 and one fixed subgroup
// size, i.e. Mesa's lavapipe (`bash .ci/lavapipe.sh`, then `. /opt/lavapipe/env.sh`), where
// LP_NATIVE_VECTOR_WIDTH sets the subgroup size: 256 → 8 (n = 8), 512 → 16 (n = 8 with two lanes per
// row, n = 16), 1024 → 32 (NVIDIA's: n = 16 with two lanes per row, n = 8 with four). Skipped elsewhere
// (SwiftShader has no shader-f16). Each lane computes whole matrices, so shapes are small.
// Tolerance as in attention-mma.test.ts (f16 queries and probabilities): atol 5e-3, rtol 1e-2.
import { describe, expect, it } from 'vitest';
import { createGpu } from '../../src/gpu/create-gpu';
import { PagedAttentionKernel, type AttentionTuning } from '../../src/kernels/paged-attention';
import { MMA_DEFAULT_DIRECT_KV, MMA_MATRIX_SIZES } from '../../src/kernels/attention-config';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { buildKvFixture, checkAttention, type SequenceSpec } from '../helpers/kv-fixture';
import { emulatedAdapterInfo, withEmulatedSubgroupMatrices } from '../helpers/emulated-subgroup-matrices';
import { poisonedVMismatches } from '../helpers/poisoned-v';

const TOL = { atol: 5e-3, rtol: 1e-2 };
const gpu = await createGpu();
const uncaptured: string[] = [];
gpu.device.onuncapturederror = (event) => void uncaptured.push(event.error.message);
const device = withEmulatedSubgroupMatrices(gpu.device);
const { subgroupMinSize: sg = 0, subgroupMaxSize } = gpu.adapter.info as { subgroupMinSize?: number; subgroupMaxSize?: number };
const runnable = gpu.features.subgroups && gpu.device.features.has('shader-f16') && sg > 0 && sg === subgroupMaxSize;
/** The matrix sizes a subgroup of `sg` lanes carries (a lane owns a row, or 2–4 lanes share one). */
const sizes = runnable ? MMA_MATRIX_SIZES.filter((n) => sg >= n && sg <= n * n) : [];

const SEQUENCES: SequenceSpec[] = [
  { contextLength: 37, numQueries: 37 }, // prefill from position 0, partial last step
  { contextLength: 150, numQueries: 60 }, // chunked prefill over a cached prefix
  { contextLength: 1 },
  { contextLength: 70, numQueries: 2 },
];

// (Listed as skipped where none runs: a file must register a suite.)
describe.skipIf(sizes.length === 0).each((sizes.length > 0 ? sizes : MMA_MATRIX_SIZES).map((n) => ({ n })))('subgroup-matrix kernel on emulated $n × $n matrices', ({ n }) => {
  const adapterInfo = emulatedAdapterInfo(sg, n);

  async function expectMatch(headDim: number, groupSize: number, blockSize: number, tuning: AttentionTuning, sequences = SEQUENCES, forceSplits?: number[]) {
    const fx = buildKvFixture(device, { numKvHeads: 2, groupSize, headDim, blockSize, kvDtype: 'f16', shuffleBlocks: true, sequences, seed: headDim + blockSize });
    try {
      const kernel = new PagedAttentionKernel(device, fx.layout, { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true, adapterInfo, tuning });
      const matrix = tuning.decodeMatrix ? kernel.decodeMmaConfig : kernel.prefillMmaConfig;
      // Decode reads K/V from the pool wherever blocks hold whole matrices; prefill too unless told not to.
      const directKv = blockSize % n === 0 && (tuning.decodeMatrix === true || (tuning.prefillMatrixDirectKv ?? MMA_DEFAULT_DIRECT_KV));
      expect([matrix?.matrixSize, matrix?.subgroupSize, matrix?.directKv, matrix?.rowTiles]).toEqual([n, sg, directKv, tuning.decodeMatrix ? 1 : (tuning.prefillMatrixRowTiles ?? 1)]);
      const result = await checkAttention(device, kernel, fx, TOL, { forceSplits });
      expect(result.count, `${JSON.stringify(tuning)}: ${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
      expect(uncaptured.splice(0)).toEqual([]);
    } finally {
      fx.destroy();
    }
  }

  it.each([
    { headDim: 32, groupSize: 4, blockSize: 16, tuning: {} },
    { headDim: 32, groupSize: 2, blockSize: 8, tuning: { prefillMatrixSubgroups: 2, prefillMatrixKeyTile: 32, prefillMatrixDirectKv: true } },
    { headDim: 16, groupSize: 8, blockSize: 16, tuning: { prefillMatrixKeyTile: 64, prefillMatrixDirectKv: true, prefillRescaleThreshold: 0 } },
    { headDim: 16, groupSize: 1, blockSize: 32, tuning: { prefillMatrixSubgroups: 4, prefillMatrixDirectKv: true } },
    // Two row tiles per subgroup (each K/V matrix feeds both), staged and from the pool, with rescaling at every new max.
    { headDim: 32, groupSize: 4, blockSize: 16, tuning: { prefillMatrixRowTiles: 2, prefillMatrixKeyTile: 32, prefillRescaleThreshold: 0 } },
    { headDim: 16, groupSize: 2, blockSize: 16, tuning: { prefillMatrixRowTiles: 2, prefillMatrixSubgroups: 2, prefillMatrixDirectKv: true } },
    // V matrices of pool-read steps loaded before the softmax: one and two row tiles, 16 and 32 keys per step.
    { headDim: 32, groupSize: 4, blockSize: 16, tuning: { prefillMatrixDirectKv: true, prefillMatrixEarlyV: true, prefillMatrixKeyTile: 32 } },
    { headDim: 16, groupSize: 2, blockSize: 16, tuning: { prefillMatrixRowTiles: 2, prefillMatrixSubgroups: 2, prefillMatrixDirectKv: true, prefillMatrixEarlyV: true, prefillRescaleThreshold: 0 } },
    // The next pool-read step's K loaded after a step's scores, alone and with V early.
    { headDim: 32, groupSize: 4, blockSize: 16, tuning: { prefillMatrixDirectKv: true, prefillMatrixNextK: true } },
    { headDim: 16, groupSize: 8, blockSize: 32, tuning: { prefillMatrixSubgroups: 2, prefillMatrixKeyTile: 32, prefillMatrixDirectKv: true, prefillMatrixEarlyV: true, prefillMatrixNextK: true } },
    // A staged step's V in K's place: the Q rows in rounds of keyTile rows (4 subgroups), and two row tiles from the pool.
    { headDim: 32, groupSize: 4, blockSize: 8, tuning: { prefillMatrixSubgroups: 4, prefillMatrixReuseKForV: true } },
    { headDim: 16, groupSize: 2, blockSize: 16, tuning: { prefillMatrixRowTiles: 2, prefillMatrixDirectKv: true, prefillMatrixReuseKForV: true, prefillRescaleThreshold: 0 } },
  ] satisfies { headDim: number; groupSize: number; blockSize: number; tuning: AttentionTuning }[])('prefill: head dim $headDim, GQA $groupSize, block $blockSize, $tuning', async ({ headDim, groupSize, blockSize, tuning }) => {
    await expectMatch(headDim, groupSize, blockSize, tuning);
  });

  it.each([
    { headDim: 32, groupSize: 4, blockSize: 16, tuning: { decodeMatrix: true, prefillMatrixDirectKv: true } },
    { headDim: 16, groupSize: 8, blockSize: 8, tuning: { decodeMatrix: true, decodeMatrixKeyTile: 32 } },
  ] satisfies { headDim: number; groupSize: number; blockSize: number; tuning: AttentionTuning }[])('decode: head dim $headDim, GQA $groupSize, block $blockSize, $tuning, whole and in splits of forced length', async ({ headDim, groupSize, blockSize, tuning }) => {
    const sequences: SequenceSpec[] = [{ contextLength: 1 }, { contextLength: 19 }, { contextLength: 260 }];
    await expectMatch(headDim, groupSize, blockSize, { ...tuning, decodeTargetWorkgroups: 64, decodeMinKeysPerSplit: 32 }, sequences, [1, 3]);
  });

  it('NaN and ±∞ in V at a position do not reach the earlier queries of the same prefill (scalar P·V of that step)', async () => {
    const heads = { numKvHeads: 2, numQueryHeads: 4, headDim: 16 } as const;
    const blockSize = 8;
    const cache = await PagedKVCache.create(device, {
      ...heads, numLayers: 1, blockSize, numBlocks: 16, maxSequenceLength: 64, adapterInfo, residentWorkgroups: 1, attentionTuning: { prefillMatrixKeyTile: 32 },
    });
    try {
      expect(cache.describeKernels().prefill).toMatch(new RegExp(`^subgroup matrices ${n}×${n}`));
      expect(await poisonedVMismatches(cache, { heads, blockSize, length: 40, poisoned: 37, tolerance: TOL })).toEqual([]);
      expect(uncaptured.splice(0)).toEqual([]);
    } finally {
      cache.destroy();
    }
  });
});
