// fast-check commands driving a real PagedKVCache (GPU) against the CacheModel. Each command applies
// one public call to both, decides from the model alone which outcome is allowed, checks the result
// (K/V read back bit-exactly after f16 rounding, attention within atol + rtol of a CPU reference over
// the model's K/V) and ends with verifyCache. Invariants enforced:
//   - errors the model predicts exactly (SequenceTooLong, TooManySequences, UnknownSequence, unwritten
//     positions) must happen; OutOfBlocks is allowed only when free + evictable blocks cannot cover
//     what the call might need, and a failed call changes nothing (stats and model unchanged);
//   - a prefix-cache hit hands over exactly the canonical K/V of the same namespace and token prefix;
//   - writes go through writeKV (arrays or GPU buffers) or through a prepared batch's encodeWriteKV
//     submitted with cache.submit, and must be indistinguishable afterwards;
//   - only sequences that no longer register prefix blocks write non-canonical (salted) K/V, so every
//     block the prefix cache can hand out holds content that is a function of its namespace and tokens
//     (the contract a real model satisfies).
import type fc from 'fast-check';
import type { PagedKVCache } from '../../../src/cache/paged-kv-cache';
import { InvalidArgumentError } from '../../../src/errors';
import { OutOfBlocksError, SequenceTooLongError, TooManySequencesError, UnknownSequenceError } from '../../../src/table/errors';
import { assert, assertEqual, attempt, expectErrorOf, expectFailure } from './assert';
import { comparableStats, verifyCache, type CacheModel } from './cache-model';
import { queryRows } from './kv-content';
import { namespaceOf, promptTokens, uniqueTokens, type PromptSpec } from './prompts';
import { exactMismatches, mismatches, SequenceModel } from './sequence-model';

export interface RealCache {
  cache: PagedKVCache;
  device: GPUDevice;
  /** Outcome counters over the whole fuzz run, for the report. */
  tally: Record<string, number>;
  /** Attention's tolerance against the CPU reference, where not the default (subgroup-matrix kernels). */
  tolerance?: AttentionTolerance;
}

/** |gpu − ref| ≤ atol + rtol·|ref|. */
export interface AttentionTolerance {
  atol: number;
  rtol: number;
}

function attentionMismatches(r: RealCache, got: ArrayLike<number>, expected: ArrayLike<number>): string[] {
  return r.tolerance ? mismatches(got, expected, r.tolerance.atol, r.tolerance.rtol) : mismatches(got, expected);
}

export type CacheCommand = fc.AsyncCommand<CacheModel, RealCache>;

const count = (r: RealCache, key: string, n = 1): void => {
  r.tally[key] = (r.tally[key] ?? 0) + n;
};

/** Ends every command: counts it and checks the whole CPU-visible state against the model. */
function verify(m: CacheModel, r: RealCache) {
  count(r, 'commands');
  return verifyCache(m, r.cache);
}

/** Free blocks plus evictable ones: what an allocation may use. */
function reclaimable(cache: PagedKVCache): number {
  const s = cache.stats();
  return s.blocksFree + s.blocksEvictable;
}

/** Runs a call the model says may fail with one of `allowed`; a failure must leave everything as it was. */
async function mayFail<T>(r: RealCache, action: () => T | Promise<T>, allowed: ReadonlyArray<abstract new (...a: never[]) => Error>, what: string) {
  const before = comparableStats(r.cache);
  const outcome = await attempt(action);
  if (!outcome.ok) {
    expectErrorOf(outcome.error, allowed, what);
    assertEqual(comparableStats(r.cache), before, `${what} failed but changed the stats`);
  }
  return outcome;
}

async function mustFail(r: RealCache, action: () => unknown, allowed: ReadonlyArray<abstract new (...a: never[]) => Error>, what: string): Promise<Error> {
  const before = comparableStats(r.cache);
  const error = await expectFailure(action, allowed, what);
  assertEqual(comparableStats(r.cache), before, `${what} failed but changed the stats`);
  return error;
}

/** Reads back positions [start, end) of `layer` and compares them bit for bit with the model. */
async function verifyRead(r: RealCache, id: number, seq: SequenceModel, layer: number, start: number, end: number, what: string): Promise<void> {
  const { k, v } = await r.cache.readKV(layer, id, { start, end });
  const dk = exactMismatches(k, seq.expectedRows(layer, start, end, 0));
  const dv = exactMismatches(v, seq.expectedRows(layer, start, end, 1));
  assert(dk.length === 0 && dv.length === 0, () => `${what}: sequence ${id} layer ${layer} [${start}, ${end}) K ${dk.join(' ')} V ${dv.join(' ')}`);
}

export class CreateCommand implements CacheCommand {
  constructor(readonly spec: PromptSpec, readonly oversize: boolean) {}
  check = (): boolean => true;
  async run(m: CacheModel, r: RealCache): Promise<void> {
    const namespace = namespaceOf(this.spec);
    const tokens = this.oversize
      ? uniqueTokens(m.shape.maxSequenceLength + 1 + this.spec.tail, this.spec.seed)
      : promptTokens(this.spec).slice(0, m.shape.maxSequenceLength);
    const bs = m.shape.blockSize;
    if (tokens.length > m.shape.maxSequenceLength) {
      await mustFail(r, () => r.cache.createSequence({ tokens, namespace }), [SequenceTooLongError], 'oversized createSequence');
      count(r, 'tooLong');
    } else if (m.size >= m.shape.maxSequences) {
      await mustFail(r, () => r.cache.createSequence({ tokens, namespace }), [TooManySequencesError], 'createSequence with every slot used');
      count(r, 'tooMany');
    } else {
      const mustSucceed = reclaimable(r.cache) >= Math.ceil(tokens.length / bs);
      const outcome = await mayFail(r, () => r.cache.createSequence({ tokens, namespace }), mustSucceed ? [] : [OutOfBlocksError], 'createSequence');
      if (!outcome.ok) {
        count(r, 'outOfBlocks');
      } else {
        const { id, length, cachedTokens } = outcome.value;
        assertEqual(length, tokens.length, 'created length');
        const maxCached = tokens.length > 0 ? Math.floor((tokens.length - 1) / bs) * bs : 0;
        assert(cachedTokens % bs === 0 && cachedTokens <= maxCached, `cachedTokens ${cachedTokens} for ${tokens.length} tokens (block size ${bs})`);
        const seq = new SequenceModel(m.shape, namespace, tokens, cachedTokens);
        m.add(id, seq);
        count(r, 'creates');
        if (cachedTokens > 0) {
          count(r, 'prefixHits');
          for (let l = 0; l < m.shape.numLayers; l++) await verifyRead(r, id, seq, l, 0, cachedTokens, 'prefix-cache hit');
        }
      }
    }
    verify(m, r);
  }
  toString = (): string => `create(${JSON.stringify(this.spec)}${this.oversize ? ', oversize' : ''})`;
}

export class AppendCommand implements CacheCommand {
  constructor(readonly pick: number, readonly n: number, readonly seed: number) {}
  check = (m: Readonly<CacheModel>): boolean => m.size > 0;
  async run(m: CacheModel, r: RealCache): Promise<void> {
    const [id, seq] = m.pick(this.pick);
    const tokens = promptTokens({ family: 0, shared: 0, tail: this.n, seed: this.seed, namespace: 0 });
    const bs = m.shape.blockSize;
    if (seq.length + tokens.length > m.shape.maxSequenceLength) {
      await mustFail(r, () => r.cache.appendTokens(id, tokens), [SequenceTooLongError], 'append past the maximum length');
      count(r, 'tooLong');
    } else {
      const room = m.blocksOf(seq) * bs - seq.length;
      const added = tokens.length > room ? Math.ceil((tokens.length - room) / bs) : 0;
      const mustSucceed = reclaimable(r.cache) >= added + 1;
      const outcome = await mayFail(r, () => r.cache.appendTokens(id, tokens), mustSucceed ? [] : [OutOfBlocksError], 'appendTokens');
      if (outcome.ok) {
        assertEqual(outcome.value, seq.length, 'position of the first appended token');
        seq.append(tokens);
      } else {
        count(r, 'outOfBlocks');
      }
    }
    verify(m, r);
  }
  toString = (): string => `append(#${this.pick}, ${this.n} tokens, seed ${this.seed})`;
}

export class ForkCommand implements CacheCommand {
  constructor(readonly pick: number) {}
  check = (m: Readonly<CacheModel>): boolean => m.size > 0;
  async run(m: CacheModel, r: RealCache): Promise<void> {
    const [id, seq] = m.pick(this.pick);
    if (m.size >= m.shape.maxSequences) {
      await mustFail(r, () => r.cache.fork(id), [TooManySequencesError], 'fork with every slot used');
      count(r, 'tooMany');
    } else {
      m.add(r.cache.fork(id), seq.clone());
      count(r, 'forks');
    }
    verify(m, r);
  }
  toString = (): string => `fork(#${this.pick})`;
}

export interface WriteSpec {
  pick: number;
  layer: number;
  /** true: start at the written length (prefill/decode); false: anywhere (rewrite or gap). */
  extend: boolean;
  start: number;
  n: number;
  /** Non-zero: write different (salted) K/V, when the sequence no longer registers prefix blocks. */
  salt: number;
  /**
   * writeKV from Float32Arrays or GPU buffers, encodeWriteKV of a prepared batch submitted with
   * cache.submit, or encodeAttention with k and v of such a batch (its queries' attention checked too;
   * only where every earlier position is written, else encoded).
   */
  via: 'array' | 'buffer' | 'encoded' | 'attended';
}

export class WriteCommand implements CacheCommand {
  constructor(readonly spec: WriteSpec) {}
  check = (m: Readonly<CacheModel>): boolean => m.size > 0;
  async run(m: CacheModel, r: RealCache): Promise<void> {
    const [id, seq] = m.pick(this.spec.pick);
    const layer = this.spec.layer % m.shape.numLayers;
    if (seq.length > 0) {
      const start = this.spec.extend && seq.written[layer]! < seq.length ? seq.written[layer]! : this.spec.start % seq.length;
      const n = Math.min(this.spec.n, seq.length - start);
      const registers = r.cache.prefix.registeredBlocks(id) >= 0;
      const salt = registers ? 0 : this.spec.salt;
      const via = this.spec.via === 'attended' && seq.written[layer]! < start ? 'encoded' : this.spec.via;
      await writeRows(m, r, id, seq, layer, start, n, salt, via);
      if (salt > 0) count(r, 'saltedWrites');
    }
    verify(m, r);
  }
  toString = (): string => `write(${JSON.stringify(this.spec)})`;
}

/** Writes rows of `ids` content to the cache (Float32Array or GPUBuffer input) and, on success, the model. */
async function writeRows(m: CacheModel, r: RealCache, id: number, seq: SequenceModel, layer: number, start: number, n: number, salt: number, via: WriteSpec['via'] = 'array'): Promise<void> {
  const ids = seq.contentFor(start, n, salt);
  const k = seq.rows(layer, ids, 0);
  const v = seq.rows(layer, ids, 1);
  const bs = m.shape.blockSize;
  const blocksInRange = Math.floor((start + n - 1) / bs) - Math.floor(start / bs) + 1;
  const mustSucceed = reclaimable(r.cache) >= blocksInRange;
  let buffers: GPUBuffer[] = [];
  const write = (): Promise<void> => {
    if (via === 'array') return r.cache.writeKV(layer, id, start, k, v);
    buffers = [k, v].map((data) => {
      const b = r.device.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
      r.device.queue.writeBuffer(b, 0, data);
      return b;
    });
    if (via === 'buffer') return r.cache.writeKV(layer, id, start, buffers[0]!, buffers[1]!, { numTokens: n });
    // The rows as one prepared batch: copy-on-write at prepare, one dispatch, written once submitted.
    const batch = r.cache.prepareAttention([{ seqId: id, numQueries: n, queryStart: start }], { writeKV: true });
    const encoder = r.device.createCommandEncoder();
    if (via === 'attended') {
      // The write and the attention of its queries (with decodeWritesKv and n = 1: one dispatch).
      const queryBuffers = attendedQueries(r.device, queries!, out!);
      buffers.push(...queryBuffers);
      r.cache.encodeAttention(encoder, { layer, entries: batch, q: queryBuffers[0]!, out: queryBuffers[1]!, k: buffers[0]!, v: buffers[1]! });
      encoder.copyBufferToBuffer(queryBuffers[1]!, 0, out!, 0, out!.size);
    } else {
      r.cache.encodeWriteKV(encoder, { layer, entries: batch, k: buffers[0]!, v: buffers[1]! });
    }
    return r.cache.submit([encoder.finish()]);
  };
  const queries = via === 'attended' ? queryRows(start * 31 + n + salt, n, m.shape.numQueryHeads * m.shape.headDim) : undefined;
  const out = queries ? r.device.createBuffer({ size: queries.byteLength, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }) : undefined;
  const outcome = await mayFail(r, write, mustSucceed ? [] : [OutOfBlocksError], 'writeKV');
  for (const b of buffers) b.destroy();
  if (outcome.ok) {
    seq.write(layer, start, ids);
    count(r, 'writes');
    if (via === 'encoded') count(r, 'encodedWrites');
    if (queries && out) {
      await out.mapAsync(GPUMapMode.READ);
      const got = new Float32Array(out.getMappedRange().slice(0));
      const bad = attentionMismatches(r, got, seq.expectedAttention(layer, queries, start, n, 1 / Math.sqrt(m.shape.headDim)));
      assert(bad.length === 0, () => `attention of the written queries ${start}..${start + n - 1} of sequence ${id} (layer ${layer}): ${bad.join(' ')}`);
      count(r, 'attendedWrites');
    }
  } else {
    count(r, 'outOfBlocks');
  }
  out?.destroy();
}

/** q (uploaded `queries`) and out buffers for an encodeAttention whose output is copied to `readback`. */
function attendedQueries(device: GPUDevice, queries: Float32Array, readback: GPUBuffer): GPUBuffer[] {
  const q = device.createBuffer({ size: queries.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(q, 0, queries.buffer, queries.byteOffset, queries.byteLength);
  const out = device.createBuffer({ size: readback.size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  return [q, out];
}

/** Writes every unwritten position in every layer (a finished prefill), then optionally frees it. */
export class WriteAllCommand implements CacheCommand {
  constructor(readonly pick: number, readonly thenFree: boolean) {}
  check = (m: Readonly<CacheModel>): boolean => m.size > 0;
  async run(m: CacheModel, r: RealCache): Promise<void> {
    const [id, seq] = m.pick(this.pick);
    for (let l = 0; l < m.shape.numLayers; l++) {
      const start = seq.written[l]!;
      if (start < seq.length) await writeRows(m, r, id, seq, l, start, seq.length - start, 0);
    }
    if (this.thenFree) {
      r.cache.free(id);
      m.remove(id);
      count(r, 'frees');
    }
    verify(m, r);
  }
  toString = (): string => `writeAll(#${this.pick}${this.thenFree ? ', then free' : ''})`;
}

export class ReadCommand implements CacheCommand {
  constructor(readonly pick: number, readonly layer: number, readonly a: number, readonly b: number, readonly beyond: boolean) {}
  check = (m: Readonly<CacheModel>): boolean => m.size > 0;
  async run(m: CacheModel, r: RealCache): Promise<void> {
    const [id, seq] = m.pick(this.pick);
    const layer = this.layer % m.shape.numLayers;
    const w = seq.written[layer]!;
    const start = this.a % (w + 1);
    if (!this.beyond) {
      const end = start + (this.b % (w - start + 1));
      await verifyRead(r, id, seq, layer, start, end, 'readKV');
      count(r, 'reads');
    } else {
      // Positions never written (or past the end) must be refused, never returned.
      const end = w < seq.length ? w + 1 + (this.b % (seq.length - w)) : seq.length + 1;
      await mustFail(r, () => r.cache.readKV(layer, id, { start, end }), [InvalidArgumentError], 'readKV of unwritten positions');
      count(r, 'refusedReads');
    }
    verify(m, r);
  }
  toString = (): string => `read(#${this.pick}, layer ${this.layer}, ${this.a}, ${this.b}${this.beyond ? ', beyond' : ''})`;
}

export interface AttendEntrySpec {
  pick: number;
  n: number;
  start: number;
}

export class AttendCommand implements CacheCommand {
  constructor(readonly layer: number, readonly entries: AttendEntrySpec[], readonly qSeed: number, readonly invalid: boolean) {}
  check = (m: Readonly<CacheModel>): boolean => m.size > 0;
  async run(m: CacheModel, r: RealCache): Promise<void> {
    const layer = this.layer % m.shape.numLayers;
    const { numQueryHeads, headDim } = m.shape;
    const qRow = numQueryHeads * headDim;
    const planned = this.entries.flatMap((e, i) => {
      const [id, seq] = m.pick(e.pick);
      const w = seq.written[layer]!;
      const last = this.invalid && i === 0;
      if (w === 0 && !last) return [];
      const n = Math.max(1, Math.min(e.n, w));
      // A valid entry ends at or before the written length; the invalid one ends one past it.
      const queryStart = last ? Math.max(0, w - n + 1) : e.start % (w - n + 1);
      const useDefault = !last && queryStart === seq.length - n && e.start % 2 === 0;
      return [{ id, seq, n, queryStart, useDefault, q: queryRows(this.qSeed + i, n, qRow) }];
    });
    if (planned.length > 0) {
      const entries = planned.map((p) => (p.useDefault ? { seqId: p.id, q: p.q } : { seqId: p.id, q: p.q, queryStart: p.queryStart }));
      if (this.invalid) {
        await mustFail(r, () => r.cache.attend(layer, entries), [InvalidArgumentError], 'attention over unwritten positions');
        count(r, 'refusedAttends');
      } else {
        const outputs = await r.cache.attend(layer, entries);
        const scale = 1 / Math.sqrt(headDim);
        planned.forEach((p, i) => {
          const bad = attentionMismatches(r, outputs[i]!, p.seq.expectedAttention(layer, p.q, p.queryStart, p.n, scale));
          assert(bad.length === 0, () => `attention of sequence ${p.id} (entry ${i}, queries ${p.queryStart}..${p.queryStart + p.n - 1}, layer ${layer}): ${bad.join(' ')}`);
        });
        count(r, 'attends');
      }
    }
    verify(m, r);
  }
  toString = (): string => `attend(layer ${this.layer}, ${JSON.stringify(this.entries)}, q ${this.qSeed}${this.invalid ? ', invalid' : ''})`;
}

export class FreeCommand implements CacheCommand {
  constructor(readonly pick: number) {}
  check = (m: Readonly<CacheModel>): boolean => m.size > 0;
  async run(m: CacheModel, r: RealCache): Promise<void> {
    const [id] = m.pick(this.pick);
    r.cache.free(id);
    m.remove(id);
    count(r, 'frees');
    verify(m, r);
  }
  toString = (): string => `free(#${this.pick})`;
}

/** A call with a freed (stale) id must fail with UnknownSequenceError and change nothing. */
export class StaleIdCommand implements CacheCommand {
  constructor(readonly pick: number, readonly op: number) {}
  check = (m: Readonly<CacheModel>): boolean => m.freed.length > 0;
  async run(m: CacheModel, r: RealCache): Promise<void> {
    const id = m.freed[this.pick % m.freed.length]!;
    const { numKvHeads, numQueryHeads, headDim } = m.shape;
    const row = new Float32Array(numKvHeads * headDim);
    const ops: Array<() => unknown> = [
      () => r.cache.appendTokens(id, [1]),
      () => r.cache.fork(id),
      () => r.cache.free(id),
      () => r.cache.writeKV(0, id, 0, row, row),
      () => r.cache.readKV(0, id),
      () => r.cache.attend(0, [{ seqId: id, q: new Float32Array(numQueryHeads * headDim) }]),
    ];
    await mustFail(r, ops[this.op % ops.length]!, [UnknownSequenceError], 'call with a freed sequence id');
    count(r, 'staleIds');
    verify(m, r);
  }
  toString = (): string => `staleId(#${this.pick}, op ${this.op})`;
}

/**
 * Allocation pressure: a sequence of unique tokens needing every free and evictable block (as many as
 * one sequence may hold), or one block more than that when `overflow` — eviction must reclaim exactly
 * what is needed, or the call must fail having changed nothing.
 */
export class PressureCommand implements CacheCommand {
  constructor(readonly overflow: boolean, readonly seed: number) {}
  check = (m: Readonly<CacheModel>): boolean => m.size < m.shape.maxSequences;
  async run(m: CacheModel, r: RealCache): Promise<void> {
    const before = r.cache.stats();
    const bs = m.shape.blockSize;
    const reclaimableBlocks = before.blocksFree + before.blocksEvictable;
    const longest = Math.floor(m.shape.maxSequenceLength / bs);
    if (this.overflow && reclaimableBlocks + 1 <= longest) {
      const need = reclaimableBlocks + 1;
      const tokens = uniqueTokens(need * bs, this.seed);
      const error = await mustFail(r, () => r.cache.createSequence({ tokens, namespace: 'pressure' }), [OutOfBlocksError], 'allocation beyond the pool');
      assertEqual([(error as OutOfBlocksError).requested, (error as OutOfBlocksError).available], [need, need - 1], 'OutOfBlocksError requested/available');
      count(r, 'outOfBlocks');
    } else if (!this.overflow && reclaimableBlocks > 0) {
      const need = Math.min(reclaimableBlocks, longest);
      const { id } = r.cache.createSequence({ tokens: uniqueTokens(need * bs, this.seed), namespace: 'pressure' });
      const during = r.cache.stats();
      assertEqual(during.evictions - before.evictions, Math.max(0, need - before.blocksFree), 'evictions made for the allocation');
      assertEqual(during.blocksFree + during.blocksEvictable, reclaimableBlocks - need, 'free + evictable blocks left');
      count(r, 'evictions', during.evictions - before.evictions);
      r.cache.free(id);
      const after = r.cache.stats();
      assertEqual(after.blocksFree + after.blocksEvictable, reclaimableBlocks, 'free + evictable blocks after releasing the pressure sequence');
    }
    verify(m, r);
  }
  toString = (): string => `pressure(${this.overflow ? 'overflow, ' : ''}seed ${this.seed})`;
}

export class ClearPrefixCommand implements CacheCommand {
  check = (): boolean => true;
  async run(m: CacheModel, r: RealCache): Promise<void> {
    const before = r.cache.stats();
    const freed = r.cache.clearPrefixCache();
    const after = verify(m, r);
    assert(freed >= before.blocksEvictable, `clearPrefixCache freed ${freed} < ${before.blocksEvictable} evictable`);
    assertEqual([after.blocksFree, after.blocksEvictable, after.blocksRegistered], [before.blocksFree + freed, 0, 0], 'after clearPrefixCache [free, evictable, registered]');
    for (const id of m.seqs.keys()) assert(r.cache.prefix.registeredBlocks(id) < 0, `sequence ${id} still registers after clearPrefixCache`);
    count(r, 'clears');
  }
  toString = (): string => 'clearPrefixCache()';
}
