// Tenant isolation: a sequence can read or attend only K/V it wrote itself or shares (fork, prefix reuse
// in its own namespace). Proved on the GPU with distinctive patterns: a freed sequence's blocks, reused by
// another, show nothing until written, and afterwards only the new owner's data (even when the stale data
// is NaN and sits in the same block); copy-on-write keeps a fork's writes private both ways; one layer's
// writes never make another layer readable; the prefix cache never hands blocks across namespaces; and a
// write the GPU rejects marks nothing written, so it cannot expose whatever the block held before.
import { beforeAll, describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { GpuValidationError, InvalidArgumentError } from '../../src/errors';
import { roundToF16 } from '../../src/kernels/f16';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { queryRows } from './helpers/kv-content';
import { mismatches, SequenceModel } from './helpers/sequence-model';
import { uniqueTokens } from './helpers/prompts';

failOnUncapturedGpuErrors();

const heads = { numKvHeads: 2, numQueryHeads: 4, headDim: 8 } as const;
const ROW = heads.numKvHeads * heads.headDim;
const Q_ROW = heads.numQueryHeads * heads.headDim;
const BS = 4;

const filled = (rows: number, value: number) => new Float32Array(rows * ROW).fill(value);

let device: GPUDevice;
beforeAll(async () => {
  device = (await testGpu()).device;
});

async function newCache(numBlocks: number): Promise<PagedKVCache> {
  return PagedKVCache.create(device, { ...heads, numLayers: 2, blockSize: BS, numBlocks });
}

/** Writes the model's canonical K/V for positions [from, to) of every layer. */
async function writeModel(cache: PagedKVCache, id: number, seq: SequenceModel, from: number, to: number): Promise<void> {
  for (let layer = 0; layer < seq.shape.numLayers; layer++) {
    const ids = seq.contentFor(from, to - from, 0);
    await cache.writeKV(layer, id, from, seq.rows(layer, ids, 0), seq.rows(layer, ids, 1));
    seq.write(layer, from, ids);
  }
}

async function expectReadsModel(cache: PagedKVCache, id: number, seq: SequenceModel, layer: number, end: number): Promise<void> {
  const { k, v } = await cache.readKV(layer, id, { end });
  expect(Array.from(k)).toEqual(Array.from(seq.expectedRows(layer, 0, end, 0)));
  expect(Array.from(v)).toEqual(Array.from(seq.expectedRows(layer, 0, end, 1)));
}

describe('isolation between sequences', () => {
  it('a freed sequence’s blocks, reused by another, expose nothing of it — not even NaN in the same block', async () => {
    const cache = await newCache(4);
    try {
      const a = cache.createSequence({ tokens: uniqueTokens(16, 1), namespace: 'tenant-a' }).id;
      const aBlocks = Array.from(cache.table.blocksOf(a));
      await cache.writeKV(0, a, 0, filled(16, 777), filled(16, -777));
      await cache.writeKV(1, a, 0, filled(16, NaN), filled(16, NaN));
      cache.free(a); // fully written: its blocks stay cached (evictable) in tenant-a's prefix cache

      const tokens = uniqueTokens(16, 2);
      const b = cache.createSequence({ tokens, namespace: 'tenant-b' });
      expect(b.cachedTokens).toBe(0);
      expect(new Set(cache.table.blocksOf(b.id))).toEqual(new Set(aBlocks)); // the very same physical blocks
      const q = queryRows(5, 3, Q_ROW);
      for (const layer of [0, 1]) {
        expect(cache.writtenLength(b.id, layer)).toBe(0);
        await expect(cache.readKV(layer, b.id)).rejects.toThrow(InvalidArgumentError);
        await expect(cache.readKV(layer, b.id, { end: 1 })).rejects.toThrow(/no K\/V written/);
        await expect(cache.attend(layer, [{ seqId: b.id, q: q.subarray(0, Q_ROW), queryStart: 0 }])).rejects.toThrow(/no K\/V written/);
        const empty = await cache.readKV(layer, b.id, { end: 0 });
        expect([empty.k.length, empty.v.length]).toEqual([0, 0]);
      }

      // B writes 3 positions: the 4th row of its first block still holds A's 777 / NaN.
      const seq = new SequenceModel({ ...heads, numLayers: 2, blockSize: BS }, 'tenant-b', tokens);
      await writeModel(cache, b.id, seq, 0, 3);
      for (const layer of [0, 1]) {
        await expectReadsModel(cache, b.id, seq, layer, 3);
        await expect(cache.readKV(layer, b.id, { end: 4 })).rejects.toThrow(InvalidArgumentError);
        const [prefill, decode] = await cache.attend(layer, [
          { seqId: b.id, q, queryStart: 0 },
          { seqId: b.id, q: q.subarray(0, Q_ROW), queryStart: 2 },
        ]);
        const scale = 1 / Math.sqrt(heads.headDim);
        expect(mismatches(prefill!, seq.expectedAttention(layer, q, 0, 3, scale))).toEqual([]);
        expect(mismatches(decode!, seq.expectedAttention(layer, q.subarray(0, Q_ROW), 2, 1, scale))).toEqual([]);
        expect([...prefill!, ...decode!].every(Number.isFinite)).toBe(true);
      }
      cache.checkInvariants();
    } finally {
      cache.destroy();
    }
  });

  it('copy-on-write keeps a fork’s writes private, in both directions', async () => {
    const cache = await newCache(8);
    try {
      const shape = { ...heads, numLayers: 2, blockSize: BS };
      const tokens = uniqueTokens(6, 3);
      const parent = cache.createSequence({ tokens }).id;
      const ps = new SequenceModel(shape, '', tokens);
      await writeModel(cache, parent, ps, 0, 6);
      const child = cache.fork(parent);
      const cs = ps.clone();
      // The child rewrites positions 1..4 (both shared blocks) with different K/V; the parent appends.
      const ids = cs.contentFor(1, 4, 7);
      await cache.writeKV(0, child, 1, cs.rows(0, ids, 0), cs.rows(0, ids, 1));
      cs.write(0, 1, ids);
      const pos = cache.appendTokens(parent, [42, 43]);
      ps.append([42, 43]);
      const more = ps.contentFor(pos, 2, 0);
      await cache.writeKV(0, parent, pos, ps.rows(0, more, 0), ps.rows(0, more, 1));
      ps.write(0, pos, more);
      await expectReadsModel(cache, parent, ps, 0, 8);
      await expectReadsModel(cache, child, cs, 0, 6);
      await expectReadsModel(cache, child, cs, 1, 6); // layer 1 still shared, untouched
      expect(cache.stats().cowCopies).toBeGreaterThanOrEqual(2);
      cache.checkInvariants();
    } finally {
      cache.destroy();
    }
  });

  it('writing one layer never makes another layer readable', async () => {
    const cache = await newCache(4);
    try {
      const id = cache.createSequence({ tokens: [1, 2, 3, 4, 5] }).id;
      await cache.writeKV(0, id, 0, filled(5, 1), filled(5, 2));
      expect([cache.writtenLength(id, 0), cache.writtenLength(id, 1)]).toEqual([5, 0]);
      await expect(cache.readKV(1, id)).rejects.toThrow(/layer 1/);
      await expect(cache.attend(1, [{ seqId: id, q: new Float32Array(Q_ROW) }])).rejects.toThrow(/layer 1/);
      // A write past the written length (a gap) is stored but not counted as written.
      await cache.writeKV(1, id, 2, filled(3, 1), filled(3, 2));
      expect(cache.writtenLength(id, 1)).toBe(0);
      await expect(cache.readKV(1, id, { start: 2, end: 5 })).rejects.toThrow(InvalidArgumentError);
    } finally {
      cache.destroy();
    }
  });

  it('prefix reuse never crosses namespaces', async () => {
    const cache = await newCache(16);
    try {
      const shape = { ...heads, numLayers: 2, blockSize: BS };
      const prompt = uniqueTokens(10, 4); // 2 full blocks + 2
      const a = cache.createSequence({ tokens: prompt, namespace: 'tenant-a' });
      const as = new SequenceModel(shape, 'tenant-a', prompt);
      await writeModel(cache, a.id, as, 0, 10);
      const registered = Array.from(cache.table.blocksOf(a.id).subarray(0, 2));
      cache.free(a.id);
      expect(cache.stats()).toMatchObject({ blocksEvictable: 2, blocksRegistered: 2 });

      for (const other of ['tenant-b', '', 'Tenant-a', 'tenant-a ', 'tenant-', 'tenant-a\u0000']) {
        expect(cache.prefix.cachedPrefix(prompt, other), other).toBe(0);
        const s = cache.createSequence({ tokens: prompt, namespace: other });
        expect(s.cachedTokens, JSON.stringify(other)).toBe(0);
        expect(Array.from(cache.table.blocksOf(s.id)).some((b) => registered.includes(b)), JSON.stringify(other)).toBe(false);
        await expect(cache.readKV(0, s.id, { end: 1 })).rejects.toThrow(InvalidArgumentError);
        cache.free(s.id);
      }
      const again = cache.createSequence({ tokens: prompt, namespace: 'tenant-a' });
      expect(again.cachedTokens).toBe(8);
      expect(Array.from(cache.table.blocksOf(again.id).subarray(0, 2))).toEqual(registered);
      const hit = new SequenceModel(shape, 'tenant-a', prompt, 8);
      await expectReadsModel(cache, again.id, hit, 0, 8);
      await expectReadsModel(cache, again.id, hit, 1, 8);
      cache.free(again.id);
      cache.checkInvariants();
    } finally {
      cache.destroy();
    }
  });

  it('a write the GPU rejects marks nothing written and exposes nothing stale', async () => {
    const cache = await newCache(2);
    const destroyedBuffer = (): GPUBuffer => {
      const b = device.createBuffer({ size: 8 * ROW * 4, usage: GPUBufferUsage.STORAGE });
      b.destroy();
      return b;
    };
    try {
      const a = cache.createSequence({ tokens: uniqueTokens(8, 5), namespace: 'tenant-a' }).id;
      await cache.writeKV(0, a, 0, filled(8, 7), filled(8, 7));
      cache.free(a);
      const tokens = uniqueTokens(8, 6);
      const b = cache.createSequence({ tokens, namespace: 'tenant-b' }).id;
      const bad = destroyedBuffer();
      await expect(cache.writeKV(0, b, 0, bad, bad)).rejects.toBeInstanceOf(GpuValidationError);
      expect(cache.writtenLength(b, 0)).toBe(0); // A's 7s must stay unreadable
      await expect(cache.readKV(0, b)).rejects.toThrow(InvalidArgumentError);

      // A fork whose first write (which copies the shared block) is rejected still reads its parent's K/V.
      const shape = { ...heads, numLayers: 2, blockSize: BS };
      const bs = new SequenceModel(shape, 'tenant-b', tokens);
      await writeModel(cache, b, bs, 0, 8); // both layers: blocks registered in tenant-b
      cache.free(b);
      const c = cache.createSequence({ tokens: uniqueTokens(4, 7), namespace: 'tenant-c' }).id; // evicts one
      cache.free(c);
      const p = cache.createSequence({ tokens: uniqueTokens(4, 8) }).id;
      const ps = new SequenceModel(shape, '', Array.from(cache.tokens(p)));
      await writeModel(cache, p, ps, 0, 4);
      const child = cache.fork(p);
      await expect(cache.writeKV(0, child, 1, destroyedBuffer(), destroyedBuffer(), { numTokens: 2 })).rejects.toBeInstanceOf(GpuValidationError);
      await expectReadsModel(cache, child, ps, 0, 4);
      await expectReadsModel(cache, p, ps, 0, 4);
      cache.checkInvariants();
    } finally {
      cache.destroy();
    }
  });
});
