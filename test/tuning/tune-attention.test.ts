// The autotuner on the device: its workloads hold what they say, its checker catches a kernel that is
// 1 % off and passes the real ones, tuneAttention returns a checked tuning built from the knobs it was
// given (and the trials that led there), and a cache made with that tuning runs the chosen kernels and
// still matches the CPU reference. Small heads and batches: SwiftShader runs every candidate.
import { beforeAll, describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { expectClose, LogicalKv, values } from '../helpers/logical-kv';
import type { Gpu } from '../../src/gpu/create-gpu';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { PagedAttentionKernel } from '../../src/kernels/paged-attention';
import { readBackWords } from '../../src/kernels/kv-bindings';
import { WriteKvKernel } from '../../src/kernels/write-kv';
import { writeKvRef } from '../../src/kernels/write-kv.ref';
import { createAttentionWorkload, PATTERN_WORDS, uniformSequences } from '../../src/tuning/attention-workload';
import { KernelChecker, kernelRejection } from '../../src/tuning/kernel-check';
import { fitDecodeShape, fitPrefillShape, tuneAttention } from '../../src/tuning/tune-attention';
import { checkAttentionTuning } from '../../src/kernels/attention-tuning';
import { ConfigError } from '../../src/errors';
import { resolveConfig } from '../../src/cache/config';

failOnUncapturedGpuErrors();

const HEADS = { numKvHeads: 2, numQueryHeads: 8, headDim: 16, kvDtype: 'f16' as const, blockSize: 16 };
let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});

describe('attention workload', () => {
  it('fills a pool larger than its random pattern with repeats of it, exactly as chunkWords() says', async () => {
    // 1 kv head × 64 dims, f16, blocks of 16: 4 KiB per block; 1100 blocks ≈ 4.3 MiB > the 4 MiB pattern.
    const w = createAttentionWorkload(gpu.device, {
      numKvHeads: 1, numQueryHeads: 2, headDim: 64, kvDtype: 'f16', blockSize: 16,
      sequences: uniformSequences(2, 550 * 16), order: 'random',
    });
    try {
      const expected = w.chunkWords();
      expect(expected.reduce((n, c) => n + c.length, 0)).toBeGreaterThan(PATTERN_WORDS);
      for (let c = 0; c < w.chunks.length; c++) {
        const actual = await readBackWords(gpu.device, w.chunks[c]!);
        expect(actual.length).toBe(expected[c]!.length);
        expect(actual.every((word, i) => word === expected[c]![i])).toBe(true);
      }
      const first = expected[0]!;
      expect(first[PATTERN_WORDS]).toBe(first[0]); // the pattern repeats ...
      expect(new Set(first.subarray(0, 4096)).size).toBeGreaterThan(4000); // ... and is not constant
      expect([...w.blockTable].sort((a, b) => a - b)).toEqual([...Array(1100).keys()]); // a permutation
      expect([...w.blockTable.subarray(0, 8)]).not.toEqual([0, 1, 2, 3, 4, 5, 6, 7]); // in random order
      expect(w.kvBytes).toBe(2 * 550 * 16 * 64 * 2 * 2);
    } finally {
      w.destroy();
    }
  });

  it('gives each decode row that stores its K/V distinct new K and V and the slot of its position, and refills the pool', async () => {
    const w = createAttentionWorkload(gpu.device, { ...HEADS, sequences: uniformSequences(3, 40), storesKv: true });
    const writer = new WriteKvKernel(gpu.device, w.layout);
    try {
      expect(w.write).toBeDefined();
      expect(w.args({ storesKv: true }).write).toBe(w.write);
      expect(w.args().write).toBeUndefined();
      expect(w.entries.map((e) => [e.queryStart, e.numQueries, e.qRow])).toEqual([[39, 1, 0], [39, 1, 1], [39, 1, 2]]);
      const { k, v, slots } = w.newKv!;
      expect(k.length).toBe(3 * HEADS.numKvHeads * HEADS.headDim);
      expect(k.some((x, i) => x !== v[i])).toBe(true);
      expect([...slots]).toEqual(w.entries.map((e) => w.blockTable[e.seqSlot * w.rowStride + 2]! * 16 + 7)); // position 39: block 2, offset 7
      // write-kv stores the rows where writeKvRef says; refill undoes it.
      const stored = w.chunkWords();
      writeKvRef(w.layout, stored, k, v, slots);
      const encoder = gpu.device.createCommandEncoder();
      writer.encode(encoder, { chunks: w.chunks, ...w.write!, numTokens: 3 });
      gpu.device.queue.submit([encoder.finish()]);
      expect(await readBackWords(gpu.device, w.chunks[0]!)).toEqual(stored[0]);
      const refill = gpu.device.createCommandEncoder();
      w.refill(refill);
      gpu.device.queue.submit([refill.finish()]);
      expect(await readBackWords(gpu.device, w.chunks[0]!)).toEqual(w.chunkWords()[0]);
      expect(stored[0]).not.toEqual(w.chunkWords()[0]);
    } finally {
      writer.destroy();
      w.destroy();
    }
  });
});

describe('kernel checker', () => {
  it('passes the default kernels and the tile engine, and catches a kernel whose scale is 1 % off', async () => {
    const checker = new KernelChecker(gpu.device, HEADS);
    const kernel = (tuning = {}) =>
      new PagedAttentionKernel(gpu.device, checker.layout, { numQueryHeads: HEADS.numQueryHeads, rowStride: checker.rowStride, subgroups: gpu.features.subgroups, tuning });
    try {
      for (const tuning of [{}, { streamDecode: false, prefillBlocked: false }]) {
        const k = kernel(tuning);
        expect(await checker.check(k)).toBeUndefined();
        k.destroy();
      }
      const real = kernel();
      const offByOnePercent = Object.assign(Object.create(real) as PagedAttentionKernel, {
        encode: (encoder: GPUCommandEncoder, args: Parameters<PagedAttentionKernel['encode']>[1]) => real.encode(encoder, { ...args, scale: args.scale * 1.01 }),
      });
      expect(await checker.check(offByOnePercent)).toMatch(/^decode of \d+ keys: row \d+ element \d+ is .* where the reference is /);
      // What the bench asks before timing a kernel: the same verdicts, under a validation error scope.
      expect(await kernelRejection(gpu.device, checker, real)).toBeUndefined();
      expect(await kernelRejection(gpu.device, checker, offByOnePercent)).toMatch(/^decode of \d+ keys: row \d+ element \d+ is /);
      real.destroy();
    } finally {
      checker.destroy();
    }
  });

  it('checks a decode storing its K/V by its output and every pool word, and catches one that skips or misplaces the store', async () => {
    const checker = new KernelChecker(gpu.device, HEADS);
    const real = new PagedAttentionKernel(gpu.device, checker.layout, {
      numQueryHeads: HEADS.numQueryHeads, rowStride: checker.rowStride, subgroups: true, tuning: { decodeWritesKv: true },
    });
    type Args = Parameters<PagedAttentionKernel['encode']>[1];
    const wrapped = (change: (args: Args) => Args) =>
      Object.assign(Object.create(real) as PagedAttentionKernel, { encode: (encoder: GPUCommandEncoder, args: Args) => real.encode(encoder, change(args)) });
    const elsewhere = gpu.device.createBuffer({ size: 1 << 20, usage: GPUBufferUsage.STORAGE });
    try {
      expect(real.writesKvFor(checker.storingEntries)).toBe(true);
      expect(await checker.check(real, { storesKv: true })).toBeUndefined();
      expect(await checker.check(real)).toBeUndefined(); // the mixed batch is untouched by the stores
      expect(await checker.check(real, { storesKv: true })).toBeUndefined(); // refilled: the same again

      // Without the store the decode reads its own key from the pool, which still holds the old word.
      const skips = wrapped(({ write: _write, ...args }) => args);
      expect(await checker.check(skips, { storesKv: true })).toMatch(/^decode storing its K\/V of \d+ keys: row \d+ element \d+ is .* where the reference is /);
      // The rows staged somewhere the flush does not read (and what it reads cleared): the outputs are
      // right (a decode takes its own key from the new K/V), the pool is not.
      const misplaced = Object.assign(Object.create(real) as PagedAttentionKernel, {
        encode: (encoder: GPUCommandEncoder, args: Args) => {
          encoder.clearBuffer(args.write!.staged);
          real.encode(encoder, { ...args, write: { ...args.write!, staged: elsewhere } });
        },
      });
      expect(await checker.check(misplaced, { storesKv: true })).toMatch(/^decode storing its K\/V(, split-K forced to 3)?: pool word \d+ of chunk \d+ is 0x[0-9a-f]{8} where write-kv's reference is 0x[0-9a-f]{8}$/);
    } finally {
      elsewhere.destroy();
      real.destroy();
      checker.destroy();
    }
  });
});


describe('tuneAttention', () => {
  it('returns a checked tuning made of the knobs it tried, with every trial, and a cache runs it', async () => {
    const seen: string[] = [];
    const result = await tuneAttention(gpu.device, {
      ...HEADS,
      decodeShapes: [{ batch: 2, context: 96 }],
      prefillShape: { sequences: 1, tokens: 32 },
      residentWorkgroups: 8,
      decodeKnobs: [
        { name: 'decode kernel', values: [{ streamDecode: false }] },
        { name: 'unroll', values: [{ stream: { unroll: 2 } }] },
      ],
      prefillKnobs: [{ name: 'register-blocked', values: [{ prefillBlocked: false }] }],
      timing: { iterations: 3, warmup: 1, minRegionMs: 5 },
      onTrial: (kind, trial) => seen.push(`${kind} ${trial.knob}`),
    });
    expect(seen).toEqual(['decode base', 'decode decode kernel', 'decode unroll', 'prefill base', 'prefill register-blocked']);
    expect(result.decode.trials.map((t) => t.outcome)[0]).toBe('base');
    for (const t of [...result.decode.trials, ...result.prefill!.trials]) {
      expect(['base', 'better', 'not better', 'same kernels']).toContain(t.outcome); // nothing rejected: all are correct kernels
      expect(t.score).toBeGreaterThan(0);
    }
    expect(Object.isFrozen(result.tuning)).toBe(true);
    expect(checkAttentionTuning(result.tuning)).toEqual(result.tuning);
    const allowed = new Set(['streamDecode', 'stream', 'prefillBlocked']);
    for (const key of Object.keys(result.tuning)) expect(allowed.has(key), key).toBe(true);
    expect(result.decode.speedup).toBeGreaterThanOrEqual(1);
    expect(result.prefill!.speedup).toBeGreaterThanOrEqual(1);
    expect(result.residentWorkgroups).toBe(8);

    // A cache made with the tuning describes the same kernels and matches the reference.
    const cache = await PagedKVCache.create(gpu.device, {
      numLayers: 1, numKvHeads: HEADS.numKvHeads, numQueryHeads: HEADS.numQueryHeads, headDim: HEADS.headDim, numBlocks: 32,
      attentionTuning: result.tuning, residentWorkgroups: 8,
    });
    try {
      expect(cache.describeKernels()).toEqual({ decode: result.decode.kernel, prefill: result.prefill!.kernel });
      const kvRow = HEADS.numKvHeads * HEADS.headDim, qRow = HEADS.numQueryHeads * HEADS.headDim;
      const id = cache.createSequence({ tokens: Array.from({ length: 40 }, (_, i) => i) }).id;
      const k = values(40 * kvRow, 1), v = values(40 * kvRow, 2);
      await cache.writeKV(0, id, 0, k, v);
      const logical = new LogicalKv(HEADS.numKvHeads, HEADS.headDim);
      for (let i = 0; i < 40; i++) logical.set(i, k.subarray(i * kvRow, (i + 1) * kvRow), v.subarray(i * kvRow, (i + 1) * kvRow));
      const prefillQ = values(40 * qRow, 3), decodeQ = values(qRow, 4);
      const [prefill] = await cache.attend(0, [{ seqId: id, q: prefillQ, queryStart: 0 }]);
      expectClose(prefill!, logical.attend(prefillQ, 0, HEADS.numQueryHeads), 2e-5, 1e-4);
      const [decode] = await cache.attend(0, [{ seqId: id, q: decodeQ, queryStart: 39 }]);
      expectClose(decode!, logical.attend(decodeQ, 39, HEADS.numQueryHeads), 2e-5, 1e-4);
    } finally {
      cache.destroy();
    }
  });
});

describe('tuneAttention weighing a decode that stores its K/V', () => {
  it('times it against write-kv + decode after checking its stores, and keeps it only when faster', async () => {
    const result = await tuneAttention(gpu.device, {
      ...HEADS,
      decodeShapes: [{ batch: 2, context: 96 }],
      prefillShape: null,
      residentWorkgroups: 8,
      decodeKnobs: [{ name: 'decode stores its K/V', values: [{ decodeWritesKv: true }] }],
      timing: { iterations: 3, warmup: 1, minRegionMs: 5 },
    });
    const [base, stores] = result.decode.trials;
    expect(base!.outcome).toBe('base');
    expect(['better', 'not better']).toContain(stores!.outcome); // checked (not rejected) and timed as its own kernel
    expect(stores!.score).toBeGreaterThan(0);
    expect(result.tuning.decodeWritesKv === true).toBe(stores!.outcome === 'better');
  });
});

describe('tuneAttention on a kernel without subgroups, and bad options', () => {
  it('tunes the portable decode (workgroup-memory reduction) when told not to use subgroups', async () => {
    const result = await tuneAttention(gpu.device, {
      ...HEADS,
      headDim: 32, // the shared reduction needs at least 4 lanes of 16-byte words per key row
      subgroups: false,
      residentWorkgroups: 8,
      decodeShapes: [{ batch: 2, context: 96 }],
      prefillShape: null,
      decodeKnobs: [
        { name: 'unroll', values: [{ stream: { unroll: 2 } }] },
        { name: 'decode stores its K/V', values: [{ decodeWritesKv: true }] },
      ],
      timing: { iterations: 3, warmup: 1, minRegionMs: 5 },
    });
    expect(result.decode.kernel).toMatch(/^streaming \(workgroup-memory reduction\)/);
    expect(result.prefill).toBeUndefined();
    expect(result.decode.trials.map((t) => t.outcome)).not.toContain('rejected');
    // This kernel cannot store K/V: asking it to is the same kernels, not timed again.
    expect(result.decode.trials[2]!.outcome).toBe('same kernels');
  });

  it.each([
    [{ decodeShapes: [] }, /decodeShapes must be a non-empty list/],
    [{ decodeShapes: [{ batch: 0, context: 8 }] }, /decodeShapes must be/],
    [{ prefillShape: { sequences: 1, tokens: 1.5 } }, /prefillShape must be/],
    [{ minGain: 1 }, /minGain must be in \[0, 1\)/],
    [{ base: { stream: { unroll: 0 } } }, /base\.stream\.unroll must be an integer/],
    [{ decodeShapes: [{ batch: 1 << 20, context: 1 << 16 }] }, /the decode batch 1048576 × 65536 needs 4294967296 KV blocks of one layer; this device holds at most \d+/],
    [{ prefillShape: { sequences: 1 << 20, tokens: 1 << 16 } }, /the prefill batch .* needs .* KV blocks/],
    [{ headDim: 12 }, /headDim must be a multiple of 8/],
    [{ numQueryHeads: 3 }, /numQueryHeads \(3\) must be a positive multiple of numKvHeads \(2\)/],
  ])('refuses %j before timing anything', async (bad, message) => {
    await expect(tuneAttention(gpu.device, { ...HEADS, residentWorkgroups: 8, ...bad })).rejects.toThrow(message);
  });
});

describe('fitting the default batches to the device', () => {
  it('halves the sequences, then the context, until one layer holds the batch', () => {
    expect(fitDecodeShape({ batch: 64, context: 2048 }, 1 << 20, 16)).toEqual({ batch: 64, context: 2048 }); // fits as is
    expect(fitDecodeShape({ batch: 64, context: 2048 }, 1000, 16)).toEqual({ batch: 4, context: 2048 }); // 4 × 128 blocks
    expect(fitDecodeShape({ batch: 1, context: 32768 }, 1000, 16)).toEqual({ batch: 1, context: 8192 }); // 2048, 1024, then 512 blocks
    expect(fitPrefillShape({ sequences: 4, tokens: 2048 }, 100, 16)).toEqual({ sequences: 1, tokens: 1024 });
  });
});

describe('attentionTuning cache option', () => {
  const options = { numLayers: 1, numKvHeads: 2, numQueryHeads: 8, headDim: 32, numBlocks: 8, residentWorkgroups: 8 };

  it('selects the kernels it names', async () => {
    const cache = await PagedKVCache.create(gpu.device, { ...options, attentionTuning: { streamDecode: false, prefillBlocked: false } });
    try {
      expect(cache.describeKernels().decode).toMatch(/^tile engine/);
      expect(cache.describeKernels().prefill).toMatch(/^tile engine/);
    } finally {
      cache.destroy();
    }
  });

  it('carries its decodeWritesKv unless the decodeWritesKv option is given, which wins', () => {
    const resolved = (extra: object) => resolveConfig(gpu.device, { ...options, ...extra }, gpu.features.subgroups);
    expect(resolved({}).attentionTuning).toEqual({ decodeWritesKv: false });
    expect(resolved({ attentionTuning: { decodeWritesKv: true } }).decodeWritesKv).toBe(true);
    const both = resolved({ attentionTuning: { decodeWritesKv: true, stream: { unroll: 2 } }, decodeWritesKv: false });
    expect([both.decodeWritesKv, both.attentionTuning]).toEqual([false, { decodeWritesKv: false, stream: { unroll: 2 } }]);
  });

  it('refuses a misspelt or out-of-range knob with a ConfigError before allocating anything', async () => {
    await expect(PagedKVCache.create(gpu.device, { ...options, attentionTuning: { stream: { unrol: 2 } } as never })).rejects.toThrow(ConfigError);
    await expect(PagedKVCache.create(gpu.device, { ...options, attentionTuning: { stream: { unroll: 99 } } })).rejects.toThrow(/attentionTuning\.stream\.unroll must be an integer in \[1, 16\]/);
  });
});
