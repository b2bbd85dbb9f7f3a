// The streaming decode that attends over the new token's K/V and stages it (PagedAttentionArgs.write),
// then flush-staged-kv: together they must give exactly what a write-kv dispatch followed by the decode
// gives. The pool starts with random words at every written slot, so a decode that read its own
// position from the pool instead of from the new K/V would miss the reference. Checked per shape, with
// and without split-K (the key is owned by the last split only), against the CPU references of both
// kernels: the output within the attention tolerance of attention-paged.test.ts; the pool word for word
// unchanged after the decode alone (it never writes the pool) and equal to write-kv's after the flush.
// Entries that are not all decodes, and staging buffers too small, misaligned or bound elsewhere, are
// refused with a typed error and nothing recorded.
import { beforeAll, describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, subgroupTestGpu } from '../helpers/gpu';
import {
  attentionMismatches,
  buildKvFixture,
  decodeFixtureOptions,
  OUT_SENTINEL,
  readF32,
  type KvFixture,
  type KvFixtureOptions,
} from '../helpers/kv-fixture';
import { PagedAttentionKernel, type AttentionTuning, type DecodeKvWrite } from '../../src/kernels/paged-attention';
import { FlushStagedKvKernel, stagedKvRowBytes, stagedLayerStride as layerStride } from '../../src/kernels/flush-staged-kv';
import { pagedAttentionRef } from '../../src/kernels/attention.ref';
import { PADDING_SLOT, writeKvRef } from '../../src/kernels/write-kv.ref';
import { InvalidArgumentError } from '../../src/errors';
import type { Gpu } from '../../src/gpu/create-gpu';
import { rng } from '../table/rng';

failOnUncapturedGpuErrors();

const TOL = { atol: 2e-5, rtol: 1e-4 };
let gpu: Gpu;
beforeAll(async () => {
  gpu = await subgroupTestGpu();
});

function storageBuffer(data: ArrayBufferView<ArrayBuffer>): GPUBuffer {
  const buffer = gpu.device.createBuffer({ size: Math.max(16, data.byteLength), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  gpu.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  return buffer;
}

interface NewKv {
  k: Float32Array<ArrayBuffer>;
  v: Float32Array<ArrayBuffer>;
  slots: Uint32Array<ArrayBuffer>;
  /** The same, on the GPU. */
  write: DecodeKvWrite;
  destroy(): void;
}

/**
 * New K/V rows for every q row, and the slot of each entry's query position (padding elsewhere); the
 * rows are staged `stagedOffset` bytes into a buffer of their own.
 */
function newKv(fx: KvFixture, seed: number, stagedOffset = 0): NewKv {
  const rand = rng(seed);
  const rows = fx.q.length / (fx.numQueryHeads * fx.layout.headDim);
  const rowElements = fx.layout.numKvHeads * fx.layout.headDim;
  const k = Float32Array.from({ length: rows * rowElements }, () => rand() * 2 - 1);
  const v = Float32Array.from({ length: rows * rowElements }, () => rand() * 2 - 1);
  const slots = new Uint32Array(rows).fill(PADDING_SLOT);
  const bs = fx.layout.blockSize;
  for (const e of fx.entries) {
    const pos = e.queryStart;
    slots[e.qRow] = fx.blockTable[e.seqSlot * fx.rowStride + Math.floor(pos / bs)]! * bs + (pos % bs);
  }
  const staged = gpu.device.createBuffer({ size: stagedOffset + rows * stagedKvRowBytes(fx.layout), usage: GPUBufferUsage.STORAGE });
  const write = { k: storageBuffer(k), v: storageBuffer(v), slots: storageBuffer(slots), staged, stagedOffset };
  return { k, v, slots, write, destroy: () => [write.k, write.v, write.slots, staged].forEach((b) => b.destroy()) };
}

const SHAPES: Array<{ name: string; tuning: AttentionTuning; fixture: Partial<KvFixtureOptions> }> = [
  { name: 'f16, default stream shape', tuning: {}, fixture: {} },
  { name: 'f32, three chunks, no prefetch', tuning: { stream: { prefetch: false } }, fixture: { kvDtype: 'f32', blocksPerChunk: 24 } },
  { name: 'f16, two head tiles per kv head (only the first stores), unroll 1', tuning: { stream: { maxHeads: 2, unroll: 1 } }, fixture: { blockSize: 8 } },
  { name: 'f16, lazy rescale at threshold 0, peaky softmax', tuning: { stream: { rescaleThreshold: 0 } }, fixture: { qMagnitude: 8 } },
];

describe.each(SHAPES)('decode storing its K/V: $name', ({ tuning, fixture }) => {
  // Context 32 puts the own key (position 31) on the last of a step's 16 key groups (a software adapter's
  // 64 threads in groups of 4 lanes), so the pool loop, one key short, ends one group before a boundary.
  it('equals write-kv then decode, for contexts 1, 17, 32, 300 and 700, with and without split-K', async () => {
    const sequences = [1, 17, 32, 300, 700].map((contextLength) => ({ contextLength }));
    const fx = buildKvFixture(gpu.device, decodeFixtureOptions(33, { sequences, ...fixture }));
    // Staged past the start of its buffer, as a cache's layer > 0 is.
    const fresh = newKv(fx, 77, 2 * gpu.device.limits.minStorageBufferOffsetAlignment);
    const { k, v, slots } = fresh;
    const rows = slots.length;
    const flush = new FlushStagedKvKernel(gpu.device, fx.layout);
    try {
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true, tuning });
      expect(kernel.writesKvFor(fx.entries)).toBe(true);
      const written = fx.chunkWords.map((w) => w.slice());
      writeKvRef(fx.layout, written, k, v, slots);
      const ref = pagedAttentionRef({ ...fx, chunkWords: written, q: fx.q, entries: fx.entries });
      for (const forceSplits of [undefined, 1, 3]) {
        fx.chunks.forEach((chunk, c) => gpu.device.queue.writeBuffer(chunk, 0, fx.chunkWords[c]! as Uint32Array<ArrayBuffer>));
        gpu.device.queue.writeBuffer(fx.outBuffer, 0, new Float32Array(fx.q.length).fill(OUT_SENTINEL));
        const encoder = gpu.device.createCommandEncoder();
        kernel.encode(encoder, {
          chunks: fx.chunks,
          blockTable: fx.blockTableBuffer,
          q: fx.qBuffer,
          out: fx.outBuffer,
          entries: fx.entries,
          scale: fx.scale,
          forceSplits,
          write: fresh.write,
        });
        gpu.device.queue.submit([encoder.finish()]);
        if (forceSplits === 3) expect(kernel.lastPlan?.splitsPerEntry).toEqual([1, 3, 3, 3, 3]);
        const out = await readF32(gpu.device, fx.outBuffer);
        const m = attentionMismatches(out, ref, fx.entries, fx.numQueryHeads * fx.layout.headDim, TOL);
        expect(m.count, `splits ${forceSplits}: ${m.count} mismatches (max |Δ| ${m.maxError}):\n${m.lines.join('\n')}`).toBe(0);
        await expectPool(fx, fx.chunkWords, `splits ${forceSplits}, before the flush`);
        const flushing = gpu.device.createCommandEncoder();
        const stagedLayerStride = layerStride(gpu.device, fx.layout, rows);
        flush.encode(flushing, { layers: [fx.chunks], slots: fresh.write.slots, rows, staged: fresh.write.staged, stagedOffset: fresh.write.stagedOffset!, stagedLayerStride });
        gpu.device.queue.submit([flushing.finish()]);
        await expectPool(fx, written, `splits ${forceSplits}, after the flush`);
      }
    } finally {
      flush.destroy();
      fx.destroy();
      fresh.destroy();
    }
  });
});

/** Every chunk of the fixture's pool holds exactly `expected`. */
async function expectPool(fx: KvFixture, expected: readonly Uint32Array[], what: string): Promise<void> {
  for (let c = 0; c < fx.chunks.length; c++) {
    const pool = new Uint32Array((await readF32(gpu.device, fx.chunks[c]!)).buffer);
    const differing = pool.findIndex((word, i) => word !== expected[c]![i]);
    expect(differing, `chunk ${c}, ${what}: first differing word`).toBe(-1);
  }
}

describe('decode storing its K/V: what it refuses', () => {
  it('a batch with a prefill entry, or the tuning turned off, gets writesKvFor false; encode with such a write, too small or aliasing what the decode writes, throws and records nothing', async () => {
    const fx = buildKvFixture(gpu.device, {
      numKvHeads: 2,
      groupSize: 2,
      headDim: 32,
      blockSize: 4,
      kvDtype: 'f16',
      sequences: [{ contextLength: 9 }, { contextLength: 12, numQueries: 3 }],
    });
    const fresh = newKv(fx, 5);
    const short = storageBuffer(new Float32Array(4));
    try {
      const options = { numQueryHeads: fx.numQueryHeads, rowStride: fx.rowStride, subgroups: true };
      const kernel = new PagedAttentionKernel(gpu.device, fx.layout, options);
      const decodes = fx.entries.slice(0, 1);
      expect(kernel.writesKvFor(decodes)).toBe(true);
      expect(kernel.writesKvFor(fx.entries)).toBe(false);
      const off = new PagedAttentionKernel(gpu.device, fx.layout, { ...options, tuning: { decodeWritesKv: false } });
      expect(off.writesKvFor(decodes)).toBe(false);
      const args = { chunks: fx.chunks, blockTable: fx.blockTableBuffer, q: fx.qBuffer, out: fx.outBuffer, scale: fx.scale };
      const write = fresh.write;
      const encoder = gpu.device.createCommandEncoder();
      expect(() => kernel.encode(encoder, { ...args, entries: fx.entries, write })).toThrow(InvalidArgumentError);
      expect(() => off.encode(encoder, { ...args, entries: decodes, write })).toThrow(InvalidArgumentError);
      expect(() => kernel.encode(encoder, { ...args, entries: decodes, write: { ...write, k: short } })).toThrow(/write\.k holds 16 bytes/);
      expect(() => kernel.encode(encoder, { ...args, entries: decodes, write: { ...write, v: fx.outBuffer } })).toThrow(/must not be out or a KV chunk/);
      expect(() => kernel.encode(encoder, { ...args, entries: decodes, write: { ...write, slots: fx.chunks[0]! } })).toThrow(/must not be out or a KV chunk/);
      expect(() => kernel.encode(encoder, { ...args, entries: decodes, write: { ...write, staged: short } })).toThrow(/write\.staged holds 16 bytes/);
      expect(() => kernel.encode(encoder, { ...args, entries: decodes, write: { ...write, stagedOffset: 4 } })).toThrow(/stagedOffset must be a non-negative multiple of/);
      expect(() => kernel.encode(encoder, { ...args, entries: decodes, write: { ...write, staged: write.k } })).toThrow(/write\.staged must be a buffer of its own/);
      expect(() => kernel.encode(encoder, { ...args, entries: decodes, write: { ...write, staged: fx.chunks[0]! } })).toThrow(/write\.staged must be a buffer of its own/);
      gpu.device.queue.submit([encoder.finish()]);
      const pool = new Uint32Array((await readF32(gpu.device, fx.chunks[0]!)).buffer);
      expect(pool.findIndex((word, i) => word !== fx.chunkWords[0]![i])).toBe(-1);
      expect(kernel.lastPlan).toBeUndefined();
    } finally {
      fx.destroy();
      fresh.destroy();
      short.destroy();
    }
  });
});
