// Exceptions thrown between two steps of an operation, inside its critical section: a GPU call that
// throws while a write, a copy-on-write append, an attention or an encodeAttention is being recorded
// (injected through a device wrapper), and prefix-cache hooks that throw while the table evicts or
// releases blocks. Whatever was done before the throw, the table must stay consistent (invariants,
// block accounting), lose no block (freeing everything frees every block), keep no pin, never expose K/V
// a sequence does not hold (positions whose copy never happened are forgotten, not shown stale), and
// the cache must keep working once the fault is gone.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { InvalidArgumentError } from '../../src/errors';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { InstrumentedDevice } from './helpers/instrumented-device';
import { queryRows } from './helpers/kv-content';
import { uniqueTokens } from './helpers/prompts';
import { SequenceModel } from './helpers/sequence-model';

failOnUncapturedGpuErrors();

const heads = { numKvHeads: 1, numQueryHeads: 2, headDim: 8 } as const;
const options = { ...heads, numLayers: 2, blockSize: 4, numBlocks: 12 } as const;
const modelShape = { ...heads, numLayers: 2, blockSize: 4 };
const Q_ROW = heads.numQueryHeads * heads.headDim;

let gpu: InstrumentedDevice;
beforeAll(async () => {
  gpu = new InstrumentedDevice((await testGpu()).device);
});
afterEach(() => gpu.reset());

async function written(cache: PagedKVCache, tokens: number[], namespace = '') {
  const id = cache.createSequence({ tokens, namespace }).id;
  const model = new SequenceModel(modelShape, namespace, tokens);
  for (let layer = 0; layer < 2; layer++) {
    const ids = model.contentFor(0, tokens.length, 0);
    await cache.writeKV(layer, id, 0, model.rows(layer, ids, 0), model.rows(layer, ids, 1));
    model.write(layer, 0, ids);
  }
  return { id, model };
}

/** Every readable position of every layer holds exactly the model's K/V, and nothing else is readable. */
async function expectExactly(cache: PagedKVCache, id: number, model: SequenceModel, writtenLengths: number[]): Promise<void> {
  for (let layer = 0; layer < 2; layer++) {
    expect(cache.writtenLength(id, layer), `written length of layer ${layer}`).toBe(writtenLengths[layer]);
    const { k } = await cache.readKV(layer, id, { end: writtenLengths[layer] });
    expect(Array.from(k)).toEqual(Array.from(model.expectedRows(layer, 0, writtenLengths[layer]!, 0)));
  }
}

/** Table consistent, no pin left, and every block comes back once everything is freed. */
function expectNothingLost(cache: PagedKVCache): void {
  cache.checkInvariants();
  expect(cache.stats().pinnedBlocks).toBe(0);
  for (const id of cache.table.sequenceIds()) cache.free(id);
  cache.clearPrefixCache();
  cache.checkInvariants();
  const s = cache.stats();
  expect([s.blocksFree, s.sequences]).toEqual([s.blocksTotal, 0]);
}

async function rejectsInjected(action: () => unknown): Promise<void> {
  await expect(Promise.resolve().then(action)).rejects.toThrow(/injected/);
}

describe('a GPU call throwing inside a critical section', () => {
  it('writeKV: the write’s submission throws after its copy-on-write copies ran — the fork keeps its K/V', async () => {
    const cache = await PagedKVCache.create(gpu.device, options);
    const { id, model } = await written(cache, uniqueTokens(6, 1));
    const child = cache.fork(id);
    gpu.throwOnCall('submit', 2); // 1: the copies, 2: the write
    const ids = model.contentFor(0, 6, 9);
    await rejectsInjected(() => cache.writeKV(0, child, 0, model.rows(0, ids, 0), model.rows(0, ids, 1)));
    await expectExactly(cache, child, model, [6, 6]);
    await expectExactly(cache, id, model, [6, 6]);
    gpu.reset();
    await cache.writeKV(0, child, 0, model.rows(0, ids, 0), model.rows(0, ids, 1)); // works again
    expectNothingLost(cache);
    cache.destroy();
  });

  it('writeKV: the copy submission throws — the copied positions are forgotten, never shown stale', async () => {
    const cache = await PagedKVCache.create(gpu.device, options);
    const { id, model } = await written(cache, uniqueTokens(6, 2));
    const child = cache.fork(id);
    gpu.throwOnCall('submit', 1);
    const ids = model.contentFor(5, 1, 9);
    await rejectsInjected(() => cache.writeKV(1, child, 5, model.rows(1, ids, 0), model.rows(1, ids, 1)));
    // Position 5 lies in block 1, which the table already swapped for a copy the GPU never made.
    await expectExactly(cache, child, model, [4, 4]);
    await expect(cache.readKV(0, child, { end: 5 })).rejects.toThrow(InvalidArgumentError);
    await expectExactly(cache, id, model, [6, 6]);
    expectNothingLost(cache);
    cache.destroy();
  });

  it('appendTokens: the copy of a shared tail block throws — its positions are forgotten, never shown stale', async () => {
    const cache = await PagedKVCache.create(gpu.device, options);
    const { id, model } = await written(cache, uniqueTokens(6, 3));
    const child = cache.fork(id);
    gpu.throwOnCall('submit', 1);
    expect(() => cache.appendTokens(child, [42])).toThrow(/injected/);
    expect(cache.length(child)).toBe(7); // the table appended; the copy of block 1 never ran
    await expectExactly(cache, child, model, [4, 4]);
    await expectExactly(cache, id, model, [6, 6]);
    expectNothingLost(cache);
    cache.destroy();
  });

  it('attend: recording throws — nothing changed, and attention works afterwards', async () => {
    const cache = await PagedKVCache.create(gpu.device, options);
    const { id } = await written(cache, uniqueTokens(5, 4));
    const before = cache.stats();
    gpu.throwOnCall('createCommandEncoder', 1);
    await rejectsInjected(() => cache.attend(0, [{ seqId: id, q: queryRows(1, 1, Q_ROW) }]));
    expect({ ...cache.stats(), lock: 0, tableEntriesUploaded: 0, tableWrites: 0 }).toEqual({ ...before, lock: 0, tableEntriesUploaded: 0, tableWrites: 0 });
    const [out] = await cache.attend(0, [{ seqId: id, q: queryRows(1, 1, Q_ROW) }]);
    expect(out!.every(Number.isFinite)).toBe(true);
    expectNothingLost(cache);
    cache.destroy();
  });

  it('encodeAttention: recording throws — no block stays pinned', async () => {
    const cache = await PagedKVCache.create(gpu.device, options);
    const { id } = await written(cache, uniqueTokens(5, 5));
    const q = gpu.device.createBuffer({ size: Q_ROW * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const out = gpu.device.createBuffer({ size: Q_ROW * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const encoder = gpu.device.createCommandEncoder();
    gpu.throwOnCall('createBindGroup', 1); // fresh q/out buffers: the kernel must create a bind group
    expect(() => cache.encodeAttention(encoder, { layer: 0, entries: [{ seqId: id }], q, out })).toThrow(/injected/);
    expect(cache.stats().pinnedBlocks).toBe(0);
    // That encoder is left mid-pass (unusable, dropped unfinished); a new one works.
    const fresh = gpu.device.createCommandEncoder();
    cache.encodeAttention(fresh, { layer: 0, entries: [{ seqId: id }], q, out });
    expect(cache.stats().pinnedBlocks).toBe(2);
    await cache.submit([fresh.finish()]);
    expectNothingLost(cache);
    q.destroy();
    out.destroy();
    cache.destroy();
  });

  it('encodeAttention with k and v, the decode storing K/V (decodeWritesKv): recording throws — nothing pinned or counted written; a new encoder writes it', async () => {
    const cache = await PagedKVCache.create(gpu.device, { ...options, decodeWritesKv: true });
    const { id } = await written(cache, uniqueTokens(5, 6));
    cache.appendTokens(id, [77]);
    const kvRow = heads.numKvHeads * heads.headDim;
    const k = new Float32Array(kvRow).map((_, i) => 0.25 * (i - 3));
    const storage = (bytes: number) => gpu.device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const kBuffer = storage(kvRow * 4), q = storage(Q_ROW * 4), out = storage(Q_ROW * 4);
    gpu.device.queue.writeBuffer(kBuffer, 0, k);
    const batch = cache.prepareAttention([{ seqId: id }], { writeKV: true });
    const encoder = gpu.device.createCommandEncoder();
    gpu.throwOnCall('createBindGroup', 1); // fresh buffers: the decode must create a bind group
    expect(() => cache.encodeAttention(encoder, { layer: 0, entries: batch, q, out, k: kBuffer, v: kBuffer })).toThrow(/injected/);
    expect(cache.stats().pinnedBlocks).toBe(0);
    await cache.markSubmitted();
    expect(cache.writtenLength(id, 0)).toBe(5);
    const fresh = gpu.device.createCommandEncoder();
    cache.encodeAttention(fresh, { layer: 0, entries: batch, q, out, k: kBuffer, v: kBuffer });
    await cache.submit([fresh.finish()]);
    expect(cache.writtenLength(id, 0)).toBe(6);
    const stored = await cache.readKV(0, id);
    expect(Array.from(stored.k.subarray(5 * kvRow))).toEqual(Array.from(k));
    expect(Array.from(stored.v.subarray(5 * kvRow))).toEqual(Array.from(k));
    expectNothingLost(cache);
    for (const b of [kBuffer, q, out]) b.destroy();
    cache.destroy();
  });
});

describe('a prefix-cache hook throwing inside a critical section', () => {
  it('evictOne throws while an allocation evicts — the call fails, nothing is lost, the retry works', async () => {
    const cache = await PagedKVCache.create(gpu.device, options);
    for (let i = 0; i < 3; i++) cache.free((await written(cache, uniqueTokens(8, 10 + i), 'ns')).id); // 6 cached blocks
    expect(cache.stats().blocksEvictable).toBe(6);
    const index = cache.prefix.index;
    const evictOne = index.evictOne.bind(index);
    let calls = 0;
    index.evictOne = () => {
      if (++calls === 3) throw new Error('injected evictor failure');
      return evictOne();
    };
    const tokens = uniqueTokens(40, 20); // 10 blocks: 6 free + 4 of the cached ones
    expect(() => cache.createSequence({ tokens })).toThrow(/injected/);
    cache.checkInvariants();
    const s = cache.stats();
    expect(s.blocksFree + s.blocksEvictable).toBe(12); // the 2 evicted before the throw went to the free list
    index.evictOne = evictOne;
    const created = cache.createSequence({ tokens });
    expect(cache.length(created.id)).toBe(40);
    expectNothingLost(cache);
    cache.destroy();
  });

  it('onRelease throws while a sequence is freed — the table stays consistent, the index reports its damage, clear() repairs it', async () => {
    const cache = await PagedKVCache.create(gpu.device, options);
    const { id } = await written(cache, uniqueTokens(9, 30), 'ns'); // 2 registered blocks + a partial one
    const index = cache.prefix.index as unknown as { onRelease: (b: number) => boolean };
    const onRelease = index.onRelease;
    index.onRelease = () => {
      throw new Error('injected onRelease failure');
    };
    expect(() => cache.free(id)).toThrow(/injected/);
    index.onRelease = onRelease;
    expect(cache.table.has(id)).toBe(false);
    cache.table.checkInvariants(); // the table completed the free
    const t = cache.table.stats();
    expect(t.blocksUsed).toBe(0); // nothing still held: 2 frozen blocks cached, the rest free
    expect(t.blocksFree + t.blocksCached).toBe(t.blocksTotal);
    // The index missed the release its hook failed on; it says so instead of going on silently…
    expect(() => cache.checkInvariants()).toThrow(/invariant/i);
    // …and clearing the prefix cache rebuilds it from nothing, with every block back.
    cache.clearPrefixCache();
    expectNothingLost(cache);
    cache.destroy();
  });
});
