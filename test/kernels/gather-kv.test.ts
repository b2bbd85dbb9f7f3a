// gather-kv on the GPU against gatherKvRef, and the write -> gather round trip. Invariants checked:
// gathered words equal the reference bit for bit (f16 NaNs only need to stay NaN); invalid block ids
// give zeros; a round trip returns the input rounded to f16 (f16 caches) or unchanged (f32 caches);
// repeated calls create no pipelines, buffers or bind groups.
import { beforeAll, describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import type { KvLayout } from '../../src/pool/kv-layout';
import { layoutOf, rng, type Shape } from '../helpers/kv-kernel-shapes';
import { roundToF16 } from '../../src/kernels/f16';
import { GatherKvKernel, gatherKvToHost } from '../../src/kernels/gather-kv';
import { gatherKvRef } from '../../src/kernels/gather-kv.ref';
import { readBackWords, uploadWords } from '../../src/kernels/kv-bindings';
import { pipelineCount } from '../../src/kernels/pipeline-cache';
import { WriteKvKernel } from '../../src/kernels/write-kv';

failOnUncapturedGpuErrors();

let device: GPUDevice;
beforeAll(async () => {
  device = (await testGpu()).device;
});

function shuffled(random: () => number, n: number): Uint32Array {
  const ids = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  return ids;
}

function randomChunks(random: () => number, layout: KvLayout): { words: Uint32Array[]; buffers: GPUBuffer[] } {
  const words = layout.chunkBytes.map((bytes) => Uint32Array.from({ length: bytes / 4 }, () => (random() * 2 ** 32) >>> 0));
  return { words, buffers: words.map((w) => uploadWords(device, w, 'test-chunk')) };
}

/** Index of the first element whose bits differ (both NaN counts as equal), or -1. */
function firstDifference(got: Float32Array, want: Float32Array): number {
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  if (got.length !== want.length) return Math.min(got.length, want.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) return i;
  }
  return -1;
}

const SHAPES: (Shape & { length: number })[] = [
  { kvDtype: 'f16', headDim: 64, blockSize: 16, numKvHeads: 4, numBlocks: 12, blocksPerChunk: 4, length: 181 },
  { kvDtype: 'f32', headDim: 80, blockSize: 8, numKvHeads: 1, numBlocks: 30, blocksPerChunk: 8, length: 233 },
  { kvDtype: 'f16', headDim: 8, blockSize: 1, numKvHeads: 4, numBlocks: 20, blocksPerChunk: 6, length: 20 },
  { kvDtype: 'f32', headDim: 8, blockSize: 16, numKvHeads: 4, numBlocks: 4, length: 1 },
];

describe('gather-kv matches gatherKvRef', () => {
  for (const shape of SHAPES) {
    it(`${shape.kvDtype} headDim=${shape.headDim} blockSize=${shape.blockSize} heads=${shape.numKvHeads} length=${shape.length}`, async () => {
      const random = rng(shape.length * 13 + shape.headDim);
      const layout = layoutOf(shape);
      const chunks = randomChunks(random, layout);
      const blocks = shuffled(random, layout.numBlocks).subarray(0, Math.ceil(shape.length / layout.blockSize));
      const kernel = new GatherKvKernel(device, layout);
      const got = await gatherKvToHost(kernel, chunks.buffers, blocks, shape.length);
      const want = gatherKvRef(layout, chunks.words, blocks, shape.length);
      expect(firstDifference(got.k, want.k)).toBe(-1);
      expect(firstDifference(got.v, want.v)).toBe(-1);
    });
  }

  it('honours table and output offsets, yields zeros for invalid blocks, writes nothing for length 0', async () => {
    const random = rng(7);
    const layout = layoutOf({ kvDtype: 'f16', headDim: 16, blockSize: 4, numKvHeads: 2, numBlocks: 10, blocksPerChunk: 3 });
    const chunks = randomChunks(random, layout);
    const length = 14;
    const table = Uint32Array.from([9, 9, 2, 7, layout.numBlocks + 5, 0, 9]); // sequence starts at element 2
    const rowElements = layout.numKvHeads * layout.headDim;
    const outOffset = 3 * rowElements + 4;
    const sentinel = new Float32Array(outOffset + length * rowElements + 8).fill(-7);
    const [tableBuf, kOut, vOut] = [uploadWords(device, table), uploadWords(device, sentinel), uploadWords(device, sentinel)];
    const kernel = new GatherKvKernel(device, layout);
    const encoder = device.createCommandEncoder();
    kernel.encode(encoder, { chunks: chunks.buffers, blockTable: tableBuf, tableOffset: 2, length, k: kOut, v: vOut, outOffsetElements: outOffset });
    kernel.encode(encoder, { chunks: chunks.buffers, blockTable: tableBuf, length: 0, k: kOut, v: vOut });
    device.queue.submit([encoder.finish()]);
    const want = gatherKvRef(layout, chunks.words, table.subarray(2), length);
    expect(want.k.subarray(2 * layout.blockSize * rowElements, 3 * layout.blockSize * rowElements).every((x) => x === 0)).toBe(true);
    for (const [buffer, expected] of [[kOut, want.k], [vOut, want.v]] as const) {
      const got = new Float32Array((await readBackWords(device, buffer, sentinel.byteLength)).buffer);
      expect(got.subarray(0, outOffset).every((x) => x === -7)).toBe(true);
      expect(got.subarray(outOffset + expected.length).every((x) => x === -7)).toBe(true);
      expect(firstDifference(got.subarray(outOffset, outOffset + expected.length), expected)).toBe(-1);
    }
  });
});

describe('write-kv then gather-kv round trip', () => {
  for (const kvDtype of ['f16', 'f32'] as const) {
    it(`${kvDtype}: returns the input ${kvDtype === 'f16' ? 'rounded to f16' : 'unchanged'} across chunks`, async () => {
      const random = rng(kvDtype === 'f16' ? 11 : 12);
      const layout = layoutOf({ kvDtype, headDim: 64, blockSize: 8, numKvHeads: 2, numBlocks: 16, blocksPerChunk: 5 });
      const length = 101;
      const rowElements = layout.numKvHeads * layout.headDim;
      const k = Float32Array.from({ length: length * rowElements }, () => (random() - 0.5) * 10);
      const v = Float32Array.from({ length: length * rowElements }, () => (random() - 0.5) * 1e-3);
      const blocks = shuffled(random, layout.numBlocks).subarray(0, Math.ceil(length / layout.blockSize));
      const slots = Uint32Array.from({ length }, (_, t) => blocks[Math.floor(t / layout.blockSize)]! * layout.blockSize + (t % layout.blockSize));
      const chunks = layout.chunkBytes.map((bytes) => uploadWords(device, new Uint32Array(bytes / 4)));
      const writer = new WriteKvKernel(device, layout);
      const encoder = device.createCommandEncoder();
      writer.encode(encoder, { chunks, k: uploadWords(device, k), v: uploadWords(device, v), slots: uploadWords(device, slots), numTokens: length });
      device.queue.submit([encoder.finish()]);
      const got = await gatherKvToHost(new GatherKvKernel(device, layout), chunks, blocks, length);
      const expected = kvDtype === 'f16' ? { k: roundToF16(k), v: roundToF16(v) } : { k, v };
      expect(firstDifference(got.k, expected.k)).toBe(-1);
      expect(firstDifference(got.v, expected.v)).toBe(-1);
      expect((await gatherKvToHost(new GatherKvKernel(device, layout), chunks, blocks, 0)).k.length).toBe(0);
    });
  }
});

describe('gather-kv resources', () => {
  const layout = layoutOf({ kvDtype: 'f16', headDim: 8, blockSize: 4, numKvHeads: 1, numBlocks: 8, blocksPerChunk: 3 });

  it('creates no pipeline, buffer or bind group on repeated calls', async () => {
    const random = rng(5);
    const chunks = randomChunks(random, layout);
    const table = uploadWords(device, shuffled(random, layout.numBlocks));
    const [k, v] = [0, 1].map(() => uploadWords(device, new Float32Array(layout.numBlocks * layout.blockSize * layout.headDim)));
    const kernel = new GatherKvKernel(device, layout);
    const run = (length: number): void => {
      const encoder = device.createCommandEncoder();
      kernel.encode(encoder, { chunks: chunks.buffers, blockTable: table, length, k: k!, v: v! });
      device.queue.submit([encoder.finish()]);
    };
    run(5);
    const pipelines = pipelineCount(device);
    const { createBuffer, createBindGroup } = device;
    let created = 0;
    device.createBuffer = (d) => (created++, createBuffer.call(device, d));
    device.createBindGroup = (d) => (created++, createBindGroup.call(device, d));
    try {
      for (let length = 1; length < 8; length++) run(length * 3);
    } finally {
      device.createBuffer = createBuffer;
      device.createBindGroup = createBindGroup;
    }
    await device.queue.onSubmittedWorkDone();
    expect(created).toBe(0);
    expect(pipelineCount(device)).toBe(pipelines);
  });

  it('rejects one buffer for both outputs', () => {
    const kernel = new GatherKvKernel(device, layout);
    const out = uploadWords(device, new Uint32Array(64));
    const chunks = layout.chunkBytes.map((b) => uploadWords(device, new Uint32Array(b / 4)));
    expect(() => kernel.encode(device.createCommandEncoder(), { chunks, blockTable: out, length: 1, k: out, v: out })).toThrow(/distinct/);
  });
});
