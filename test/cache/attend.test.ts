// Attention through the public cache API equals the CPU reference on the logical K/V that were written:
// chunked prefill (queryStart > 0), decode, forked sequences sharing blocks, GQA, in mixed batches; and
// encodeAttention (no readback) pins the blocks it reads until its submission completes (a table read of
// its rows; an abandoned encoder's read turns into retains of its own blocks); a prepared batch whose
// last block was copied after the prepare reads the copy (the block its work list carries is read again
// and planned again); the same on a device with WebGPU's default limits.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { InvalidArgumentError } from '../../src/errors';
import { createGpu, type Gpu } from '../../src/gpu/create-gpu';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { expectClose as expectCloseTo, LogicalKv, values } from '../helpers/logical-kv';

failOnUncapturedGpuErrors();

const KV_HEADS = 2, Q_HEADS = 8, DIM = 32, BLOCK = 4;
const KV_ROW = KV_HEADS * DIM, Q_ROW = Q_HEADS * DIM;
// The reference sees the same f16-rounded K/V; only summation order and exp differ (≈1e-7 observed).
const ATOL = 2e-5, RTOL = 1e-4;

const expectClose = (actual: Float32Array, expected: Float64Array): void => expectCloseTo(actual, expected, ATOL, RTOL);
/** q uploaded to a storage buffer, an output buffer of the same size and a buffer to read it back through. */
function queryBuffers(device: GPUDevice, q: Float32Array<ArrayBuffer>): { qBuffer: GPUBuffer; out: GPUBuffer; read: GPUBuffer } {
  const qBuffer = device.createBuffer({ size: q.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(qBuffer, 0, q);
  const out = device.createBuffer({ size: q.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: q.byteLength, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  return { qBuffer, out, read };
}
const newKv = (): LogicalKv => new LogicalKv(KV_HEADS, DIM);
/** Maps `read` (the copied-out attention output), compares it with `expected`, unmaps it. */
async function expectReadBack(read: GPUBuffer, expected: Float64Array): Promise<void> {
  await read.mapAsync(GPUMapMode.READ);
  expectClose(new Float32Array(read.getMappedRange().slice(0)), expected);
  read.unmap();
}

describe('attend', () => {
  let cache: PagedKVCache;
  beforeAll(async () => {
    const { device } = await testGpu();
    cache = await PagedKVCache.create(device, {
      numLayers: 1, numKvHeads: KV_HEADS, headDim: DIM, numQueryHeads: Q_HEADS, blockSize: BLOCK, numBlocks: 64,
    });
  });

  async function write(id: number, logical: LogicalKv, start: number, n: number, seed: number): Promise<void> {
    const k = values(n * KV_ROW, seed), v = values(n * KV_ROW, seed + 100);
    await cache.writeKV(0, id, start, k, v);
    for (let i = 0; i < n; i++) logical.set(start + i, k.subarray(i * KV_ROW, (i + 1) * KV_ROW), v.subarray(i * KV_ROW, (i + 1) * KV_ROW));
  }

  const ref = (logical: LogicalKv, q: Float32Array, queryStart: number) => logical.attend(q, queryStart, Q_HEADS);

  it('matches the reference for chunked prefill, decode and forks in mixed batches', async () => {
    const a = cache.createSequence({ tokens: Array.from({ length: 13 }, (_, i) => i) }).id;
    const la = newKv();
    // Chunk 1: positions 0..7, attended causally.
    await write(a, la, 0, 8, 1);
    const q1 = values(8 * Q_ROW, 2);
    const [o1] = await cache.attend(0, [{ seqId: a, q: q1, queryStart: 0 }]);
    expectClose(o1!, ref(la, q1, 0));
    // Chunk 2: positions 8..12 over the cached prefix.
    await write(a, la, 8, 5, 3);
    const b = cache.fork(a);
    const lb = la.clone();
    cache.appendTokens(b, [99]);
    await write(b, lb, 13, 1, 4); // copy-on-write of the shared partial block
    const c = cache.createSequence({ tokens: [5, 6, 7] }).id;
    const lc = newKv();
    await write(c, lc, 0, 3, 5);
    const q2 = values(5 * Q_ROW, 6), qb = values(Q_ROW, 7), qc = values(Q_ROW, 8);
    const [o2, ob, oc] = await cache.attend(0, [
      { seqId: a, q: q2, queryStart: 8 },
      { seqId: b, q: qb },
      { seqId: c, q: qc },
    ]);
    expectClose(o2!, ref(la, q2, 8));
    expectClose(ob!, ref(lb, qb, 13));
    expectClose(oc!, ref(lc, qc, 2));
    // The parent still sees its own K/V after the child's copy-on-write.
    const qa = values(Q_ROW, 9);
    const [oa] = await cache.attend(0, [{ seqId: a, q: qa }]);
    expectClose(oa!, ref(la, qa, 12));
    for (const id of [a, b, c]) cache.free(id);
    cache.checkInvariants();
  });

  it('encodeAttention reads through GPU buffers and pins blocks until the submission completes', async () => {
    const { device } = await testGpu();
    const a = cache.createSequence({ tokens: [1, 2, 3, 4, 5, 6] }).id;
    const la = newKv();
    await write(a, la, 0, 6, 11);
    const q = values(Q_ROW, 12);
    const { qBuffer, out, read } = queryBuffers(device, q);
    // Released blocks go to the free list, or stay cached (evictable) when the prefix cache holds them.
    const reclaimable = () => cache.stats().blocksFree + cache.stats().blocksEvictable;
    const free0 = reclaimable();
    const encoder = device.createCommandEncoder();
    cache.encodeAttention(encoder, { layer: 0, entries: [{ seqId: a }], q: qBuffer, out });
    expect(cache.stats().pinnedBlocks).toBe(2);
    // Freeing the sequence before submission must not free its blocks: the encoded work still reads them.
    cache.free(a);
    expect(reclaimable()).toBe(free0);
    encoder.copyBufferToBuffer(out, 0, read, 0, q.byteLength);
    await cache.submit([encoder.finish()]);
    expect(cache.stats().pinnedBlocks).toBe(0);
    expect(reclaimable()).toBe(free0 + 2);
    await expectReadBack(read, ref(la, q, 5));
    for (const buffer of [qBuffer, out, read]) buffer.destroy();
    cache.checkInvariants();
  });

  it('encoded work holds a table read of its rows: blocks they drop meanwhile wait for it, and an abandoned encoder keeps only what it may reach', async () => {
    const { device } = await testGpu();
    const a = cache.createSequence({ tokens: [9, 8, 7, 6, 5] }).id;
    const la = newKv();
    await write(a, la, 0, 5, 31);
    const other = cache.createSequence({ tokens: [1, 2, 3, 4, 5, 6, 7, 8, 9] }).id; // 3 blocks, read by nothing
    const q = values(Q_ROW, 32);
    const { qBuffer, out, read } = queryBuffers(device, q);
    const reclaimable = () => cache.stats().blocksFree + cache.stats().blocksEvictable;
    const abandoned = device.createCommandEncoder();
    cache.encodeAttention(abandoned, { layer: 0, entries: [{ seqId: a }], q: qBuffer, out });
    const encoder = device.createCommandEncoder();
    cache.encodeAttention(encoder, { layer: 0, entries: [{ seqId: a }], q: qBuffer, out });
    expect(cache.table.stats().readsOpen).toBe(2); // one per encoded batch, no block retained
    expect(cache.stats().pinnedBlocks).toBe(4);
    // A row no read names frees at once.
    const free0 = reclaimable();
    cache.free(other);
    expect(reclaimable()).toBe(free0 + 3);
    // Rewriting a's first block copies it (the reads name a's row); the replaced block waits for them.
    const expected = ref(la, q, 4);
    await write(a, la, 0, 2, 33);
    expect(cache.table.stats().blocksDeferred).toBe(1);
    expect(cache.stats().blocksDeferred).toBe(1);
    expect(reclaimable()).toBe(free0 + 2);
    encoder.copyBufferToBuffer(out, 0, read, 0, q.byteLength);
    await cache.submit([encoder.finish()]);
    // The abandoned encoder's older read became retains of all it may reach — a's two blocks now and the
    // block replaced since — so nothing waits for a read now, and the replaced block stays until the
    // abandoned encoder is done with.
    expect(cache.table.stats()).toMatchObject({ readsOpen: 0, blocksDeferred: 0 });
    expect(cache.stats().pinnedBlocks).toBe(3);
    expect(reclaimable()).toBe(free0 + 2);
    // The work reads the row as it was uploaded for it, so the replaced block — still held, not reused — with
    // the K/V from before the rewrite.
    await expectReadBack(read, expected);
    cache.checkInvariants();
    await cache.submit([abandoned.finish()]);
    expect(cache.stats().pinnedBlocks).toBe(0);
    expect(reclaimable()).toBe(free0 + 3);
    cache.free(a);
    expect(reclaimable()).toBe(free0 + 5);
    for (const buffer of [qBuffer, out, read]) buffer.destroy();
    cache.checkInvariants();
  });

  it('a prepared batch whose rows changed since is uploaded again when encoded; one whose sequence was freed is refused, pinning nothing', async () => {
    const { device } = await testGpu();
    const a = cache.createSequence({ tokens: [3, 1, 4, 1, 5, 9] }).id;
    const la = newKv();
    await write(a, la, 0, 6, 41);
    const q = values(Q_ROW, 42);
    const { qBuffer, out, read } = queryBuffers(device, q);
    const batch = cache.prepareAttention([{ seqId: a }]);
    // Rows change after the prepare: another sequence is freed, and a's first block is rewritten (copied).
    cache.free(cache.createSequence({ tokens: [7, 7, 7] }).id);
    await write(a, la, 0, 2, 43);
    const encoder = device.createCommandEncoder();
    cache.encodeAttention(encoder, { layer: 0, entries: batch, q: qBuffer, out });
    expect(cache.table.stats().readsOpen).toBe(1);
    encoder.copyBufferToBuffer(out, 0, read, 0, q.byteLength);
    await cache.submit([encoder.finish()]);
    await expectReadBack(read, ref(la, q, 5)); // the rewritten K/V, through the new row
    const b = cache.createSequence({ tokens: [2, 7, 1, 8] }).id;
    await write(b, newKv(), 0, 4, 44);
    const stale = cache.prepareAttention([{ seqId: b }]);
    cache.free(b);
    const refused = device.createCommandEncoder();
    // (A freed sequence has no K/V written any more: the written-length check refuses it first.)
    expect(() => cache.encodeAttention(refused, { layer: 0, entries: stale, q: qBuffer, out })).toThrow(InvalidArgumentError);
    expect(cache.stats().pinnedBlocks).toBe(0);
    expect(cache.table.stats().readsOpen).toBe(0);
    cache.free(a);
    for (const buffer of [qBuffer, out, read]) buffer.destroy();
    cache.checkInvariants();
  });

  it("a prepared batch whose last block was copied since reads the copy, not the old block (reused by then)", async () => {
    const { device } = await testGpu();
    const a = cache.createSequence({ tokens: [2, 6, 5, 3, 5, 8] }).id;
    const la = newKv();
    await write(a, la, 0, 6, 51);
    const q = values(Q_ROW, 52);
    const { qBuffer, out, read } = queryBuffers(device, q);
    const batch = cache.prepareAttention([{ seqId: a }]); // its work list names a's last block
    const oldLast = batch.entries[0]!.lastBlock;
    // Encoded once as prepared (the kernel keeps that plan for the same entries).
    const first = device.createCommandEncoder();
    cache.encodeAttention(first, { layer: 0, entries: batch, q: qBuffer, out });
    first.copyBufferToBuffer(out, 0, read, 0, q.byteLength);
    await cache.submit([first.finish()]);
    await expectReadBack(read, ref(la, q, 5));
    // A fork shares that partial block: rewriting a's positions 4..5 copies it first. Freed with the fork,
    // the old block goes back to the free list, and a sequence taking every free block overwrites it.
    const fork = cache.fork(a);
    await write(a, la, 4, 2, 53);
    cache.free(fork);
    const filler = cache.createSequence({ tokens: Array.from({ length: cache.stats().blocksFree * BLOCK }, (_, i) => 1000 + i) }).id;
    await write(filler, newKv(), 0, cache.length(filler), 54);
    const encoder = device.createCommandEncoder();
    cache.encodeAttention(encoder, { layer: 0, entries: batch, q: qBuffer, out });
    expect(batch.entries[0]!.lastBlock).not.toBe(oldLast); // read again when the rows were synced for the encode, and planned again
    encoder.copyBufferToBuffer(out, 0, read, 0, q.byteLength);
    await cache.submit([encoder.finish()]);
    await expectReadBack(read, ref(la, q, 5));
    cache.free(filler);
    cache.free(a);
    for (const buffer of [qBuffer, out, read]) buffer.destroy();
    cache.checkInvariants();
  });

  it('a prepared batch encodes like its entries, is re-pinned per submission, and belongs to its cache', async () => {
    const { device } = await testGpu();
    const a = cache.createSequence({ tokens: [4, 3, 2, 1, 0] }).id;
    const la = newKv();
    await write(a, la, 0, 5, 21);
    const q = values(Q_ROW, 22);
    const { qBuffer, out, read } = queryBuffers(device, q);
    const batch = cache.prepareAttention([{ seqId: a }]);
    expect(batch.rows).toBe(1);
    for (let submission = 0; submission < 2; submission++) {
      const encoder = device.createCommandEncoder();
      cache.encodeAttention(encoder, { layer: 0, entries: batch, q: qBuffer, out });
      cache.encodeAttention(encoder, { layer: 0, entries: batch, q: qBuffer, out });
      expect(cache.stats().pinnedBlocks).toBe(2); // pinned once per submission, not per encode
      encoder.copyBufferToBuffer(out, 0, read, 0, q.byteLength);
      await cache.submit([encoder.finish()]);
      expect(cache.stats().pinnedBlocks).toBe(0);
      await expectReadBack(read, ref(la, q, 4));
    }
    const other = await PagedKVCache.create(device, { numLayers: 1, numKvHeads: KV_HEADS, headDim: DIM, numQueryHeads: Q_HEADS, blockSize: BLOCK, numBlocks: 8 });
    expect(() => other.encodeAttention(device.createCommandEncoder(), { layer: 0, entries: batch, q: qBuffer, out })).toThrow(/prepareAttention/);
    other.destroy();
    cache.free(a);
    for (const buffer of [qBuffer, out, read]) buffer.destroy();
    cache.checkInvariants();
  });
});

// A device made with WebGPU's default limits (16 KiB of workgroup memory, 8 storage buffers per stage,
// 128 MiB bindings): the whole cache runs there (the kernel tests check which decode kernel it gets).
describe('attend on a device with the WebGPU default limits', () => {
  const HEADS = 2, GROUP = 4, HEAD_DIM = 128, ROW = HEADS * HEAD_DIM, QROW = HEADS * GROUP * HEAD_DIM;
  let small: Gpu;
  beforeAll(async () => {
    small = await createGpu({ defaultLimits: true });
  });
  afterAll(() => small.device.destroy());

  it('matches the reference for a prefill, then a decode', async () => {
    expect(small.device.limits.maxComputeWorkgroupStorageSize).toBe(16384);
    const cache = await PagedKVCache.create(small.device, {
      numLayers: 1, numKvHeads: HEADS, headDim: HEAD_DIM, numQueryHeads: HEADS * GROUP, blockSize: 16, numBlocks: 16, kvDtype: 'f16',
    });
    try {
      const id = cache.createSequence({ tokens: Array.from({ length: 40 }, (_, i) => i) }).id;
      const logical = new LogicalKv(HEADS, HEAD_DIM);
      const k = values(40 * ROW, 31), v = values(40 * ROW, 32);
      await cache.writeKV(0, id, 0, k, v);
      for (let i = 0; i < 40; i++) logical.set(i, k.subarray(i * ROW, (i + 1) * ROW), v.subarray(i * ROW, (i + 1) * ROW));
      const prefillQ = values(40 * QROW, 33);
      const [prefill] = await cache.attend(0, [{ seqId: id, q: prefillQ, queryStart: 0 }]);
      expectCloseTo(prefill!, logical.attend(prefillQ, 0, HEADS * GROUP), ATOL, RTOL);
      const decodeQ = values(QROW, 34);
      const [decode] = await cache.attend(0, [{ seqId: id, q: decodeQ }]);
      expectCloseTo(decode!, logical.attend(decodeQ, 39, HEADS * GROUP), ATOL, RTOL);
      cache.free(id);
      cache.checkInvariants();
    } finally {
      cache.destroy();
    }
  });
});
