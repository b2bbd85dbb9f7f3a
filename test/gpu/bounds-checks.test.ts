// createGpu({ boundsChecks: false }): a device whose shaders run without WebGPU's bounds checks (Dawn's
// disable_robustness). The flag must reach Dawn only when asked (the default device keeps its checks),
// and the kernels, which check block ids and table rows themselves, must give the same results there:
// the streaming decode with and without split-K and the tile engine against the f64 CPU reference.
// `info --no-bounds-checks` reports such a device.
// Tolerance as the stream tests: |gpu − ref| ≤ 2e-5 + 1e-4·|ref| (f16 K/V exact in f32, f32 arithmetic).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/cli';
import { createGpu, type Gpu } from '../../src/gpu/create-gpu';
import { PagedAttentionKernel, type AttentionTuning } from '../../src/kernels/paged-attention';
import { failOnUncapturedGpuErrors } from '../helpers/gpu';
import { buildKvFixture, checkAttention, decodeFixtureOptions } from '../helpers/kv-fixture';

failOnUncapturedGpuErrors();

const TOL = { atol: 2e-5, rtol: 1e-4 };
const enabledToggles = (gpu: Gpu) =>
  gpu.dawnFlags.filter((f) => f.startsWith('enable-dawn-features=')).flatMap((f) => f.slice(f.indexOf('=') + 1).split(','));

let unchecked: Gpu;
/** Uncaptured WebGPU errors of the unchecked device (the shared helper watches only the test device). */
const uncheckedErrors: string[] = [];
beforeAll(async () => {
  unchecked = await createGpu({ boundsChecks: false });
  unchecked.device.onuncapturederror = (event) => {
    uncheckedErrors.push(event.error.message);
  };
});
afterEach(() => {
  expect(uncheckedErrors.splice(0)).toEqual([]);
});
afterAll(() => {
  unchecked.device.destroy();
});

describe('bounds checks', () => {
  it('stay on by default', async () => {
    const gpu = await createGpu();
    try {
      expect(gpu.boundsChecks).toBe(true);
      expect(enabledToggles(gpu)).not.toContain('disable_robustness');
    } finally {
      gpu.device.destroy();
    }
  });

  it('are turned off through Dawn only when asked, with the unsafe-API toggle that allows it', () => {
    expect(unchecked.boundsChecks).toBe(false);
    expect(enabledToggles(unchecked)).toEqual(expect.arrayContaining(['disable_robustness', 'allow_unsafe_apis']));
  });

  const kernels: Array<{ name: string; tuning: AttentionTuning }> = [
    { name: 'streaming decode', tuning: {} },
    { name: 'tile engine', tuning: { streamDecode: false } },
  ];
  it.each(kernels)('leave the $name matching the reference without them, whole and split', async ({ tuning }) => {
    const fx = buildKvFixture(unchecked.device, decodeFixtureOptions(41));
    try {
      const kernel = new PagedAttentionKernel(unchecked.device, fx.layout, {
        numQueryHeads: fx.numQueryHeads,
        rowStride: fx.rowStride,
        subgroups: unchecked.features.subgroups,
        tuning,
      });
      try {
        const result = await checkAttention(unchecked.device, kernel, fx, TOL, { forceSplits: [undefined, 1, 3] });
        expect(result.count, `${result.count} mismatches (max |Δ| ${result.maxError}):\n${result.lines.join('\n')}`).toBe(0);
      } finally {
        kernel.destroy();
      }
    } finally {
      fx.destroy();
    }
  });
});

describe('`info --no-bounds-checks`', () => {
  it('reports the device without them, and `info` with them', async () => {
    const run = async (argv: string[]) => {
      let text = '';
      const stream = { write: (t: string) => ((text += t), true), isTTY: false };
      expect(await runCli(argv, { stdout: stream, stderr: stream })).toBe(0);
      return text;
    };
    expect(await run(['info'])).toMatch(/bounds checks +yes/);
    expect(await run(['info', '--no-bounds-checks'])).toMatch(/bounds checks +off/);
    const report = JSON.parse(await run(['info', '--json', '--no-bounds-checks'])) as { boundsChecks: boolean; dawnFlags: string[] };
    expect(report.boundsChecks).toBe(false);
    expect(report.dawnFlags.join(' ')).toMatch(/disable_robustness/);
  });
});
