// flush-staged-kv on the GPU against flushStagedKvRef, word for word: several layers per dispatch and
// more layers than one dispatch takes (so encode splits them), pools of one and of several chunks, a
// staged region starting past the buffer's start with a stride larger than its rows, padding slots
// and a slot past the pool skipped, every other word untouched. Bad arguments throw typed errors.
import { beforeAll, describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { layoutOf, rng, type Shape } from '../helpers/kv-kernel-shapes';
import { readBackWords, uploadWords } from '../../src/kernels/kv-bindings';
import { pipelineCount } from '../../src/kernels/pipeline-cache';
import { FlushStagedKvKernel, stagedKvRowBytes } from '../../src/kernels/flush-staged-kv';
import { flushStagedKvRef } from '../../src/kernels/flush-staged-kv.ref';
import { PADDING_SLOT } from '../../src/kernels/write-kv.ref';
import { InvalidArgumentError } from '../../src/errors';

failOnUncapturedGpuErrors();

let device: GPUDevice;
beforeAll(async () => {
  device = (await testGpu()).device;
});

function randomWords(random: () => number, n: number): Uint32Array {
  return Uint32Array.from({ length: n }, () => (random() * 2 ** 32) >>> 0);
}

const SHAPES: (Shape & { rows: number })[] = [
  { kvDtype: 'f16', headDim: 64, blockSize: 16, numKvHeads: 4, numBlocks: 22, blocksPerChunk: 6, rows: 13 },
  { kvDtype: 'f32', headDim: 8, blockSize: 8, numKvHeads: 2, numBlocks: 10, rows: 7 },
  { kvDtype: 'f16', headDim: 8, blockSize: 4, numKvHeads: 1, numBlocks: 9, blocksPerChunk: 4, rows: 5 },
];

describe('flush-staged-kv matches flushStagedKvRef', () => {
  for (const shape of SHAPES) {
    it(`${shape.kvDtype} headDim=${shape.headDim} blockSize=${shape.blockSize} heads=${shape.numKvHeads} chunks of ${shape.blocksPerChunk ?? shape.numBlocks} blocks, ${shape.rows} rows`, async () => {
      const random = rng(shape.headDim * 17 + shape.rows);
      const layout = layoutOf(shape);
      const kernel = new FlushStagedKvKernel(device, layout);
      const layers = 2 * kernel.layersPerDispatch + 1;
      const rows = shape.rows;
      const rowBytes = stagedKvRowBytes(layout);
      const alignment = device.limits.minStorageBufferOffsetAlignment;
      const offset = alignment;
      const stride = Math.ceil((rows * rowBytes + 32) / alignment) * alignment;
      // Distinct random slots; row 1 is padding and row 2 names a block past the pool.
      const all = Array.from({ length: layout.numBlocks * layout.blockSize }, (_, i) => i);
      for (let i = all.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [all[i], all[j]] = [all[j]!, all[i]!];
      }
      const slots = Uint32Array.from(all.slice(0, rows));
      slots[1] = PADDING_SLOT;
      slots[2] = layout.numBlocks * layout.blockSize + 1;
      const staged = randomWords(random, (offset + layers * stride) / 4);
      const pools = Array.from({ length: layers }, () => layout.chunkBytes.map((bytes) => randomWords(random, bytes / 4)));
      const buffers = pools.map((chunks) => chunks.map((w) => uploadWords(device, w, 'test-chunk')));
      const [stagedBuf, slotBuf] = [uploadWords(device, staged), uploadWords(device, slots)];
      try {
        const encoder = device.createCommandEncoder();
        kernel.encode(encoder, { layers: buffers, slots: slotBuf, rows, staged: stagedBuf, stagedOffset: offset, stagedLayerStride: stride });
        device.queue.submit([encoder.finish()]);
        for (let l = 0; l < layers; l++) {
          const start = (offset + l * stride) / 4;
          flushStagedKvRef(layout, pools[l]!, staged.subarray(start, start + (rows * rowBytes) / 4), slots);
          for (let c = 0; c < layout.numChunks; c++) {
            const got = await readBackWords(device, buffers[l]![c]!, layout.chunkBytes[c]!);
            expect(got.findIndex((w, i) => w !== pools[l]![c]![i]), `layer ${l} chunk ${c}: first mismatching word`).toBe(-1);
          }
        }
        // The same call again builds no pipeline.
        const pipelines = pipelineCount(device);
        const again = device.createCommandEncoder();
        kernel.encode(again, { layers: buffers, slots: slotBuf, rows, staged: stagedBuf, stagedOffset: offset, stagedLayerStride: stride });
        device.queue.submit([again.finish()]);
        expect(pipelineCount(device)).toBe(pipelines);
      } finally {
        kernel.destroy();
        [...buffers.flat(), stagedBuf, slotBuf].forEach((b) => b.destroy());
      }
    });
  }
});

describe('flush-staged-kv arguments', () => {
  const layout = layoutOf({ kvDtype: 'f16', headDim: 8, blockSize: 8, numKvHeads: 2, numBlocks: 12, blocksPerChunk: 4 });

  it('refuses bad strides, offsets, chunk lists and a short staged buffer, recording nothing', async () => {
    const kernel = new FlushStagedKvKernel(device, layout);
    const rows = 3;
    const rowBytes = stagedKvRowBytes(layout);
    const chunks = layout.chunkBytes.map((bytes) => device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE }));
    const slots = uploadWords(device, new Uint32Array([0, 9, 17]));
    const alignment = device.limits.minStorageBufferOffsetAlignment;
    const staged = device.createBuffer({ size: rows * rowBytes, usage: GPUBufferUsage.STORAGE });
    const ok = { layers: [chunks], slots, rows, staged, stagedOffset: 0, stagedLayerStride: Math.ceil((rows * rowBytes) / alignment) * alignment };
    const encoder = device.createCommandEncoder();
    try {
      expect(() => kernel.encode(encoder, { ...ok, stagedLayerStride: rows * rowBytes - 16 })).toThrow(/stride at least/);
      expect(() => kernel.encode(encoder, { ...ok, stagedOffset: 16 })).toThrow(new RegExp(`multiples of ${alignment} bytes`));
      expect(() => kernel.encode(encoder, { ...ok, layers: [chunks.slice(1)] })).toThrow(/expected 3 chunk buffer\(s\) per layer/);
      expect(() => kernel.encode(encoder, { ...ok, layers: [chunks, chunks] })).toThrow(InvalidArgumentError);
      expect(() => kernel.encode(encoder, { ...ok, rows: -1 })).toThrow(InvalidArgumentError);
      kernel.encode(encoder, { ...ok, rows: 0 });
      kernel.encode(encoder, { ...ok, layers: [] });
      const buffer = encoder.finish();
      device.queue.submit([buffer]);
      await device.queue.onSubmittedWorkDone();
    } finally {
      kernel.destroy();
      [...chunks, slots, staged].forEach((b) => b.destroy());
    }
  });
});
