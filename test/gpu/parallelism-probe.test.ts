// The parallelism probe and the split-K sizing it feeds. The search is checked against simulated
// devices (one wave of C workgroups takes one unit, with timing noise); the probe itself runs on the test
// device (SwiftShader on CI, whose answer is small) and must give a positive count, memoized per device;
// the attention kernel and the cache take the count and split decode work by it, and refuse bad values
// with a ConfigError.
import { beforeAll, describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { buildKvFixture, checkAttention, decodeFixtureOptions } from '../helpers/kv-fixture';
import {
  DEFAULT_RESIDENT_WORKGROUPS,
  findResidentWorkgroups,
  MAX_PROBED_WORKGROUPS,
  probeParallelism,
  probeResidency,
  SLOW_FACTOR,
} from '../../src/gpu/parallelism-probe';
import { PagedAttentionKernel } from '../../src/kernels/paged-attention';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { ConfigError } from '../../src/errors';
import type { Gpu } from '../../src/gpu/create-gpu';
import { runCli } from '../../src/cli/cli';
import { rng } from '../table/rng';

failOnUncapturedGpuErrors();

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});

/** A device that runs `resident` workgroups at once: w workgroups take ceil(w / resident) waves, ±noise. */
function simulated(resident: number, noise: number, seed: number) {
  const random = rng(seed);
  const counts: number[] = [];
  const time = async (workgroups: number) => {
    counts.push(workgroups);
    return Math.ceil(workgroups / resident) * 1e-3 * (1 + noise * (2 * random() - 1));
  };
  return { time, counts };
}

describe('findResidentWorkgroups', () => {
  for (const resident of [1, 2, 3, 7, 132, 1056, 4224, 50_000]) {
    it(`finds ${resident} workgroups at once to within 1/32, never above, with 10 % timing noise`, async () => {
      for (const seed of [1, 2, 3]) {
        const device = simulated(resident, 0.1, seed);
        const found = await findResidentWorkgroups(device.time, MAX_PROBED_WORKGROUPS);
        expect(found.residentWorkgroups).toBeLessThanOrEqual(resident);
        expect(found.residentWorkgroups).toBeGreaterThanOrEqual(Math.max(1, Math.floor(resident * (1 - 1 / 32))));
        expect(found.samples.map((s) => s.workgroups)).toEqual(device.counts);
        expect(found.samples[0]!.workgroups).toBe(1);
        expect(device.counts.length).toBeLessThanOrEqual(24);
      }
    });
  }

  it('stops at the largest count it may time when every count fits', async () => {
    const device = simulated(1e9, 0, 1);
    const found = await findResidentWorkgroups(device.time, 5000);
    expect(found.residentWorkgroups).toBe(5000);
    expect(Math.max(...device.counts)).toBe(5000);
  });

  it('answers 1 when two workgroups already take a second wave', async () => {
    const found = await findResidentWorkgroups(async (w) => w * 1e-3, MAX_PROBED_WORKGROUPS);
    expect(found.residentWorkgroups).toBe(1);
    expect(found.samples.map((s) => s.workgroups)).toEqual([1, 2]);
  });

  it(`counts a time under ${SLOW_FACTOR}× one workgroup's as one wave`, async () => {
    // 40 % slower past 64 (contention, not a second wave), a second wave past 100.
    const time = async (w: number) => (w <= 64 ? 1 : w <= 100 ? 1.4 : 2) * 1e-3;
    const found = await findResidentWorkgroups(time, MAX_PROBED_WORKGROUPS);
    expect(found.residentWorkgroups).toBeLessThanOrEqual(100);
    expect(found.residentWorkgroups).toBeGreaterThanOrEqual(97);
  });
});

describe('probeParallelism on the test device', () => {
  it('measures a positive count once per device', async () => {
    const first = probeParallelism(gpu.device);
    expect(probeParallelism(gpu.device)).toBe(first);
    const probe = await first;
    expect(probe.method).not.toBe('default');
    expect(Number.isInteger(probe.residentWorkgroups)).toBe(true);
    expect(probe.residentWorkgroups).toBeGreaterThanOrEqual(1);
    expect(probe.samples[0]!.workgroups).toBe(1);
    expect(probe.samples.every((s) => s.seconds > 0)).toBe(true);
    if (gpu.isFallback) expect(probe.residentWorkgroups).toBeLessThan(64); // a CPU: a handful of cores
  });
});

describe('probeResidency on the test device', () => {
  it('measures workgroups of other shapes, each time it is asked', async () => {
    const shape = { workgroupSize: 128, workgroupBytes: 12 * 1024 };
    const first = probeResidency(gpu.device, shape);
    expect(probeResidency(gpu.device, shape)).not.toBe(first);
    for (const probe of await Promise.all([first, probeResidency(gpu.device, { workgroupSize: 64 })])) {
      expect(probe.method).not.toBe('default');
      expect(Number.isInteger(probe.residentWorkgroups)).toBe(true);
      expect(probe.residentWorkgroups).toBeGreaterThanOrEqual(1);
      expect(probe.samples[0]!.workgroups).toBe(1);
    }
  });

  it('refuses shapes it cannot probe, naming the limit', async () => {
    const limit = gpu.device.limits.maxComputeWorkgroupStorageSize;
    await expect(probeResidency(gpu.device, { workgroupBytes: limit + 4 })).rejects.toThrow(`at most ${limit} bytes`);
    await expect(probeResidency(gpu.device, { workgroupBytes: 255 })).rejects.toThrow(/multiple of 4 bytes, at least 256/);
    await expect(probeResidency(gpu.device, { workgroupSize: 96.5 })).rejects.toThrow(/multiple of 32 invocations/);
    await expect(probeResidency(gpu.device, { workgroupSize: 32 })).rejects.toThrow(/at least 64/);
  });
});

describe('`info` reports the probe', () => {
  const run = async (argv: string[]) => {
    let text = '';
    const stream = { write: (t: string) => ((text += t), true), isTTY: false };
    expect(await runCli(argv, { stdout: stream, stderr: stream })).toBe(0);
    return text;
  };

  it('as a line of the table and as JSON', async () => {
    expect(await run(['info'])).toMatch(/workgroups at once +\d+ of 256 invocations \(probed, (timestamp|wall) timing/);
    const report = JSON.parse(await run(['info', '--json'])) as { parallelism: { residentWorkgroups: number; method: string } };
    expect(report.parallelism.residentWorkgroups).toBeGreaterThanOrEqual(1);
    expect(report.parallelism.method).not.toBe('default');
  });

  it('with the attention kernels the device gets for the reference shape', async () => {
    const text = await run(['info']);
    expect(text).toMatch(/decode \(32\/8 heads × 128, f16\) +(streaming \(subgroup shuffles|streaming \(workgroup-memory reduction|tile engine)/);
    expect(text).toMatch(/prefill \(32\/8 heads × 128, f16\) +(subgroup matrices|register-blocked|tile engine)/);
    const report = JSON.parse(await run(['info', '--json'])) as { attentionKernels: { shape: string; decode: string; prefill: string } };
    expect(report.attentionKernels.shape).toBe('32/8 heads × 128, f16');
    // Asking for subgroup matrices (as serve --subgroup-matrix does): matrices where the device has them.
    const withMatrices = JSON.parse(await run(['info', '--json', '--subgroup-matrix'])) as {
      info: { description: string; subgroupMinSize?: number };
      features: Record<string, boolean>;
      attentionKernels: { prefill: string };
    };
    // (Mesa's lavapipe has the feature at every subgroup size but gets matrices only with subgroups of 8.)
    const lavapipeRefused = /llvmpipe/.test(withMatrices.info.description) && withMatrices.info.subgroupMinSize !== 8;
    expect(withMatrices.attentionKernels.prefill.startsWith('subgroup matrices')).toBe(withMatrices.features.subgroupMatrix === true && !lavapipeRefused);
  });
});

describe('split-K sized from the resident workgroups', () => {
  // 4 decode entries × 2 kv heads × one head tile = 8 workgroups before splitting; a kernel without
  // subgroups. Streaming decode (shared reduction, 64 keys per step): target = resident workgroups / 2,
  // splits of at least 16 steps = 1024 keys. Tile engine: target = resident / 4, splits of at least 256 keys.
  const fixture = () =>
    buildKvFixture(gpu.device, decodeFixtureOptions(11, { sequences: [{ contextLength: 40 }, { contextLength: 700 }, { contextLength: 1100 }, { contextLength: 2100 }] }));
  const TOL = { atol: 2e-5, rtol: 1e-4 };

  for (const [engine, resident, splits] of [
    ['stream', DEFAULT_RESIDENT_WORKGROUPS, [1, 1, 1, 2]],
    ['stream', 6, [1, 1, 1, 1]],
    ['tile', DEFAULT_RESIDENT_WORKGROUPS, [1, 2, 4, 7]], // 2100 keys: 8 wanted, 263 rounded up to whole tiles → 7
    ['tile', 72, [1, 2, 2, 2]],
    ['tile', 4, [1, 1, 1, 1]],
  ] as const) {
    it(`${engine} decode, ${resident} resident workgroups → splits ${splits.join(', ')}, results within tolerance`, async () => {
      const fx = fixture();
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, {
        numQueryHeads: fx.numQueryHeads,
        rowStride: fx.rowStride,
        subgroups: false,
        residentWorkgroups: resident,
        // The GPU default shape (64-key steps); a software adapter's own default is 64 threads.
        tuning: { streamDecode: engine === 'stream', stream: { workgroupSize: 128 } },
      });
      expect(kernel.streamDecodeConfig?.keysPerStep).toBe(engine === 'stream' ? 64 : undefined);
      const check = await checkAttention(gpu.device, kernel, fx, TOL);
      expect(check.lines).toEqual([]);
      expect(check.splits).toEqual(splits);
      kernel.destroy();
      fx.destroy();
    });
  }

  it('refuses a count that is not a positive integer', () => {
    const fx = fixture();
    for (const bad of [0, -4, 1.5, Number.NaN]) {
      expect(() => new PagedAttentionKernel(gpu.device, fx.layout, { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: false, residentWorkgroups: bad })).toThrow(ConfigError);
    }
    fx.destroy();
  });
});

describe('PagedKVCache residentWorkgroups', () => {
  const options = { numLayers: 1, numKvHeads: 1, headDim: 16, numBlocks: 8, maxSequences: 2 };

  it('probes the device by default and takes a given count as it is', async () => {
    const probed = await PagedKVCache.create(gpu.device, options);
    expect(probed.residentWorkgroups).toBe((await probeParallelism(gpu.device)).residentWorkgroups);
    probed.destroy();
    const given = await PagedKVCache.create(gpu.device, { ...options, residentWorkgroups: 96 });
    expect(given.residentWorkgroups).toBe(96);
    given.destroy();
  });

  it('refuses anything but "probe" or a positive integer', async () => {
    for (const bad of [0, 2.5, -1, 'auto', '8']) {
      await expect(PagedKVCache.create(gpu.device, { ...options, residentWorkgroups: bad as never })).rejects.toThrow(ConfigError);
    }
  });
});
