// Paged attention across head dims, KV dtypes and GQA ratios on small contexts (one mixed batch of
// decode + prefill per shape, forced split-K so the merge pass runs too), against the f64 CPU
// reference; see test/helpers/attention-shapes.ts for the tolerances. The long-context matrix that a
// real GPU also runs is in attention-long-d*.test.ts.
import { describe, it } from 'vitest';
import { expectShape, label, SMALL_BATCH, TOL, useShapeTestGpu, type Shape } from '../helpers/attention-shapes';

useShapeTestGpu();

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
      await expectShape(shape, SMALL_BATCH, [{ forceSplits: [3] }]);
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
      await expectShape(shape, SMALL_BATCH, [{ forceSplits: [3], tuning: { prefillBlocked: false } }], TOL, 2);
    });
  }
});

