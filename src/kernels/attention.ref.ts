// CPU reference for paged attention, the oracle of the GPU kernels' tests.
// Invariants: K/V are gathered through the block table from the same packed words the GPU reads (so
// f16 rounding is identical); all arithmetic is f64; query i of an entry attends keys
// 0..queryStart + i with a max-subtracted softmax; rows of the output that no entry covers are 0.
import { InvalidArgumentError } from '../errors';
import { f16BitsToF32 } from './f16';
import { rowWordOffset, type KvLayout } from '../pool/kv-layout';
import { validateEntries, type AttentionEntry } from './attention-types';

export interface PagedAttentionRefArgs {
  layout: KvLayout;
  /** This layer's chunk contents, one array of u32 words per chunk. */
  chunkWords: readonly Uint32Array[];
  blockTable: Int32Array;
  rowStride: number;
  numQueryHeads: number;
  /** f32 [rows][numQueryHeads][headDim]. */
  q: Float32Array;
  entries: readonly AttentionEntry[];
  scale: number;
}

/** K or V rows of one kv head of one sequence, logical order: [length][headDim] as f64. */
export function gatherKv(
  layout: KvLayout,
  chunkWords: readonly Uint32Array[],
  tableRow: Int32Array,
  kvHead: number,
  length: number,
  kv: 0 | 1,
): Float64Array {
  const hd = layout.headDim;
  const rows = new Float64Array(length * hd);
  const floats = chunkWords.map((w) => new Float32Array(w.buffer, w.byteOffset, w.length));
  for (let pos = 0; pos < length; pos++) {
    const block = tableRow[Math.floor(pos / layout.blockSize)]!;
    if (!(block >= 0 && block < layout.numBlocks)) {
      throw new InvalidArgumentError(`block table entry for position ${pos} is ${block}, not a block id`);
    }
    const chunk = Math.floor(block / layout.blocksPerChunk);
    const words = chunkWords[chunk]!;
    const base = rowWordOffset(layout, block, kv, kvHead, pos % layout.blockSize);
    for (let d = 0; d < hd; d++) {
      rows[pos * hd + d] =
        layout.kvDtype === 'f32'
          ? floats[chunk]![base + d]!
          : f16BitsToF32(d % 2 === 0 ? words[base + d / 2]! & 0xffff : words[base + (d - 1) / 2]! >>> 16);
    }
  }
  return rows;
}

export interface AttentionRefArgs {
  /** f32 [numQueries][numQueryHeads][headDim] of this entry. */
  q: ArrayLike<number>;
  /** Per kv head, [keys][headDim] in logical order. */
  k: readonly ArrayLike<number>[];
  v: readonly ArrayLike<number>[];
  numQueries: number;
  queryStart: number;
  numQueryHeads: number;
  headDim: number;
  scale: number;
}

/** Causal attention over contiguous K/V; returns [numQueries][numQueryHeads][headDim] in f64. */
export function attentionRef(a: AttentionRefArgs): Float64Array {
  const { headDim: hd, numQueryHeads: nqh } = a;
  const groupSize = nqh / a.k.length;
  const out = new Float64Array(a.numQueries * nqh * hd);
  const scores = new Float64Array(a.queryStart + a.numQueries);
  for (let i = 0; i < a.numQueries; i++) {
    const keys = a.queryStart + i + 1;
    for (let h = 0; h < nqh; h++) {
      const k = a.k[Math.floor(h / groupSize)]!;
      const v = a.v[Math.floor(h / groupSize)]!;
      const qBase = (i * nqh + h) * hd;
      let max = -Infinity;
      for (let t = 0; t < keys; t++) {
        let s = 0;
        for (let d = 0; d < hd; d++) s += a.q[qBase + d]! * k[t * hd + d]!;
        scores[t] = s * a.scale;
        if (scores[t]! > max) max = scores[t]!;
      }
      let sum = 0;
      for (let t = 0; t < keys; t++) sum += scores[t] = Math.exp(scores[t]! - max);
      for (let t = 0; t < keys; t++) {
        const p = scores[t]! / sum;
        for (let d = 0; d < hd; d++) out[qBase + d] += p * v[t * hd + d]!;
      }
    }
  }
  return out;
}

/** Paged attention for a whole batch; the result has q's shape. */
export function pagedAttentionRef(args: PagedAttentionRefArgs): Float32Array {
  const { layout, numQueryHeads: nqh, rowStride } = args;
  const hd = layout.headDim;
  if (nqh % layout.numKvHeads !== 0) {
    throw new InvalidArgumentError(`numQueryHeads ${nqh} is not a multiple of numKvHeads ${layout.numKvHeads}`);
  }
  const rowFloats = nqh * hd;
  validateEntries(args.entries, {
    blockSize: layout.blockSize,
    rowStride,
    maxSequences: Math.floor(args.blockTable.length / rowStride),
    queryRows: Math.floor(args.q.length / rowFloats),
  });
  const out = new Float32Array(args.q.length);
  for (const e of args.entries) {
    const tableRow = args.blockTable.subarray(e.seqSlot * rowStride, (e.seqSlot + 1) * rowStride);
    const keys = e.queryStart + e.numQueries;
    const k: Float64Array[] = [];
    const v: Float64Array[] = [];
    for (let kvh = 0; kvh < layout.numKvHeads; kvh++) {
      k.push(gatherKv(layout, args.chunkWords, tableRow, kvh, keys, 0));
      v.push(gatherKv(layout, args.chunkWords, tableRow, kvh, keys, 1));
    }
    const result = attentionRef({
      q: args.q.subarray(e.qRow * rowFloats, (e.qRow + e.numQueries) * rowFloats),
      k,
      v,
      numQueries: e.numQueries,
      queryStart: e.queryStart,
      numQueryHeads: nqh,
      headDim: hd,
      scale: args.scale,
    });
    out.set(result, e.qRow * rowFloats);
  }
  return out;
}
