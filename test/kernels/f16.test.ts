// f16 conversion: the CPU functions against IEEE 754 binary16 rules, and the GPU's f16 cache writes
// against the CPU. Invariants checked: round to nearest even (normal and subnormal ties), overflow to
// ±Inf, NaN stays NaN, every f16 survives f32 and back; write-kv on an f16 cache stores exactly
// f32ToF16Bits for every f16 rounding boundary (ties, ±1 ulp around them) and for out-of-range inputs.
import { describe, expect, it } from 'vitest';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { f16BitsToF32, f32ToF16Bits, packF16Pairs, roundToF16, unpackF16Pairs } from '../../src/kernels/f16';
import { computeKvLayout } from '../../src/pool/kv-layout';
import { readBackWords, uploadWords } from '../../src/kernels/kv-bindings';
import { WriteKvKernel } from '../../src/kernels/write-kv';
import { writeKvRef } from '../../src/kernels/write-kv.ref';

failOnUncapturedGpuErrors();

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);
function fromBits(bits: number): number {
  f32Bits[0] = bits;
  return f32[0]!;
}
function bitsOf(value: number): number {
  f32[0] = value;
  return f32Bits[0]!;
}

/** Every finite positive f16 boundary: the midpoint to the next f16, and one f32 ulp either side. */
function roundingBoundaries(): Float32Array {
  const values: number[] = [];
  for (let h = 0; h < 0x7bff; h++) {
    const mid = bitsOf((f16BitsToF32(h) + f16BitsToF32(h + 1)) / 2);
    for (const bits of [mid - 1, mid, mid + 1]) values.push(fromBits(bits), -fromBits(bits));
  }
  return Float32Array.from(values);
}

describe('f32ToF16Bits / f16BitsToF32 on the CPU', () => {
  it('round to nearest, ties to even', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie, even below
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, even above
    expect(f32ToF16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // just above the tie
    expect(f32ToF16Bits(-(1 + 2 ** -11))).toBe(0xbc00);
    expect(f32ToF16Bits(2047.5)).toBe(f32ToF16Bits(2048)); // tie carrying into the exponent
  });

  it('subnormals, including ties and the smallest values', () => {
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001);
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie with zero: even
    expect(f32ToF16Bits(2 ** -25 * 1.0001)).toBe(0x0001);
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // tie between 1 and 2
    expect(f32ToF16Bits(5 * 2 ** -25)).toBe(0x0002); // tie between 2 and 3
    expect(f32ToF16Bits(1023 * 2 ** -24)).toBe(0x03ff);
    expect(f32ToF16Bits(1023.5 * 2 ** -24)).toBe(0x0400); // rounds up into the normals
    expect(f32ToF16Bits(-(2 ** -30))).toBe(0x8000);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x83ff)).toBe(-1023 * 2 ** -24);
  });

  it('overflow to ±Infinity, NaN stays NaN, signed zero kept', () => {
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65519.99)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00);
    expect(f32ToF16Bits(1e9)).toBe(0x7c00);
    expect(f32ToF16Bits(-Infinity)).toBe(0xfc00);
    expect(f16BitsToF32(0x7c00)).toBe(Infinity);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
  });

  it('every f16 value survives f32 and back; pairs pack low half first', () => {
    const changed: number[] = [];
    for (let h = 0; h < 0x10000; h++) {
      const isNaN = ((h >>> 10) & 0x1f) === 0x1f && (h & 0x3ff) !== 0; // NaN payloads are not kept
      if (!isNaN && f32ToF16Bits(f16BitsToF32(h)) !== h) changed.push(h);
    }
    expect(changed).toEqual([]);
    const words = packF16Pairs([1, -2, 0.5, 65504]);
    expect(Array.from(words)).toEqual([0xc0003c00, 0x7bff3800]);
    expect(Array.from(unpackF16Pairs(words))).toEqual([1, -2, 0.5, 65504]);
    expect(Array.from(roundToF16(Float32Array.from([1 + 2 ** -11, 0.1])))).toEqual([1, f16BitsToF32(0x2e66)]);
  });
});

describe('f16 cache writes on the GPU', () => {
  it('write-kv stores f32ToF16Bits for every rounding boundary and out-of-range value', async () => {
    const { device } = await testGpu();
    const specials = [65504, 65519.99, 65520, 65536, 7e4, 1e30, Infinity, -Infinity, NaN, -NaN, -0, 0, 2 ** -126, 1e-40];
    const boundaries = roundingBoundaries();
    const headDim = 256;
    const values = new Float32Array(Math.ceil((boundaries.length + specials.length) / headDim) * headDim);
    values.set(boundaries);
    values.set(specials, boundaries.length);
    const numTokens = values.length / headDim;
    const blockSize = 16;
    const numBlocks = Math.ceil(numTokens / blockSize);
    const layout = computeKvLayout({ numLayers: 1, numKvHeads: 1, headDim, blockSize, numBlocks, kvDtype: 'f16' }, 2 ** 30);
    const chunkWords = [new Uint32Array(layout.chunkBytes[0]! / 4)];
    const chunk = uploadWords(device, chunkWords[0]!);
    const slots = Uint32Array.from({ length: numTokens }, (_, i) => i);
    const input = uploadWords(device, values);
    const encoder = device.createCommandEncoder();
    new WriteKvKernel(device, layout).encode(encoder, { chunks: [chunk], k: input, v: input, slots: uploadWords(device, slots), numTokens });
    device.queue.submit([encoder.finish()]);
    writeKvRef(layout, chunkWords, values, values, slots);
    const got = await readBackWords(device, chunk, layout.chunkBytes[0]);
    const mismatch = got.findIndex((w, i) => w !== chunkWords[0]![i]);
    expect(mismatch, 'first mismatching word').toBe(-1);
  });
});
