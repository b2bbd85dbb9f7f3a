// copy-blocks on the GPU against copyBlocksRef, word for word. Invariants checked: pairs within one
// chunk and across chunks copy whole blocks (K and V, all heads) and leave every other word untouched;
// invalid pairs are skipped; checkCopyPairs rejects racing pair lists; repeated calls create no
// pipelines, buffers or bind groups.
import { beforeAll, describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import type { KvLayout } from '../../src/pool/kv-layout';
import { layoutOf, rng, type Shape } from '../helpers/kv-kernel-shapes';
import { CopyBlocksKernel, checkCopyPairs } from '../../src/kernels/copy-blocks';
import { copyBlocksRef } from '../../src/kernels/copy-blocks.ref';
import { readBackWords, uploadWords } from '../../src/kernels/kv-bindings';
import { pipelineCount } from '../../src/kernels/pipeline-cache';

failOnUncapturedGpuErrors();

let device: GPUDevice;
beforeAll(async () => {
  device = (await testGpu()).device;
});

function randomChunks(random: () => number, layout: KvLayout): { words: Uint32Array[]; buffers: GPUBuffer[] } {
  const words = layout.chunkBytes.map((bytes) => Uint32Array.from({ length: bytes / 4 }, () => (random() * 2 ** 32) >>> 0));
  return { words, buffers: words.map((w) => uploadWords(device, w, 'test-chunk')) };
}

/** `count` pairs: sources and destinations drawn without overlap from a shuffle of all blocks. */
function randomPairs(random: () => number, layout: KvLayout, count: number): Uint32Array {
  const ids = Array.from({ length: layout.numBlocks }, (_, i) => i);
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  const pairs = new Uint32Array(2 * count);
  for (let p = 0; p < count; p++) {
    pairs[2 * p] = ids[Math.floor(random() * (layout.numBlocks - count))]!; // sources may repeat
    pairs[2 * p + 1] = ids[layout.numBlocks - 1 - p]!;
  }
  return pairs;
}

async function copyAndCompare(layout: KvLayout, pairs: Uint32Array, seed: number, kernel = new CopyBlocksKernel(device, layout)): Promise<void> {
  const chunks = randomChunks(rng(seed), layout);
  const encoder = device.createCommandEncoder();
  kernel.encode(encoder, { chunks: chunks.buffers, pairs: uploadWords(device, pairs), numPairs: pairs.length / 2 });
  device.queue.submit([encoder.finish()]);
  copyBlocksRef(layout, chunks.words, pairs);
  for (let c = 0; c < layout.numChunks; c++) {
    const got = await readBackWords(device, chunks.buffers[c]!, layout.chunkBytes[c]);
    expect(got.findIndex((w, i) => w !== chunks.words[c]![i]), `chunk ${c} first mismatching word`).toBe(-1);
  }
}

describe('copy-blocks matches copyBlocksRef', () => {
  const shapes: Shape[] = [
    { kvDtype: 'f16', headDim: 64, blockSize: 16, numKvHeads: 4, numBlocks: 14, blocksPerChunk: 4 },
    { kvDtype: 'f32', headDim: 80, blockSize: 8, numKvHeads: 1, numBlocks: 20, blocksPerChunk: 7 },
    { kvDtype: 'f16', headDim: 8, blockSize: 1, numKvHeads: 4, numBlocks: 12 },
    { kvDtype: 'f32', headDim: 8, blockSize: 16, numKvHeads: 1, numBlocks: 9, blocksPerChunk: 3 },
  ];
  for (const shape of shapes) {
    it(`${shape.kvDtype} headDim=${shape.headDim} blockSize=${shape.blockSize} heads=${shape.numKvHeads} chunks of ${shape.blocksPerChunk ?? 'all'}`, async () => {
      const layout = layoutOf(shape);
      const random = rng(shape.numBlocks * 3 + shape.headDim);
      const pairs = randomPairs(random, layout, Math.floor(layout.numBlocks / 2));
      checkCopyPairs(layout, pairs);
      await copyAndCompare(layout, pairs, shape.numBlocks);
    });
  }

  const layout = layoutOf({ kvDtype: 'f16', headDim: 16, blockSize: 8, numKvHeads: 2, numBlocks: 12, blocksPerChunk: 4 });
  it('copies within one chunk', () => copyAndCompare(layout, Uint32Array.from([0, 3, 1, 2, 9, 10]), 21));
  it('copies across chunks, in both directions', () => copyAndCompare(layout, Uint32Array.from([0, 11, 10, 1, 5, 8, 6, 2]), 22));
  it('skips invalid pairs and copies nothing for no pairs', async () => {
    await copyAndCompare(layout, Uint32Array.from([4, 4, 12, 3, 3, 40, 7, 9]), 23);
    await copyAndCompare(layout, new Uint32Array(0), 24);
  });
  it('copies many pairs on a 2D grid', () => {
    const big = layoutOf({ kvDtype: 'f16', headDim: 8, blockSize: 1, numKvHeads: 1, numBlocks: 400, blocksPerChunk: 100 });
    const pairs = randomPairs(rng(25), big, 190);
    return copyAndCompare(big, pairs, 25, new CopyBlocksKernel(device, big, { maxWorkgroupsPerDimension: 3 }));
  });
});

describe('copy-blocks arguments and resources', () => {
  const layout = layoutOf({ kvDtype: 'f32', headDim: 8, blockSize: 4, numKvHeads: 1, numBlocks: 8, blocksPerChunk: 2 });

  it('checkCopyPairs rejects racing or malformed pair lists', () => {
    expect(() => checkCopyPairs(layout, [0, 1, 2, 1])).toThrow(/distinct/);
    expect(() => checkCopyPairs(layout, [0, 1, 1, 2])).toThrow(/both/);
    expect(() => checkCopyPairs(layout, [0, 8])).toThrow(/outside/);
    expect(() => checkCopyPairs(layout, [0])).toThrow(/even/);
    expect(() => checkCopyPairs(layout, [0, 1, 0, 2])).not.toThrow();
  });

  it('creates no pipeline, buffer or bind group on repeated calls', async () => {
    const chunks = randomChunks(rng(6), layout);
    const pairs = uploadWords(device, Uint32Array.from([0, 7, 1, 6, 2, 5]));
    const kernel = new CopyBlocksKernel(device, layout);
    const run = (numPairs: number): void => {
      const encoder = device.createCommandEncoder();
      kernel.encode(encoder, { chunks: chunks.buffers, pairs, numPairs });
      device.queue.submit([encoder.finish()]);
    };
    run(3);
    const pipelines = pipelineCount(device);
    const { createBuffer, createBindGroup } = device;
    let created = 0;
    device.createBuffer = (d) => (created++, createBuffer.call(device, d));
    device.createBindGroup = (d) => (created++, createBindGroup.call(device, d));
    try {
      for (let i = 0; i < 6; i++) run(i % 4);
    } finally {
      device.createBuffer = createBuffer;
      device.createBindGroup = createBindGroup;
    }
    await device.queue.onSubmittedWorkDone();
    expect(created).toBe(0);
    new CopyBlocksKernel(device, layout).destroy();
    expect(pipelineCount(device)).toBe(pipelines);
  });
});
