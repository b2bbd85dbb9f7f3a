// Concurrent tasks for the interleaving exploration: each task runs its own script of operations on
// one shared PagedKVCache — creating sequences (waiting for blocks and for other tasks' prefixes),
// appending (waiting for blocks), writing, reading, attending, forking, freeing, and freeing a sequence
// while an attend, a readKV or an encodeAttention submission over it is still in flight — yielding to a
// scheduler before every step. Each task owns its sequences and keeps a model of their contents, so
// any interference between tasks (lost or stale K/V, a block reused too early) shows as a mismatch;
// after every step the cache's invariants and block accounting are checked.
// Invariants: a task touches only sequences it created or forked; every write is canonical K/V (a
// function of namespace and tokens), so prefix reuse across tasks must hand over exactly that.
import type { PagedKVCache } from '../../../src/cache/paged-kv-cache';
import { AbortError } from '../../../src/errors';
import { OutOfBlocksError, TooManySequencesError, UnknownSequenceError } from '../../../src/table/errors';
import { assert, assertEqual } from './assert';
import { queryRows } from './kv-content';
import { namespaceOf, promptTokens } from './prompts';
import { exactMismatches, mismatches, SequenceModel, type ModelShape } from './sequence-model';

export const OPERATIONS = [
  'create', 'create', 'append', 'write', 'write', 'writeAll', 'writeAll', 'writeAll', 'read', 'attend', 'fork', 'free',
  'attendThenFree', 'readThenFree', 'encodeThenFree',
] as const;
export type OperationKind = (typeof OPERATIONS)[number];

export interface Step {
  kind: OperationKind;
  a: number;
  b: number;
}

export interface TaskEnv {
  cache: PagedKVCache;
  device: GPUDevice;
  shape: ModelShape;
  /** Awaited before every step: the scheduler decides who runs next. */
  yieldTo: (label: string) => Promise<void>;
  counts: Record<string, number>;
}

/** A task blocked in a wait that only another task can end; the deadlock breaker may abort it. */
export interface Waiting {
  task: number;
  controller: AbortController;
}

const SCALE_OF = (shape: ModelShape) => 1 / Math.sqrt(shape.headDim);

export class Task {
  readonly own = new Map<number, SequenceModel>();
  waiting: Waiting | undefined;
  done = false;

  constructor(
    readonly index: number,
    readonly steps: readonly Step[],
    private readonly env: TaskEnv,
  ) {}

  async run(): Promise<void> {
    for (let i = 0; i < this.steps.length; i++) {
      const step = this.steps[i]!;
      await this.env.yieldTo(`task ${this.index} step ${i} ${step.kind}`);
      await this.step(step);
      checkAccounting(this.env.cache);
      this.count(step.kind);
    }
    await this.env.yieldTo(`task ${this.index} done`);
    for (const id of [...this.own.keys()]) this.release(id);
    this.done = true;
  }

  private async step(step: Step): Promise<void> {
    const { cache } = this.env;
    const picked = this.pick(step.a);
    switch (step.kind) {
      case 'create':
        return this.create(step);
      case 'append': {
        if (!picked) return;
        const [id, seq] = picked;
        const tokens = promptTokens({ family: 0, shared: 0, tail: 1 + (step.b % 3), seed: step.b, namespace: 0 });
        if (seq.length + tokens.length > cache.maxSequenceLength) return;
        const position = await this.waitFor(() => cache.appendTokensAsync(id, tokens, { signal: this.waiting!.controller.signal }));
        if (position === undefined) return;
        assertEqual(position, seq.length, `task ${this.index}: appended position`);
        seq.append(tokens);
        return;
      }
      case 'write':
      case 'writeAll': {
        if (!picked) return;
        const [id, seq] = picked;
        const layers = step.kind === 'writeAll' ? [...seq.written.keys()] : [step.b % seq.written.length];
        for (const layer of layers) {
          const from = seq.written[layer]!;
          const to = step.kind === 'writeAll' ? seq.length : Math.min(seq.length, from + 1 + (step.b % 4));
          if (from >= to) continue;
          const ids = seq.contentFor(from, to - from, 0);
          try {
            await cache.writeKV(layer, id, from, seq.rows(layer, ids, 0), seq.rows(layer, ids, 1));
            seq.write(layer, from, ids);
          } catch (error) {
            if (!(error instanceof OutOfBlocksError)) throw error; // copy-on-write found no block: nothing changed
            this.count('outOfBlocks');
          }
        }
        return;
      }
      case 'read':
        if (picked) await this.verifyRead(picked[0], picked[1], step.b % picked[1].written.length);
        return;
      case 'attend':
        if (picked) await this.verifyAttend(picked[0], picked[1], step.b);
        return;
      case 'fork': {
        if (!picked) return;
        try {
          this.own.set(cache.fork(picked[0]), picked[1].clone());
        } catch (error) {
          if (!(error instanceof TooManySequencesError)) throw error;
        }
        return;
      }
      case 'free':
        if (picked) this.release(picked[0]);
        return;
      case 'attendThenFree':
      case 'readThenFree':
      case 'encodeThenFree':
        if (picked) await this.freeWhileInFlight(step.kind, picked[0], picked[1], step.b);
        return;
    }
  }

  private async create(step: Step): Promise<void> {
    const { cache, shape } = this.env;
    if (this.own.size >= 2) return this.release(this.pick(step.a)![0]); // keep the pool contended, not exhausted by one task
    const spec = { family: step.a % 2, shared: step.b % 11, tail: step.a % 4, seed: step.a * 31 + this.index, namespace: step.b % 2 };
    const tokens = promptTokens(spec).slice(0, cache.maxSequenceLength);
    const namespace = namespaceOf(spec);
    let created: { id: number; cachedTokens: number } | undefined;
    try {
      created = await this.waitFor(() => cache.createSequenceAsync({ tokens, namespace }, { signal: this.waiting!.controller.signal }));
    } catch (error) {
      if (!(error instanceof TooManySequencesError)) throw error;
    }
    if (created === undefined) return;
    const seq = new SequenceModel(shape, namespace, tokens, created.cachedTokens);
    this.own.set(created.id, seq);
    if (created.cachedTokens > 0) {
      this.count('prefixHits');
      for (let layer = 0; layer < shape.numLayers; layer++) await this.verifyRead(created.id, seq, layer);
    }
    if (step.b % 3 !== 0) await this.step({ kind: 'writeAll', a: this.own.size - 1, b: step.b }); // prefill now, mostly
  }

  /** Runs a call that may wait on other tasks; undefined when the deadlock breaker aborted it. */
  private async waitFor<T>(call: () => Promise<T>): Promise<T | undefined> {
    this.waiting = { task: this.index, controller: new AbortController() };
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof AbortError)) throw error;
      this.count('aborted');
      const victim = this.pick(0);
      if (victim) this.release(victim[0]); // back off: give blocks back so the others can go on
      return undefined;
    } finally {
      this.waiting = undefined;
    }
  }

  private async verifyRead(id: number, seq: SequenceModel, layer: number): Promise<void> {
    const end = seq.written[layer]!;
    const { k, v } = await this.env.cache.readKV(layer, id, { end });
    const bad = [...exactMismatches(k, seq.expectedRows(layer, 0, end, 0)), ...exactMismatches(v, seq.expectedRows(layer, 0, end, 1))];
    assert(bad.length === 0, () => `task ${this.index}: sequence ${id} layer ${layer} reads ${bad.join(' ')}`);
  }

  private attendEntry(seq: SequenceModel, b: number) {
    const layers = seq.written.length;
    const layer = [...Array(layers).keys()].map((l) => (b + l) % layers).find((l) => seq.written[l]! > 0);
    if (layer === undefined) return undefined;
    const w = seq.written[layer]!;
    const n = 1 + (b % Math.min(3, w));
    const queryStart = (b >>> 3) % (w - n + 1);
    const q = queryRows(b, n, this.env.shape.numQueryHeads * this.env.shape.headDim);
    return { layer, n, queryStart, q, expected: seq.expectedAttention(layer, q, queryStart, n, SCALE_OF(this.env.shape)) };
  }

  private async verifyAttend(id: number, seq: SequenceModel, b: number): Promise<void> {
    const e = this.attendEntry(seq, b);
    if (!e) return;
    const [out] = await this.env.cache.attend(e.layer, [{ seqId: id, q: e.q, queryStart: e.queryStart }]);
    const bad = mismatches(out!, e.expected);
    assert(bad.length === 0, () => `task ${this.index}: attention of sequence ${id}: ${bad.join(' ')}`);
  }

  /** Frees a sequence while GPU work reading it is in flight: the work must still see its K/V. */
  private async freeWhileInFlight(kind: 'attendThenFree' | 'readThenFree' | 'encodeThenFree', id: number, seq: SequenceModel, b: number): Promise<void> {
    const { cache, device } = this.env;
    const e = this.attendEntry(seq, b);
    if (!e) return;
    let check: () => Promise<void>;
    if (kind === 'attendThenFree') {
      // attend resolves its entries once its query scratch is ready: freed before that, it must refuse
      // the stale id; freed after, its submitted work must still read the sequence's K/V.
      const pending = cache.attend(e.layer, [{ seqId: id, q: e.q, queryStart: e.queryStart }]).catch((error: unknown) => {
        if (!(error instanceof UnknownSequenceError)) throw error;
        this.count('freedBeforeResolved');
        return undefined;
      });
      check = async () => {
        const outputs = await pending;
        if (outputs === undefined) return;
        this.count('attendsAcrossFree');
        const bad = mismatches(outputs[0]!, e.expected);
        assert(bad.length === 0, () => `task ${this.index}: attention in flight across free(${id}): ${bad.join(' ')}`);
      };
    } else if (kind === 'readThenFree') {
      const end = seq.written[e.layer]!;
      const expected = seq.expectedRows(e.layer, 0, end, 1);
      const pending = cache.readKV(e.layer, id, { end });
      check = async () => {
        this.count('readsAcrossFree');
        const bad = exactMismatches((await pending).v, expected);
        assert(bad.length === 0, () => `task ${this.index}: readKV in flight across free(${id}): ${bad.join(' ')}`);
      };
    } else {
      const bytes = e.q.byteLength;
      const q = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
      const out = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
      const readback = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      device.queue.writeBuffer(q, 0, e.q as Float32Array<ArrayBuffer>);
      const encoder = device.createCommandEncoder();
      cache.encodeAttention(encoder, { layer: e.layer, entries: [{ seqId: id, numQueries: e.n, queryStart: e.queryStart }], q, out });
      encoder.copyBufferToBuffer(out, 0, readback, 0, bytes);
      // Freed between recording and submitting, with other tasks running in between: the pins keep the
      // blocks and the block-table row until the work has run, so it still reads this sequence's K/V.
      this.release(id);
      await this.env.yieldTo(`task ${this.index} submits encoded attention over ${id}`);
      const done = cache.submit([encoder.finish()]);
      check = async () => {
        await done;
        this.count('encodedAcrossFree');
        await readback.mapAsync(GPUMapMode.READ);
        const bad = mismatches(new Float32Array(readback.getMappedRange().slice(0)), e.expected);
        readback.unmap();
        for (const buffer of [q, out, readback]) buffer.destroy();
        assert(bad.length === 0, () => `task ${this.index}: encoded attention across free(${id}): ${bad.join(' ')}`);
      };
      await this.env.yieldTo(`task ${this.index} awaits encoded attention`);
      return check();
    }
    // The scheduler decides whether the call reaches its critical section before the free or after.
    await this.env.yieldTo(`task ${this.index} frees ${id} during ${kind}`);
    this.release(id);
    await this.env.yieldTo(`task ${this.index} awaits ${kind} over freed ${id}`);
    await check();
  }

  private release(id: number): void {
    this.env.cache.free(id);
    this.own.delete(id);
  }

  private pick(selector: number): [number, SequenceModel] | undefined {
    const entries = [...this.own.entries()];
    return entries.length === 0 ? undefined : entries[selector % entries.length];
  }

  private count(key: string): void {
    this.env.counts[key] = (this.env.counts[key] ?? 0) + 1;
  }
}

export function checkAccounting(cache: PagedKVCache): void {
  cache.checkInvariants();
  const s = cache.stats();
  assert(s.blocksFree + s.blocksUsed + s.blocksEvictable === s.blocksTotal, () => `free ${s.blocksFree} + used ${s.blocksUsed} + evictable ${s.blocksEvictable} ≠ ${s.blocksTotal}`);
  assert(s.blocksRegistered === s.blocksEvictable + s.blocksProtected, 'registered ≠ evictable + protected');
}
