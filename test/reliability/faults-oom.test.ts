// GPU out-of-memory, injected through a device wrapper at chosen allocations (the allocation returns an
// invalid buffer and the enclosing 'out-of-memory' error scope reports it, as WebGPU does): creating the
// pool, the block-table buffer, and every scratch buffer the cache grows or allocates later (K/V
// staging, query scratch, readback and gather buffers, attention work lists, copy-on-write pairs).
// Each must surface as GpuOutOfMemoryError (never an uncaptured WebGPU error or an untyped rejection),
// leave the cache usable with its contents intact, and leak nothing: after destroy() every buffer the
// cache created has been destroyed. A decode step recorded with encodeAttention allocates without error
// scopes (recording cannot wait for one): a refusal there fails that step's submit with a typed GPU
// error, and every later step works — the cache drops what it allocated that way.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { GpuOutOfMemoryError, PagedAttentionError } from '../../src/errors';
import { BATCH_SLOT_STAGES } from '../../src/cache/kv-gpu';
import { failOnUncapturedGpuErrors, takeUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { InstrumentedDevice } from './helpers/instrumented-device';
import { queryRows } from './helpers/kv-content';
import { mismatches, SequenceModel } from './helpers/sequence-model';

failOnUncapturedGpuErrors();

const heads = { numKvHeads: 2, numQueryHeads: 4, headDim: 8 } as const;
const options = { ...heads, numLayers: 2, blockSize: 4, numBlocks: 16 } as const;
const modelShape = { ...heads, numLayers: 2, blockSize: 4 };
const Q_ROW = heads.numQueryHeads * heads.headDim;
const SCALE = 1 / Math.sqrt(heads.headDim);
/** Shared by every kernel of a device by design (bound to unused chunk slots), never destroyed. */
const PER_DEVICE = /^unused-/;

let gpu: InstrumentedDevice;
beforeAll(async () => {
  gpu = new InstrumentedDevice((await testGpu()).device);
});
afterEach(() => {
  gpu.reset();
  gpu.injectedOoms.length = 0;
  expect(gpu.uncapturedOoms.splice(0), 'allocations that failed outside any error scope').toEqual([]);
});

/** Live valid buffers other than the per-device ones: after destroy() there must be none. */
const leaked = () => gpu.liveValid().filter((r) => !PER_DEVICE.test(r.label)).map((r) => r.label);

function failOnce(match: (label: string) => boolean): () => string[] {
  let armed = true;
  gpu.failAllocation = (descriptor) => {
    if (!armed || !match(descriptor.label ?? '')) return false;
    armed = false;
    return true;
  };
  return () => gpu.injectedOoms.splice(0);
}

/** A sequence with canonical K/V in both layers, written `chunk` positions per writeKV call. */
async function withWrittenSequence(cache: PagedKVCache, tokens: number[], namespace = '', chunk = tokens.length) {
  const id = cache.createSequence({ tokens, namespace }).id;
  const model = new SequenceModel(modelShape, namespace, tokens);
  for (let layer = 0; layer < 2; layer++) {
    for (let from = 0; from < tokens.length; from += chunk) {
      const ids = model.contentFor(from, Math.min(chunk, tokens.length - from), 0);
      await cache.writeKV(layer, id, from, model.rows(layer, ids, 0), model.rows(layer, ids, 1));
      model.write(layer, from, ids);
    }
  }
  return { id, model };
}

async function expectIntact(cache: PagedKVCache, id: number, model: SequenceModel): Promise<void> {
  for (let layer = 0; layer < 2; layer++) {
    const { k, v } = await cache.readKV(layer, id);
    expect(Array.from(k)).toEqual(Array.from(model.expectedRows(layer, 0, model.length, 0)));
    expect(Array.from(v)).toEqual(Array.from(model.expectedRows(layer, 0, model.length, 1)));
    const q = queryRows(layer, 1, Q_ROW);
    const [out] = await cache.attend(layer, [{ seqId: id, q }]);
    expect(mismatches(out!, model.expectedAttention(layer, q, model.length - 1, 1, SCALE))).toEqual([]);
  }
  cache.checkInvariants();
}

describe('GPU out of memory', () => {
  it.each([
    ['the first KV chunk', 'kv-layer0'],
    ['the second layer’s KV chunk', 'kv-layer1'],
    ['the block-table buffer', 'block-table'],
  ])('creating %s → GpuOutOfMemoryError, nothing leaked, the device still usable', async (_, label) => {
    const injected = failOnce((l) => l.startsWith(label));
    const error = await PagedKVCache.create(gpu.device, options).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GpuOutOfMemoryError);
    expect(injected()).toHaveLength(1);
    expect(leaked()).toEqual([]);
    const cache = await PagedKVCache.create(gpu.device, options);
    const { id, model } = await withWrittenSequence(cache, [1, 2, 3, 4, 5]);
    await expectIntact(cache, id, model);
    cache.destroy();
    expect(leaked()).toEqual([]);
  });

  it('creating the decode K/V staging (decodeWritesKv) → GpuOutOfMemoryError naming the option, nothing leaked', async () => {
    const injected = failOnce((l) => l === 'staged-kv');
    const error = await PagedKVCache.create(gpu.device, { ...options, decodeWritesKv: true }).catch((e: unknown) => e);
    expect(injected()).toEqual(['staged-kv']);
    expect(error).toBeInstanceOf(GpuOutOfMemoryError);
    expect(String(error)).toMatch(/decodeWritesKv/);
    expect(leaked()).toEqual([]);
  });

  it.each([
    ['growing the K/V staging buffers (writeKV)', /staging$|^slot-staging/, 'write'],
    ['growing the query scratch (attend)', /^q-staging|^out-staging/, 'attend'],
    ['a readback buffer (readKV)', /^readback/, 'read'],
    ['the gather outputs (readKV)', /^read-[kv]/, 'read'],
    ['a readback buffer (attend)', /^readback/, 'attend'],
    ['the attention work list (attend)', /^paged-attention-(work-items|params|partials)/, 'attend'],
  ] as const)('%s → GpuOutOfMemoryError, contents intact, nothing leaked', async (_, label, call) => {
    const cache = await PagedKVCache.create(gpu.device, { ...options, numBlocks: 32 });
    const { id, model } = await withWrittenSequence(cache, [9, 8, 7, 6, 5, 4]);
    // Scratch is sized by the largest call so far: each action below is larger than any call before it.
    const big = await withWrittenSequence(cache, Array.from({ length: 40 }, (_, i) => 100 + i), 'big', 20);
    const rewrite = big.model.contentFor(0, 40, 3);
    const actions: Record<typeof call, () => Promise<unknown>> = {
      write: () => cache.writeKV(0, big.id, 0, big.model.rows(0, rewrite, 0), big.model.rows(0, rewrite, 1)),
      read: () => cache.readKV(1, big.id),
      attend: () => cache.attend(1, [{ seqId: big.id, q: queryRows(4, 40, Q_ROW), queryStart: 0 }, { seqId: id, q: queryRows(5, 1, Q_ROW) }]),
    };
    const injected = failOnce((l) => label.test(l));
    const error = await actions[call]().catch((e: unknown) => e);
    expect(injected(), 'the allocation was attempted').toHaveLength(1);
    expect(error).toBeInstanceOf(GpuOutOfMemoryError);
    await expectIntact(cache, id, model);
    await expectIntact(cache, big.id, big.model); // a failed rewrite changed nothing either
    await actions[call](); // and the same call works once memory is available
    cache.destroy();
    expect(leaked()).toEqual([]);
  });

  it('copy-on-write never allocates: its pair buffer is sized at creation', async () => {
    const cache = await PagedKVCache.create(gpu.device, { ...options, numBlocks: 32 });
    const long = Array.from({ length: 30 }, (_, i) => 200 + i); // 8 blocks
    const { id, model } = await withWrittenSequence(cache, long);
    const child = cache.fork(id);
    const injected = failOnce((l) => l.startsWith('copy-pairs'));
    // Rewriting the whole child copies all 8 shared blocks; appending to the parent copies its tail.
    const ids = model.contentFor(0, 30, 5);
    await cache.writeKV(0, child, 0, model.rows(0, ids, 0), model.rows(0, ids, 1));
    const other = cache.fork(id);
    cache.appendTokens(other, [1]);
    expect(injected()).toEqual([]);
    expect(cache.stats().cowCopies).toBe(9);
    await expectIntact(cache, id, model);
    cache.destroy();
    expect(leaked()).toEqual([]);
  });

  describe('while a decode step is recorded (encodeAttention, no error scope)', () => {
    /** A decode step of `seqs` through encodeAttention with k and v, each layer's new K/V from the model; the model follows only a step that lands. */
    async function decodeStep(cache: PagedKVCache, seqs: { id: number; model: SequenceModel }[], salt: number): Promise<unknown> {
      const token = 1000 + salt;
      for (const s of seqs) {
        cache.appendTokens(s.id, [token]);
        s.model.append([token]);
      }
      const made: GPUBuffer[] = [];
      const upload = (data: Float32Array<ArrayBuffer>): GPUBuffer => {
        const b = gpu.device.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
        gpu.device.queue.writeBuffer(b, 0, data);
        made.push(b);
        return b;
      };
      const ids = seqs.map((s) => s.model.contentFor(s.model.length - 1, 1, salt));
      try {
        const batch = cache.prepareAttention(seqs.map((s) => ({ seqId: s.id })), { writeKV: true });
        const encoder = gpu.device.createCommandEncoder();
        for (let layer = 0; layer < 2; layer++) {
          const rows = (which: 0 | 1) => {
            const parts = seqs.map((s, r) => s.model.rows(layer, ids[r]!, which));
            const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
            parts.reduce((at, p) => (all.set(p, at), at + p.length), 0);
            return all;
          };
          const q = upload(Float32Array.from(queryRows(salt + layer, seqs.length, Q_ROW)));
          const out = upload(new Float32Array(seqs.length * Q_ROW));
          cache.encodeAttention(encoder, { layer, entries: batch, q, out, k: upload(rows(0)), v: upload(rows(1)) });
        }
        await cache.submit([encoder.finish()]);
        for (const [r, s] of seqs.entries()) for (let layer = 0; layer < 2; layer++) s.model.write(layer, s.model.length - 1, ids[r]!);
        return undefined;
      } catch (error) {
        // A rejected write counts as written nowhere from the start of its block on: write those
        // positions again (what the model holds, then the step's new token), as a caller would.
        for (const [r, s] of seqs.entries()) {
          for (let layer = 0; layer < 2; layer++) {
            const from = cache.writtenLength(s.id, layer);
            const last = s.model.length - 1;
            const rows = (which: 0 | 1) => Float32Array.from([...s.model.expectedRows(layer, from, last, which), ...s.model.rows(layer, ids[r]!, which)]);
            await cache.writeKV(layer, s.id, from, rows(0), rows(1));
            s.model.write(layer, last, ids[r]!);
          }
        }
        return error;
      } finally {
        await gpu.device.queue.onSubmittedWorkDone();
        for (const b of made) b.destroy();
      }
    }

    it.each([
      ['a write batch\'s slot map', /^batch-slots/, false, 1],
      ['a write batch\'s slot map, decodeWritesKv', /^batch-slots/, true, 1],
      ['the attention work list', /^paged-attention-work-items/, false, 0],
      ['the flush of staged K/V (its parameters), decodeWritesKv', /^flush-staged-kv-.*-params/, true, 0],
    ] as const)('%s → that step\'s submit rejects with a typed GPU error; every later step works', async (_, label, decodeWritesKv, failingStep) => {
      const cache = await PagedKVCache.create(gpu.device, { ...options, numBlocks: 32, decodeWritesKv });
      const seqs = [await withWrittenSequence(cache, [1, 2, 3]), await withWrittenSequence(cache, [4, 5, 6, 7, 8], 'other')];
      const steps = BATCH_SLOT_STAGES + 3; // past the slot-map ring's reuse of the refused buffer
      for (let step = 0; step < steps; step++) {
        const injected = step === failingStep ? failOnce((l) => label.test(l)) : () => [];
        const error = await decodeStep(cache, seqs, step);
        if (step === failingStep) {
          expect(injected(), 'the allocation was attempted').toHaveLength(1);
          expect(gpu.uncapturedOoms.splice(0), 'outside any error scope').toHaveLength(1);
          expect(error).toBeInstanceOf(PagedAttentionError);
          expect(takeUncapturedGpuErrors().join('\n')).toMatch(/is invalid due to a previous error/);
        } else {
          expect(error, `step ${step}`).toBeUndefined();
        }
      }
      for (const { id, model } of seqs) await expectIntact(cache, id, model);
      cache.destroy();
      expect(leaked()).toEqual([]);
    });
  });
});
