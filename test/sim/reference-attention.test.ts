import { describe, expect, it } from 'vitest';
import { referenceAttention } from '../../src/sim/reference-attention';
import type { ModelShape } from '../../src/sim/model-shape';

const shape: ModelShape = { numLayers: 1, numQueryHeads: 2, numKvHeads: 1, headDim: 8, kvDtype: 'f32' };

function filled(n: number, f: (i: number) => number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => f(i));
}

describe('referenceAttention', () => {
  it('returns V itself when the query sees one position', () => {
    const q = filled(2 * 8, (i) => i / 10);
    const k = filled(8, () => 0.3);
    const v = filled(8, (i) => i - 4);
    const out = referenceAttention({ q, queryStart: 0, k, v, scale: 1 }, shape);
    expect(Array.from(out)).toEqual([...Array.from(v), ...Array.from(v)]);
  });

  it('averages V uniformly when every key scores the same', () => {
    const k = new Float32Array(3 * 8);
    const v = filled(3 * 8, (i) => Math.floor(i / 8));
    const q = filled(2 * 8, () => 1);
    const out = referenceAttention({ q, queryStart: 2, k, v, scale: 1 }, shape);
    for (const x of out) expect(x).toBeCloseTo(1, 6);
  });

  it('is causal: query i only sees positions ≤ queryStart + i', () => {
    const k = new Float32Array(3 * 8);
    const v = filled(3 * 8, (i) => Math.floor(i / 8) * 3);
    const q = new Float32Array(2 * 2 * 8);
    const out = referenceAttention({ q, queryStart: 1, k, v, scale: 1 }, shape);
    expect(out[0]).toBeCloseTo(1.5, 6); // positions 0,1 → mean(0, 3)
    expect(out[16]).toBeCloseTo(3, 6); // positions 0,1,2 → mean(0, 3, 6)
  });

  it('weights by softmax of scaled scores', () => {
    const k = filled(2 * 8, (i) => (i < 8 ? 0 : i === 8 ? 1 : 0));
    const v = filled(2 * 8, (i) => (i < 8 ? 0 : 1));
    const q = filled(2 * 8, (i) => (i % 8 === 0 ? 2 : 0));
    const out = referenceAttention({ q, queryStart: 1, k, v, scale: 0.5 }, shape);
    const w = Math.exp(1) / (1 + Math.exp(1));
    expect(out[0]).toBeCloseTo(w, 6);
  });
});
