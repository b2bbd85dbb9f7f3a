// Deterministic Q, K and V: each head row is a pure function of (token, position, layer, head), so the
// K/V of a shared prefix are identical in every request that contains it and every attention output can
// be recomputed on the CPU. Invariants: values lie in [-1, 1]; a row is headDim/2 (cos, sin) pairs of
// angle phase + i·frequency scaled by an amplitude in [0.5, 1], with phase, frequency and amplitude taken
// from a hash of the row's coordinates; layouts are [row][head][headDim] Float32Arrays.
import { hash2, unitFromHash } from './hash';
import type { ModelShape } from './model-shape';

const KIND_Q = 1;
const KIND_K = 2;
const KIND_V = 3;

function fillRow(out: Float32Array, offset: number, seed: number, headDim: number): void {
  const phase = unitFromHash(seed) * 2 * Math.PI;
  const h2 = hash2(seed, 0x71);
  const frequency = 0.05 + unitFromHash(h2) * 1.2;
  const amplitude = 0.5 + 0.5 * unitFromHash(hash2(h2, 0x72));
  // Rotate (cos, sin) by `frequency` each pair instead of calling Math.cos per element.
  const stepCos = Math.cos(frequency);
  const stepSin = Math.sin(frequency);
  let c = Math.cos(phase);
  let s = Math.sin(phase);
  for (let i = 0; i < headDim; i += 2) {
    out[offset + i] = amplitude * c;
    out[offset + i + 1] = amplitude * s;
    const nc = c * stepCos - s * stepSin;
    s = s * stepCos + c * stepSin;
    c = nc;
  }
}

function rows(
  kind: number,
  tokens: ArrayLike<number>,
  start: number,
  end: number,
  layer: number,
  heads: number,
  headDim: number,
): Float32Array {
  const out = new Float32Array((end - start) * heads * headDim);
  const kindLayer = hash2(kind, layer);
  for (let p = start; p < end; p++) {
    const tokenSeed = hash2(hash2(kindLayer, tokens[p]!), p);
    for (let h = 0; h < heads; h++) {
      fillRow(out, ((p - start) * heads + h) * headDim, hash2(tokenSeed, h), headDim);
    }
  }
  return out;
}

/** Queries of positions [start, end) of `tokens`: [end-start][numQueryHeads][headDim]. */
export function queryRows(tokens: ArrayLike<number>, start: number, end: number, layer: number, shape: ModelShape): Float32Array {
  return rows(KIND_Q, tokens, start, end, layer, shape.numQueryHeads, shape.headDim);
}

/** Keys and values of positions [start, end) of `tokens`: each [end-start][numKvHeads][headDim]. */
export function keyValueRows(
  tokens: ArrayLike<number>,
  start: number,
  end: number,
  layer: number,
  shape: ModelShape,
): { k: Float32Array; v: Float32Array } {
  return {
    k: rows(KIND_K, tokens, start, end, layer, shape.numKvHeads, shape.headDim),
    v: rows(KIND_V, tokens, start, end, layer, shape.numKvHeads, shape.headDim),
  };
}
