// Causal prefill on the register-blocked kernel (portable: runs on every adapter, SwiftShader included)
// against the f64 CPU reference, across head dims, K/V formats, GQA groups (heads per workgroup 1–8),
// block sizes, table-window reloads, chunked prefill over a cached prefix, partial query tiles and a
// decode entry in the same batch; and every head dim and format the pool accepts gets a tile.
// Tolerance as in attention-shapes.test.ts, |gpu − ref| ≤ 2e-5 + 1e-4·|ref|: the kernel computes in f32
// over the same f16/f32 K/V words as the reference (which widens them exactly); only the summation order
// and exp ULPs differ. Indexing or masking bugs give errors ≥ 1e-2.
import { afterEach, describe, expect, it } from 'vitest';
import { blockedPrefillConfig, hasNarrowScoreBlocks, type BlockedPrefillConfig, type BlockedPrefillTuning } from '../../src/kernels/attention-config';
import { ConfigError } from '../../src/errors';
import { PagedAttentionKernel } from '../../src/kernels/paged-attention';
import { computeKvLayout } from '../../src/pool/kv-layout';
import { buildKvFixture, checkAttention, type KvFixtureOptions, type SequenceSpec } from '../helpers/kv-fixture';
import { testGpu } from '../helpers/gpu';

const TOL = { atol: 2e-5, rtol: 1e-4 };
const gpu = await testGpu();
const maxInvocations = () => gpu.device.limits.maxComputeInvocationsPerWorkgroup;
const uncaptured: string[] = [];
gpu.device.onuncapturederror = (event) => {
  uncaptured.push(event.error.message);
};
afterEach(() => {
  expect(uncaptured.splice(0)).toEqual([]);
});

const SEQUENCES: SequenceSpec[] = [
  { contextLength: 37, numQueries: 37 }, // prefill from position 0, partial last tile
  { contextLength: 90, numQueries: 30 }, // chunked prefill over a 60-token cached prefix
  { contextLength: 5 }, // a decode entry in the same batch
  { contextLength: 41, numQueries: 2 },
];

/**
 * Runs the fixture's batch on a kernel whose prefill is register-blocked (with `blocked` knobs); expects
 * the reference's outputs, and returns the tile the kernel used.
 */
async function expectMatchesReference(options: KvFixtureOptions, blocked?: BlockedPrefillTuning): Promise<BlockedPrefillConfig> {
  const fx = buildKvFixture(gpu.device, options);
  try {
    const kernel = new PagedAttentionKernel(gpu.device, fx.layout, {
      numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: gpu.features.subgroups, tuning: { prefillMatrix: false, blocked },
    });
    const config = kernel.prefillBlockedConfig;
    if (config === undefined) throw new Error('no register-blocked tile for this shape');
    const result = await checkAttention(gpu.device, kernel, fx, TOL);
    expect(result.count, `${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
    return config;
  } finally {
    fx.destroy();
  }
}

describe('register-blocked prefill', () => {
  it.each([
    { headDim: 16, groupSize: 1, blockSize: 16, kvDtype: 'f16' },
    { headDim: 32, groupSize: 4, blockSize: 8, kvDtype: 'f16' },
    { headDim: 64, groupSize: 8, blockSize: 16, kvDtype: 'f32' },
    { headDim: 128, groupSize: 4, blockSize: 16, kvDtype: 'f16' },
    { headDim: 24, groupSize: 6, blockSize: 4, kvDtype: 'f32' },
  ] as const)('head dim $headDim, GQA $groupSize, block $blockSize, $kvDtype matches the reference', async ({ headDim, groupSize, blockSize, kvDtype }) => {
    await expectMatchesReference({ numKvHeads: 2, groupSize, headDim, blockSize, kvDtype, shuffleBlocks: true, sequences: SEQUENCES, seed: headDim + groupSize, rowGap: 1 });
  });

  it('long prefill with table-window reloads (block size 1) and a peaky softmax', async () => {
    await expectMatchesReference({
      numKvHeads: 1, groupSize: 2, headDim: 16, blockSize: 1, kvDtype: 'f16', shuffleBlocks: true,
      sequences: [{ contextLength: 300, numQueries: 45 }, { contextLength: 200, numQueries: 200 }], seed: 77, qMagnitude: 4,
    });
  });

  // f16 K/V widened to f32 as the tiles are staged, and tiles other than the default one (the shapes a
  // GPU's tuning sweep tries; the tile depends on the workgroup memory allowed, so the first case pins
  // 32 KiB: a 48 KiB GPU's default f32 tile is 64 × 16).
  it.each([
    { name: 'staged as f32, head dim 128, GQA 4, in 32 KiB', fixture: { headDim: 128, groupSize: 4 }, blocked: { stagedF32: true, workgroupBytes: 32 * 1024 }, tile: { stagedF32: true, rows: 32, keyTile: 16 } },
    { name: 'staged as f32, head dim 32, GQA 1, 64-row tile', fixture: { headDim: 32, groupSize: 1 }, blocked: { stagedF32: true, maxRows: 64 }, tile: { stagedF32: true, rows: 64 } },
    { name: 'staged as f32, head dim 64, GQA 8, 8-key tile', fixture: { headDim: 64, groupSize: 8 }, blocked: { stagedF32: true, maxKeyTile: 8 }, tile: { stagedF32: true, keyTile: 8 } },
    { name: 'packed, head dim 128, 16-row tile', fixture: { headDim: 128, groupSize: 4 }, blocked: { maxRows: 16 }, tile: { stagedF32: false, rows: 16 } },
    // The tile a 16 KiB device gets for the largest head dims — 8 rows × 8 keys, half the threads
    // scoring — forced here on small head dims by a small allowance (the second with idle output threads too).
    { name: '8 × 8 tile, head dim 64, f16, GQA 2', fixture: { headDim: 64, groupSize: 2 }, blocked: { workgroupBytes: 6000 }, tile: { rows: 8, keyTile: 8, scoreThreads: 64 } },
    { name: '8 × 8 tile, head dim 40, f32, GQA 4', fixture: { headDim: 40, groupSize: 4, kvDtype: 'f32' }, blocked: { workgroupBytes: 5000 }, tile: { rows: 8, keyTile: 8, scoreThreads: 64, outThreads: 80 } },
    // Score blocks of fewer keys and more rows (blocked.maxScoreKeys): packed f16, f32 tiles, f32 K/V.
    { name: 'score blocks of 2 keys, packed, head dim 128, GQA 4', fixture: { headDim: 128, groupSize: 4 }, blocked: { maxScoreKeys: 2 }, tile: { scoreKeys: 2, stagedF32: false } },
    { name: 'score blocks of 1 key, staged as f32, head dim 64, GQA 8', fixture: { headDim: 64, groupSize: 8 }, blocked: { maxScoreKeys: 1, stagedF32: true }, tile: { scoreKeys: 1, stagedF32: true } },
    { name: 'score blocks of 1 key, f32 K/V, head dim 40, GQA 2', fixture: { headDim: 40, groupSize: 2, kvDtype: 'f32' }, blocked: { maxScoreKeys: 1 }, tile: { scoreKeys: 1 } },
  ] as const)('$name matches the reference', async ({ fixture, blocked, tile }) => {
    const config = await expectMatchesReference(
      { numKvHeads: 2, blockSize: 8, kvDtype: 'f16', shuffleBlocks: true, sequences: SEQUENCES, seed: 5, rowGap: 1, qMagnitude: 3, ...fixture },
      blocked,
    );
    expect(config).toMatchObject(tile);
  });

  // The same tiles shared by 256 and 512 invocations (blocked.workgroupSize): more softmax parts per row,
  // single-row score blocks, fewer output rows per invocation.
  const LARGER_WORKGROUPS = [
    { name: '256 invocations, packed f16, head dim 128, GQA 4', workgroupSize: 256, fixture: { headDim: 128, groupSize: 4 }, blocked: {}, tile: { scoreRows: 1, outRows: 2 } },
    { name: '256 invocations, f32 tiles, head dim 64, GQA 8, block 1', workgroupSize: 256, fixture: { headDim: 64, groupSize: 8, blockSize: 1 }, blocked: { stagedF32: true }, tile: { stagedF32: true } },
    { name: '256 invocations, f32 K/V, head dim 40, GQA 2 (idle output invocations)', workgroupSize: 256, fixture: { headDim: 40, groupSize: 2, kvDtype: 'f32' }, blocked: {}, tile: {} },
    { name: '512 invocations, packed f16, head dim 128, GQA 4', workgroupSize: 512, fixture: { headDim: 128, groupSize: 4 }, blocked: {}, tile: {} },
    { name: '512 invocations, f32 tiles, head dim 32, GQA 1', workgroupSize: 512, fixture: { headDim: 32, groupSize: 1 }, blocked: { stagedF32: true, maxKeyTile: 8 }, tile: { keyTile: 8 } },
  ] as const;
  // 256 is WebGPU's default limit; 512 runs where the device allows it (not SwiftShader).
  it.each(LARGER_WORKGROUPS.filter((c) => c.workgroupSize <= maxInvocations()))('$name matches the reference', async ({ workgroupSize, fixture, blocked, tile }) => {
    const config = await expectMatchesReference(
      { numKvHeads: 2, blockSize: 8, kvDtype: 'f16', shuffleBlocks: true, sequences: SEQUENCES, seed: 9, rowGap: 1, qMagnitude: 3, ...fixture },
      { ...blocked, workgroupSize },
    );
    expect(config).toMatchObject({ ...tile, workgroupSize, scoreThreads: workgroupSize });
  });

  it('shares the same tile among 256 and 512 invocations: smaller blocks per invocation, the one extra cost the reduction scratch', () => {
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim: 128, blockSize: 16, numBlocks: 4, kvDtype: 'f16' }, 1 << 20);
    const h100 = 48 * 1024; // the H100's workgroup memory through Dawn: one 64-row tile per SM
    const at = (workgroupSize: 128 | 256 | 512, stagedF32 = false) => blockedPrefillConfig(layout, 4, h100, { workgroupSize, stagedF32 })!;
    expect(at(128)).toMatchObject({ rows: 64, keyTile: 16, workgroupSize: 128, scoreRows: 2, scoreKeys: 4, scoreThreads: 128, outRows: 8, outThreads: 128 });
    expect(at(256)).toMatchObject({ rows: 64, keyTile: 16, workgroupSize: 256, scoreRows: 1, scoreKeys: 4, scoreThreads: 256, outRows: 4, outThreads: 256 });
    expect(at(512)).toMatchObject({ rows: 64, keyTile: 16, workgroupSize: 512, scoreRows: 1, scoreKeys: 2, scoreThreads: 512, outRows: 2, outThreads: 512 });
    // Each doubling adds one f32 (the reduction array) and 1/4 vec4 (the table scratch) per invocation.
    expect(at(256).workgroupBytes - at(128).workgroupBytes).toBe(128 * (4 + 4));
    expect(at(512).workgroupBytes - at(256).workgroupBytes).toBe(256 * (4 + 4));
    // f32 tiles of 64 × 16 fill 48 KiB exactly at 256 invocations; at 512 the key tile halves.
    expect(at(256, true)).toMatchObject({ rows: 64, keyTile: 16, workgroupBytes: h100 });
    expect(at(512, true)).toMatchObject({ rows: 64, keyTile: 8, scoreThreads: 512, scoreRows: 1, scoreKeys: 1 });
    // The default is 128 invocations.
    expect(blockedPrefillConfig(layout, 4, h100)).toEqual(at(128));
  });

  it('with maxScoreKeys, gives each invocation the same number of scores in blocks of fewer keys and more rows', () => {
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim: 128, blockSize: 16, numBlocks: 4, kvDtype: 'f16' }, 1 << 20);
    const at = (maxScoreKeys?: 1 | 2 | 4, workgroupSize: 128 | 256 = 128) => blockedPrefillConfig(layout, 4, 48 * 1024, { maxScoreKeys, workgroupSize })!;
    expect([1, 2, 4].map((k) => [at(k as 1 | 2 | 4).scoreRows, at(k as 1 | 2 | 4).scoreKeys])).toEqual([[8, 1], [4, 2], [2, 4]]);
    expect([at(2, 256).scoreRows, at(2, 256).scoreKeys]).toEqual([2, 2]);
    for (const k of [1, 2] as const) {
      // The same tile, threads and memory: only the blocks change.
      const { scoreRows, scoreKeys, ...rest } = at(k);
      const { scoreRows: r4, scoreKeys: k4, ...base } = at();
      expect(rest).toEqual(base);
      expect(scoreRows * scoreKeys).toBe(r4 * k4);
    }
    expect(at()).toEqual(blockedPrefillConfig(layout, 4, 48 * 1024));
    // Named in the kernel's description only where the blocks are narrower than the default.
    expect([at(1), at(2), at()].map(hasNarrowScoreBlocks)).toEqual([true, true, false]);
    expect(hasNarrowScoreBlocks({ scoreRows: 1, scoreKeys: 1 })).toBe(false); // the 8 × 8 tile: one score per invocation
  });

  it('is refused with a ConfigError naming the limit at more invocations than the device runs', (context) => {
    if (maxInvocations() >= 512) context.skip();
    const fx = buildKvFixture(gpu.device, { numKvHeads: 1, groupSize: 2, headDim: 16, blockSize: 16, kvDtype: 'f16', sequences: SEQUENCES, seed: 3 });
    try {
      const options = { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: gpu.features.subgroups, tuning: { prefillMatrix: false, blocked: { workgroupSize: 512 as const } } };
      expect(() => new PagedAttentionKernel(gpu.device, fx.layout, options)).toThrow(ConfigError);
      expect(() => new PagedAttentionKernel(gpu.device, fx.layout, options)).toThrow(`blocked.workgroupSize 512 is more than the device runs per workgroup (maxComputeInvocationsPerWorkgroup ${maxInvocations()})`);
    } finally {
      fx.destroy();
    }
  });

  it('stages f32 K/V as it is whatever stagedF32 says, and sizes staged f32 tiles at twice the packed ones', () => {
    const f32 = computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim: 64, blockSize: 16, numBlocks: 4, kvDtype: 'f32' }, 1 << 20);
    expect(blockedPrefillConfig(f32, 4, 32768, { stagedF32: true })).toEqual(blockedPrefillConfig(f32, 4, 32768));
    const f16 = computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim: 128, blockSize: 16, numBlocks: 4, kvDtype: 'f16' }, 1 << 20);
    const packed = blockedPrefillConfig(f16, 4, 65536, { workgroupBytes: 65536 })!;
    const staged = blockedPrefillConfig(f16, 4, 65536, { workgroupBytes: 65536, stagedF32: true })!;
    expect(staged).toMatchObject({ rows: packed.rows, keyTile: packed.keyTile, stagedF32: true });
    expect(staged.workgroupBytes - packed.workgroupBytes).toBe(packed.keyTile * 16 * packed.wordsPerRow);
    // The device's limit still caps a larger allowance.
    expect(blockedPrefillConfig(f16, 4, 32768, { workgroupBytes: 65536 })!.workgroupBytes).toBeLessThanOrEqual(32768);
  });

  it('fits every head dim and format the pool accepts within 32 KiB of workgroup memory', () => {
    let shapes = 0;
    for (const kvDtype of ['f16', 'f32'] as const) {
      for (let headDim = 8; headDim <= 256; headDim += 8) {
        for (const groupSize of [1, 2, 3, 4, 8]) {
          const layout = computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim, blockSize: 16, numBlocks: 4, kvDtype }, 1 << 20);
          const config = blockedPrefillConfig(layout, groupSize, 32768);
          if (config === undefined) throw new Error(`no tile for head dim ${headDim}, ${kvDtype}, GQA ${groupSize}`);
          expect(config.workgroupBytes).toBeLessThanOrEqual(32768);
          expect(config.rows % config.headsPerWorkgroup).toBe(0);
          expect((config.rows / config.scoreRows) * (config.keyTile / config.scoreKeys)).toBe(config.scoreThreads);
          expect(config.scoreThreads).toBe(128); // only smaller devices get the half-scoring 8 × 8 tile
          expect((config.rows / config.outRows) * config.wordsPerRow).toBe(config.outThreads);
          expect(config.outThreads).toBeLessThanOrEqual(128);
          expect(config.outThreads).toBeGreaterThan(64);
          shapes++;
        }
      }
    }
    expect(shapes).toBe(2 * 32 * 5); // every one has a tile
    const common = computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim: 128, blockSize: 16, numBlocks: 4, kvDtype: 'f16' }, 1 << 20);
    expect(blockedPrefillConfig(common, 4, 32768)).toMatchObject({ rows: 32, keyTile: 32, headsPerWorkgroup: 4 });
  });

  it("fits WebGPU's default 16 KiB for every head dim and format but f32 K/V of head dim 224 and more", () => {
    const missing: string[] = [];
    for (const kvDtype of ['f16', 'f32'] as const) {
      for (let headDim = 8; headDim <= 256; headDim += 8) {
        for (const groupSize of [1, 2, 3, 4, 8]) {
          const layout = computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim, blockSize: 16, numBlocks: 4, kvDtype }, 1 << 20);
          const config = blockedPrefillConfig(layout, groupSize, 16384);
          if (config === undefined) {
            missing.push(`${kvDtype} ${headDim}`);
            continue;
          }
          expect(config.workgroupBytes).toBeLessThanOrEqual(16384);
          expect((config.rows / config.scoreRows) * (config.keyTile / config.scoreKeys)).toBe(config.scoreThreads);
          expect(config.scoreThreads === 128 || (config.rows === 8 && config.keyTile === 8 && config.scoreThreads === 64)).toBe(true);
          expect(config.outThreads).toBeLessThanOrEqual(128);
        }
      }
    }
    expect([...new Set(missing)]).toEqual(['f32 224', 'f32 232', 'f32 240', 'f32 248', 'f32 256']); // the query and K/V tiles alone exceed 16 KiB
  });
});
