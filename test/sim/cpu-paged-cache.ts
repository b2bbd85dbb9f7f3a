// A CPU stand-in for PagedKVCache with the same contract as the simulation's SimCache: paged blocks
// with reference counts, copy-on-write on append into a shared tail, a block-granular prefix cache
// (full, fully written blocks are published when their sequence is freed, reused by later prompts, and
// evicted least-recently-freed first), f16 rounding of stored K/V, and causal attention from the
// blocks. Invariants: an operation that throws OUT_OF_BLOCKS changes nothing; checkInvariants() recounts
// every reference. `corruptAttention` perturbs one output value so tests can see verification fail.
import { roundToF16 } from '../../src/kernels/f16';
import { referenceAttention } from '../../src/sim/reference-attention';
import type { ModelShape } from '../../src/sim/model-shape';
import type { AttendEntry, BlockMapLike, CacheStatsLike, CreatedSequence, SimCache } from '../../src/sim/sim-cache';

export class FakeOutOfBlocksError extends Error {
  readonly code = 'OUT_OF_BLOCKS';
  constructor(readonly requested: number, readonly available: number) {
    super(`out of blocks: need ${requested}, ${available} available`);
  }
}

interface Sequence {
  blocks: number[];
  tokens: number[];
  /** Positions [0, written) of the last layer hold K/V. */
  written: number;
}

export class CpuPagedCache implements SimCache {
  corruptAttention = false;
  private readonly rowFloats: number;
  private readonly k: Float32Array[];
  private readonly v: Float32Array[];
  private readonly refCount: Int32Array;
  private readonly state: Uint8Array;
  private readonly freeList: number[] = [];
  private readonly evictable: number[] = [];
  private readonly prefix = new Map<string, number>();
  private readonly keyOf = new Map<number, string>();
  private readonly sequences = new Map<number, Sequence>();
  private nextId = 1;
  private counts = { cowCopies: 0, evictions: 0, prefixHitTokens: 0, prefixQueryTokens: 0 };

  constructor(
    readonly shape: ModelShape,
    readonly numBlocks: number,
    readonly blockSize: number,
  ) {
    this.rowFloats = shape.numKvHeads * shape.headDim;
    const floats = numBlocks * blockSize * this.rowFloats;
    this.k = Array.from({ length: shape.numLayers }, () => new Float32Array(floats));
    this.v = Array.from({ length: shape.numLayers }, () => new Float32Array(floats));
    this.refCount = new Int32Array(numBlocks);
    this.state = new Uint8Array(numBlocks);
    for (let b = numBlocks - 1; b >= 0; b--) this.freeList.push(b);
  }

  createSequence(options: { tokens: ArrayLike<number> }): CreatedSequence {
    const tokens = Array.from(options.tokens);
    const bs = this.blockSize;
    const hits: number[] = [];
    while ((hits.length + 1) * bs < tokens.length) {
      const block = this.prefix.get(tokens.slice(0, (hits.length + 1) * bs).join(','));
      if (block === undefined) break;
      hits.push(block);
    }
    const need = Math.ceil(tokens.length / bs) - hits.length;
    const evictableHits = hits.filter((b) => this.state[b] === 2).length;
    const available = this.freeList.length + this.evictable.length - evictableHits;
    if (need > available) throw new FakeOutOfBlocksError(need, available);
    for (const b of hits) this.retain(b);
    const blocks = [...hits];
    for (let i = 0; i < need; i++) blocks.push(this.allocate());
    const id = this.nextId++;
    const cachedTokens = hits.length * bs;
    this.sequences.set(id, { blocks, tokens: [...tokens], written: cachedTokens });
    this.counts.prefixHitTokens += cachedTokens;
    this.counts.prefixQueryTokens += tokens.length;
    return { id, length: tokens.length, cachedTokens };
  }

  appendTokens(id: number, appended: ArrayLike<number>): number {
    const tokens = Array.from(appended);
    const seq = this.get(id);
    const bs = this.blockSize;
    const start = seq.tokens.length;
    const newBlocks = Math.ceil((start + tokens.length) / bs) - seq.blocks.length;
    const tail = seq.blocks[seq.blocks.length - 1];
    const cow = start % bs !== 0 && tail !== undefined && this.refCount[tail]! > 1 ? 1 : 0;
    const available = this.freeList.length + this.evictable.length;
    if (newBlocks + cow > available) throw new FakeOutOfBlocksError(newBlocks + cow, available);
    if (cow) {
      const copy = this.allocate();
      for (let l = 0; l < this.shape.numLayers; l++) {
        const span = bs * this.rowFloats;
        this.k[l]!.copyWithin(copy * span, tail! * span, (tail! + 1) * span);
        this.v[l]!.copyWithin(copy * span, tail! * span, (tail! + 1) * span);
      }
      this.release(tail!);
      seq.blocks[seq.blocks.length - 1] = copy;
      this.counts.cowCopies++;
    }
    for (let i = 0; i < newBlocks; i++) seq.blocks.push(this.allocate());
    seq.tokens.push(...tokens);
    return start;
  }

  fork(id: number): number {
    const seq = this.get(id);
    for (const b of seq.blocks) this.retain(b);
    const child = this.nextId++;
    this.sequences.set(child, { blocks: [...seq.blocks], tokens: [...seq.tokens], written: seq.written });
    return child;
  }

  free(id: number): void {
    const seq = this.get(id);
    const bs = this.blockSize;
    for (let i = 0; (i + 1) * bs <= seq.written; i++) {
      const key = seq.tokens.slice(0, (i + 1) * bs).join(',');
      const b = seq.blocks[i]!;
      if (!this.prefix.has(key) && !this.keyOf.has(b)) {
        this.prefix.set(key, b);
        this.keyOf.set(b, key);
      }
    }
    for (const b of seq.blocks) this.release(b);
    this.sequences.delete(id);
  }

  async writeKV(layer: number, id: number, startPos: number, k: Float32Array, v: Float32Array): Promise<void> {
    const seq = this.get(id);
    const n = k.length / this.rowFloats;
    if (startPos + n > seq.tokens.length) throw new Error(`writeKV past the end of sequence ${id}`);
    const kr = this.shape.kvDtype === 'f16' ? roundToF16(k) : k;
    const vr = this.shape.kvDtype === 'f16' ? roundToF16(v) : v;
    for (let i = 0; i < n; i++) {
      const offset = this.rowOffset(seq, startPos + i);
      if (this.refCount[seq.blocks[Math.floor((startPos + i) / this.blockSize)]!]! > 1) {
        throw new Error(`writeKV into a shared block (sequence ${id}, position ${startPos + i})`);
      }
      this.k[layer]!.set(kr.subarray(i * this.rowFloats, (i + 1) * this.rowFloats), offset);
      this.v[layer]!.set(vr.subarray(i * this.rowFloats, (i + 1) * this.rowFloats), offset);
    }
    if (layer === this.shape.numLayers - 1) seq.written = Math.max(seq.written, startPos + n);
  }

  async attend(layer: number, entries: AttendEntry[], options: { scale?: number } = {}): Promise<Float32Array[]> {
    const scale = options.scale ?? 1 / Math.sqrt(this.shape.headDim);
    return entries.map((e) => {
      const seq = this.get(e.seqId);
      const rows = e.q.length / (this.shape.numQueryHeads * this.shape.headDim);
      const queryStart = e.queryStart ?? seq.tokens.length - rows;
      const context = queryStart + rows;
      const k = new Float32Array(context * this.rowFloats);
      const v = new Float32Array(context * this.rowFloats);
      for (let p = 0; p < context; p++) {
        const o = this.rowOffset(seq, p);
        k.set(this.k[layer]!.subarray(o, o + this.rowFloats), p * this.rowFloats);
        v.set(this.v[layer]!.subarray(o, o + this.rowFloats), p * this.rowFloats);
      }
      const out = referenceAttention({ q: e.q, queryStart, k, v, scale }, this.shape);
      if (this.corruptAttention) out[out.length - 1]! += 0.5;
      return out;
    });
  }

  stats(): CacheStatsLike {
    let used = 0;
    for (let b = 0; b < this.numBlocks; b++) if (this.state[b] === 1) used++;
    return {
      blocksTotal: this.numBlocks,
      blocksFree: this.freeList.length,
      blocksUsed: used,
      blocksEvictable: this.evictable.length,
      sequences: this.sequences.size,
      ...this.counts,
    };
  }

  blockMap(): BlockMapLike {
    const owner = new Float64Array(this.numBlocks).fill(-1);
    for (const [id, seq] of this.sequences) for (const b of seq.blocks) owner[b] = id;
    return { state: this.state.slice(), refCount: this.refCount.slice(), owner };
  }

  checkInvariants(): void {
    const refs = new Int32Array(this.numBlocks);
    for (const seq of this.sequences.values()) for (const b of seq.blocks) refs[b]!++;
    for (let b = 0; b < this.numBlocks; b++) {
      if (refs[b] !== this.refCount[b]) throw new Error(`block ${b}: refCount ${this.refCount[b]} but ${refs[b]} references`);
      const expected = refs[b]! > 0 ? 1 : this.keyOf.has(b) ? 2 : 0;
      if (this.state[b] !== expected) throw new Error(`block ${b}: state ${this.state[b]}, expected ${expected}`);
    }
    if (this.freeList.length + this.evictable.length + [...this.state].filter((s) => s === 1).length !== this.numBlocks) {
      throw new Error('free + evictable + used ≠ total');
    }
  }

  destroy(): void {
    this.sequences.clear();
  }

  private get(id: number): Sequence {
    const seq = this.sequences.get(id);
    if (!seq) throw new Error(`unknown sequence ${id}`);
    return seq;
  }

  private rowOffset(seq: Sequence, position: number): number {
    const block = seq.blocks[Math.floor(position / this.blockSize)]!;
    return (block * this.blockSize + (position % this.blockSize)) * this.rowFloats;
  }

  private allocate(): number {
    let b = this.freeList.pop();
    if (b === undefined) {
      b = this.evictable.shift()!;
      this.prefix.delete(this.keyOf.get(b)!);
      this.keyOf.delete(b);
      this.counts.evictions++;
    }
    this.refCount[b] = 1;
    this.state[b] = 1;
    return b;
  }

  private retain(b: number): void {
    if (this.state[b] === 2) this.evictable.splice(this.evictable.indexOf(b), 1);
    this.refCount[b]!++;
    this.state[b] = 1;
  }

  private release(b: number): void {
    if (--this.refCount[b]! > 0) return;
    if (this.keyOf.has(b)) {
      this.state[b] = 2;
      this.evictable.push(b);
    } else {
      this.state[b] = 0;
      this.freeList.push(b);
    }
  }
}
