// Shared by the paged-attention shape tests (attention-shapes.test.ts and the long-context matrix in
// attention-long-d*.test.ts): head dims, KV dtypes and GQA ratios (each a distinct tile shape, hence a
// distinct pipeline) against the f64 CPU reference. Every pass of a shape runs on one fixture and is
// compared with one reference, computed once.
// Tolerance, per dtype, as in attention-paged.test.ts: the reference reads the same f16 or f32 words,
// so only f32 accumulation order and exp ULPs differ: atol 2e-5 + rtol 1e-4 for both. Long contexts
// (thousands of keys, real GPU) get atol 5e-5 for both: more rescaled partial sums, each adding f32
// rounding (~sqrt(n) growth), still far below the ≥ 1e-2 errors of a real bug.
import { beforeAll, describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, onRealGpu, testGpu } from './gpu';
import { buildKvFixture, checkAttention, fixtureReference, type KvFixtureOptions, type SequenceSpec, type Tolerance } from './kv-fixture';
import { PagedAttentionKernel } from '../../src/kernels/paged-attention';
import type { Gpu } from '../../src/gpu/create-gpu';
import type { AttentionTuning } from '../../src/kernels/paged-attention';
import type { KvDtype } from '../../src/pool/kv-layout';

export type DtypeTolerance = Record<KvDtype, Tolerance>;
export const TOL: DtypeTolerance = { f16: { atol: 2e-5, rtol: 1e-4 }, f32: { atol: 2e-5, rtol: 1e-4 } };
export const LONG_TOL: DtypeTolerance = { f16: { atol: 5e-5, rtol: 1e-4 }, f32: { atol: 5e-5, rtol: 1e-4 } };
const realGpu = await onRealGpu();
let gpu: Gpu;
/** Call at the top of a test file that uses expectShape: gets the device and fails on uncaptured errors. */
export function useShapeTestGpu(): void {
  failOnUncapturedGpuErrors();
  beforeAll(async () => {
    gpu = await testGpu();
  });
}

export interface Shape {
  headDim: number;
  kvDtype: KvDtype;
  numKvHeads: number;
  groupSize: number;
  blockSize: number;
  subgroups: boolean;
  /** false: decode on the tile engine even where the streaming kernel applies. */
  streamDecode?: false;
}

export const SMALL_BATCH: SequenceSpec[] = [
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

/** One kernel configuration to check: the split counts to force, and the tuning. */
export interface Pass {
  forceSplits: readonly (number | undefined)[];
  tuning?: AttentionTuning;
}

/** Checks every pass on one fixture of `sequences` against one CPU reference (computed once). */
export async function expectShape(shape: Shape, sequences: SequenceSpec[], passes: readonly Pass[], tol = TOL, seed = 1) {
  if (shape.subgroups && !gpu.features.subgroups) return;
  const { streamDecode, ...fixtureShape } = shape;
  const options: KvFixtureOptions = { ...fixtureShape, sequences, shuffleBlocks: true, seed };
  const fx = buildKvFixture(gpu.device, options);
  try {
    const reference = fixtureReference(fx);
    for (const { forceSplits, tuning } of passes) {
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, {
        numQueryHeads: fx.numQueryHeads,
        rowStride: fx.rowStride,
        subgroups: shape.subgroups,
        tuning: streamDecode === false ? { ...tuning, streamDecode } : tuning,
      });
      try {
        const r = await checkAttention(gpu.device, kernel, fx, tol[shape.kvDtype], { forceSplits, reference });
        const what = `${JSON.stringify(shape)}${tuning ? ` with ${JSON.stringify(tuning)}` : ''}`;
        expect(r.count, `${what}: ${r.count} mismatches (max |Δ| ${r.maxError}):\n${r.lines.join('\n')}`).toBe(0);
      } finally {
        kernel.destroy();
      }
    }
  } finally {
    fx.destroy();
  }
}

export const label = (s: Shape) =>
  `head dim ${s.headDim}, ${s.kvDtype}, ${s.numKvHeads * s.groupSize}/${s.numKvHeads} heads, block ${s.blockSize}, subgroups ${s.subgroups}` +
  (s.streamDecode === false ? ', tile-engine decode' : '');

/** The long-context shapes: every head dim × dtype × GQA ratio × reduction path; a shape's seed is its index. */
const LONG_SHAPES: Shape[] = [];
for (const headDim of [64, 80, 128, 256]) {
  for (const kvDtype of ['f16', 'f32'] as const) {
    for (const groupSize of [1, 4, 8]) {
      for (const subgroups of [false, true]) {
        LONG_SHAPES.push({ headDim, kvDtype, numKvHeads: 2, groupSize, blockSize: [1, 16, 32][LONG_SHAPES.length % 3]!, subgroups });
      }
    }
  }
}

/**
 * The long-context matrix (real GPU only) for one head dim: its 12 shapes, each twice on one fixture
 * and against one reference — the default kernels (whole and with 5 forced splits), then the fallbacks
 * (the tile engine for decode and prefill). One test file per head dim, so vitest runs them side by side.
 * Skipped on SwiftShader: 12 pipelines at seconds of compilation each, and thousands of tokens at
 * ~0.04 GB/s, would take many minutes.
 */
export function describeLongMatrix(headDim: 64 | 80 | 128 | 256): void {
  describe(`paged attention full matrix with long contexts, head dim ${headDim} (real GPU)`, () => {
    const fallbacks = { prefillBlocked: false, streamDecode: false } as const;
    it.skipIf(!realGpu)('every dtype × GQA ratio × reduction path × kernel, contexts up to 4099 tokens (real GPU only)', async () => {
      for (const [i, shape] of LONG_SHAPES.entries()) {
        if (shape.headDim !== headDim) continue;
        await expectShape(shape, LONG_BATCH, [{ forceSplits: [undefined, 5] }, { forceSplits: [undefined], tuning: fallbacks }], LONG_TOL, i);
      }
    }, 600_000);
  });
}
