// IEEE 754 binary16 conversion on the CPU. unpack2x16float matches f16BitsToF32 exactly; the GPU's
// pack2x16float may round subnormal ties differently, so write-kv packs with integer arithmetic that
// ports f32ToF16Bits, keeping GPU and CPU bit-identical.
// Invariants: f32ToF16Bits rounds to nearest, ties to even; overflow gives ±Infinity; NaN stays NaN;
// f16BitsToF32(f32ToF16Bits(x)) is the f16 value the GPU stores for x. Pairs pack low half first.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f32ToF16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → Inf
  if (e <= 0) {
    // subnormal half (or zero)
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++; // may carry into exponent: still correct
  return sign | half;
}

export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Rounds every value to the nearest f16 (what the cache stores for kvDtype 'f16'). */
export function roundToF16(values: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f16BitsToF32(f32ToF16Bits(values[i]!));
  return out;
}

/** Packs pairs of f32 (even index in the low half) into u32 words of two f16. Length must be even. */
export function packF16Pairs(values: ArrayLike<number>, out = new Uint32Array(values.length / 2)): Uint32Array {
  for (let i = 0; i < out.length; i++) {
    out[i] = (f32ToF16Bits(values[2 * i]!) | (f32ToF16Bits(values[2 * i + 1]!) << 16)) >>> 0;
  }
  return out;
}

export function unpackF16Pairs(words: ArrayLike<number>, out = new Float32Array(words.length * 2)): Float32Array {
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    out[2 * i] = f16BitsToF32(w & 0xffff);
    out[2 * i + 1] = f16BitsToF32(w >>> 16);
  }
  return out;
}
