// The bad-input catalogue (extends test/cache/bad-input.test.ts, which covers stale ids, the common bad
// tokens, lengths, array sizes, unwritten positions, configs and a few calls after destroy): every entry
// gets a typed error and leaves the cache exactly as it was, or — for non-finite numbers, which are data,
// not errors — the documented behaviour (README "Bad input"): NaN/±∞ are stored as given (f16 overflow
// becomes ±∞) and reach only the outputs of queries that attend them, never another query row or another
// sequence.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { CacheDestroyedError, GpuValidationError, InvalidArgumentError } from '../../src/errors';
import { createGpu } from '../../src/gpu/create-gpu';
import { InvalidTokenError, SequenceTooLongError } from '../../src/table/errors';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { comparableStats } from './helpers/cache-model';
import { queryRows } from './helpers/kv-content';
import { mismatches, SequenceModel } from './helpers/sequence-model';

failOnUncapturedGpuErrors();

const heads = { numKvHeads: 2, numQueryHeads: 4, headDim: 8 } as const;
const shape = { ...heads, numLayers: 1, blockSize: 4, numBlocks: 16, maxSequenceLength: 32 } as const;
const ROW = heads.numKvHeads * heads.headDim;
const Q_ROW = heads.numQueryHeads * heads.headDim;
const SCALE = 1 / Math.sqrt(heads.headDim);
const modelShape = { ...heads, numLayers: 1, blockSize: 4 };

let device: GPUDevice;
let cache: PagedKVCache;
let seq: { id: number; model: SequenceModel };

/** Everything observable: stats, and every sequence's tokens, blocks and written length. */
function snapshot() {
  return {
    stats: comparableStats(cache),
    sequences: cache.table.sequenceIds().map((id) => ({
      id,
      tokens: Array.from(cache.tokens(id)),
      blocks: Array.from(cache.table.blocksOf(id)),
      written: cache.writtenLength(id, 0),
    })),
  };
}

async function expectRejected(action: () => unknown, errorClass: abstract new (...args: never[]) => Error, message?: RegExp): Promise<void> {
  const before = snapshot();
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(errorClass);
  if (message) expect((caught as Error).message).toMatch(message);
  expect(snapshot()).toEqual(before);
  cache.checkInvariants();
}

async function writeModel(id: number, model: SequenceModel, from: number, to: number): Promise<void> {
  const ids = model.contentFor(from, to - from, 0);
  await cache.writeKV(0, id, from, model.rows(0, ids, 0), model.rows(0, ids, 1));
  model.write(0, from, ids);
}

beforeAll(async () => {
  device = (await testGpu()).device;
  cache = await PagedKVCache.create(device, shape);
  const tokens = [3, 1, 4, 1, 5, 9, 2, 6];
  seq = { id: cache.createSequence({ tokens }).id, model: new SequenceModel(modelShape, '', tokens) };
  await writeModel(seq.id, seq.model, 0, 8);
});

afterAll(() => cache.destroy());

describe('bad tokens and options', () => {
  it.each([
    ['a string token', ['5']],
    ['null', [null]],
    ['undefined (a hole)', [1, , 2]], // eslint-disable-line no-sparse-arrays
    ['a bigint', [5n]],
    ['a fraction in a Float64Array', new Float64Array([1, 2.5])],
    ['a negative in an Int32Array', new Int32Array([1, -1])],
    ['2^32 in a Float64Array', new Float64Array([2 ** 32])],
    ['-Infinity', [-Infinity]],
    ['an object', [{}]],
  ])('%s → InvalidTokenError, nothing changed', async (_, tokens) => {
    await expectRejected(() => cache.createSequence({ tokens: tokens as ArrayLike<number> }), InvalidTokenError);
    await expectRejected(() => cache.appendTokens(seq.id, tokens as ArrayLike<number>), InvalidTokenError);
    await expectRejected(() => cache.createSequenceAsync({ tokens: tokens as ArrayLike<number> }), InvalidTokenError);
  });

  it('token containers that are not array-likes → InvalidTokenError', async () => {
    for (const tokens of [undefined, null, 'abc', 7, { length: -1 }, { length: 1.5 }, { length: 2 ** 60 }]) {
      await expectRejected(() => cache.createSequence({ tokens: tokens as unknown as ArrayLike<number> }), InvalidTokenError);
    }
  });

  it('accepts the boundary tokens 0 and 2^32 − 1 (and −0 as 0)', async () => {
    const id = cache.createSequence({ tokens: [0, 2 ** 32 - 1, -0] }).id;
    expect(Array.from(cache.tokens(id))).toEqual([0, 2 ** 32 - 1, 0]);
    cache.free(id);
  });

  it('malformed options and namespaces → InvalidArgumentError', async () => {
    await expectRejected(() => cache.createSequence(null as never), InvalidArgumentError);
    await expectRejected(() => cache.createSequence({ tokens: [1], namespace: 5 as never }), InvalidArgumentError, /namespace/);
    await expectRejected(() => cache.createSequence({ tokens: [1], namespace: 'x'.repeat(129) }), InvalidArgumentError, /namespace/);
    await expectRejected(() => cache.createSequenceAsync({ tokens: [1] }, null as never), InvalidArgumentError);
    await expectRejected(() => cache.attend(0, [{ seqId: seq.id, q: new Float32Array(Q_ROW) }], { scale: NaN }), InvalidArgumentError, /scale/);
    await expectRejected(() => cache.attend(0, [{ seqId: seq.id, q: new Float32Array(Q_ROW) }], { scale: Infinity }), InvalidArgumentError, /scale/);
    await expectRejected(() => cache.attend(0, [{ seqId: seq.id, q: new Float32Array(Q_ROW), queryStart: 1.5 }]), InvalidArgumentError);
    await expectRejected(() => cache.attend(0, [null as never]), InvalidArgumentError);
    await expectRejected(() => cache.readKV(0, seq.id, { start: 3, end: 2 }), InvalidArgumentError);
    await expectRejected(() => cache.readKV(0, seq.id, { start: -1 }), InvalidArgumentError);
    await expectRejected(() => cache.readKV(0.5, seq.id), InvalidArgumentError, /layer/);
  });
});

describe('huge sequences', () => {
  it('exactly the maximum is accepted; one more token, or ten million, is refused at once', async () => {
    const id = cache.createSequence({ tokens: new Uint32Array(32) }).id;
    expect(cache.length(id)).toBe(32);
    await expectRejected(() => cache.appendTokens(id, [1]), SequenceTooLongError);
    cache.free(id);
    const started = performance.now();
    await expectRejected(() => cache.createSequence({ tokens: new Uint32Array(33) }), SequenceTooLongError);
    await expectRejected(() => cache.createSequence({ tokens: new Uint32Array(10_000_000) }), SequenceTooLongError);
    await expectRejected(() => cache.appendTokens(seq.id, new Uint32Array(10_000_000)), SequenceTooLongError);
    await expectRejected(() => cache.createSequenceAsync({ tokens: new Uint32Array(10_000_000) }), SequenceTooLongError);
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe('wrong arrays and buffers', () => {
  it('K/V and Q of the wrong type or length → InvalidArgumentError', async () => {
    await expectRejected(() => cache.writeKV(0, seq.id, 0, new Float64Array(ROW) as never, new Float64Array(ROW) as never), InvalidArgumentError, /Float32Array|GPUBuffer/);
    await expectRejected(() => cache.writeKV(0, seq.id, 0, new Float32Array(ROW), new Float32Array(ROW - 1)), InvalidArgumentError);
    await expectRejected(() => cache.writeKV(0, seq.id, 0, new Float32Array(ROW), null as never), InvalidArgumentError);
    await expectRejected(() => cache.attend(0, [{ seqId: seq.id, q: new Float32Array(0) }]), InvalidArgumentError, /rows/);
    await expectRejected(() => cache.attend(0, [{ seqId: seq.id, q: new Float64Array(Q_ROW) as never }]), InvalidArgumentError);
    await expectRejected(() => cache.attend(0, [{ seqId: seq.id, q: new Float32Array(Q_ROW + 1) }]), InvalidArgumentError);
  });

  it('subarray views (non-zero byteOffset) are read from the right place', async () => {
    const tokens = [7, 7, 7, 7, 8];
    const id = cache.createSequence({ tokens, namespace: 'views' }).id;
    const model = new SequenceModel(modelShape, 'views', tokens);
    const ids = model.contentFor(0, 5, 0);
    const padded = (data: Float32Array) => {
      const big = new Float32Array(data.length + 3 * ROW).fill(NaN);
      big.set(data, 2 * ROW);
      return big.subarray(2 * ROW, 2 * ROW + data.length);
    };
    await cache.writeKV(0, id, 0, padded(model.rows(0, ids, 0)), padded(model.rows(0, ids, 1)));
    model.write(0, 0, ids);
    const { k } = await cache.readKV(0, id);
    expect(Array.from(k)).toEqual(Array.from(model.expectedRows(0, 0, 5, 0)));
    const q = queryRows(1, 2, Q_ROW);
    const qPadded = new Float32Array(4 * Q_ROW).fill(NaN);
    qPadded.set(q, Q_ROW);
    const [out] = await cache.attend(0, [{ seqId: id, q: qPadded.subarray(Q_ROW, 3 * Q_ROW), queryStart: 3 }]);
    expect(mismatches(out!, model.expectedAttention(0, q, 3, 2, SCALE))).toEqual([]);
    cache.free(id);
  });

  it('GPU buffers that are too small, lack STORAGE, or are not buffers → InvalidArgumentError', async () => {
    const make = (size: number, usage: number) => device.createBuffer({ size, usage });
    const good = make(8 * ROW * 4, GPUBufferUsage.STORAGE);
    const small = make(8 * ROW * 4 - 4, GPUBufferUsage.STORAGE);
    const noStorage = make(8 * ROW * 4, GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC);
    try {
      await expectRejected(() => cache.writeKV(0, seq.id, 0, small, good), InvalidArgumentError, /bytes/);
      await expectRejected(() => cache.writeKV(0, seq.id, 0, good, noStorage), InvalidArgumentError, /STORAGE/);
      const roomy = make(10 * ROW * 4, GPUBufferUsage.STORAGE);
      await expectRejected(() => cache.writeKV(0, seq.id, 0, roomy, roomy, { numTokens: 9 }), InvalidArgumentError, /length/);
      roomy.destroy();
      await expectRejected(() => cache.writeKV(0, seq.id, 0, good, good, { numTokens: 2.5 }), InvalidArgumentError, /numTokens/);
      await expectRejected(() => cache.writeKV(0, seq.id, 0, good, new Float32Array(ROW)), InvalidArgumentError, /Float32Array/);
      await expectRejected(() => cache.writeKV(0, seq.id, 0, {} as never, {} as never), InvalidArgumentError, /GPUBuffer/);
      const q = make(Q_ROW * 4, GPUBufferUsage.STORAGE);
      const out = make(Q_ROW * 4, GPUBufferUsage.STORAGE);
      const tooSmall = make(Q_ROW * 4 - 16, GPUBufferUsage.STORAGE);
      const uniform = make(Q_ROW * 4, GPUBufferUsage.UNIFORM);
      const encoder = device.createCommandEncoder();
      const entries = [{ seqId: seq.id }];
      await expectRejected(() => cache.encodeAttention(encoder, { layer: 0, entries, q: tooSmall, out }), InvalidArgumentError, /bytes/);
      await expectRejected(() => cache.encodeAttention(encoder, { layer: 0, entries, q, out: uniform }), InvalidArgumentError, /STORAGE/);
      await expectRejected(() => cache.encodeAttention(encoder, { layer: 0, entries: [{ seqId: seq.id, numQueries: 2 }], q, out }), InvalidArgumentError, /bytes/);
      await expectRejected(() => cache.encodeAttention(encoder, { layer: 0, entries: [], q, out }), InvalidArgumentError);
      for (const pass of [null, {}, good, encoder]) {
        await expectRejected(() => cache.encodeAttention(encoder, { layer: 0, entries, q, out, pass: pass as never }), InvalidArgumentError, /pass must be/);
      }
      expect(cache.stats().pinnedBlocks).toBe(0); // nothing pinned by the refused calls
      encoder.finish();
      for (const b of [q, out, tooSmall, uniform]) b.destroy();
    } finally {
      for (const b of [good, small, noStorage]) b.destroy();
    }
  });

  it('GPU buffers the GPU rejects (another device’s, mapped, destroyed) → GpuValidationError, nothing written', async () => {
    const other = await createGpu();
    const tokens = [4, 4, 4, 4, 4, 4];
    const id = cache.createSequence({ tokens, namespace: 'rejected' }).id;
    try {
      const size = 6 * ROW * 4;
      const foreign = other.device.createBuffer({ size, usage: GPUBufferUsage.STORAGE });
      const mapped = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE, mappedAtCreation: true });
      const destroyed = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE });
      destroyed.destroy();
      for (const bad of [foreign, mapped, destroyed]) {
        await expect(cache.writeKV(0, id, 0, bad, bad)).rejects.toBeInstanceOf(GpuValidationError);
        expect(cache.writtenLength(id, 0)).toBe(0);
        await expect(cache.readKV(0, id, { end: 1 })).rejects.toThrow(InvalidArgumentError);
      }
      expect(cache.prefix.cachedPrefix(tokens, 'rejected')).toBe(0); // nothing registered either
      foreign.destroy();
      mapped.unmap();
      mapped.destroy();
    } finally {
      cache.free(id);
      other.device.destroy();
    }
    cache.checkInvariants();
  });
});

describe('NaN and infinities (data, not errors)', () => {
  it('are stored as given; finite values beyond f16 become ±∞', async () => {
    const id = cache.createSequence({ tokens: [1, 2, 3, 4] }).id;
    const k = new Float32Array(4 * ROW);
    k.set([NaN, Infinity, -Infinity, 1e5, -1e5, 65504, 65520, 6e-8]);
    await cache.writeKV(0, id, 0, k, k);
    const { v } = await cache.readKV(0, id);
    expect(Array.from(v.subarray(0, 8))).toEqual([NaN, Infinity, -Infinity, Infinity, -Infinity, 65504, Infinity, 5.960464477539063e-8]);
    cache.free(id);
  });

  it('NaN in one query row reaches only that row’s output', async () => {
    const q = queryRows(9, 3, Q_ROW);
    q[Q_ROW + 1 * heads.headDim + 3] = NaN; // query 1, head 1
    const decodeQ = queryRows(10, 1, Q_ROW);
    decodeQ[0] = NaN; // every element of head 0 of this decode query becomes NaN
    const other = queryRows(11, 1, Q_ROW);
    const [prefill, decode, clean] = await cache.attend(0, [
      { seqId: seq.id, q, queryStart: 4 },
      { seqId: seq.id, q: decodeQ, queryStart: 6 },
      { seqId: seq.id, q: other, queryStart: 7 },
    ]);
    const hd = heads.headDim;
    const rowHead = (out: Float32Array, query: number, head: number) => Array.from(out.subarray((query * heads.numQueryHeads + head) * hd, (query * heads.numQueryHeads + head + 1) * hd));
    const expected = seq.model.expectedAttention(0, q, 4, 3, SCALE);
    for (let query = 0; query < 3; query++) {
      for (let head = 0; head < heads.numQueryHeads; head++) {
        const got = rowHead(prefill!, query, head);
        // The poisoned row itself is left open: WGSL lets a device assume no NaN in shader arithmetic
        // (SwiftShader gives NaN, Mesa's lavapipe 0 in the register-blocked prefill).
        if (query !== 1 || head !== 1) expect(mismatches(got, rowHead(Float32Array.from(expected), query, head))).toEqual([]);
      }
    }
    // Likewise head 0 of the decode query (NaN on SwiftShader and lavapipe); its other heads stay finite.
    for (let head = 1; head < heads.numQueryHeads; head++) expect(rowHead(decode!, 0, head).every(Number.isFinite)).toBe(true);
    expect(mismatches(clean!, seq.model.expectedAttention(0, other, 7, 1, SCALE))).toEqual([]);
  });

  it('NaN K/V at a position reach queries attending it (and forks sharing it), never earlier decode queries or other sequences', async () => {
    const tokens = [2, 7, 1, 8, 2, 8];
    const id = cache.createSequence({ tokens, namespace: 'nan' }).id;
    const model = new SequenceModel(modelShape, 'nan', tokens);
    await writeModel(id, model, 0, 6);
    const child = cache.fork(id);
    const poison = new Float32Array(ROW).fill(NaN);
    await cache.writeKV(0, id, 4, poison, poison); // copies the shared block: the child keeps finite K/V
    const decode = (queryStart: number, s = id) => ({ seqId: s, q: queryRows(queryStart, 1, Q_ROW), queryStart });
    const [before, at, after, childAt, neighbour] = await cache.attend(0, [decode(3), decode(4), decode(5), decode(4, child), decode(7, seq.id)]);
    expect(mismatches(before!, model.expectedAttention(0, queryRows(3, 1, Q_ROW), 3, 1, SCALE))).toEqual([]);
    expect(at!.every(Number.isNaN) && after!.every(Number.isNaN)).toBe(true);
    expect(mismatches(childAt!, model.expectedAttention(0, queryRows(4, 1, Q_ROW), 4, 1, SCALE))).toEqual([]);
    expect(mismatches(neighbour!, seq.model.expectedAttention(0, queryRows(7, 1, Q_ROW), 7, 1, SCALE))).toEqual([]);
    cache.free(child);
    cache.free(id);
  });

  // In a prefill tile, a query whose causal window ends before a position with NaN/±∞ in V must not get
  // NaN: accumulate_tile skips keys of weight 0 instead of adding 0 · V (0 · NaN = NaN). NaN in K is
  // masked by the score select.
  it('NaN in V at a position does not reach earlier queries of the same prefill', async () => {
    const tokens = [3, 3, 3, 3, 3, 3];
    const id = cache.createSequence({ tokens, namespace: 'nan-prefill' }).id;
    try {
      const model = new SequenceModel(modelShape, 'nan-prefill', tokens);
      await writeModel(id, model, 0, 6);
      const v = new Float32Array(ROW).fill(NaN);
      await cache.writeKV(0, id, 5, model.rows(0, model.contentFor(5, 1, 0), 0), v);
      const q = queryRows(12, 6, Q_ROW);
      const [out] = await cache.attend(0, [{ seqId: id, q, queryStart: 0 }]);
      const expected = model.expectedAttention(0, q, 0, 5, SCALE);
      expect(mismatches(out!.subarray(0, 5 * Q_ROW), expected)).toEqual([]);
    } finally {
      cache.free(id);
    }
  });
});

describe('calls after destroy()', () => {
  it('every call throws CacheDestroyedError; waiters are rejected with it; destroy is idempotent', async () => {
    const c = await PagedKVCache.create(device, { ...shape, numBlocks: 4 });
    const a = c.createSequence({ tokens: [1, 2, 3, 4, 5, 6, 7, 8] }).id;
    c.createSequence({ tokens: [5, 5, 5, 5, 5], namespace: 'p' }); // computing a 1-block prefix; the pool is full
    const waiting = c.appendTokensAsync(a, [9]);
    const waitingCreate = c.createSequenceAsync({ tokens: [1] });
    const coalescing = c.createSequenceAsync({ tokens: [5, 5, 5, 5, 5], namespace: 'p' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    c.destroy();
    await expect(waiting).rejects.toBeInstanceOf(CacheDestroyedError);
    await expect(waitingCreate).rejects.toBeInstanceOf(CacheDestroyedError);
    await expect(coalescing).rejects.toBeInstanceOf(CacheDestroyedError);
    c.destroy();
    const row = new Float32Array(ROW);
    const q = new Float32Array(Q_ROW);
    const buffer = device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE });
    const calls: Array<[string, () => unknown]> = [
      ['createSequence', () => c.createSequence({ tokens: [1] })],
      ['createSequenceAsync', () => c.createSequenceAsync({ tokens: [1] })],
      ['appendTokens', () => c.appendTokens(a, [1])],
      ['appendTokensAsync', () => c.appendTokensAsync(a, [1])],
      ['fork', () => c.fork(a)],
      ['free', () => c.free(a)],
      ['length', () => c.length(a)],
      ['tokens', () => c.tokens(a)],
      ['writtenLength', () => c.writtenLength(a, 0)],
      ['writeKV', () => c.writeKV(0, a, 0, row, row)],
      ['readKV', () => c.readKV(0, a)],
      ['attend', () => c.attend(0, [{ seqId: a, q }])],
      ['encodeAttention', () => c.encodeAttention(device.createCommandEncoder(), { layer: 0, entries: [{ seqId: a }], q: buffer, out: buffer })],
      ['submit', () => c.submit([])],
      ['stats', () => c.stats()],
      ['clearPrefixCache', () => c.clearPrefixCache()],
      ['blockMap', () => c.blockMap()],
      ['checkInvariants', () => c.checkInvariants()],
    ];
    for (const [name, call] of calls) {
      let caught: unknown;
      try {
        await call();
      } catch (error) {
        caught = error;
      }
      expect(caught, name).toBeInstanceOf(CacheDestroyedError);
    }
    buffer.destroy();
  });

  it('an attend in flight when the cache is destroyed settles (result or CacheDestroyedError), never hangs', async () => {
    const c = await PagedKVCache.create(device, shape);
    const id = c.createSequence({ tokens: [1, 2, 3] }).id;
    await c.writeKV(0, id, 0, new Float32Array(3 * ROW).fill(0.5), new Float32Array(3 * ROW).fill(0.25));
    const pending = c.attend(0, [{ seqId: id, q: new Float32Array(Q_ROW).fill(1) }]);
    const pendingWrite = c.writeKV(0, id, 0, new Float32Array(3 * ROW), new Float32Array(3 * ROW));
    c.destroy();
    const outcomes = [pending, pendingWrite].map((p) =>
      Promise.race([
        p.then(() => 'settled', (error: unknown) => (error instanceof CacheDestroyedError ? 'settled' : error)),
        new Promise((resolve) => setTimeout(() => resolve('hung'), 5000)),
      ]),
    );
    expect(await Promise.all(outcomes)).toEqual(['settled', 'settled']);
  });
});
