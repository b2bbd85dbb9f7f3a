// Prefill and decode on subgroup matrices (tensor cores; Dawn's chromium-experimental-subgroup-matrix
// with f16 inputs and f32 results) against the f64 CPU reference, and PagedKVCache on them under the
// model-based fuzz. Runs only where the device offers them with
// Dawn's allow_unsafe_apis — 16×16 on NVIDIA GPUs, 8×8 on Mesa 26's lavapipe (a CPU
// driver: `bash .ci/lavapipe.sh`, then `. /opt/lavapipe/env.sh && npx vitest run test/kernels/attention-mma.test.ts`,
// about 4 minutes on 2 cores). Elsewhere (SwiftShader) it is skipped, and the portable path is tested by the
// other kernel tests. A shape the device's workgroup memory does not hold is expected to fall back to
// one subgroup of 16 keys.
// Tolerance, |gpu − ref| ≤ atol + rtol·|ref| with atol 5e-3, rtol 1e-2: the kernel rounds the scaled
// queries and the probabilities P (≤ e^8 before normalisation) to f16 (relative 2^-11 ≈ 4.9e-4 each), so a
// score of magnitude ≤ 4 moves by ≤ 2e-3 and each p by ≤ 0.3 %; outputs are convex combinations of V
// in [-1, 1], which bounds their error near 3e-3. Indexing, masking or rescaling bugs give errors ≥ 0.05.
import { afterEach, describe, expect, it } from 'vitest';
import { createGpu, type Gpu } from '../../src/gpu/create-gpu';
import { buildKvFixture, checkAttention, type KvFixtureOptions, type SequenceSpec } from '../helpers/kv-fixture';
import { PagedAttentionKernel } from '../../src/kernels/paged-attention';
import { computeKvLayout, type KvLayout } from '../../src/pool/kv-layout';
import { mmaPrefillConfig } from '../../src/kernels/attention-config';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { poisonedVMismatches } from '../helpers/poisoned-v';
import { cacheFuzzProperty } from '../reliability/helpers/cache-fuzz-property';
import { fuzzSettings, runFuzz } from '../reliability/helpers/fuzz-runner';

const TOL = { atol: 5e-3, rtol: 1e-2 };
const gpu: Gpu = await createGpu({ subgroupMatrix: true });
const uncaptured: string[] = [];
gpu.device.onuncapturederror = (event) => {
  uncaptured.push(event.error.message);
};
afterEach(() => {
  expect(uncaptured.splice(0)).toEqual([]);
});

const probeLayout = computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim: 64, blockSize: 16, numBlocks: 4, kvDtype: 'f16' }, 1 << 20);
const available = new PagedAttentionKernel(gpu.device, probeLayout, { numQueryHeads: 4, rowStride: 1, subgroups: gpu.features.subgroups, adapterInfo: gpu.adapter.info })
  .prefillMmaConfig !== undefined;

const SEQUENCES: SequenceSpec[] = [
  { contextLength: 37, numQueries: 37 }, // prefill from position 0, partial last step
  { contextLength: 300, numQueries: 100 }, // chunked prefill over a 200-token cached prefix
  { contextLength: 1 }, // a decode entry in the same batch
  { contextLength: 129, numQueries: 2 },
  { contextLength: 520, numQueries: 520 },
];

/** The kernel's subgroup count, row tiles per subgroup and key tile. */
function shapeOf(kernel: PagedAttentionKernel): [number, number, number] | undefined {
  const m = kernel.prefillMmaConfig;
  return m && [m.subgroups, m.rowTiles, m.keyTile];
}

/** The shape asked for where the device's workgroup memory holds it (the H100's 48 KiB), else the one-subgroup, 16-key fallback (lavapipe's 32 KiB). */
function expectedShape(layout: KvLayout, kernel: PagedAttentionKernel, groupSize: number, subgroups: number, keyTile: number, rowTiles = 1, reuseKForV = false): [number, number, number] {
  const { subgroupSize, matrixSize } = kernel.prefillMmaConfig!;
  return mmaPrefillConfig(layout, groupSize, subgroupSize, gpu.device.limits, { subgroups, rowTiles, keyTile, matrixSize, reuseKForV }) ? [subgroups, rowTiles, keyTile] : [1, 1, 16];
}

describe.skipIf(!available)('subgroup-matrix prefill', () => {
  it.each([
    { headDim: 64, groupSize: 4, blockSize: 16, subgroups: 1, keyTile: 16 },
    { headDim: 128, groupSize: 1, blockSize: 8, subgroups: 1, keyTile: 16 },
    { headDim: 128, groupSize: 8, blockSize: 32, subgroups: 1, keyTile: 16 },
    { headDim: 256, groupSize: 2, blockSize: 16, subgroups: 1, keyTile: 16 },
    { headDim: 128, groupSize: 6, blockSize: 16, subgroups: 1, keyTile: 16 },
    // Several subgroups per workgroup, each with its own 16 rows over the shared K/V of a step, and
    // steps of 32 and 64 keys (several S and P matrices per step; partial last steps).
    { headDim: 64, groupSize: 4, blockSize: 16, subgroups: 4, keyTile: 16 },
    { headDim: 128, groupSize: 8, blockSize: 32, subgroups: 2, keyTile: 16 },
    { headDim: 128, groupSize: 6, blockSize: 8, subgroups: 8, keyTile: 16 },
    { headDim: 128, groupSize: 4, blockSize: 16, subgroups: 4, keyTile: 32 },
    { headDim: 64, groupSize: 2, blockSize: 1, subgroups: 2, keyTile: 64 },
    { headDim: 256, groupSize: 4, blockSize: 16, subgroups: 1, keyTile: 32 },
    // K/V matrices of fully attended steps loaded from the pool (blocks of 16 and 32 tokens hold whole
    // 16- and 8-key matrices); the diagonal steps stay staged.
    { headDim: 64, groupSize: 4, blockSize: 16, subgroups: 1, keyTile: 16, directKv: true },
    { headDim: 128, groupSize: 8, blockSize: 32, subgroups: 2, keyTile: 32, directKv: true },
    { headDim: 128, groupSize: 2, blockSize: 16, subgroups: 4, keyTile: 64, directKv: true },
    // Two row tiles per subgroup, each K/V matrix feeding both: staged and from the pool.
    { headDim: 64, groupSize: 4, blockSize: 16, subgroups: 2, keyTile: 32, rowTiles: 2 },
    { headDim: 128, groupSize: 8, blockSize: 32, subgroups: 1, keyTile: 16, rowTiles: 2, directKv: true },
    // V matrices of pool-read steps loaded before the softmax (MmaPrefillConfig.earlyV).
    { headDim: 128, groupSize: 4, blockSize: 16, subgroups: 2, keyTile: 32, directKv: true, earlyV: true },
    { headDim: 64, groupSize: 8, blockSize: 32, subgroups: 1, keyTile: 16, rowTiles: 2, directKv: true, earlyV: true },
    // The next pool-read step's K loaded after a step's scores (MmaPrefillConfig.nextK), alone and with V early;
    // blocks of 8 and 16 tokens hold whole 8-key matrices but not always 16-key ones (steps then staged).
    { headDim: 128, groupSize: 4, blockSize: 16, subgroups: 2, keyTile: 32, directKv: true, nextK: true },
    { headDim: 64, groupSize: 2, blockSize: 8, subgroups: 4, keyTile: 16, directKv: true, earlyV: true, nextK: true },
    { headDim: 128, groupSize: 8, blockSize: 32, subgroups: 1, keyTile: 64, rowTiles: 2, directKv: true, earlyV: true, nextK: true },
    // A staged step's V into K's place after its scores (MmaPrefillConfig.reuseKForV): every step staged, the
    // Q rows in several rounds of keyTile rows (8 subgroups; 2 row tiles), and from the pool with both early loads.
    { headDim: 64, groupSize: 4, blockSize: 16, subgroups: 1, keyTile: 16, reuseKForV: true },
    { headDim: 128, groupSize: 6, blockSize: 8, subgroups: 8, keyTile: 16, reuseKForV: true },
    { headDim: 64, groupSize: 4, blockSize: 16, subgroups: 2, keyTile: 32, rowTiles: 2, reuseKForV: true },
    { headDim: 128, groupSize: 2, blockSize: 8, subgroups: 4, keyTile: 16, directKv: true, earlyV: true, nextK: true, reuseKForV: true },
  ] as const)('head dim $headDim, GQA $groupSize, block $blockSize, $subgroups subgroup(s) per workgroup of $rowTiles row tile(s), $keyTile keys per step, K/V from the pool $directKv, V early $earlyV, next K $nextK, V in K\'s place $reuseKForV matches the reference', async ({ headDim, groupSize, blockSize, subgroups, keyTile, rowTiles = 1 as 1 | 2, directKv = false, earlyV = false, nextK = false, reuseKForV = false }) => {
    const options: KvFixtureOptions = { numKvHeads: 2, groupSize, headDim, blockSize, kvDtype: 'f16', shuffleBlocks: true, sequences: SEQUENCES, seed: headDim + groupSize };
    const fx = buildKvFixture(gpu.device, options);
    try {
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, {
        numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true, adapterInfo: gpu.adapter.info,
        tuning: { prefillMatrixSubgroups: subgroups, prefillMatrixRowTiles: rowTiles, prefillMatrixKeyTile: keyTile, prefillMatrixDirectKv: directKv, prefillMatrixEarlyV: earlyV, prefillMatrixNextK: nextK, prefillMatrixReuseKForV: reuseKForV },
      });
      expect(shapeOf(kernel)).toEqual(expectedShape(fx.layout, kernel, groupSize, subgroups, keyTile, rowTiles, reuseKForV));
      expect(kernel.prefillMmaConfig!.directKv).toBe(directKv);
      expect(kernel.prefillMmaConfig!.earlyV).toBe(earlyV);
      expect(kernel.prefillMmaConfig!.nextK).toBe(nextK);
      expect(kernel.prefillMmaConfig!.reuseKForV).toBe(reuseKForV);
      const result = await checkAttention(gpu.device, kernel, fx, TOL);
      expect(result.count, `${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
    } finally {
      fx.destroy();
    }
  });

  it('long causal prefill with table-window reloads (blocks of 8 and 16), rescaling lazily and at every new max, in one and four subgroups, steps of 16 to 64 keys, K/V staged and from the pool', async () => {
    // (The last three load the next step's K early and V before the softmax across the window reloads; the
    // last two stage a step's V in K's place.)
    for (const [prefillRescaleThreshold, prefillMatrixSubgroups, prefillMatrixKeyTile, prefillMatrixDirectKv, blockSize, early, reuse = false] of [
      [8, 1, 16, false, 8, false], [0, 1, 16, false, 8, false], [8, 4, 32, false, 8, false], [0, 2, 64, false, 8, false], [0, 2, 32, true, 16, false],
      [8, 2, 16, true, 8, true], [0, 1, 32, true, 16, true, true], [0, 4, 32, false, 8, false, true],
    ] as const) {
      const options: KvFixtureOptions = {
        numKvHeads: 1, groupSize: 4, headDim: 128, blockSize, kvDtype: 'f16', shuffleBlocks: true,
        sequences: [{ contextLength: 2100, numQueries: 70 }, { contextLength: 1200, numQueries: 1200 }], seed: 77, qMagnitude: 3,
      };
      const fx = buildKvFixture(gpu.device, options);
      try {
        const kernel = new PagedAttentionKernel(gpu.device, fx.layout, {
          numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true, adapterInfo: gpu.adapter.info,
          tuning: { prefillRescaleThreshold, prefillMatrixSubgroups, prefillMatrixKeyTile, prefillMatrixDirectKv, prefillMatrixEarlyV: early, prefillMatrixNextK: early, prefillMatrixReuseKForV: reuse },
        });
        expect(shapeOf(kernel)).toEqual(expectedShape(fx.layout, kernel, 4, prefillMatrixSubgroups, prefillMatrixKeyTile, 1, reuse));
        expect(kernel.prefillMmaConfig!.reuseKForV).toBe(reuse);
        expect(kernel.prefillMmaConfig!.directKv).toBe(prefillMatrixDirectKv);
        const result = await checkAttention(gpu.device, kernel, fx, TOL);
        expect(result.count, `threshold ${prefillRescaleThreshold}, ${prefillMatrixSubgroups} subgroup(s), ${prefillMatrixKeyTile} keys per step, K/V from the pool ${prefillMatrixDirectKv}: ${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
      } finally {
        fx.destroy();
      }
    }
  });

  // Decode on subgroup matrices (tuning.decodeMatrix): a GQA group's heads are the rows of one query,
  // split-K writes partials for the merge kernel; K/V from the pool where blocks hold whole matrices.
  it.each([
    { headDim: 128, groupSize: 4, blockSize: 16, keyTile: 16, pool: 'one chunk' },
    { headDim: 64, groupSize: 8, blockSize: 32, keyTile: 64, pool: 'one chunk' },
    { headDim: 128, groupSize: 2, blockSize: 8, keyTile: 32, pool: 'one chunk' },
    { headDim: 256, groupSize: 1, blockSize: 16, keyTile: 16, pool: 'one chunk' },
    // A pool over several chunks: K/V staged (the f16 view covers one chunk).
    { headDim: 64, groupSize: 4, blockSize: 16, keyTile: 32, pool: 'chunks of 40 blocks' },
  ] as const)('decode: head dim $headDim, GQA $groupSize, block $blockSize, $keyTile keys per step, pool in $pool matches the reference, whole and split', async ({ headDim, groupSize, blockSize, keyTile, pool }) => {
    const blocksPerChunk = pool === 'one chunk' ? undefined : 40;
    const sequences: SequenceSpec[] = [
      { contextLength: 1 }, { contextLength: 17 }, { contextLength: 300 }, { contextLength: 1500 }, { contextLength: 100, numQueries: 40 },
    ];
    const options: KvFixtureOptions = { numKvHeads: 2, groupSize, headDim, blockSize, kvDtype: 'f16', shuffleBlocks: true, sequences, seed: 3 * headDim + groupSize, blocksPerChunk };
    const fx = buildKvFixture(gpu.device, options);
    try {
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, {
        numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true, adapterInfo: gpu.adapter.info, tuning: { decodeMatrix: true, decodeMatrixKeyTile: keyTile, decodeTargetWorkgroups: 256, decodeMinKeysPerSplit: 64 },
      });
      const m = kernel.decodeMmaConfig!;
      expect([m.keyTile, m.directKv]).toEqual([keyTile, blockSize % m.matrixSize === 0 && fx.layout.numChunks === 1]);
      expect(fx.layout.numChunks > 1).toBe(blocksPerChunk !== undefined);
      expect(kernel.describeKernels().decode).toMatch(/^subgroup matrices/);
      // Planned splits (whole steps, several for the long contexts), none, and 3 of arbitrary length
      // (steps that start mid-matrix are staged).
      for (const forceSplits of [undefined, 1, 3]) {
        const result = await checkAttention(gpu.device, kernel, fx, TOL, { forceSplits });
        expect(result.count, `splits ${forceSplits ?? 'auto'} (${kernel.lastPlan?.splitsPerEntry}): ${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
        if (forceSplits === undefined) expect(Math.max(...kernel.lastPlan!.splitsPerEntry)).toBeGreaterThan(1);
      }
    } finally {
      fx.destroy();
    }
  });

  it('a block id outside the pool reads as zeros, on the staged and the pool-loaded paths alike (the same output as a zeroed block)', async () => {
    for (const directKv of [false, true]) {
      const options: KvFixtureOptions = {
        numKvHeads: 2, groupSize: 4, headDim: 64, blockSize: 16, kvDtype: 'f16', shuffleBlocks: true, seed: 5,
        sequences: [{ contextLength: 200, numQueries: 150 }, { contextLength: 90, numQueries: 1 }],
      };
      const fx = buildKvFixture(gpu.device, options);
      try {
        // Blocks 1 and 6 of the prefill (keys its later query tiles attend whole, so the pool-loaded path
        // would read them) get ids outside the pool on the GPU; the reference, which refuses such ids,
        // keeps the real ids over blocks zeroed in the pool and in its copy.
        const gpuTable = fx.blockTable.slice();
        for (const [logical, outside] of [[1, -1], [6, fx.layout.numBlocks + 3]] as const) {
          const id = fx.blockTable[logical]!;
          const chunk = Math.floor(id / fx.layout.blocksPerChunk);
          const at = (id % fx.layout.blocksPerChunk) * fx.layout.wordsPerBlock;
          fx.chunkWords[chunk]!.fill(0, at, at + fx.layout.wordsPerBlock);
          gpu.device.queue.writeBuffer(fx.chunks[chunk]!, at * 4, new Uint32Array(fx.layout.wordsPerBlock));
          gpuTable[logical] = outside;
        }
        gpu.device.queue.writeBuffer(fx.blockTableBuffer, 0, gpuTable);
        const kernel = new PagedAttentionKernel(gpu.device, fx.layout, {
          numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true, adapterInfo: gpu.adapter.info, tuning: { prefillMatrixDirectKv: directKv },
        });
        expect(kernel.prefillMmaConfig!.directKv).toBe(directKv);
        const result = await checkAttention(gpu.device, kernel, fx, TOL);
        expect(result.count, `K/V from the pool ${directKv}: ${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
      } finally {
        fx.destroy();
      }
    }
  });

  // The bad-input guarantee (README "Bad input") on subgroup matrices: a masked key has p = 0, and a
  // matrix P·V would add 0 · NaN = NaN to the rows of a step that do not attend it.
  it('NaN and ±∞ in V at a position do not reach the earlier queries of the same prefill, nor other heads', async () => {
    const heads = { numKvHeads: 2, numQueryHeads: 8, headDim: 16 } as const;
    for (const [tuning, poisoned, blockSize] of [
      [{ prefillMatrixSubgroups: 1, prefillMatrixKeyTile: 16 }, 37, 8],
      [{ prefillMatrixSubgroups: 2, prefillMatrixKeyTile: 32 }, 45, 16],
      [{ prefillMatrixSubgroups: 1, prefillMatrixKeyTile: 64 }, 3, 4],
      // V staged in K's place: the poisoned V is found while the softmax runs, not before the scores.
      [{ prefillMatrixSubgroups: 2, prefillMatrixKeyTile: 16, prefillMatrixReuseKForV: true }, 21, 8],
    ] as const) {
      const cache = await PagedKVCache.create(gpu.device, {
        ...heads, numLayers: 1, blockSize, numBlocks: 32, maxSequenceLength: 64, adapterInfo: gpu.adapter.info, attentionTuning: tuning,
      });
      try {
        const where = `${JSON.stringify(tuning)}, block ${blockSize}, V poisoned at ${poisoned}`;
        expect(cache.describeKernels().prefill, where).toMatch(/^subgroup matrices/);
        expect(await poisonedVMismatches(cache, { heads, blockSize, length: 48, poisoned, tolerance: TOL }), where).toEqual([]);
      } finally {
        cache.destroy();
      }
    }
  });

  it('PagedKVCache on subgroup matrices keeps its contents, accounting and isolation under random command sequences (model-based fuzz)', async () => {
    // The fuzz of test/reliability/cache-fuzz.test.ts with the matrix knobs drawn per run (decode on
    // matrices or streaming, K/V staged or from the pool, 1–2 subgroups, 16–32 keys per step, V staged in K's place or not), blocks
    // of 2–16 tokens, and attention compared at this file's tolerance. FUZZ_RUNS overrides the count.
    const settings = fuzzSettings(60);
    const tally: Record<string, number> = {};
    const property = cacheFuzzProperty({
      device: gpu.device, maxCommands: 60, replayPath: settings.replayPath, tally,
      heads: { numKvHeads: 2, numQueryHeads: 4, headDim: 16 }, matrix: { adapterInfo: gpu.adapter.info, tolerance: TOL },
    });
    const outcome = await runFuzz('test/kernels/attention-mma.test.ts', property, settings);
    console.log(`matrix cache fuzz: ${outcome.runs} runs (seed ${outcome.seed}); outcomes ${JSON.stringify(tally)}`);
    for (const key of ['attends', 'attendedWrites', 'forks', 'prefixHits', 'decode: matrices', 'prefill: matrices', 'prefill: matrices, K/V from the pool', "prefill: V in K's place"]) {
      expect(tally[key] ?? 0, key).toBeGreaterThan(0);
    }
  });
});
