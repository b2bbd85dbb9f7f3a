// CPU reference of causal paged attention over one sequence, in float64. Invariants: query i sits at
// position queryStart + i and attends to positions 0..queryStart+i inclusive (causal); query head h
// reads kv head floor(h / (numQueryHeads / numKvHeads)); softmax subtracts the row maximum; K and V are
// used exactly as given (round them to f16 first to model an f16 cache).
import { kvHeadOf, type ModelShape } from './model-shape';

export interface ReferenceAttentionInput {
  /** [numQueries][numQueryHeads][headDim] */
  q: Float32Array;
  queryStart: number;
  /** [contextLength][numKvHeads][headDim], contextLength ≥ queryStart + numQueries. */
  k: Float32Array;
  v: Float32Array;
  scale: number;
}

export function referenceAttention(input: ReferenceAttentionInput, shape: ModelShape): Float32Array {
  const { q, queryStart, k, v, scale } = input;
  const { numQueryHeads: qh, numKvHeads: kh, headDim: d } = shape;
  const numQueries = q.length / (qh * d);
  const out = new Float32Array(q.length);
  const scores = new Float64Array(queryStart + numQueries);
  const acc = new Float64Array(d);
  for (let i = 0; i < numQueries; i++) {
    const last = queryStart + i;
    for (let h = 0; h < qh; h++) {
      const kvh = kvHeadOf(h, shape);
      const qOff = (i * qh + h) * d;
      let max = -Infinity;
      for (let p = 0; p <= last; p++) {
        const kOff = (p * kh + kvh) * d;
        let dot = 0;
        for (let x = 0; x < d; x++) dot += q[qOff + x]! * k[kOff + x]!;
        scores[p] = dot * scale;
        if (scores[p]! > max) max = scores[p]!;
      }
      acc.fill(0);
      let sum = 0;
      for (let p = 0; p <= last; p++) {
        const w = Math.exp(scores[p]! - max);
        sum += w;
        const vOff = (p * kh + kvh) * d;
        for (let x = 0; x < d; x++) acc[x] += w * v[vOff + x]!;
      }
      for (let x = 0; x < d; x++) out[qOff + x] = acc[x]! / sum;
    }
  }
  return out;
}
