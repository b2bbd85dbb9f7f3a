// Host side of paged attention: split heuristic, work lists, tile shapes, argument validation and the
// CPU reference itself. No pipeline is compiled here (validation runs before pipelines are created).
import { beforeAll, describe, expect, it } from 'vitest';
import { testGpu } from '../helpers/gpu';
import { buildKvFixture, checkAttention } from '../helpers/kv-fixture';
import { NO_TAIL, planBatch, splitPolicy, STREAM_MIN_STEPS_PER_SPLIT, STREAM_TARGET_DIVISOR, TARGET_WORKGROUPS, WORK_ITEM_WORDS } from '../../src/kernels/attention-plan';
import { DEFAULT_RESIDENT_WORKGROUPS } from '../../src/gpu/parallelism-probe';
import { mmaPrefillConfig, streamDecodeConfig, tileConfig, TABLE_WINDOW, WORKGROUP_SIZE } from '../../src/kernels/attention-config';
import { PagedAttentionKernel, type AttentionTuning, type PagedAttentionArgs } from '../../src/kernels/paged-attention';
import { SOFTWARE_ADAPTER_TUNING } from '../../src/kernels/attention-tuning';
import { attentionRef, pagedAttentionRef } from '../../src/kernels/attention.ref';
import { computeKvLayout, rowWordOffset } from '../../src/pool/kv-layout';
import { ConfigError, InvalidArgumentError } from '../../src/errors';
import type { Gpu } from '../../src/gpu/create-gpu';

const splitsOf = (keys: number[], lengths: number[]) => keys.map((l, i) => Math.ceil(l / lengths[i]!));
/** Split lengths the policy gives a batch of decode entries with these key counts. */
const chooseSplitLengths = (keys: number[], workgroupsPerItem: number, otherWorkgroups: number, keyTile: number, forceSplits?: number) =>
  keys.map(splitPolicy(keys.length, workgroupsPerItem, otherWorkgroups, keyTile, forceSplits));

describe('split-K heuristic', () => {
  // Benchmark shapes: 8 kv heads, one head tile per kv head, key tile 32.
  const decode = (batch: number, context: number) =>
    splitsOf(Array(batch).fill(context), chooseSplitLengths(Array(batch).fill(context), 8, 0, 32))[0];

  it('splits only when the batch leaves the GPU under-filled', () => {
    expect(decode(64, 2048)).toBe(1); // 512 workgroups ≥ 264
    expect(decode(256, 512)).toBe(1);
    expect(decode(16, 8192)).toBe(2); // 128 workgroups → ×2 (×3 would need a second wave)
    expect(decode(1, 32768)).toBe(32); // 8 workgroups → 33 wanted, split length rounded up to 1024
    expect(decode(1, 300)).toBe(1); // too short to split
    expect(decode(1, 600)).toBe(2);
    expect(TARGET_WORKGROUPS).toBe(264);
  });

  it('fills half the probed workgroups with the streaming decode at the H100 bench shapes, splits of at least sixteen steps', () => {
    // 32/8 heads × 128, f16, subgroups of 32, 48 KiB: 8 kv heads × one head tile, 64 keys per step,
    // 8 × 132 workgroups probed, half of them aimed at, 1024-key minimum.
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 8, headDim: 128, blockSize: 16, numBlocks: 64, kvDtype: 'f16' }, 1 << 30);
    const config = streamDecodeConfig(layout, 4, 32, 49152)!;
    expect([config.headsPerWorkgroup, config.keysPerStep]).toEqual([4, 64]);
    expect(DEFAULT_RESIDENT_WORKGROUPS).toBe(1056);
    const target = Math.round(DEFAULT_RESIDENT_WORKGROUPS / STREAM_TARGET_DIVISOR);
    expect(target).toBe(528);
    const stream = (batch: number, context: number) => {
      const keys = Array(batch).fill(context);
      const policy = splitPolicy(batch, 8, 0, config.keysPerStep, undefined, target, STREAM_MIN_STEPS_PER_SPLIT * config.keysPerStep);
      return splitsOf(keys, keys.map(policy))[0];
    };
    expect(stream(64, 2048)).toBe(1); // 512 workgroups already (1024 would pass the target)
    expect(stream(16, 8192)).toBe(4); // 128 → 512
    expect(stream(256, 512)).toBe(1); // 2048 workgroups
    expect(stream(1, 32768)).toBe(32); // 66 wanted, 1024-key splits → 256 workgroups
    expect(stream(4, 4096)).toBe(4); // 16 wanted, 1024-key splits
    expect(stream(8, 1500)).toBe(1); // too short to split
  });

  it('counts prefill workgroups as filling the GPU', () => {
    expect(splitsOf([8192], chooseSplitLengths([8192], 8, 300, 32))).toEqual([1]);
  });

  it('forced splits never produce an empty split', () => {
    for (const l of [1, 2, 5, 17, 100, 1000]) {
      for (const f of [1, 2, 3, 7, 64, 128]) {
        const [length] = chooseSplitLengths([l], 8, 0, 32, f);
        const splits = Math.ceil(l / length!);
        expect(splits).toBeLessThanOrEqual(Math.min(f, l));
        expect((splits - 1) * length!).toBeLessThan(l);
      }
    }
    for (const bad of [0, 129, 1.5, NaN]) {
      expect(() => chooseSplitLengths([10], 8, 0, 32, bad)).toThrow(InvalidArgumentError);
    }
  });
});

describe('work lists', () => {
  it('decode splits cover [0, queryStart + 1), prefill tiles cover every query, merges follow', () => {
    const entries = [
      { seqSlot: 0, contextLength: 100, queryStart: 99, numQueries: 1, qRow: 0 },
      { seqSlot: 1, contextLength: 50, queryStart: 10, numQueries: 40, qRow: 1 },
      { seqSlot: 2, contextLength: 7, queryStart: 6, numQueries: 1, qRow: 41 },
    ];
    const shape = { numKvHeads: 2, numQueryHeads: 8, decodeHeadTiles: 1, prefillHeadTiles: 1, decodeKeyTile: 32, prefillQueriesPerWorkgroup: 16, blockSize: 16 };
    const plan = planBatch(entries, shape, new Uint32Array(0), 3);
    const item = (i: number) => Array.from(plan.items.subarray(i * WORK_ITEM_WORDS, (i + 1) * WORK_ITEM_WORDS));
    expect(plan.splitsPerEntry).toEqual([3, 3]);
    expect(plan.decode).toEqual({ base: 0, count: 6 });
    expect(plan.prefill).toEqual({ base: 6, count: 3 });
    expect(plan.merge).toEqual({ base: 9, count: 2 });
    expect(plan.partialSlots).toBe(6 * 8);
    // [seq, qRow, numQ, qPos, keyStart, keyEnd, aux, tail]
    expect([0, 1, 2].map((i) => item(i).slice(4, 6))).toEqual([[0, 34], [34, 68], [68, 100]]);
    expect(item(3).slice(0, 7)).toEqual([2, 41, 1, 6, 0, 3, 24]);
    expect(item(6).slice(0, 6)).toEqual([1, 1, 16, 10, 0, 26]);
    expect(item(8).slice(0, 6)).toEqual([1, 33, 8, 42, 0, 50]);
    expect(item(9).slice(0, 7)).toEqual([0, 0, 3, 99, 0, 0, 0]);
    expect(item(10).slice(0, 7)).toEqual([2, 41, 3, 6, 0, 0, 24]);
    expect([...Array(11).keys()].map((i) => item(i)[7])).toEqual(Array(11).fill(NO_TAIL)); // no lastBlock given
  });

  it("carries an entry's lastBlock in every item whose last query lies in the entry's last block", () => {
    const entries = [
      { seqSlot: 0, contextLength: 100, queryStart: 99, numQueries: 1, qRow: 0, lastBlock: 7 },
      { seqSlot: 1, contextLength: 50, queryStart: 10, numQueries: 40, qRow: 1, lastBlock: 9 },
      { seqSlot: 2, contextLength: 7, queryStart: 6, numQueries: 1, qRow: 41 },
    ];
    const shape = { numKvHeads: 2, numQueryHeads: 8, decodeHeadTiles: 1, prefillHeadTiles: 1, decodeKeyTile: 32, prefillQueriesPerWorkgroup: 16 };
    const tails = (blockSize: number) => {
      const plan = planBatch(entries, { ...shape, blockSize }, new Uint32Array(0), 3);
      return Array.from({ length: plan.words / WORK_ITEM_WORDS }, (_, i) => plan.items[i * WORK_ITEM_WORDS + 7]);
    };
    // Items: 3 splits of entry 0, 3 of entry 2, prefill tiles ending at queries 25, 41 and 49, 2 merges.
    // Block size 16: only the tile ending at 49 lies in block 3 with the last query.
    expect(tails(16)).toEqual([7, 7, 7, NO_TAIL, NO_TAIL, NO_TAIL, NO_TAIL, NO_TAIL, 9, NO_TAIL, NO_TAIL]);
    // Block size 32: the tile ending at 41 reads block 1 too.
    expect(tails(32)).toEqual([7, 7, 7, NO_TAIL, NO_TAIL, NO_TAIL, NO_TAIL, 9, 9, NO_TAIL, NO_TAIL]);
  });
});

describe('tile shapes', () => {
  it('fit 32 KiB and 16 KiB of workgroup memory with the WGSL invariants, for every head dim and group', () => {
    for (const limit of [32768, 16384]) {
      for (let headDim = 8; headDim <= 256; headDim += 8) {
        for (const kvDtype of ['f16', 'f32'] as const) {
          const layout = computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim, blockSize: 16, numBlocks: 4, kvDtype }, 1 << 30);
          for (const groupSize of [1, 2, 3, 4, 6, 7, 8, 12, 16, 32]) {
            for (const kind of ['decode', 'prefill'] as const) {
              const c = tileConfig(kind, layout, groupSize, limit);
              const where = `${kind} hd ${headDim} ${kvDtype} G ${groupSize} limit ${limit}`;
              expect(c.workgroupBytes, where).toBeLessThanOrEqual(limit);
              expect(groupSize % c.headsPerWorkgroup, where).toBe(0);
              expect(c.rows * (c.keyTile / c.keysPerThread) * c.dotSplit, where).toBeLessThanOrEqual(WORKGROUP_SIZE);
              expect(c.keysPerThread, where).toBeLessThanOrEqual(16);
              expect(c.pvSlots, where).toBeLessThanOrEqual(8);
              expect(c.rows * c.vecsPerRow * c.pvLanes, where).toBeLessThanOrEqual(c.pvSlots * WORKGROUP_SIZE);
              if (c.pvLanes > 1) expect(c.pvSlots, where).toBe(1);
              if (kind === 'decode') expect(c.queriesPerWorkgroup).toBe(1);
            }
          }
        }
      }
    }
  });
});

describe('streaming decode shapes', () => {
  it('keep lanes inside the smallest subgroup, a step inside the table window and memory under the limit, at 32 and 16 KiB', () => {
    for (const subgroupMinSize of [4, 8, 16, 32, 64]) {
      for (let headDim = 8; headDim <= 256; headDim += 8) {
        for (const kvDtype of ['f16', 'f32'] as const) {
          const layout = computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim, blockSize: 16, numBlocks: 4, kvDtype }, 1 << 30);
          const vecsPerRow = headDim / (kvDtype === 'f16' ? 8 : 4);
          for (const groupSize of [1, 3, 4, 8, 16]) {
            for (const limit of [32768, 16384]) {
              const c = streamDecodeConfig(layout, groupSize, subgroupMinSize, limit);
              const where = `hd ${headDim} ${kvDtype} G ${groupSize} subgroup ${subgroupMinSize} limit ${limit}`;
              if (!c) {
                // Only rows that need more than 16 words per lane fall back to the tile engine.
                const widestLanes = Math.min(vecsPerRow & -vecsPerRow, 8, subgroupMinSize);
                expect(vecsPerRow / widestLanes, where).toBeGreaterThan(16);
                continue;
              }
              expect(c.lanes, where).toBeLessThanOrEqual(subgroupMinSize);
              expect(vecsPerRow % c.lanes, where).toBe(0);
              expect(c.words * c.lanes, where).toBe(vecsPerRow);
              expect(groupSize % c.headsPerWorkgroup, where).toBe(0);
              expect(c.keysPerStep, where).toBeLessThanOrEqual(TABLE_WINDOW);
              expect(c.workgroupBytes, where).toBeLessThanOrEqual(limit);
              expect(c.roundGroups, where).toBeGreaterThanOrEqual(1);
              expect((c.headsPerWorkgroup * headDim) / 4, where).toBeLessThanOrEqual(4 * c.workgroupSize);
            }
          }
        }
      }
    }
  });

  it('with the shared reduction, run every row of 4 to 16 lanes × ≤ 16 words in 16 KiB too', () => {
    for (let headDim = 8; headDim <= 256; headDim += 8) {
      for (const kvDtype of ['f16', 'f32'] as const) {
        const layout = computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim, blockSize: 16, numBlocks: 4, kvDtype }, 1 << 30);
        const vecsPerRow = headDim / (kvDtype === 'f16' ? 8 : 4);
        const lanes = Math.min(vecsPerRow & -vecsPerRow, 8);
        for (const groupSize of [1, 3, 4, 8, 16]) {
          for (const limit of [32768, 16384]) {
            const c = streamDecodeConfig(layout, groupSize, 4, limit, { reduction: 'shared' });
            const where = `hd ${headDim} ${kvDtype} G ${groupSize} limit ${limit}`;
            expect(c !== undefined, where).toBe(lanes >= 4 && vecsPerRow / lanes <= 16);
            if (!c) continue;
            expect(c.lanes, where).toBe(lanes);
            expect(c.scoreVecs, where).toBe((c.keyGroups * c.unroll * c.headsPerWorkgroup * c.lanes) / 4);
            expect(c.workgroupBytes, where).toBeLessThanOrEqual(limit);
          }
        }
      }
    }
  });

  it('fit the H100 shape into the WebGPU default of 16 KiB by merging fewer groups per round (shuffles) or unrolling less (shared)', () => {
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 8, headDim: 128, blockSize: 16, numBlocks: 4, kvDtype: 'f16' }, 1 << 30);
    const pick = (c: ReturnType<typeof streamDecodeConfig>) => c && { unroll: c.unroll, roundGroups: c.roundGroups, workgroupBytes: c.workgroupBytes };
    expect(pick(streamDecodeConfig(layout, 4, 32, 32768))).toEqual({ unroll: 4, roundGroups: 7, workgroupBytes: 17860 });
    expect(pick(streamDecodeConfig(layout, 4, 32, 16384))).toEqual({ unroll: 4, roundGroups: 6, workgroupBytes: 15748 });
    expect(pick(streamDecodeConfig(layout, 4, 32, 32768, { reduction: 'shared' }))).toEqual({ unroll: 4, roundGroups: 7, workgroupBytes: 19460 });
    expect(pick(streamDecodeConfig(layout, 4, 32, 16384, { reduction: 'shared' }))).toEqual({ unroll: 3, roundGroups: 6, workgroupBytes: 15748 });
  });

  it('hold less workgroup memory with smaller merge rounds (tuning.mergeBytes), at least one key group per round', () => {
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 8, headDim: 128, blockSize: 16, numBlocks: 4, kvDtype: 'f16' }, 1 << 30);
    const pick = (c: ReturnType<typeof streamDecodeConfig>) => c && { roundGroups: c.roundGroups, workgroupBytes: c.workgroupBytes };
    // 16 key groups, each state 4 heads × 128 elements + 4 (m, l) = 132 vec4; 192 vec4 of table window,
    // reduction scratch and staged queries besides.
    expect(pick(streamDecodeConfig(layout, 4, 32, 49152, { mergeBytes: 8192 }))).toEqual({ roundGroups: 3, workgroupBytes: 16 * (192 + 3 * 132) + 4 });
    expect(pick(streamDecodeConfig(layout, 4, 32, 49152, { mergeBytes: 1024 }))).toEqual({ roundGroups: 1, workgroupBytes: 16 * (192 + 132) + 4 });
    // More than the kernel takes (MAX_WORKGROUP_BYTES, 32 KiB): 14 of the 16 groups fit there.
    expect(pick(streamDecodeConfig(layout, 4, 32, 49152, { mergeBytes: 1 << 20 }))).toEqual({ roundGroups: 14, workgroupBytes: 16 * (192 + 14 * 132) + 4 });
    expect(pick(streamDecodeConfig(layout, 4, 32, 49152, { mergeBytes: 1024, queryInSmem: false }))).toEqual({ roundGroups: 1, workgroupBytes: 16 * (64 + 132) + 4 });
  });

  it('default to 8 lanes of 16 f16 elements, 4 keys per group and all 4 heads of a GQA group on a 32-wide GPU', () => {
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 8, headDim: 128, blockSize: 16, numBlocks: 4, kvDtype: 'f16' }, 1 << 30);
    expect(streamDecodeConfig(layout, 4, 32, 49152)).toMatchObject({ lanes: 8, words: 2, unroll: 4, headsPerWorkgroup: 4, keysPerStep: 64, prefetch: false, queryInSmem: true });
  });
});

describe('describeKernels', () => {
  it('names the decode path and the prefill tile a kernel object runs', async () => {
    const gpu = await testGpu();
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 2, headDim: 64, blockSize: 16, numBlocks: 4, kvDtype: 'f16' }, 1 << 30);
    const kernelsOf = (subgroups: boolean, tuning = {}) => {
      const kernel = new PagedAttentionKernel(gpu.device, layout, { numQueryHeads: 8, rowStride: 4, subgroups, tuning });
      const text = kernel.describeKernels();
      kernel.destroy();
      return text;
    };
    if (gpu.features.subgroups) expect(kernelsOf(true).decode).toMatch(/^streaming \(subgroup shuffles\): \d+ lanes per key row, unroll \d, 4 heads per workgroup, \d+ B$/);
    expect(kernelsOf(false).decode).toMatch(/^streaming \(workgroup-memory reduction\): 8 lanes per key row/);
    expect(kernelsOf(false, { streamDecode: false }).decode).toMatch(/^tile engine: \d+-key tiles/);
    expect(kernelsOf(false).prefill).toMatch(/^register-blocked: \d+ rows × \d+ keys, \d+ B$/);
    expect(kernelsOf(false, { prefillBlocked: false }).prefill).toMatch(/^tile engine: \d+ rows × \d+ keys/);
  });

  it('on a software adapter, decodes in 64-invocation workgroups unless the tuning names a size; on a GPU, 128', async () => {
    const gpu = await testGpu();
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 2, headDim: 64, blockSize: 16, numBlocks: 4, kvDtype: 'f16' }, 1 << 30);
    const sizeOf = (tuning: AttentionTuning = {}) => {
      const kernel = new PagedAttentionKernel(gpu.device, layout, { numQueryHeads: 8, rowStride: 4, subgroups: false, tuning });
      kernel.destroy();
      return kernel.streamDecodeConfig!.workgroupSize;
    };
    expect(sizeOf()).toBe(gpu.isFallback ? SOFTWARE_ADAPTER_TUNING.stream!.workgroupSize : WORKGROUP_SIZE);
    expect(sizeOf({ stream: { workgroupSize: 256 } })).toBe(256);
    expect(sizeOf({ stream: { unroll: 2 } })).toBe(gpu.isFallback ? 64 : WORKGROUP_SIZE); // other knobs keep the adapter's size
  });
});

describe('subgroup-matrix prefill shapes', () => {
  const limits = { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 };
  const layoutOf = (headDim: number, kvDtype: 'f16' | 'f32') =>
    computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim, blockSize: 16, numBlocks: 4, kvDtype }, 1 << 30);

  it('apply to f16 KV with head dims that are multiples of the matrix size and subgroups of n to 64 lanes only', () => {
    expect(mmaPrefillConfig(layoutOf(128, 'f32'), 4, 32, limits)).toBeUndefined();
    expect(mmaPrefillConfig(layoutOf(72, 'f16'), 4, 32, limits)).toBeUndefined();
    expect(mmaPrefillConfig(layoutOf(72, 'f16'), 4, 32, limits, { matrixSize: 8 })?.matrixSize).toBe(8);
    expect(mmaPrefillConfig(layoutOf(128, 'f16'), 4, 8, limits)).toBeUndefined();
    expect(mmaPrefillConfig(layoutOf(128, 'f16'), 4, 8, limits, { matrixSize: 8 })?.workgroupSize).toBe(8);
    expect(mmaPrefillConfig(layoutOf(128, 'f16'), 4, 128, limits)).toBeUndefined();
    expect(mmaPrefillConfig(layoutOf(128, 'f16'), 4, 32, { ...limits, maxComputeWorkgroupStorageSize: 4096 })).toBeUndefined();
  });

  it('load K/V from the pool only where asked, with one chunk and blocks holding whole matrices', () => {
    const layout = (blockSize: number, blocksPerChunk?: number) =>
      computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim: 64, blockSize, numBlocks: 8, kvDtype: 'f16' }, blockSize * 64 * 4 * (blocksPerChunk ?? 8));
    const direct = (l: ReturnType<typeof layout>, matrixSize: 8 | 16, directKv?: boolean) => mmaPrefillConfig(l, 4, 32, limits, { matrixSize, directKv })!.directKv;
    expect(direct(layout(16), 16)).toBe(false);
    expect(direct(layout(16), 16, true)).toBe(true);
    expect(direct(layout(8), 16, true)).toBe(false); // an 8-token block holds half a 16-key matrix
    expect(direct(layout(8), 8, true)).toBe(true);
    expect(layout(16, 4).numChunks).toBe(2);
    expect(direct(layout(16, 4), 16, true)).toBe(false); // two chunks
  });

  it('put n rows of whole GQA groups in one subgroup (n the matrix size) and fit the workgroup memory', () => {
    for (const [matrixSize, subgroupSizes] of [[16, [16, 32, 64]], [8, [8, 16, 32, 64]]] as const) {
      for (const headDim of [16, 64, 128, 256]) {
        for (const groupSize of [1, 2, 3, 4, 6, 8, 12, 16, 32]) {
          for (const subgroupSize of subgroupSizes) {
            const c = mmaPrefillConfig(layoutOf(headDim, 'f16'), groupSize, subgroupSize, limits, { matrixSize })!;
            const where = `n ${matrixSize} hd ${headDim} G ${groupSize} subgroup ${subgroupSize}`;
            expect(c, where).toBeDefined();
            expect(c.matrixSize, where).toBe(matrixSize);
            expect(groupSize % c.headsPerWorkgroup, where).toBe(0);
            expect(matrixSize % c.headsPerWorkgroup, where).toBe(0);
            expect(c.queriesPerWorkgroup * c.headsPerWorkgroup, where).toBe(matrixSize);
            expect(c.workgroupSize, where).toBe(subgroupSize);
            expect(c.workgroupBytes, where).toBeLessThanOrEqual(limits.maxComputeWorkgroupStorageSize);
          }
        }
      }
    }
  });

  it('with several subgroups: 16 rows each, the workgroup that many subgroups, and refused where their memory does not fit', () => {
    const one = mmaPrefillConfig(layoutOf(128, 'f16'), 4, 32, limits)!;
    for (const subgroups of [2, 4, 8]) {
      const c = mmaPrefillConfig(layoutOf(128, 'f16'), 4, 32, limits, { subgroups })!;
      expect([c.subgroups, c.workgroupSize, c.queriesPerWorkgroup * c.headsPerWorkgroup]).toEqual([subgroups, 32 * subgroups, 16 * subgroups]);
      expect(c.workgroupBytes).toBeGreaterThan(one.workgroupBytes);
      // Each subgroup adds its S and P tiles, its rows' rescale factors and its lanes' reduction scratch; the Q
      // rows (16 · subgroups of them) go through the 32 K/V rows of a step in rounds, so they add nothing.
      expect(c.workgroupBytes - one.workgroupBytes).toBe((6 * 256 + 64 + 16 * 8) * (subgroups - 1));
    }
    expect(mmaPrefillConfig(layoutOf(256, 'f16'), 4, 32, limits, { subgroups: 8 })!.workgroupBytes).toBe(30732); // 128 Q rows, 30.0 KiB
    expect(mmaPrefillConfig(layoutOf(256, 'f16'), 4, 32, limits, { subgroups: 8, keyTile: 64 })).toBeUndefined(); // 64 KiB of K/V alone
    // Longer steps: K and V of 64 keys (32 KiB at head dim 128) and a 16 × 64 S and P per subgroup.
    const long = mmaPrefillConfig(layoutOf(128, 'f16'), 4, 32, limits, { keyTile: 64 })!;
    expect(long.keyTile).toBe(64);
    expect(long.workgroupBytes - one.workgroupBytes).toBe(2 * 128 * (128 - 32) + 6 * 16 * (64 - 16));
    expect(mmaPrefillConfig(layoutOf(128, 'f16'), 4, 32, limits, { subgroups: 4, keyTile: 64 })).toBeUndefined(); // 32 KiB of K/V + 4 × 6 KiB of S and P
    expect(mmaPrefillConfig(layoutOf(128, 'f16'), 4, 64, limits, { subgroups: 32 })).toBeUndefined(); // 2048 invocations
  });

  it('with V staged in K\'s place (reuseKForV): the K/V area holds one step\'s K or V, half the bytes, for every shape', () => {
    const at = (shape: Parameters<typeof mmaPrefillConfig>[4]) => mmaPrefillConfig(layoutOf(128, 'f16'), 4, 32, limits, shape);
    for (const [subgroups, rowTiles, keyTile] of [[1, 1, 16], [2, 1, 16], [8, 1, 16], [4, 2, 16], [2, 2, 32], [2, 1, 64]] as const) {
      const both = at({ subgroups, rowTiles, keyTile, directKv: true })!;
      const one = at({ subgroups, rowTiles, keyTile, directKv: true, reuseKForV: true })!;
      expect([both.reuseKForV, one.reuseKForV]).toEqual([false, true]);
      expect([one.subgroups, one.rowTiles, one.keyTile, one.directKv]).toEqual([subgroups, rowTiles, keyTile, true]);
      expect(both.workgroupBytes - one.workgroupBytes).toBe(2 * keyTile * 128);
    }
    // The default 2 subgroups × 16 keys: 12 172 → 8 076 B, six workgroups in the H100's 48 KiB instead of four;
    // 4 subgroups × 64 keys fit 48 KiB only this way.
    expect([at({ subgroups: 2 })!.workgroupBytes, at({ subgroups: 2, reuseKForV: true })!.workgroupBytes]).toEqual([12172, 8076]);
    expect(at({ subgroups: 4, keyTile: 64 })).toBeUndefined();
    expect(at({ subgroups: 4, keyTile: 64, reuseKForV: true })!.workgroupBytes).toBe(42252);
  });
});

describe('argument validation', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await testGpu();
  });

  it('rejects malformed batches and buffers before recording anything', () => {
    const fx = buildKvFixture(gpu.device, {
      numKvHeads: 2, groupSize: 2, headDim: 16, blockSize: 4, kvDtype: 'f32',
      sequences: [{ contextLength: 9 }, { contextLength: 6, numQueries: 3 }], blocksPerChunk: 4,
    });
    try {
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, { numQueryHeads: 4, rowStride: fx.rowStride, subgroups: false });
      const args: PagedAttentionArgs = { chunks: fx.chunks, blockTable: fx.blockTableBuffer, q: fx.qBuffer, out: fx.outBuffer, entries: fx.entries, scale: 0.25 };
      const e0 = fx.entries[0]!;
      const rows = fx.q.length / (4 * 16);
      const tiny = gpu.device.createBuffer({ size: 64, usage: GPUBufferUsage.STORAGE });
      const bad: Array<[string, Partial<PagedAttentionArgs>, RegExp]> = [
        ['chunk count', { chunks: fx.chunks.slice(1) }, /expected 2 KV chunk buffers/],
        ['chunk size', { chunks: [fx.chunks[0]!, tiny] }, /chunks\[1\] holds 64 bytes/],
        ['q and out alias', { out: fx.qBuffer }, /different buffers/],
        ['scale', { scale: NaN }, /scale must be finite/],
        ['rows past q/out', { entries: [{ ...e0, qRow: rows - 0.5 }] }, /qRow must be an integer/],
        ['rows past q/out', { entries: [{ ...e0, qRow: rows }] }, /q and out hold/],
        ['context beyond the table row', { entries: [{ ...e0, contextLength: fx.rowStride * 4 + 1, queryStart: fx.rowStride * 4 }] }, /exceeds one block-table row/],
        ['queries beyond the context', { entries: [{ ...e0, queryStart: 9 }] }, /contextLength is 9/],
        ['sequence slot', { entries: [{ ...e0, seqSlot: 99 }] }, /outside the block table/],
        ['zero queries', { entries: [{ ...e0, numQueries: 0 }] }, /numQueries must be an integer ≥ 1/],
        ['overlapping rows', { entries: [e0, { ...fx.entries[1]!, qRow: e0.qRow }] }, /same q\/out row/],
        ['forceSplits', { forceSplits: 0 }, /forceSplits/],
      ];
      for (const [what, patch, message] of bad) {
        const encoder = gpu.device.createCommandEncoder();
        expect(() => kernel.encode(encoder, { ...args, ...patch }), what).toThrow(InvalidArgumentError);
        expect(() => kernel.encode(encoder, { ...args, ...patch }), what).toThrow(message);
        gpu.device.queue.submit([encoder.finish()]);
      }
      const small = gpu.device.createBuffer({ size: 64, usage: GPUBufferUsage.STORAGE });
      expect(() => kernel.encode(gpu.device.createCommandEncoder(), { ...args, out: small })).toThrow(/q and out hold 0 rows/);
      const noStorage = gpu.device.createBuffer({ size: fx.qBuffer.size, usage: GPUBufferUsage.COPY_DST });
      expect(() => kernel.encode(gpu.device.createCommandEncoder(), { ...args, q: noStorage })).toThrow(/GPUBufferUsage.STORAGE/);
      small.destroy();
      tiny.destroy();
      noStorage.destroy();
    } finally {
      fx.destroy();
    }
  });

  it('rejects impossible configurations', () => {
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 2, headDim: 16, blockSize: 4, numBlocks: 4, kvDtype: 'f16' }, 1 << 20);
    expect(() => new PagedAttentionKernel(gpu.device, layout, { numQueryHeads: 3, rowStride: 4, subgroups: false })).toThrow(ConfigError);
    expect(() => new PagedAttentionKernel(gpu.device, layout, { numQueryHeads: 4, rowStride: 0, subgroups: false })).toThrow(ConfigError);
    const noSubgroups = { features: new Set<string>(), limits: gpu.device.limits } as unknown as GPUDevice;
    expect(() => new PagedAttentionKernel(noSubgroups, layout, { numQueryHeads: 4, rowStride: 4, subgroups: true })).toThrow(/subgroups/);
  });
});

describe('dispatch', () => {
  it('wraps workgroups past maxComputeWorkgroupsPerDimension into a second dimension', async () => {
    const gpu = await testGpu();
    // The same device with a limit of 7 workgroups per dimension (the kernel reads limits at encode).
    const limits = new Proxy(gpu.device.limits, {
      get: (target, prop) => (prop === 'maxComputeWorkgroupsPerDimension' ? 7 : Reflect.get(target, prop, target)),
    });
    const device = new Proxy(gpu.device, {
      get(target, prop) {
        if (prop === 'limits') return limits;
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const fx = buildKvFixture(gpu.device, {
      numKvHeads: 2, groupSize: 2, headDim: 16, blockSize: 4, kvDtype: 'f32', shuffleBlocks: true,
      sequences: [{ contextLength: 9 }, { contextLength: 30 }, { contextLength: 21, numQueries: 20 }],
    });
    try {
      const kernel = new PagedAttentionKernel(device, fx.layout, { numQueryHeads: 4, rowStride: fx.rowStride, subgroups: false });
      expect(kernel.device.limits.maxComputeWorkgroupsPerDimension).toBe(7);
      // 2 decode entries × 5 splits × 2 kv heads = 20 decode workgroups → 7 × 3.
      const r = await checkAttention(gpu.device, kernel, fx, { atol: 2e-5, rtol: 1e-4 }, { forceSplits: 5 });
      expect(r.count, r.lines.join('\n')).toBe(0);
    } finally {
      fx.destroy();
    }
  });
});

describe('CPU reference', () => {
  it('matches hand-computed attention through a permuted block table', () => {
    // 1 kv head, 2 query heads (GQA 2), head dim 8, f32, block size 2; logical blocks → physical 3, 1.
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim: 8, blockSize: 2, numBlocks: 4, kvDtype: 'f32' }, 1 << 20);
    const words = new Uint32Array(layout.chunkBytes[0]! / 4);
    const floats = new Float32Array(words.buffer);
    const k = [[1, 0, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0], [0, 0, 2, 0, 0, 0, 0, 0]];
    const v = [[1, 1, 1, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2, 2, 2], [4, 4, 4, 4, 4, 4, 4, 4]];
    const table = new Int32Array([3, 1]);
    for (let pos = 0; pos < 3; pos++) {
      const block = table[pos >> 1]!;
      floats.set(k[pos]!, rowWordOffset(layout, block, 0, 0, pos & 1));
      floats.set(v[pos]!, rowWordOffset(layout, block, 1, 0, pos & 1));
    }
    const q = new Float32Array(2 * 2 * 8);
    q.set([0, 0, 1, 0, 0, 0, 0, 0], 0); // query 0 (position 1), head 0: scores 0, 0 over keys 0..1
    q.set([1, 0, 0, 0, 0, 0, 0, 0], 8); // query 0, head 1: scores 1, 0
    q.set([0, 0, 1, 0, 0, 0, 0, 0], 16); // query 1 (position 2), head 0: scores 0, 0, 2
    const out = pagedAttentionRef({
      layout, chunkWords: [words], blockTable: table, rowStride: 2, numQueryHeads: 2, q,
      entries: [{ seqSlot: 0, contextLength: 3, queryStart: 1, numQueries: 2, qRow: 0 }], scale: 1,
    });
    const e = Math.E;
    expect(out[0]).toBeCloseTo(1.5, 12);
    expect(out[8]).toBeCloseTo((e * 1 + 1 * 2) / (e + 1), 6);
    expect(out[16]).toBeCloseTo((1 + 2 + 4 * e * e) / (2 + e * e), 6);
    expect(out[24]).toBeCloseTo(7 / 3, 6);
  });

  it('is shift-invariant in the scores (stable softmax) and causal', () => {
    const hd = 8;
    const k = [Float64Array.from({ length: 4 * hd }, (_, i) => Math.sin(i))];
    const v = [Float64Array.from({ length: 4 * hd }, (_, i) => Math.cos(i))];
    const q = Float32Array.from({ length: 2 * hd }, (_, i) => 500 * Math.sin(3 * i));
    const out = attentionRef({ q, k, v, numQueries: 2, queryStart: 2, numQueryHeads: 1, headDim: hd, scale: 1 });
    expect(out.every(Number.isFinite)).toBe(true);
    const truncated = attentionRef({ q: q.subarray(0, hd), k: [k[0]!.subarray(0, 3 * hd)], v: [v[0]!.subarray(0, 3 * hd)], numQueries: 1, queryStart: 2, numQueryHeads: 1, headDim: hd, scale: 1 });
    expect(Array.from(out.subarray(0, hd))).toEqual(Array.from(truncated));
  });
});
