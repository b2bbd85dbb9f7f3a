// Reference model of one sequence of a paged KV cache: its namespace, tokens, and per layer the
// content id written at every position plus the written length the cache must report.
// Invariants (the cache's documented contract, restated independently):
//   - written[l] grows only by a write that starts at or before it and ends after it (contiguous
//     prefix); appends and rewrites never shrink it; a fork copies everything;
//   - content[l][p] is the content id last written at p (NO_CONTENT when never written), whatever
//     blocks the cache shares or copies behind the scenes;
//   - a sequence created with `cachedTokens` leading positions from the prefix cache starts with the
//     canonical content of its own namespace and tokens there, written in every layer.
import { attentionRef } from '../../../src/kernels/attention.ref';
import { roundToF16 } from '../../../src/kernels/f16';
import { contentId, kvRow, prefixKeys } from './kv-content';

export const NO_CONTENT = -1;

export interface ModelShape {
  numLayers: number;
  numKvHeads: number;
  numQueryHeads: number;
  headDim: number;
  blockSize: number;
}

export class SequenceModel {
  readonly namespace: string;
  readonly tokens: number[];
  readonly keys: number[];
  readonly content: number[][];
  readonly written: number[];

  constructor(
    readonly shape: ModelShape,
    namespace: string,
    tokens: readonly number[],
    cachedTokens = 0,
  ) {
    this.namespace = namespace;
    this.tokens = [...tokens];
    this.keys = prefixKeys(namespace, this.tokens);
    this.content = Array.from({ length: shape.numLayers }, () => this.tokens.map((_, p) => (p < cachedTokens ? this.keys[p]! : NO_CONTENT)));
    this.written = Array.from({ length: shape.numLayers }, () => cachedTokens);
  }

  get length(): number {
    return this.tokens.length;
  }

  clone(): SequenceModel {
    const copy = new SequenceModel(this.shape, this.namespace, []);
    copy.tokens.push(...this.tokens);
    copy.keys.push(...this.keys);
    this.content.forEach((c, l) => copy.content[l]!.push(...c));
    this.written.forEach((w, l) => (copy.written[l] = w));
    return copy;
  }

  append(tokens: readonly number[]): void {
    this.tokens.push(...tokens);
    prefixKeys(this.namespace, this.tokens, this.keys);
    for (const c of this.content) while (c.length < this.tokens.length) c.push(NO_CONTENT);
  }

  /** Content ids a write of positions [start, start + n) with `salt` stores. */
  contentFor(start: number, n: number, salt: number): number[] {
    return Array.from({ length: n }, (_, i) => contentId(this.keys[start + i]!, salt));
  }

  /** Records a write of `ids` at positions [start, start + ids.length) of `layer`. */
  write(layer: number, start: number, ids: readonly number[]): void {
    const c = this.content[layer]!;
    ids.forEach((id, i) => (c[start + i] = id));
    const end = start + ids.length;
    if (start <= this.written[layer]! && end > this.written[layer]!) this.written[layer] = end;
  }

  /** Positions written in every layer. */
  minWritten(): number {
    return Math.min(...this.written);
  }

  /** K (which 0) or V (which 1) rows of `ids` in `layer`, f32 [n][numKvHeads][headDim], as written. */
  rows(layer: number, ids: readonly number[], which: 0 | 1): Float32Array<ArrayBuffer> {
    const row = this.shape.numKvHeads * this.shape.headDim;
    const out = new Float32Array(ids.length * row);
    ids.forEach((id, i) => kvRow(id, layer, which, row, out, i * row));
    return out;
  }

  /** What readKV must return for positions [start, end) of `layer`: the written rows rounded to f16. */
  expectedRows(layer: number, start: number, end: number, which: 0 | 1): Float32Array {
    return roundToF16(this.rows(layer, this.content[layer]!.slice(start, end), which));
  }

  /** CPU attention over the model's f16-rounded K/V (f64 arithmetic). */
  expectedAttention(layer: number, q: Float32Array, queryStart: number, numQueries: number, scale: number): Float64Array {
    const { numKvHeads, headDim, numQueryHeads } = this.shape;
    const keys = queryStart + numQueries;
    const kAll = this.expectedRows(layer, 0, keys, 0);
    const vAll = this.expectedRows(layer, 0, keys, 1);
    const perHead = (all: Float32Array) =>
      Array.from({ length: numKvHeads }, (_, h) => {
        const out = new Float64Array(keys * headDim);
        for (let t = 0; t < keys; t++) for (let d = 0; d < headDim; d++) out[t * headDim + d] = all[(t * numKvHeads + h) * headDim + d]!;
        return out;
      });
    return attentionRef({ q, k: perHead(kAll), v: perHead(vAll), numQueries, queryStart, numQueryHeads, headDim, scale });
  }
}

/** Indices where `actual` differs from `expected` by more than atol + rtol·|expected| (first few). */
export function mismatches(actual: ArrayLike<number>, expected: ArrayLike<number>, atol = 2e-5, rtol = 1e-4, limit = 5): string[] {
  const bad: string[] = [];
  if (actual.length !== expected.length) return [`length ${actual.length} ≠ ${expected.length}`];
  for (let i = 0; i < expected.length && bad.length < limit; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) bad.push(`[${i}] ${a} vs ${e}`);
  }
  return bad;
}

/** Indices where two arrays differ bit for bit (NaN equals NaN), first few. */
export function exactMismatches(actual: ArrayLike<number>, expected: ArrayLike<number>, limit = 5): string[] {
  const bad: string[] = [];
  if (actual.length !== expected.length) return [`length ${actual.length} ≠ ${expected.length}`];
  for (let i = 0; i < expected.length && bad.length < limit; i++) {
    if (!Object.is(actual[i], expected[i]) && !(actual[i] === 0 && expected[i] === 0)) bad.push(`[${i}] ${actual[i]} vs ${expected[i]}`);
  }
  return bad;
}
