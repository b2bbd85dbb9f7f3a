// Test helper: the logical K/V of a sequence as the CPU reference wants them, deterministic test values,
// and the tolerance check used by the cache-level attention tests. Invariants: LogicalKv stores what
// the cache holds (f16-rounded, since the caches under test are f16), per KV head [position][headDim].
import { expect } from 'vitest';
import { attentionRef } from '../../src/kernels/attention.ref';
import { roundToF16 } from '../../src/kernels/f16';

export function values(n: number, seed: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sin(seed * 7.31 + i * 0.618) * 0.9;
  return out;
}

export class LogicalKv {
  k: number[][];
  v: number[][];
  constructor(readonly kvHeads: number, readonly headDim: number) {
    this.k = Array.from({ length: kvHeads }, () => []);
    this.v = Array.from({ length: kvHeads }, () => []);
  }
  /** Position `pos` holds k, v ([kvHeads][headDim] rows). */
  set(pos: number, k: Float32Array, v: Float32Array): void {
    const kr = roundToF16(k), vr = roundToF16(v);
    const d0 = this.headDim;
    for (let h = 0; h < this.kvHeads; h++) {
      for (let d = 0; d < d0; d++) {
        this.k[h]![pos * d0 + d] = kr[h * d0 + d]!;
        this.v[h]![pos * d0 + d] = vr[h * d0 + d]!;
      }
    }
  }
  clone(): LogicalKv {
    const c = new LogicalKv(this.kvHeads, this.headDim);
    c.k = this.k.map((r) => [...r]);
    c.v = this.v.map((r) => [...r]);
    return c;
  }
  /** Causal attention of q ([queries][numQueryHeads][headDim]) at positions queryStart.. over these K/V. */
  attend(q: Float32Array, queryStart: number, numQueryHeads: number): Float64Array {
    const hd = this.headDim;
    return attentionRef({ q, k: this.k, v: this.v, numQueries: q.length / (numQueryHeads * hd), queryStart, numQueryHeads, headDim: hd, scale: 1 / Math.sqrt(hd) });
  }
}

/** |actual − expected| ≤ atol + rtol·|expected| everywhere (the first 5 misses are reported). */
export function expectClose(actual: Float32Array, expected: Float64Array, atol: number, rtol: number): void {
  expect(actual.length).toBe(expected.length);
  const bad: string[] = [];
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i]! - expected[i]!) <= atol + rtol * Math.abs(expected[i]!))) bad.push(`[${i}] ${actual[i]} vs ${expected[i]}`);
  }
  expect(bad.slice(0, 5)).toEqual([]);
}
