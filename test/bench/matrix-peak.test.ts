// The subgroup-matrix peak microkernel (bench/matrix-peak.ts), the baseline the matrix prefill is
// compared against: every accumulator of every subgroup must equal ITERATIONS × A·B exactly (the
// operands are small multiples of 1/8 and 1/16, so f16 holds them and f32 sums them without rounding),
// which fails if a step is skipped, an accumulator is lost or a subgroup stores over another's. Runs on
// real matrices where the device has them (NVIDIA with Dawn's allow_unsafe_apis; Mesa's lavapipe with
// 8-wide subgroups), and on emulated ones (test/helpers/emulated-subgroup-matrices.ts) where the device
// has shader-f16 and one subgroup size; skipped elsewhere (SwiftShader has no shader-f16).
import { describe, expect, it } from 'vitest';
import { createGpu } from '../../src/gpu/create-gpu';
import { MMA_MATRIX_SIZES } from '../../src/kernels/attention-config';
import { matrixPeakOperands, matrixPeakShape, measureMatrixRate, runMatrixPeak, type MatrixPeakShape } from '../../bench/matrix-peak';
import { withEmulatedSubgroupMatrices } from '../helpers/emulated-subgroup-matrices';

const gpu = await createGpu({ subgroupMatrix: true });
const info = gpu.adapter.info as { subgroupMinSize?: number; subgroupMaxSize?: number };
const sg = info.subgroupMinSize ?? 0;
const oneSubgroupSize = gpu.features.subgroups && sg > 0 && sg === info.subgroupMaxSize;
const real = matrixPeakShape(gpu.device, gpu.adapter.info);
const emulatedSizes = oneSubgroupSize && gpu.device.features.has('shader-f16') ? MMA_MATRIX_SIZES.filter((n) => sg >= n && sg <= n * n) : [];

/** Mismatches of the stored accumulators against iterations × A·B (at most 5 described). */
async function mismatches(device: GPUDevice, shape: MatrixPeakShape, workgroups: number, iterations: number): Promise<string[]> {
  const { n } = shape;
  const { product } = matrixPeakOperands(n);
  const got = await runMatrixPeak(device, shape, workgroups, iterations);
  expect(got.length).toBe(workgroups * 4 * 4 * n * n); // 4 subgroups × 4 accumulators per workgroup
  const bad: string[] = [];
  for (let i = 0; i < got.length; i++) {
    const want = iterations * product[i % (n * n)]!;
    if (got[i] !== want && bad.length < 5) bad.push(`element ${i}: ${got[i]} ≠ ${want}`);
  }
  return bad;
}

describe.skipIf(real === undefined)('matrix peak microkernel on the device\'s subgroup matrices', () => {
  it('accumulates exactly ITERATIONS × A·B in every accumulator of every subgroup', async () => {
    expect(await mismatches(gpu.device, real!, 3, 5)).toEqual([]);
  });

  it('reports a positive rate with the FLOPs of the work done', async () => {
    gpu.device.pushErrorScope('validation');
    const r = await measureMatrixRate(gpu.device, real!, { workgroups: 8, iterations: 64, warmupMs: 0 });
    expect(await gpu.device.popErrorScope()).toBeNull();
    expect(r.tflops).toBeGreaterThan(0);
    expect(Number.isFinite(r.tflops)).toBe(true);
    expect(r.subgroups).toBe(32);
    expect(r.n).toBe(real!.n);
  });
});

// (Listed as skipped where none runs: a file must register a suite.)
describe.skipIf(emulatedSizes.length === 0).each((emulatedSizes.length > 0 ? emulatedSizes : MMA_MATRIX_SIZES).map((n) => ({ n })))(
  'matrix peak microkernel on emulated $n × $n matrices',
  ({ n }) => {
    it('accumulates exactly ITERATIONS × A·B in every accumulator of every subgroup', async () => {
      expect(await mismatches(withEmulatedSubgroupMatrices(gpu.device), { n, subgroupSize: sg }, 2, 3)).toEqual([]);
    });
  },
);
