// Paged attention across head dims, KV dtypes and GQA ratios (each a distinct tile shape, hence a
// distinct pipeline), against the f64 CPU reference. On SwiftShader each shape runs one small mixed
// batch (decode + prefill, forced split-K so the merge pass runs too); on a real GPU the full matrix
// also runs contexts of several thousand tokens.
// Tolerance, per dtype, as in attention-paged.test.ts: the reference reads the same f16 or f32 words,
// so only f32 accumulation order and exp ULPs differ: atol 2e-5 + rtol 1e-4 for both. Long contexts
// (thousands of keys, real GPU) get atol 5e-5 for both: more rescaled partial sums, each adding f32
// rounding (~sqrt(n) growth), still far below the ≥ 1e-2 errors of a real bug.
import { beforeAll, describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, onRealGpu, testGpu } from '../helpers/gpu';
import { buildKvFixture, checkAttention, type KvFixtureOptions, type SequenceSpec, type Tolerance } from '../helpers/kv-fixture';
import { PagedAttentionKernel } from '../../src/kernels/paged-attention';
import type { Gpu } from '../../src/gpu/create-gpu';
import type { AttentionTuning } from '../../src/kernels/paged-attention';
import type { KvDtype } from '../../src/pool/kv-layout';

failOnUncapturedGpuErrors();

type DtypeTolerance = Record<KvDtype, Tolerance>;
const TOL: DtypeTolerance = { f16: { atol: 2e-5, rtol: 1e-4 }, f32: { atol: 2e-5, rtol: 1e-4 } };
const LONG_TOL: DtypeTolerance = { f16: { atol: 5e-5, rtol: 1e-4 }, f32: { atol: 5e-5, rtol: 1e-4 } };
const realGpu = await onRealGpu();
let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});

interface Shape {
  headDim: number;
  kvDtype: KvDtype;
  numKvHeads: number;
  groupSize: number;
  blockSize: number;
  subgroups: boolean;
  /** false: decode on the tile engine even where the streaming kernel applies. */
  streamDecode?: false;
}

const SMALL_BATCH: SequenceSpec[] = [
  { contextLength: 1 },
  { contextLength: 41 },
  { contextLength: 150 },
  { contextLength: 23, numQueries: 23 },
  { contextLength: 60, numQueries: 9 },
];

const LONG_BATCH: SequenceSpec[] = [
  { contextLength: 4099 },
  { contextLength: 3000, fork: { of: 0, sharedBlocks: 8 } },
  { contextLength: 1 },
  { contextLength: 2500, numQueries: 64 },
  { contextLength: 700, numQueries: 128 },
];

async function expectShape(
  shape: Shape,
  sequences: SequenceSpec[],
  forceSplits: readonly (number | undefined)[],
  tol = TOL,
  seed = 1,
  tuning?: AttentionTuning,
) {
  if (shape.subgroups && !gpu.features.subgroups) return;
  const { streamDecode, ...fixtureShape } = shape;
  const options: KvFixtureOptions = { ...fixtureShape, sequences, shuffleBlocks: true, seed };
  const fx = buildKvFixture(gpu.device, options);
  try {
    const kernel = new PagedAttentionKernel(gpu.device, fx.layout, {
      numQueryHeads: fx.numQueryHeads,
      rowStride: fx.rowStride,
      subgroups: shape.subgroups,
      tuning: streamDecode === false ? { ...tuning, streamDecode } : tuning,
    });
    const r = await checkAttention(gpu.device, kernel, fx, tol[shape.kvDtype], { forceSplits });
    expect(r.count, `${JSON.stringify(shape)}: ${r.count} mismatches (max |Δ| ${r.maxError}):\n${r.lines.join('\n')}`).toBe(0);
  } finally {
    fx.destroy();
  }
}

const label = (s: Shape) =>
  `head dim ${s.headDim}, ${s.kvDtype}, ${s.numKvHeads * s.groupSize}/${s.numKvHeads} heads, block ${s.blockSize}, subgroups ${s.subgroups}` +
  (s.streamDecode === false ? ', tile-engine decode' : '');

describe('paged attention shapes (small contexts)', () => {
  const shapes: Shape[] = [
    { headDim: 128, kvDtype: 'f32', numKvHeads: 3, groupSize: 1, blockSize: 16, subgroups: true },
    { headDim: 80, kvDtype: 'f16', numKvHeads: 1, groupSize: 8, blockSize: 8, subgroups: false },
    { headDim: 256, kvDtype: 'f16', numKvHeads: 2, groupSize: 4, blockSize: 32, subgroups: true },
    { headDim: 256, kvDtype: 'f32', numKvHeads: 1, groupSize: 8, blockSize: 1, subgroups: false, streamDecode: false },
    { headDim: 64, kvDtype: 'f32', numKvHeads: 2, groupSize: 6, blockSize: 16, subgroups: false },
  ];
  for (const shape of shapes) {
    it(label(shape), async () => {
      await expectShape(shape, SMALL_BATCH, [3]);
    });
  }
});

// Prefill runs on the register-blocked kernel by default; the tile engine is the fallback for devices
// whose workgroup memory fits no blocked tile, and stays under test here.
describe('paged attention with tile-engine prefill', () => {
  const shapes: Shape[] = [
    { headDim: 80, kvDtype: 'f16', numKvHeads: 1, groupSize: 8, blockSize: 8, subgroups: false },
    { headDim: 64, kvDtype: 'f32', numKvHeads: 2, groupSize: 6, blockSize: 16, subgroups: true },
  ];
  for (const shape of shapes) {
    it(label(shape), async () => {
      await expectShape(shape, SMALL_BATCH, [3], TOL, 2, { prefillBlocked: false });
    });
  }
});

describe('paged attention full matrix with long contexts (real GPU)', () => {
  const shapes: Shape[] = [];
  for (const headDim of [64, 80, 128, 256]) {
    for (const kvDtype of ['f16', 'f32'] as const) {
      for (const groupSize of [1, 4, 8]) {
        for (const subgroups of [false, true]) {
          shapes.push({ headDim, kvDtype, numKvHeads: 2, groupSize, blockSize: [1, 16, 32][shapes.length % 3]!, subgroups });
        }
      }
    }
  }
  // Skipped on SwiftShader: 48 pipelines at seconds of compilation each, and thousands of tokens at
  // ~0.04 GB/s, would take many minutes.
  // The second pass of each shape runs the fallback kernels: the tile engine for decode and prefill.
  it.skipIf(!realGpu)('every head dim × dtype × GQA ratio × reduction path × kernel, contexts up to 4099 tokens (real GPU only)', async () => {
    for (const [i, shape] of shapes.entries()) {
      await expectShape(shape, LONG_BATCH, [undefined, 5], LONG_TOL, i);
      await expectShape(shape, LONG_BATCH, [undefined], LONG_TOL, i, { prefillBlocked: false, streamDecode: false });
    }
  }, 600_000);
});
