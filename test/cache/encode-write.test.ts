// encodeWriteKV: a decode loop records, per layer, one K/V write for the whole batch and the attention
// that reads it into one encoder (as two calls, or as one encodeAttention with k and v: one compute pass); outputs equal the CPU reference over the logical K/V, forked
// sequences get copy-on-write at prepare time, blocks merely pinned by unsubmitted work are not copied, and positions count as written only once their command
// buffer is submitted (a rejected submission takes the claim back, without breaking other encoders'
// recorded work). A prepared batch's checks are skipped for later layers only while nothing they
// depend on changed. Bad input throws typed errors and pins nothing.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { InvalidArgumentError, GpuValidationError } from '../../src/errors';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { expectClose, LogicalKv, values } from '../helpers/logical-kv';
import { countPasses } from '../helpers/count-passes';
import { MAX_FLUSH_LAYERS } from '../../src/kernels/flush-staged-kv';
import { roundToF16 } from '../../src/kernels/f16';

failOnUncapturedGpuErrors();

const LAYERS = 2, KV_HEADS = 2, Q_HEADS = 4, DIM = 16, BLOCK = 4;
const KV_ROW = KV_HEADS * DIM, Q_ROW = Q_HEADS * DIM;
// The reference sees the same f16-rounded K/V; only summation order and exp differ.
const ATOL = 2e-5, RTOL = 1e-4;

let device: GPUDevice;
let cache: PagedKVCache;
/** The same cache shape with decodeWritesKv: the decode dispatch takes a decode batch's K/V itself (staged, then flushed). */
let decodeWritesCache: PagedKVCache;
const buffers: GPUBuffer[] = [];

function storage(bytes: number): GPUBuffer {
  const b = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
  buffers.push(b);
  return b;
}

beforeAll(async () => {
  device = (await testGpu()).device;
  const options = { numLayers: LAYERS, numKvHeads: KV_HEADS, headDim: DIM, numQueryHeads: Q_HEADS, blockSize: BLOCK, numBlocks: 48 };
  cache = await PagedKVCache.create(device, options);
  decodeWritesCache = await PagedKVCache.create(device, { ...options, decodeWritesKv: true });
});

const liveIds: number[] = [];

afterEach(() => {
  for (const b of buffers.splice(0)) b.destroy();
  for (const id of liveIds.splice(0)) cache.free(id);
  cache.checkInvariants();
});

function sequence(tokens: number[]): number {
  const id = cache.createSequence({ tokens }).id;
  liveIds.push(id);
  return id;
}

/** Writes the prompt's K/V in every layer through writeKV and mirrors them in `logical[layer]`. */
async function writePrompt(id: number, logical: LogicalKv[], n: number, seed: number): Promise<void> {
  for (let l = 0; l < LAYERS; l++) {
    const k = values(n * KV_ROW, seed + l), v = values(n * KV_ROW, seed + l + 50);
    await cache.writeKV(l, id, 0, k, v);
    for (let i = 0; i < n; i++) logical[l]!.set(i, k.subarray(i * KV_ROW, (i + 1) * KV_ROW), v.subarray(i * KV_ROW, (i + 1) * KV_ROW));
  }
}

const newKv = (): LogicalKv[] => Array.from({ length: LAYERS }, () => new LogicalKv(KV_HEADS, DIM));


describe('encodeWriteKV', () => {
  it.each([
    ['encodeWriteKV then encodeAttention (two compute passes per layer)', 'two-calls', false],
    ['encodeAttention with k and v (one compute pass per layer)', 'one-call', false],
    ['encodeAttention with k and v, decodeWritesKv (one dispatch per layer)', 'one-call', true],
    ['every layer into one compute pass of the step (the pass option of both calls)', 'step-pass', false],
    ['every layer into one compute pass of the step, decodeWritesKv', 'step-pass', true],
  ] as const)('a decode loop writes and attends per layer in one encoder and matches the reference: %s', async (_, form, decodeWrites) => {
    const plain = cache;
    if (decodeWrites) cache = decodeWritesCache;
    try {
      await decodeLoop(form, decodeWrites);
    } finally {
      for (const id of liveIds.splice(0)) cache.free(id);
      cache.checkInvariants();
      cache = plain;
    }
  });

  /** Six decode steps of three sequences (one a fork), every layer's K/V written and attended, checked against the reference. */
  async function decodeLoop(form: 'two-calls' | 'one-call' | 'step-pass', decodeWrites: boolean): Promise<void> {
    const a = sequence([1, 2, 3, 4, 5]);
    const b = sequence([9, 8, 7, 6, 5, 4, 3, 2, 1]);
    const la = newKv(), lb = newKv();
    await writePrompt(a, la, 5, 1);
    await writePrompt(b, lb, 9, 2);
    // A fork shares a's partial tail block until the first append copies it.
    const c = cache.fork(a);
    liveIds.push(c);
    const lc = la.map((l) => l.clone());
    const ids = [a, b, c], logical = [la, lb, lc];
    const rows = ids.length;
    // One out buffer per layer, copied out after the layers: a copy cannot go inside a compute pass.
    const outs = Array.from({ length: LAYERS }, () => storage(rows * Q_ROW * 4));
    const readback = device.createBuffer({ size: LAYERS * rows * Q_ROW * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    buffers.push(readback);

    // Steps where rows gained a block but the table was not written: the new blocks reached the kernels
    // through the work list alone (TableUpload defers a row's last entry).
    let deferredSteps = 0;
    for (let step = 0; step < 6; step++) {
      // Distinct tokens per sequence: the test's K/V are arbitrary, so equal tokens must not let the prefix
      // cache treat two sequences' blocks as interchangeable.
      const gained = ids.some((id) => cache.length(id) % BLOCK === 0);
      ids.forEach((id, r) => cache.appendTokens(id, [100 + 10 * step + r]));
      const writesBefore = cache.stats().tableWrites;
      const batch = cache.prepareAttention(ids.map((seqId) => ({ seqId })), { writeKV: true });
      if (gained && cache.stats().tableWrites === writesBefore) deferredSteps++;
      const encoder = device.createCommandEncoder();
      const passes = countPasses(encoder);
      const qs: Float32Array[] = [];
      const stepPass = form === 'step-pass' ? encoder.beginComputePass() : undefined;
      for (let l = 0; l < LAYERS; l++) {
        const kv = values(rows * KV_ROW, 1000 + step * 10 + l), vv = values(rows * KV_ROW, 2000 + step * 10 + l);
        const qv = values(rows * Q_ROW, 3000 + step * 10 + l);
        // Each layer's inputs go through their own copy so one submission can hold every layer.
        const kl = storage(kv.byteLength), vl = storage(vv.byteLength), ql = storage(qv.byteLength);
        device.queue.writeBuffer(kl, 0, kv);
        device.queue.writeBuffer(vl, 0, vv);
        device.queue.writeBuffer(ql, 0, qv);
        const out = outs[l]!;
        if (form === 'one-call' || (form === 'step-pass' && l % 2 === 0)) {
          cache.encodeAttention(encoder, { layer: l, entries: batch, q: ql, out, k: kl, v: vl, pass: stepPass });
        } else {
          cache.encodeWriteKV(encoder, { layer: l, entries: batch, k: kl, v: vl, pass: stepPass });
          cache.encodeAttention(encoder, { layer: l, entries: batch, q: ql, out, pass: stepPass });
        }
        qs.push(qv);
        ids.forEach((id, r) => {
          const pos = cache.length(id) - 1;
          logical[r]![l]!.set(pos, kv.subarray(r * KV_ROW, (r + 1) * KV_ROW), vv.subarray(r * KV_ROW, (r + 1) * KV_ROW));
        });
      }
      stepPass?.end();
      for (let l = 0; l < LAYERS; l++) encoder.copyBufferToBuffer(outs[l]!, 0, readback, l * rows * Q_ROW * 4, rows * Q_ROW * 4);
      expect(passes.passes()).toBe({ 'two-calls': 2 * LAYERS, 'one-call': LAYERS, 'step-pass': 1 }[form]);
      // With decodeWritesKv, encodeAttention with k and v takes K/V into the decode dispatch (no split-K
      // at these lengths) and stages it; otherwise a layer takes a write-kv dispatch and the decode. The
      // layers form one flush group: staging its last layer flushes the staged layers in that layer's
      // pass (one dispatch, 'one-call'); where the last layer takes write-kv ('step-pass' stages the even
      // layers), the encoder's finish flushes them, in a pass of its own, a dispatch per staged layer
      // (they are not consecutive).
      const oneCallLayers = decodeWrites ? { 'two-calls': 0, 'one-call': LAYERS, 'step-pass': LAYERS / 2 }[form] : 0;
      const eagerFlushes = decodeWrites && form === 'one-call' ? 1 : 0;
      const finishFlushes = decodeWrites && form === 'step-pass' ? LAYERS / 2 : 0;
      expect(passes.dispatches()).toBe(oneCallLayers + 2 * (LAYERS - oneCallLayers) + eagerFlushes);
      expect(cache.writtenLength(a, 0)).toBe(cache.length(a) - 1); // not yet submitted
      const commands = encoder.finish();
      expect(passes.passes()).toBe({ 'two-calls': 2 * LAYERS, 'one-call': LAYERS, 'step-pass': 1 }[form] + (finishFlushes > 0 ? 1 : 0));
      expect(passes.dispatches()).toBe(oneCallLayers + 2 * (LAYERS - oneCallLayers) + eagerFlushes + finishFlushes);
      await cache.submit([commands]);
      for (const id of ids) for (let l = 0; l < LAYERS; l++) expect(cache.writtenLength(id, l)).toBe(cache.length(id));
      await readback.mapAsync(GPUMapMode.READ);
      const got = new Float32Array(readback.getMappedRange().slice(0));
      readback.unmap();
      for (let l = 0; l < LAYERS; l++) {
        ids.forEach((id, r) => {
          const at = (l * rows + r) * Q_ROW;
          const expected = logical[r]![l]!.attend(qs[l]!.subarray(r * Q_ROW, (r + 1) * Q_ROW), cache.length(id) - 1, Q_HEADS);
          expectClose(got.subarray(at, at + Q_ROW), expected, ATOL, RTOL);
        });
      }
      expect(cache.stats().pinnedBlocks).toBe(0);
    }
    expect(deferredSteps).toBeGreaterThan(0);
    // What the cache holds equals what was written, position by position.
    for (let r = 0; r < ids.length; r++) {
      const stored = await cache.readKV(1, ids[r]!);
      const want = logical[r]![1]!;
      for (let h = 0; h < KV_HEADS; h++) {
        for (let pos = 0; pos < cache.length(ids[r]!); pos++) {
          for (let d = 0; d < DIM; d++) {
            expect(stored.k[(pos * KV_HEADS + h) * DIM + d]).toBe(want.k[h]![pos * DIM + d]);
            expect(stored.v[(pos * KV_HEADS + h) * DIM + d]).toBe(want.v[h]![pos * DIM + d]);
          }
        }
      }
    }
  }

  it('a pipelined loop (the next step encoded before the last one is submitted) copies no blocks', async () => {
    const a = sequence([1, 2, 3, 4, 5]);
    const la = newKv();
    await writePrompt(a, la, 5, 30);
    const before = cache.stats().cowCopies;
    const readback = device.createBuffer({ size: 2 * Q_ROW * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    buffers.push(readback);
    const encoders: GPUCommandEncoder[] = [];
    const qs: Float32Array[] = [];
    for (let step = 0; step < 2; step++) {
      cache.appendTokens(a, [50 + step]);
      // Step 1's tail block is pinned by step 0's unsubmitted work: appending and writing a new position
      // must not copy it.
      const batch = cache.prepareAttention([{ seqId: a }], { writeKV: true });
      const kv = values(KV_ROW, 60 + step), vv = values(KV_ROW, 70 + step), qv = values(Q_ROW, 80 + step);
      const k = storage(KV_ROW * 4), v = storage(KV_ROW * 4), q = storage(Q_ROW * 4), out = storage(Q_ROW * 4);
      device.queue.writeBuffer(k, 0, kv);
      device.queue.writeBuffer(v, 0, vv);
      device.queue.writeBuffer(q, 0, qv);
      const encoder = device.createCommandEncoder();
      cache.encodeWriteKV(encoder, { layer: 0, entries: batch, k, v });
      if (step === 1) {
        // Step 0's write is not submitted yet, so step 1 may not attend over it: submit step 0 first.
        await cache.submit([encoders[0]!.finish()]);
      }
      cache.encodeAttention(encoder, { layer: 0, entries: batch, q, out });
      encoder.copyBufferToBuffer(out, 0, readback, step * Q_ROW * 4, Q_ROW * 4);
      encoders.push(encoder);
      la[0]!.set(5 + step, kv, vv);
      qs.push(qv);
    }
    await cache.submit([encoders[1]!.finish()]);
    expect(cache.stats().cowCopies).toBe(before);
    await readback.mapAsync(GPUMapMode.READ);
    const got = new Float32Array(readback.getMappedRange().slice(0));
    readback.unmap();
    for (let step = 0; step < 2; step++) {
      expectClose(got.subarray(step * Q_ROW, (step + 1) * Q_ROW), la[0]!.attend(qs[step]!, 5 + step, Q_HEADS), ATOL, RTOL);
    }
  });

  it('a write batch copies the shared blocks under its queries when prepared', async () => {
    const a = sequence([1, 2, 3, 4, 5]);
    const la = newKv();
    await writePrompt(a, la, 5, 3);
    cache.appendTokens(a, [6]);
    const c = cache.fork(a); // shares the tail block holding position 5 (not yet written)
    liveIds.push(c);
    const before = cache.stats().cowCopies;
    const batch = cache.prepareAttention([{ seqId: a }], { writeKV: true });
    expect(cache.stats().cowCopies).toBe(before + 1);
    const kv = values(KV_ROW, 40), vv = values(KV_ROW, 41), qv = values(Q_ROW, 42);
    const k = storage(KV_ROW * 4), v = storage(KV_ROW * 4), q = storage(Q_ROW * 4), out = storage(Q_ROW * 4);
    device.queue.writeBuffer(k, 0, kv);
    device.queue.writeBuffer(v, 0, vv);
    device.queue.writeBuffer(q, 0, qv);
    const readback = device.createBuffer({ size: Q_ROW * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    buffers.push(readback);
    const encoder = device.createCommandEncoder();
    cache.encodeWriteKV(encoder, { layer: 0, entries: batch, k, v });
    cache.encodeAttention(encoder, { layer: 0, entries: batch, q, out });
    encoder.copyBufferToBuffer(out, 0, readback, 0, Q_ROW * 4);
    await cache.submit([encoder.finish()]);
    la[0]!.set(5, kv, vv);
    await readback.mapAsync(GPUMapMode.READ);
    expectClose(new Float32Array(readback.getMappedRange().slice(0)), la[0]!.attend(qv, 5, Q_HEADS), ATOL, RTOL);
    readback.unmap();
    expect([cache.writtenLength(a, 0), cache.writtenLength(c, 0)]).toEqual([6, 5]); // the fork did not get a's write
  });

  it('a prompt written through encodeWriteKV is registered for prefix reuse once submitted', async () => {
    const prompt = Array.from({ length: 10 }, (_, i) => 500 + i);
    const a = sequence(prompt);
    const batch = cache.prepareAttention([{ seqId: a, numQueries: 10, queryStart: 0 }], { writeKV: true });
    const k = storage(10 * KV_ROW * 4), v = storage(10 * KV_ROW * 4);
    const encoder = device.createCommandEncoder();
    for (let l = 0; l < LAYERS; l++) cache.encodeWriteKV(encoder, { layer: l, entries: batch, k, v });
    const early = cache.createSequence({ tokens: prompt }); // before the submission: nothing to reuse yet
    liveIds.push(early.id);
    expect(early.cachedTokens).toBe(0);
    await cache.submit([encoder.finish()]);
    const b = cache.createSequence({ tokens: prompt });
    liveIds.push(b.id);
    expect(b.cachedTokens).toBe(8); // two full blocks of 4, written in both layers
  });

  it.each([
    ['encodeWriteKV + encodeAttention', false],
    ['encodeAttention with k and v, decodeWritesKv (one dispatch per layer)', true],
  ] as const)('a many-layer decode loop creates no bind groups or buffers once its upload rings are full: %s', async (_, decodeWritesKv) => {
    const layers = 40;
    const deep = await PagedKVCache.create(device, {
      numLayers: layers, numKvHeads: 1, headDim: 8, numQueryHeads: 2, blockSize: BLOCK, numBlocks: 16, decodeWritesKv,
    });
    const created = { groups: 0, buffers: 0 };
    const proto = Object.getPrototypeOf(device) as GPUDevice;
    const { createBindGroup, createBuffer } = proto;
    try {
      const ids = [deep.createSequence({ tokens: [1, 2, 3] }).id, deep.createSequence({ tokens: [4, 5] }).id];
      const k = storage(5 * 8 * 4), q = storage(2 * 2 * 8 * 4), out = storage(2 * 2 * 8 * 4);
      // The prompts' K/V but the last position of each, written for real.
      const prompts = deep.prepareAttention([{ seqId: ids[0]!, numQueries: 2, queryStart: 0 }, { seqId: ids[1]!, numQueries: 1, queryStart: 0 }], { writeKV: true });
      const prefill = device.createCommandEncoder();
      for (let l = 0; l < layers; l++) deep.encodeWriteKV(prefill, { layer: l, entries: prompts, k, v: k });
      await deep.submit([prefill.finish()]);
      proto.createBindGroup = function (this: GPUDevice, d: GPUBindGroupDescriptor) {
        created.groups++;
        return createBindGroup.call(this, d);
      };
      proto.createBuffer = function (this: GPUDevice, d: GPUBufferDescriptor) {
        created.buffers++;
        return createBuffer.call(this, d);
      };
      const perStep: number[] = [];
      for (let step = 0; step < 12; step++) {
        const before = created.groups + created.buffers;
        // Re-prepared every step (a new batch, like a decode step), recorded for every layer.
        const batch = deep.prepareAttention(ids.map((seqId) => ({ seqId })), { writeKV: true });
        const encoder = device.createCommandEncoder();
        const passes = countPasses(encoder);
        for (let l = 0; l < layers; l++) {
          if (decodeWritesKv) {
            deep.encodeAttention(encoder, { layer: l, entries: batch, q, out, k, v: k });
          } else {
            deep.encodeWriteKV(encoder, { layer: l, entries: batch, k, v: k });
            deep.encodeAttention(encoder, { layer: l, entries: batch, q, out });
          }
        }
        // Staged: a decode per layer and a flush per group of layers, right after the group's last
        // decode (as even as the flush's binding limit allows: one chunk, 2 + layers storage bindings).
        const perDispatch = Math.min(MAX_FLUSH_LAYERS, device.limits.maxStorageBuffersPerShaderStage - 2);
        expect(passes.dispatches()).toBe(decodeWritesKv ? layers + Math.ceil(layers / perDispatch) : 2 * layers);
        const opened = passes.passes();
        encoder.finish(); // host-side behaviour only: the work is not run
        expect(passes.passes()).toBe(opened); // nothing left to flush
        await deep.markSubmitted();
        perStep.push(created.groups + created.buffers - before);
      }
      // The upload rings hold 8 batches: from the ninth step on everything is reused.
      expect(perStep.slice(8)).toEqual([0, 0, 0, 0]);
    } finally {
      proto.createBindGroup = createBindGroup;
      proto.createBuffer = createBuffer;
      deep.destroy();
    }
  });

  it('decodeWritesKv with k and v given in the out buffer: the write keeps its own dispatch (one dispatch cannot read what it writes)', async () => {
    const id = decodeWritesCache.createSequence({ tokens: [3, 1, 4] }).id;
    try {
      decodeWritesCache.appendTokens(id, [1]);
      // Positions 0..2 are unwritten: attention only at position 3 would be refused, so write them all.
      const batch = decodeWritesCache.prepareAttention([{ seqId: id, numQueries: 4, queryStart: 0 }], { writeKV: true });
      const kv = values(4 * KV_ROW, 71);
      const shared = storage(4 * Q_ROW * 4), q = storage(4 * Q_ROW * 4);
      device.queue.writeBuffer(shared, 0, kv);
      const encoder = device.createCommandEncoder();
      decodeWritesCache.encodeAttention(encoder, { layer: 0, entries: batch, q, out: shared, k: shared, v: shared });
      await decodeWritesCache.submit([encoder.finish()]);
      const next = decodeWritesCache.prepareAttention([{ seqId: id }], { writeKV: true });
      const row = values(KV_ROW, 72);
      device.queue.writeBuffer(shared, 0, row);
      const decode = device.createCommandEncoder();
      const passes = countPasses(decode);
      decodeWritesCache.encodeAttention(decode, { layer: 0, entries: next, q, out: shared, k: shared, v: shared });
      expect(passes.dispatches()).toBe(2);
      await decodeWritesCache.submit([decode.finish()]);
      const stored = await decodeWritesCache.readKV(0, id);
      const want = Array.from(roundToF16(row));
      expect(Array.from(stored.k.subarray(3 * KV_ROW, 4 * KV_ROW))).toEqual(want);
      expect(Array.from(stored.v.subarray(3 * KV_ROW, 4 * KV_ROW))).toEqual(want);
    } finally {
      decodeWritesCache.free(id);
      decodeWritesCache.checkInvariants();
    }
  });

  it('positions count as written only once the command buffer is submitted', async () => {
    const a = sequence([1, 2, 3]);
    await writePrompt(a, newKv(), 3, 5);
    cache.appendTokens(a, [4]);
    const batch = cache.prepareAttention([{ seqId: a }], { writeKV: true });
    const k = storage(KV_ROW * 4), v = storage(KV_ROW * 4), q = storage(Q_ROW * 4), out = storage(Q_ROW * 4);
    const writer = device.createCommandEncoder();
    cache.encodeWriteKV(writer, { layer: 0, entries: batch, k, v });
    // Another encoder could be submitted first: its attention may not read the unsubmitted write.
    expect(() => cache.encodeAttention(device.createCommandEncoder(), { layer: 0, entries: batch, q, out })).toThrow(/no K\/V written in layer 0/);
    await expect(cache.attend(0, [{ seqId: a, q: values(Q_ROW, 1) }])).rejects.toThrow(InvalidArgumentError);
    expect(cache.writtenLength(a, 0)).toBe(3);
    await cache.submit([writer.finish()]);
    expect(cache.writtenLength(a, 0)).toBe(4);
    expect(cache.writtenLength(a, 1)).toBe(3);
    // Layer 1 was not written by that submission.
    expect(() => cache.encodeAttention(device.createCommandEncoder(), { layer: 1, entries: batch, q, out })).toThrow(/no K\/V written in layer 1/);
  });

  /** A sequence with `prompt` written, one appended token, and layer 0's write of it encoded (not submitted). */
  async function encodedWrite(prompt: number[], seed: number): Promise<{ a: number; encoder: GPUCommandEncoder; k: GPUBuffer }> {
    const a = sequence(prompt);
    await writePrompt(a, newKv(), prompt.length, seed);
    cache.appendTokens(a, [prompt.length + 1]);
    const batch = cache.prepareAttention([{ seqId: a }], { writeKV: true });
    const k = storage(KV_ROW * 4), v = storage(KV_ROW * 4);
    const encoder = device.createCommandEncoder();
    cache.encodeWriteKV(encoder, { layer: 0, entries: batch, k, v });
    return { a, encoder, k };
  }

  it('a submission the GPU rejects takes its written positions back', async () => {
    const { a, encoder, k } = await encodedWrite([1, 2, 3, 4], 6);
    const buffer = encoder.finish();
    k.destroy(); // the submission now uses a destroyed buffer: WebGPU rejects it
    await expect(cache.submit([buffer])).rejects.toThrow(GpuValidationError);
    expect(cache.writtenLength(a, 0)).toBe(4);
    expect(cache.stats().pinnedBlocks).toBe(0);
  });

  it('refuses bad batches and buffers with typed errors, pinning nothing', async () => {
    const a = sequence([1, 2, 3, 4, 5, 6]);
    await writePrompt(a, newKv(), 6, 7);
    cache.appendTokens(a, [7]);
    const k = storage(KV_ROW * 4), v = storage(KV_ROW * 4);
    const encoder = device.createCommandEncoder();
    const readOnly = cache.prepareAttention([{ seqId: a }]);
    expect(() => cache.encodeWriteKV(encoder, { layer: 0, entries: readOnly, k, v })).toThrow(/writeKV: true/);
    expect(() => cache.prepareAttention([{ seqId: a }, { seqId: a, queryStart: 5, qRow: 1 }], { writeKV: true })).toThrow(/appears twice/);
    const batch = cache.prepareAttention([{ seqId: a }], { writeKV: true });
    expect(() => cache.encodeWriteKV(encoder, { layer: 0, entries: batch, k: storage(8), v })).toThrow(InvalidArgumentError);
    expect(() => cache.encodeWriteKV(encoder, { layer: 2, entries: batch, k, v })).toThrow(/layer/);
    expect(cache.stats().pinnedBlocks).toBe(0);
    // A fork shares the tail and writeKV then copies it for a: the prepared slot map is stale.
    const b = cache.fork(a);
    liveIds.push(b);
    await cache.writeKV(0, a, 6, values(KV_ROW, 8), values(KV_ROW, 9));
    expect(() => cache.encodeWriteKV(encoder, { layer: 0, entries: batch, k, v })).toThrow(/changed since prepareAttention/);
    expect(cache.stats().pinnedBlocks).toBe(0);
    encoder.finish();
  });

  it('encodeAttention with k and v refuses what encodeWriteKV refuses, and bad input records and pins nothing', async () => {
    const a = sequence([1, 2, 3, 4, 5, 6]);
    await writePrompt(a, newKv(), 6, 23);
    cache.appendTokens(a, [7]);
    const k = storage(KV_ROW * 4), v = storage(KV_ROW * 4), q = storage(Q_ROW * 4), out = storage(Q_ROW * 4);
    const encoder = device.createCommandEncoder();
    const passes = countPasses(encoder);
    const readOnly = cache.prepareAttention([{ seqId: a }]);
    expect(() => cache.encodeAttention(encoder, { layer: 0, entries: readOnly, q, out, k, v })).toThrow(/writeKV: true/);
    expect(() => cache.encodeAttention(encoder, { layer: 0, entries: [{ seqId: a }], q, out, k, v })).toThrow(/writeKV: true/);
    const batch = cache.prepareAttention([{ seqId: a }], { writeKV: true });
    expect(() => cache.encodeAttention(encoder, { layer: 0, entries: batch, q, out, k })).toThrow(InvalidArgumentError);
    expect(() => cache.encodeAttention(encoder, { layer: 0, entries: batch, q, out, k: storage(8), v })).toThrow(InvalidArgumentError);
    expect(() => cache.encodeAttention(encoder, { layer: 0, entries: batch, q: storage(8), out, k, v })).toThrow(InvalidArgumentError);
    // A pass option that is not a compute pass (an encoder, say) is refused before anything is recorded.
    const notAPass = encoder as unknown as GPUComputePassEncoder;
    expect(() => cache.encodeAttention(encoder, { layer: 0, entries: batch, q, out, k, v, pass: notAPass })).toThrow(/pass must be an open GPUComputePassEncoder/);
    expect(() => cache.encodeWriteKV(encoder, { layer: 0, entries: batch, k, v, pass: notAPass })).toThrow(/pass must be an open GPUComputePassEncoder/);
    // Without k and v the query position is not written yet: attention alone is refused.
    expect(() => cache.encodeAttention(encoder, { layer: 0, entries: batch, q, out })).toThrow(/no K\/V written in layer 0/);
    expect(passes.passes()).toBe(0);
    expect(cache.stats().pinnedBlocks).toBe(0);
    await cache.submit([encoder.finish()]);
    expect(cache.writtenLength(a, 0)).toBe(6); // nothing was claimed
    // A stale slot map (a fork's copy-on-write since prepare) is refused here too.
    const b = cache.fork(a);
    liveIds.push(b);
    await cache.writeKV(0, a, 6, values(KV_ROW, 8), values(KV_ROW, 9));
    expect(() => cache.encodeAttention(device.createCommandEncoder(), { layer: 0, entries: batch, q, out, k, v })).toThrow(/changed since prepareAttention/);
    expect(cache.stats().pinnedBlocks).toBe(0);
  });

  it('a prepared batch that passed its checks for one layer is checked again once rows or written lengths change', async () => {
    const a = sequence([1, 2, 3, 4, 5, 6]);
    await writePrompt(a, newKv(), 6, 21);
    const q = storage(Q_ROW * 4), out = storage(Q_ROW * 4);
    // Written lengths: attention of a read-only batch passes for layer 0, then a rejected rewrite of
    // positions 0..5 takes the written positions back (in every layer): the same batch must be refused now.
    const read = cache.prepareAttention([{ seqId: a }]);
    const reader = device.createCommandEncoder();
    cache.encodeAttention(reader, { layer: 0, entries: read, q, out });
    const rewrite = cache.prepareAttention([{ seqId: a, numQueries: 6, queryStart: 0 }], { writeKV: true });
    const doomed = storage(6 * KV_ROW * 4);
    const writer = device.createCommandEncoder();
    cache.encodeWriteKV(writer, { layer: 0, entries: rewrite, k: doomed, v: doomed });
    const rejected = writer.finish();
    doomed.destroy();
    await expect(cache.submit([rejected])).rejects.toThrow(GpuValidationError);
    expect(cache.writtenLength(a, 0)).toBe(0);
    expect(() => cache.encodeAttention(reader, { layer: 0, entries: read, q, out })).toThrow(/no K\/V written in layer 0/);
    expect(() => cache.encodeAttention(reader, { layer: 1, entries: read, q, out })).toThrow(/no K\/V written in layer 1/);
    // Work recorded before the failure still submits: the kernels dropped after the GPU error keep their
    // buffers until no unsubmitted encoder can bind them.
    await cache.submit([reader.finish()]);
    // Rows: a write batch whose first layer was encoded is refused for the next layer once a
    // copy-on-write replaced one of its blocks.
    await writePrompt(a, newKv(), 6, 22);
    cache.appendTokens(a, [7]);
    const batch = cache.prepareAttention([{ seqId: a }], { writeKV: true });
    const k = storage(KV_ROW * 4), v = storage(KV_ROW * 4);
    const encoder = device.createCommandEncoder();
    cache.encodeWriteKV(encoder, { layer: 0, entries: batch, k, v });
    const b = cache.fork(a);
    liveIds.push(b);
    await cache.writeKV(1, a, 6, values(KV_ROW, 8), values(KV_ROW, 9)); // copies the shared tail for a
    expect(() => cache.encodeWriteKV(encoder, { layer: 1, entries: batch, k, v })).toThrow(/changed since prepareAttention/);
    await cache.submit([encoder.finish()]);
  });

  it('a prepared batch whose layers are written unevenly is checked layer by layer', async () => {
    // Two sequences; layer 0 holds all of both, layer 1 only a's and the first 3 positions of b: the
    // every-layer check fails, so each layer is checked alone — layer 0 passes, layer 1 is refused
    // naming b, until b's layer 1 is written (a growth, not a shrink: the batch is not re-prepared).
    const a = sequence([1, 2, 3, 4, 5]);
    const b = sequence([6, 7, 8, 9, 10, 11]);
    await writePrompt(a, newKv(), 5, 31);
    await cache.writeKV(0, b, 0, values(6 * KV_ROW, 32), values(6 * KV_ROW, 33));
    await cache.writeKV(1, b, 0, values(3 * KV_ROW, 34), values(3 * KV_ROW, 35));
    const q = storage(2 * Q_ROW * 4), out = storage(2 * Q_ROW * 4);
    const batch = cache.prepareAttention([{ seqId: a }, { seqId: b }]);
    const encoder = device.createCommandEncoder();
    cache.encodeAttention(encoder, { layer: 0, entries: batch, q, out });
    expect(() => cache.encodeAttention(encoder, { layer: 1, entries: batch, q, out })).toThrow(
      new RegExp(`entries\\[1\\]: positions 3\\.\\.5 of sequence ${b} have no K/V written in layer 1`),
    );
    await cache.writeKV(1, b, 3, values(3 * KV_ROW, 36), values(3 * KV_ROW, 37));
    cache.encodeAttention(encoder, { layer: 1, entries: batch, q, out });
    cache.encodeAttention(encoder, { layer: 0, entries: batch, q, out });
    await cache.submit([encoder.finish()]);
  });

  it('a sequence freed before the submission is not marked, and its blocks wait for the work', async () => {
    const { a, encoder } = await encodedWrite([1, 2, 3], 10);
    const free = cache.stats().blocksFree + cache.stats().blocksEvictable;
    cache.free(a);
    liveIds.splice(liveIds.indexOf(a), 1);
    expect(cache.stats().blocksFree + cache.stats().blocksEvictable).toBe(free);
    await cache.submit([encoder.finish()]);
    expect(cache.stats().sequences).toBe(0);
    expect(cache.stats().pinnedBlocks).toBe(0);
  });
});
