// write-kv on the GPU against writeKvRef, word for word. Invariants checked: every layout variant
// (f16/f32, head dims, block sizes, head counts, several chunks) writes exactly the reference words and
// leaves every other word untouched; offsets, token strides, padding slots, 2D grids and several encodes
// in one submit behave as documented; repeated calls create no pipelines.
import { beforeAll, describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import type { KvLayout } from '../../src/pool/kv-layout';
import { layoutOf, rng, type Shape } from '../helpers/kv-kernel-shapes';
import { readBackWords, uploadWords } from '../../src/kernels/kv-bindings';
import { pipelineCount } from '../../src/kernels/pipeline-cache';
import { WriteKvKernel } from '../../src/kernels/write-kv';
import { PADDING_SLOT, writeKvRef } from '../../src/kernels/write-kv.ref';

failOnUncapturedGpuErrors();

let device: GPUDevice;
beforeAll(async () => {
  device = (await testGpu()).device;
});

function randomWords(random: () => number, n: number): Uint32Array {
  const words = new Uint32Array(n);
  for (let i = 0; i < n; i++) words[i] = (random() * 2 ** 32) >>> 0;
  return words;
}

/** `n` distinct slots in random physical order. */
function randomSlots(random: () => number, layout: KvLayout, n: number): Uint32Array {
  const all = Array.from({ length: layout.numBlocks * layout.blockSize }, (_, i) => i);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return Uint32Array.from(all.slice(0, n));
}

function randomValues(random: () => number, n: number): Float32Array {
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = (random() - 0.5) * 2 ** Math.floor(random() * 12 - 6);
  return values;
}

/** Chunk buffers filled with random words, and their CPU copy. */
function randomChunks(random: () => number, layout: KvLayout): { words: Uint32Array[]; buffers: GPUBuffer[] } {
  const words = layout.chunkBytes.map((bytes) => randomWords(random, bytes / 4));
  return { words, buffers: words.map((w) => uploadWords(device, w, 'test-chunk')) };
}

async function expectChunksEqual(buffers: GPUBuffer[], expected: Uint32Array[]): Promise<void> {
  for (let c = 0; c < buffers.length; c++) {
    const got = await readBackWords(device, buffers[c]!, expected[c]!.byteLength);
    const mismatch = got.findIndex((w, i) => w !== expected[c]![i]);
    expect(mismatch, `chunk ${c} first mismatching word`).toBe(-1);
  }
}

function submit(record: (encoder: GPUCommandEncoder) => void): void {
  const encoder = device.createCommandEncoder();
  record(encoder);
  device.queue.submit([encoder.finish()]);
}

/** Buffers and bind groups `run` creates on the device. */
async function countCreations(run: () => void): Promise<{ buffers: number; bindGroups: number }> {
  const counts = { buffers: 0, bindGroups: 0 };
  const { createBuffer, createBindGroup } = device;
  device.createBuffer = (d) => (counts.buffers++, createBuffer.call(device, d));
  device.createBindGroup = (d) => (counts.bindGroups++, createBindGroup.call(device, d));
  try {
    run();
  } finally {
    device.createBuffer = createBuffer;
    device.createBindGroup = createBindGroup;
  }
  await device.queue.onSubmittedWorkDone();
  return counts;
}

const SHAPES: (Shape & { numTokens: number })[] = [
  { kvDtype: 'f16', headDim: 64, blockSize: 16, numKvHeads: 4, numBlocks: 22, blocksPerChunk: 6, numTokens: 300 },
  { kvDtype: 'f32', headDim: 80, blockSize: 8, numKvHeads: 1, numBlocks: 40, blocksPerChunk: 14, numTokens: 250 },
  { kvDtype: 'f16', headDim: 80, blockSize: 1, numKvHeads: 4, numBlocks: 24, blocksPerChunk: 8, numTokens: 24 },
  { kvDtype: 'f32', headDim: 8, blockSize: 16, numKvHeads: 4, numBlocks: 8, numTokens: 1 },
  { kvDtype: 'f16', headDim: 8, blockSize: 8, numKvHeads: 1, numBlocks: 8, blocksPerChunk: 3, numTokens: 1 },
  { kvDtype: 'f32', headDim: 64, blockSize: 1, numKvHeads: 1, numBlocks: 16, blocksPerChunk: 5, numTokens: 16 },
];

describe('write-kv matches writeKvRef', () => {
  for (const shape of SHAPES) {
    const name = `${shape.kvDtype} headDim=${shape.headDim} blockSize=${shape.blockSize} heads=${shape.numKvHeads} n=${shape.numTokens}`;
    it(name, async () => {
      const random = rng(shape.headDim * 31 + shape.blockSize * 7 + shape.numTokens);
      const layout = layoutOf(shape);
      const n = shape.numTokens;
      const rowElements = layout.numKvHeads * layout.headDim;
      const k = randomValues(random, n * rowElements);
      const v = randomValues(random, n * rowElements);
      const slots = randomSlots(random, layout, n);
      const chunks = randomChunks(random, layout);
      const kernel = new WriteKvKernel(device, layout);
      const [kBuf, vBuf, slotBuf] = [uploadWords(device, k), uploadWords(device, v), uploadWords(device, slots)];
      submit((e) => kernel.encode(e, { chunks: chunks.buffers, k: kBuf, v: vBuf, slots: slotBuf, numTokens: n }));
      writeKvRef(layout, chunks.words, k, v, slots);
      await expectChunksEqual(chunks.buffers, chunks.words);
      if (layout.numChunks > 1 && n > 1) {
        const touched = new Set(Array.from(slots, (s) => Math.floor(s / layout.blockSize / layout.blocksPerChunk)));
        expect(touched.size).toBeGreaterThan(1);
      }
    });
  }
});

describe('write-kv arguments', () => {
  const layout = layoutOf({ kvDtype: 'f16', headDim: 8, blockSize: 8, numKvHeads: 2, numBlocks: 12, blocksPerChunk: 4 });
  const rowElements = layout.numKvHeads * layout.headDim;

  it('writes nothing for numTokens = 0', async () => {
    const random = rng(1);
    const chunks = randomChunks(random, layout);
    const kernel = new WriteKvKernel(device, layout);
    const empty = uploadWords(device, new Uint32Array(4));
    submit((e) => kernel.encode(e, { chunks: chunks.buffers, k: empty, v: empty, slots: empty, numTokens: 0 }));
    await expectChunksEqual(chunks.buffers, chunks.words);
  });

  it('reads K and V from one fused buffer with offsets and a token stride; skips padding slots', async () => {
    const random = rng(2);
    const n = 40;
    const stride = 3 * rowElements + 8; // [q | k | v | pad] per token
    const fused = randomValues(random, 5 + n * stride);
    const slots = randomSlots(random, layout, n);
    slots[3] = PADDING_SLOT;
    slots[17] = layout.numBlocks * layout.blockSize + 2; // past the last block: skipped
    const chunks = randomChunks(random, layout);
    const kernel = new WriteKvKernel(device, layout);
    const options = { kOffsetElements: 5 + rowElements, vOffsetElements: 5 + 2 * rowElements, tokenStrideElements: stride };
    const [fusedBuf, slotBuf] = [uploadWords(device, fused), uploadWords(device, slots)];
    submit((e) => kernel.encode(e, { chunks: chunks.buffers, k: fusedBuf, v: fusedBuf, slots: slotBuf, numTokens: n, ...options }));
    writeKvRef(layout, chunks.words, fused, fused, slots, options);
    await expectChunksEqual(chunks.buffers, chunks.words);
  });

  it('keeps each encode its own parameters when several share one submit, on a 2D grid', async () => {
    const random = rng(3);
    const n = 90;
    const k = randomValues(random, n * rowElements);
    const v = randomValues(random, n * rowElements);
    const slots = randomSlots(random, layout, n);
    const chunks = randomChunks(random, layout);
    const kernel = new WriteKvKernel(device, layout, { maxWorkgroupsPerDimension: 3 });
    const [kBuf, vBuf] = [uploadWords(device, k), uploadWords(device, v)];
    const parts = [0, 10, 11, 50, 90];
    submit((e) => {
      const pass = e.beginComputePass();
      for (let p = 0; p + 1 < parts.length; p++) {
        const [from, to] = [parts[p]!, parts[p + 1]!];
        const part = uploadWords(device, slots.slice(from, to));
        kernel.encode(pass, { chunks: chunks.buffers, k: kBuf, v: vBuf, slots: part, numTokens: to - from, kvOffsetElements: from * rowElements });
      }
      pass.end();
    });
    writeKvRef(layout, chunks.words, k, v, slots);
    await expectChunksEqual(chunks.buffers, chunks.words);
  });

  it('creates no pipeline, buffer or bind group on repeated calls, alternating layers included', async () => {
    const random = rng(4);
    const chunks = randomChunks(random, layout);
    const otherLayer = randomChunks(random, layout);
    const kernel = new WriteKvKernel(device, layout);
    const k = uploadWords(device, randomValues(random, 8 * rowElements));
    const slots = uploadWords(device, randomSlots(random, layout, 8));
    const args = { chunks: chunks.buffers, k, v: k, slots, numTokens: 8 };
    submit((e) => kernel.encode(e, args));
    const first = await countCreations(() => submit((e) => kernel.encode(e, { ...args, chunks: otherLayer.buffers })));
    expect(first).toEqual({ buffers: 0, bindGroups: 1 });
    const pipelines = pipelineCount(device);
    const created = await countCreations(() => {
      for (let i = 0; i < 6; i++) submit((e) => kernel.encode(e, { ...args, chunks: (i % 2 ? otherLayer : chunks).buffers, numTokens: 1 + i }));
    });
    expect(created).toEqual({ buffers: 0, bindGroups: 0 });
    new WriteKvKernel(device, layout).destroy();
    expect(pipelineCount(device)).toBe(pipelines);
  });

  it('rejects malformed arguments before encoding', () => {
    const kernel = new WriteKvKernel(device, layout);
    const small = uploadWords(device, new Uint32Array(4));
    const chunks = layout.chunkBytes.map((b) => uploadWords(device, new Uint32Array(b / 4)));
    const encoder = device.createCommandEncoder();
    expect(() => kernel.encode(encoder, { chunks: chunks.slice(1), k: small, v: small, slots: small, numTokens: 1 })).toThrow(/chunk buffer/);
    expect(() => kernel.encode(encoder, { chunks, k: small, v: small, slots: small, numTokens: 1 })).toThrow(/k has 16 bytes/);
    expect(() => kernel.encode(encoder, { chunks, k: small, v: small, slots: small, numTokens: 1.5 })).toThrow(/numTokens/);
    encoder.finish();
  });
});
