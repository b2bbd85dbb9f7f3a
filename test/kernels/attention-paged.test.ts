// Paged attention kernels against the f64 CPU reference, on one tile shape (head dim 64, f16 KV, GQA 4)
// through every table/pool scenario, on each decode path: the streaming kernel with subgroup shuffles,
// the streaming kernel without subgroups (workgroup-memory reduction), the tile engine, and — where the
// device offers subgroup matrices (lavapipe, GPUs; skipped on SwiftShader) — decode and prefill on
// matrices with K/V from the pool where blocks hold whole matrices (tolerance of
// test/kernels/attention-mma.test.ts: f16 queries and probabilities).
// Tolerance, |gpu − ref| ≤ atol + rtol·|ref|:
//   - f16 KV: the reference decodes the same packed f16 words, so storage rounding cancels exactly; what
//     remains is f32 arithmetic in another order (64-term dot products, online-softmax rescaling,
//     split merges) and the GPU's exp (WGSL allows a few ULP plus 2 ULP per unit of |x|).
//   - f32 KV: the same words again, the same f32-order and exp error; no extra term.
//   Outputs are convex combinations of V values in [-1, 1] and the observed error is ~1e-7, so both
//   dtypes use atol 2e-5 + rtol 1e-4: two orders of magnitude of headroom, while an indexing, masking
//   or merge bug shows up as errors ≥ 1e-2.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { buildKvFixture, checkAttention, fixtureReference, type KvFixtureOptions, type SequenceSpec } from '../helpers/kv-fixture';
import { PagedAttentionKernel, type AttentionTuning } from '../../src/kernels/paged-attention';
import { pipelineCount } from '../../src/kernels/pipeline-cache';
import { createGpu, type Gpu } from '../../src/gpu/create-gpu';
import { computeKvLayout, type KvLayout } from '../../src/pool/kv-layout';

failOnUncapturedGpuErrors();

const TOL_BY_DTYPE = { f16: { atol: 2e-5, rtol: 1e-4 }, f32: { atol: 2e-5, rtol: 1e-4 } } as const;
const TOL = TOL_BY_DTYPE.f16;
/** The subgroup-matrix kernels' tolerance (derived in test/kernels/attention-mma.test.ts). */
const MATRIX_TOL = { atol: 5e-3, rtol: 1e-2 };
let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});

// A second device with Dawn's allow_unsafe_apis, for the subgroup-matrix path.
const matrixGpu = await createGpu({ subgroupMatrix: true });
const matrixErrors: string[] = [];
matrixGpu.device.onuncapturederror = (event) => void matrixErrors.push(event.error.message);
afterEach(() => {
  expect(matrixErrors.splice(0)).toEqual([]);
});
const hasMatrices = new PagedAttentionKernel(matrixGpu.device, buildLayoutProbe(), {
  numQueryHeads: 4, rowStride: 1, subgroups: matrixGpu.features.subgroups, adapterInfo: matrixGpu.adapter.info, tuning: { decodeMatrix: true },
}).decodeMmaConfig !== undefined;

function buildLayoutProbe(): KvLayout {
  return computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim: 64, blockSize: 16, numBlocks: 4, kvDtype: 'f16' }, 1 << 20);
}

function fixtureOptions(sequences: SequenceSpec[], extra: Partial<KvFixtureOptions> = {}): KvFixtureOptions {
  return { numKvHeads: 2, groupSize: 4, headDim: 64, blockSize: 16, kvDtype: 'f16', shuffleBlocks: true, sequences, ...extra };
}

interface DecodePath {
  subgroups: boolean;
  tuning?: AttentionTuning;
  /** The decode kernel the path must run: the streaming kernel's reduction, the tile engine, or subgroup matrices (prefill too). */
  runs: 'subgroup' | 'shared' | 'tile' | 'matrix';
}

async function expectMatch(
  { subgroups, tuning, runs }: DecodePath,
  options: KvFixtureOptions,
  forceSplits?: number,
): Promise<{ splits: number[]; layout: KvLayout }> {
  const matrix = runs === 'matrix';
  const { device, adapter } = matrix ? matrixGpu : gpu;
  const fx = buildKvFixture(device, options);
  try {
    const kernel = new PagedAttentionKernel(device, fx.layout, {
      numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups, tuning, adapterInfo: matrix ? adapter.info : undefined,
    });
    if (matrix) {
      const kernels = kernel.describeKernels();
      expect([kernels.decode, kernels.prefill]).toEqual([expect.stringMatching(/^subgroup matrices/), expect.stringMatching(/^subgroup matrices/)]);
      const n = kernel.decodeMmaConfig!.matrixSize;
      expect([kernel.decodeMmaConfig!.directKv, kernel.prefillMmaConfig!.directKv]).toEqual(Array(2).fill(fx.layout.blockSize % n === 0 && fx.layout.numChunks === 1));
    } else {
      expect(kernel.streamDecodeConfig?.reduction ?? 'tile').toBe(runs);
    }
    const result = await checkAttention(device, kernel, fx, matrix ? MATRIX_TOL : TOL, { forceSplits });
    expect(result.count, `${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
    return { splits: result.splits, layout: fx.layout };
  } finally {
    fx.destroy();
  }
}

const DECODE_PATHS: [string, DecodePath][] = [
  ['streaming decode, subgroups', { subgroups: true, runs: 'subgroup' }],
  ['streaming decode, no subgroups', { subgroups: false, runs: 'shared' }],
  ['tile-engine decode, no subgroups', { subgroups: false, tuning: { streamDecode: false }, runs: 'tile' }],
];
const MATRIX_PATH: DecodePath = { subgroups: true, tuning: { decodeMatrix: true, prefillMatrixDirectKv: true }, runs: 'matrix' };

describe.each(DECODE_PATHS)('paged attention, %s', (_, path) => scenarios(path));
describe.skipIf(!hasMatrices)('paged attention, decode and prefill on subgroup matrices', () => scenarios(MATRIX_PATH));

/** Every table/pool scenario on one decode path. */
function scenarios(path: DecodePath): void {
  beforeAll(() => {
    if (path.subgroups && !gpu.features.subgroups) throw new Error('this adapter has no subgroups feature');
  });

  it('decode: contexts 1, partial block, blockSize+1 and a few hundred, for block sizes 1, 8, 16, 32', async () => {
    for (const blockSize of [1, 8, 16, 32]) {
      const contexts = [1, blockSize > 1 ? blockSize + Math.floor(blockSize / 2) : 3, blockSize + 1, 300];
      await expectMatch(path, fixtureOptions(contexts.map((contextLength) => ({ contextLength })), { blockSize, seed: blockSize }));
    }
  });

  it('decode split-K: forced splits 2, 3 and 7 merge to the same result, short contexts included', async () => {
    const sequences = [{ contextLength: 1 }, { contextLength: 17 }, { contextLength: 300 }, { contextLength: 523 }];
    for (const forceSplits of [2, 3, 7]) {
      const { splits } = await expectMatch(path, fixtureOptions(sequences, { seed: 10 + forceSplits }), forceSplits);
      // Equal split lengths of ceil(L / n) keys: 17 keys in 7 splits become 6 splits of 3 keys.
      expect(splits).toEqual([1, Math.ceil(17 / Math.ceil(17 / forceSplits)), forceSplits, forceSplits]);
    }
  });

  it('decode split-K: the heuristic splits a lone long context', async () => {
    const { splits } = await expectMatch(path, fixtureOptions([{ contextLength: 2100 }], { seed: 3 }));
    expect(splits[0]).toBeGreaterThan(1);
  });

  it('one batch mixes decode and prefill entries of different lengths, with queryStart > 0', async () => {
    const sequences: SequenceSpec[] = [
      { contextLength: 37, numQueries: 37 }, // prefill from position 0
      { contextLength: 120, numQueries: 20 }, // chunked prefill over a 100-token cached prefix
      { contextLength: 1 },
      { contextLength: 65 },
      { contextLength: 5, numQueries: 2 },
      { contextLength: 70, numQueries: 17 },
    ];
    await expectMatch(path, fixtureOptions(sequences, { blockSize: 8, seed: 4 }));
    await expectMatch(path, fixtureOptions(sequences, { blockSize: 8, seed: 5 }), 3);
  });

  it('forked sequences read the same physical blocks through their own rows', async () => {
    const sequences: SequenceSpec[] = [
      { contextLength: 100 },
      { contextLength: 90, fork: { of: 0, sharedBlocks: 4 } },
      { contextLength: 110, numQueries: 10, fork: { of: 0, sharedBlocks: 6 } },
    ];
    await expectMatch(path, fixtureOptions(sequences, { seed: 6 }));
  });

  it('a layer split over four chunk buffers', async () => {
    const sequences: SequenceSpec[] = [{ contextLength: 40 }, { contextLength: 30, numQueries: 6 }];
    const { layout } = await expectMatch(path, fixtureOptions(sequences, { blockSize: 8, blocksPerChunk: 3, seed: 7 }), 2);
    expect(layout.numChunks).toBe(4);
  });

  it("an entry's lastBlock stands in for the block table's entry of its last query position (a stale GPU row)", async () => {
    const sequences: SequenceSpec[] = [
      { contextLength: 1 },
      { contextLength: 17 },
      { contextLength: 300 },
      { contextLength: 37, numQueries: 37 },
      { contextLength: 70, numQueries: 17 },
    ];
    const matrix = path.runs === 'matrix';
    const { device, adapter } = matrix ? matrixGpu : gpu;
    const fx = buildKvFixture(device, fixtureOptions(sequences, { blockSize: 8, seed: 12 }));
    try {
      const kernel = new PagedAttentionKernel(device, fx.layout, {
        numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: path.subgroups, tuning: path.tuning, adapterInfo: matrix ? adapter.info : undefined,
      });
      const bs = fx.layout.blockSize;
      const reference = fixtureReference(fx); // over the true table
      // The GPU table's entry of each entry's last query position names another block (in range).
      const stale = fx.blockTable.slice();
      const entries = fx.entries.map((e) => {
        const at = e.seqSlot * fx.rowStride + Math.floor((e.queryStart + e.numQueries - 1) / bs);
        stale[at] = (fx.blockTable[at]! + 1) % fx.layout.numBlocks;
        return { ...e, lastBlock: fx.blockTable[at]! };
      });
      device.queue.writeBuffer(fx.blockTableBuffer, 0, stale);
      const tol = matrix ? MATRIX_TOL : TOL;
      for (const forceSplits of [undefined, 3]) {
        const withLast = await checkAttention(device, kernel, fx, tol, { entries, reference, forceSplits });
        expect(withLast.count, `${withLast.count} mismatches (max |Δ| ${withLast.maxError}):\n${withLast.lines.join('\n')}`).toBe(0);
        // Without it the kernels read the stale entry, and the outputs differ from the reference.
        const without = await checkAttention(device, kernel, fx, tol, { entries: fx.entries, reference, forceSplits });
        expect(without.count).toBeGreaterThan(0);
      }
    } finally {
      fx.destroy();
    }
  });

  it('large scores (peaked softmax) stay finite and exact', async () => {
    const sequences: SequenceSpec[] = [{ contextLength: 200 }, { contextLength: 50, numQueries: 9 }];
    await expectMatch(path, fixtureOptions(sequences, { qMagnitude: 40, seed: 8 }), 4);
  });
}

describe('kernel resources', () => {
  it('creates no pipeline and no bind group after warm-up', async () => {
    const fx = buildKvFixture(gpu.device, fixtureOptions([{ contextLength: 50 }, { contextLength: 40, numQueries: 8 }], { seed: 9 }));
    try {
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: false });
      const batches = [
        { entries: fx.entries, forceSplits: 2 },
        { entries: fx.entries, forceSplits: 1 },
        { entries: fx.entries.slice(1), forceSplits: undefined },
        { entries: [{ ...fx.entries[0]!, contextLength: 45, queryStart: 44 }], forceSplits: 3 },
      ];
      const runAll = async () => {
        for (const b of batches) expect((await checkAttention(gpu.device, kernel, fx, TOL, b)).count).toBe(0);
      };
      // Warm-up: the first round creates pipelines, upload slots and the partial buffer (which may grow
      // once, so groups bound to the smaller one are replaced in the second round).
      await runAll();
      await runAll();
      const pipelines = pipelineCount(gpu.device);
      const groups = kernel.cachedBindGroups;
      await runAll();
      await runAll();
      expect(pipelineCount(gpu.device)).toBe(pipelines);
      expect(kernel.cachedBindGroups).toBe(groups);
    } finally {
      fx.destroy();
    }
  });
});
