// A decode that stages its K/V (decodeWritesKv): each layer's decode attends over the new token's K/V
// and stages it, and a flush recorded into the same encoder stores it into the pool — right after the
// decode of a flush group's last layer, before anything else of a staged layer is recorded into that
// encoder, and at the latest when the encoder is finished. Checked against the CPU reference over the
// logical K/V (outputs within the attention tolerance, and the pool read back exactly): a staged layer
// attended again, or staged again, in the same encoder; more layers than one flush dispatch takes, in
// the caller's step pass, and in reverse order (flushes of runs that are not consecutive); a group
// flush that throws after its decode (the decode stays noted, its rows are stored at finish); two encoders recorded side by side and submitted in the reverse order; a
// batch of every sequence the cache can hold (the staging, allocated with the cache, holds a row per
// sequence; recording makes no staging buffer); an encoder recorded and dropped. The staging's size in
// stats(), none without decodeWritesKv, and a staging buffer the device refuses (a typed error from
// create).
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import type { PagedKVCacheOptions } from '../../src/cache/config';
import { GpuValidationError } from '../../src/errors';
import { flushLayersPerDispatch, stagedLayerStride } from '../../src/kernels/flush-staged-kv';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { readF32 } from '../helpers/kv-fixture';
import { expectClose, LogicalKv, values } from '../helpers/logical-kv';
import { countPasses } from '../helpers/count-passes';

failOnUncapturedGpuErrors();

const LAYERS = 3, KV_HEADS = 2, Q_HEADS = 4, DIM = 16, BLOCK = 4;
const KV_ROW = KV_HEADS * DIM, Q_ROW = Q_HEADS * DIM;
const ATOL = 2e-5, RTOL = 1e-4;

let device: GPUDevice;
let cache: PagedKVCache;
const buffers: GPUBuffer[] = [];
const liveIds: number[] = [];

beforeAll(async () => {
  device = (await testGpu()).device;
  cache = await PagedKVCache.create(device, {
    numLayers: LAYERS, numKvHeads: KV_HEADS, headDim: DIM, numQueryHeads: Q_HEADS, blockSize: BLOCK, numBlocks: 64, decodeWritesKv: true,
  });
});

afterEach(() => {
  for (const b of buffers.splice(0)) b.destroy();
  for (const id of liveIds.splice(0)) cache.free(id);
  cache.checkInvariants();
});

function storage(data: Float32Array<ArrayBuffer>): GPUBuffer {
  const b = device.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
  device.queue.writeBuffer(b, 0, data);
  buffers.push(b);
  return b;
}

/** Sequences with written prompts of the given lengths, and their logical K/V per layer. */
async function sequences(lengths: number[], seed: number): Promise<{ ids: number[]; logical: LogicalKv[][] }> {
  const ids: number[] = [];
  const logical: LogicalKv[][] = [];
  for (const [s, n] of lengths.entries()) {
    const id = cache.createSequence({ tokens: Array.from({ length: n }, (_, i) => seed * 1000 + s * 100 + i) }).id;
    const perLayer = Array.from({ length: cache.layout.numLayers }, () => new LogicalKv(KV_HEADS, DIM));
    for (let l = 0; l < cache.layout.numLayers; l++) {
      const k = values(n * KV_ROW, seed + 10 * s + l), v = values(n * KV_ROW, seed + 10 * s + l + 500);
      await cache.writeKV(l, id, 0, k, v);
      for (let i = 0; i < n; i++) perLayer[l]!.set(i, k.subarray(i * KV_ROW, (i + 1) * KV_ROW), v.subarray(i * KV_ROW, (i + 1) * KV_ROW));
    }
    ids.push(id);
    liveIds.push(id);
    logical.push(perLayer);
  }
  return { ids, logical };
}

interface Recorded {
  out: GPUBuffer;
  expected: Float64Array[];
}

/**
 * Records layer `layer` of `batch` into `encoder`: with new K/V (seeded) when `withKv`, else attention
 * alone; the expected outputs are the reference at the time of recording.
 */
function record(
  encoder: GPUCommandEncoder,
  batch: ReturnType<PagedKVCache['prepareAttention']>,
  ids: number[],
  logical: LogicalKv[][],
  layer: number,
  seed: number,
  withKv: boolean,
  pass?: GPUComputePassEncoder,
): Recorded {
  const rows = ids.length;
  const q = values(rows * Q_ROW, seed + 7);
  const out = storage(new Float32Array(rows * Q_ROW));
  if (withKv) {
    const k = values(rows * KV_ROW, seed), v = values(rows * KV_ROW, seed + 3);
    cache.encodeAttention(encoder, { layer, entries: batch, q: storage(q), out, k: storage(k), v: storage(v), pass });
    ids.forEach((id, r) => logical[r]![layer]!.set(cache.length(id) - 1, k.subarray(r * KV_ROW, (r + 1) * KV_ROW), v.subarray(r * KV_ROW, (r + 1) * KV_ROW)));
  } else {
    cache.encodeAttention(encoder, { layer, entries: batch, q: storage(q), out, pass });
  }
  const expected = ids.map((id, r) => logical[r]![layer]!.attend(q.subarray(r * Q_ROW, (r + 1) * Q_ROW), cache.length(id) - 1, Q_HEADS));
  return { out, expected };
}

async function expectOutputs(recorded: Recorded[]): Promise<void> {
  for (const { out, expected } of recorded) {
    const got = await readF32(device, out);
    expected.forEach((want, r) => expectClose(got.subarray(r * Q_ROW, (r + 1) * Q_ROW), want, ATOL, RTOL));
  }
}

/** The pool holds exactly the logical K/V of every sequence in every layer (f16-rounded by both). */
async function expectPool(ids: number[], logical: LogicalKv[][]): Promise<void> {
  for (const [r, id] of ids.entries()) {
    for (let l = 0; l < cache.layout.numLayers; l++) {
      const stored = await cache.readKV(l, id);
      const want = logical[r]![l]!;
      for (let h = 0; h < KV_HEADS; h++) {
        for (let pos = 0; pos < cache.length(id); pos++) {
          for (let d = 0; d < DIM; d++) {
            expect(stored.k[(pos * KV_HEADS + h) * DIM + d], `seq ${r} layer ${l} head ${h} pos ${pos}`).toBe(want.k[h]![pos * DIM + d]);
            expect(stored.v[(pos * KV_HEADS + h) * DIM + d], `seq ${r} layer ${l} head ${h} pos ${pos}`).toBe(want.v[h]![pos * DIM + d]);
          }
        }
      }
    }
  }
}

/** Counts the dispatches recorded in compute passes `encoder` begins from now on. */
const countDispatches = (encoder: GPUCommandEncoder): (() => number) => countPasses(encoder).dispatches;

/** A fresh staging cache of `layers` layers (the test's shape, with `options`) for `body`, destroyed after it. */
async function withCache(layers: number, body: () => Promise<void>, options: Partial<PagedKVCacheOptions> = {}): Promise<void> {
  const shared = cache;
  cache = await PagedKVCache.create(device, {
    numLayers: layers, numKvHeads: KV_HEADS, headDim: DIM, numQueryHeads: Q_HEADS, blockSize: BLOCK, numBlocks: 64, decodeWritesKv: true, ...options,
  });
  try {
    await body();
  } finally {
    liveIds.splice(0);
    cache.destroy();
    cache = shared;
  }
}

function step(ids: number[], token: number): ReturnType<PagedKVCache['prepareAttention']> {
  ids.forEach((id, r) => cache.appendTokens(id, [token + r]));
  return cache.prepareAttention(ids.map((seqId) => ({ seqId })), { writeKV: true });
}

describe('staged K/V', () => {
  it('a staged layer attended again, and staged again, in the same encoder reads the staged token (flushed first)', async () => {
    const { ids, logical } = await sequences([5, 9], 1);
    const batch = step(ids, 7000);
    const encoder = device.createCommandEncoder();
    const passes = countPasses(encoder);
    const recorded: Recorded[] = [];
    // All layers form one flush group: all but the last staged, one decode each, nothing flushed yet.
    for (let l = 0; l < LAYERS - 1; l++) recorded.push(record(encoder, batch, ids, logical, l, 100 + l, true));
    expect(passes.dispatches()).toBe(LAYERS - 1);
    // Layer 1 again without K/V: the staged layers are flushed first (one dispatch), then the decode.
    recorded.push(record(encoder, batch, ids, logical, 1, 200, false));
    expect(passes.dispatches()).toBe(LAYERS + 1);
    // The group's last layer staged: its decode, then its flush in the same pass.
    recorded.push(record(encoder, batch, ids, logical, LAYERS - 1, 250, true));
    expect(passes.dispatches()).toBe(LAYERS + 3);
    // Layer 0 staged, then staged again with other K/V (flushed first): it replaces the position's K/V
    // for the rest of the step; then attended without K/V (flushed first again).
    recorded.push(record(encoder, batch, ids, logical, 0, 300, true));
    recorded.push(record(encoder, batch, ids, logical, 0, 350, true));
    expect(passes.dispatches()).toBe(LAYERS + 6);
    recorded.push(record(encoder, batch, ids, logical, 0, 400, false));
    expect(passes.dispatches()).toBe(LAYERS + 8);
    const opened = passes.passes();
    await cache.submit([encoder.finish()]);
    expect(passes.passes()).toBe(opened); // nothing left to flush at finish
    await expectOutputs(recorded);
    await expectPool(ids, logical);
  });

  it('more layers than one flush dispatch takes, in the caller\'s step pass: each flush group is flushed after its last decode', async () => {
    const perDispatch = flushLayersPerDispatch(device, cache.layout);
    const layers = 2 * perDispatch + 1;
    await withCache(layers, async () => {
      // As even as the limit allows: three groups of ceil(layers / 3) layers, the last one shorter.
      const groups = Math.ceil(layers / perDispatch);
      const { ids, logical } = await sequences([3, 10, 1], 4);
      const recorded: Recorded[] = [];
      for (let round = 0; round < 2; round++) {
        const batch = step(ids, 7050 + 10 * round);
        const encoder = device.createCommandEncoder();
        const passes = countPasses(encoder);
        const pass = encoder.beginComputePass();
        for (let l = 0; l < layers; l++) recorded.push(record(encoder, batch, ids, logical, l, 150 + 100 * round + l, true, pass));
        pass.end();
        expect(passes.dispatches()).toBe(layers + groups);
        await cache.submit([encoder.finish()]);
        expect(passes.passes()).toBe(1); // the step's pass: nothing flushed at finish
      }
      await expectOutputs(recorded);
      await expectPool(ids, logical);
    });
  });

  it('layers staged in reverse order (the group\'s last first) are stored, whichever flush takes them', async () => {
    const perDispatch = flushLayersPerDispatch(device, cache.layout);
    const layers = perDispatch + 2; // two groups
    await withCache(layers, async () => {
      const { ids, logical } = await sequences([7, 2], 5);
      const recorded: Recorded[] = [];
      for (let round = 0; round < 2; round++) {
        const batch = step(ids, 7080 + 10 * round);
        const encoder = device.createCommandEncoder();
        for (let l = layers - 1; l >= 0; l--) recorded.push(record(encoder, batch, ids, logical, l, 160 + 100 * round + l, true));
        await cache.submit([encoder.finish()]);
      }
      await expectOutputs(recorded);
      await expectPool(ids, logical);
    });
  });

  it('a group flush that throws after its decode leaves that decode noted (and pinned); finish() stores the rows', async () => {
    const { ids, logical } = await sequences([6, 3], 8);
    const batch = step(ids, 7900);
    const encoder = device.createCommandEncoder();
    const recorded: Recorded[] = [];
    for (let l = 0; l < LAYERS - 1; l++) recorded.push(record(encoder, batch, ids, logical, l, 900 + l, true));
    const last = LAYERS - 1;
    const createBindGroup = device.createBindGroup;
    device.createBindGroup = function (this: GPUDevice, descriptor: GPUBindGroupDescriptor) {
      if (descriptor.label?.startsWith('flush-staged-kv')) {
        device.createBindGroup = createBindGroup;
        throw new Error('injected: the flush cannot be recorded');
      }
      return createBindGroup.call(this, descriptor);
    };
    try {
      expect(() => record(encoder, batch, ids, logical, last, 950, true)).toThrow(/injected/);
    } finally {
      device.createBindGroup = createBindGroup;
    }
    // The decode was recorded before the flush threw: its K/V (record's values for seed 950) reach the pool.
    const k = values(ids.length * KV_ROW, 950), v = values(ids.length * KV_ROW, 953);
    ids.forEach((id, r) => logical[r]![last]!.set(cache.length(id) - 1, k.subarray(r * KV_ROW, (r + 1) * KV_ROW), v.subarray(r * KV_ROW, (r + 1) * KV_ROW)));
    await cache.submit([encoder.finish()]);
    for (const id of ids) expect(cache.writtenLength(id, last)).toBe(cache.length(id));
    await expectOutputs(recorded);
    await expectPool(ids, logical);
  });

  it('two encoders recorded side by side and submitted in the reverse order each store their own batch', async () => {
    const first = await sequences([6, 3], 2);
    const second = await sequences([11], 3);
    const a = step(first.ids, 7100);
    const b = step(second.ids, 7200);
    const ea = device.createCommandEncoder(), eb = device.createCommandEncoder();
    const recorded: Recorded[] = [];
    for (let l = 0; l < LAYERS; l++) {
      recorded.push(record(ea, a, first.ids, first.logical, l, 500 + l, true));
      recorded.push(record(eb, b, second.ids, second.logical, l, 600 + l, true));
    }
    const [ca, cb] = [ea.finish(), eb.finish()];
    await cache.submit([cb]);
    await cache.submit([ca]);
    await expectOutputs(recorded);
    await expectPool(first.ids, first.logical);
    await expectPool(second.ids, second.logical);
  });

  it('the staging holds a row per sequence, allocated with the cache: a batch of every sequence stages, and recording makes no staging buffer', async () => {
    const maxSequences = 4;
    await withCache(LAYERS, async () => {
      expect(cache.stats().stagingBytes).toBe(LAYERS * stagedLayerStride(device, cache.layout, maxSequences));
      const one = await sequences([4], 6);
      const many = await sequences([5, 6, 7], 7);
      const all = { ids: [...one.ids, ...many.ids], logical: [...one.logical, ...many.logical] };
      const recorded: Recorded[] = [];
      const created: string[] = [];
      const createBuffer = device.createBuffer;
      device.createBuffer = function (this: GPUDevice, descriptor: GPUBufferDescriptor) {
        created.push(descriptor.label ?? '');
        return createBuffer.call(this, descriptor);
      };
      try {
        // Every sequence the cache can hold in one batch, then one alone: one decode per layer and a flush after the last.
        for (const [n, { ids, logical }] of [all, one].entries()) {
          const batch = step(ids, 7300 + 100 * n);
          const encoder = device.createCommandEncoder();
          const dispatches = countDispatches(encoder);
          for (let l = 0; l < LAYERS; l++) recorded.push(record(encoder, batch, ids, logical, l, 700 + 100 * n + l, true));
          expect(dispatches()).toBe(LAYERS + 1);
          await cache.submit([encoder.finish()]);
        }
        // The cache's upload rings fill during the first steps; the staging is never made while recording.
        expect(created).not.toContain('staged-kv');
        expect(created).toContain('batch-slots'); // the count saw the cache's own buffers
      } finally {
        device.createBuffer = createBuffer;
      }
      await expectOutputs(recorded);
      await expectPool(all.ids, all.logical);
      // An encoder recorded with staged K/V and dropped: the next step of other sequences stages and stores its own.
      const dropped = device.createCommandEncoder();
      const b5 = step(one.ids, 7600);
      for (let l = 0; l < LAYERS; l++) record(dropped, b5, one.ids, one.logical, l, 1000 + l, true);
      const b6 = step(many.ids, 7700);
      const e6 = device.createCommandEncoder();
      const later: Recorded[] = [];
      for (let l = 0; l < LAYERS; l++) later.push(record(e6, b6, many.ids, many.logical, l, 1100 + l, true));
      await cache.submit([e6.finish()]);
      await expectOutputs(later);
      await expectPool(many.ids, many.logical);
    }, { maxSequences });
  });

  it('without decodeWritesKv the cache allocates no staging', async () => {
    await withCache(LAYERS, async () => expect(cache.stats().stagingBytes).toBe(0), { decodeWritesKv: false });
  });

  it('a staging buffer the device refuses fails create with a typed error naming decodeWritesKv, nothing left uncaptured', async () => {
    const createBuffer = device.createBuffer;
    device.createBuffer = function (this: GPUDevice, descriptor: GPUBufferDescriptor) {
      // Over the size limit: a validation error, as an out-of-memory one would be an error of the same scope.
      const refused = descriptor.label === 'staged-kv' ? { ...descriptor, size: this.limits.maxBufferSize + 4 } : descriptor;
      return createBuffer.call(this, refused);
    };
    try {
      const created = PagedKVCache.create(device, {
        numLayers: LAYERS, numKvHeads: KV_HEADS, headDim: DIM, numQueryHeads: Q_HEADS, blockSize: BLOCK, numBlocks: 64, decodeWritesKv: true,
      });
      await expect(created).rejects.toBeInstanceOf(GpuValidationError);
      await expect(created).rejects.toThrow(/staging buffer \(decodeWritesKv/);
    } finally {
      device.createBuffer = createBuffer;
    }
  });
});
