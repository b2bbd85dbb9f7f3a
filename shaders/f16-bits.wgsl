// f32 → f16 conversion in integer arithmetic, shared by every kernel that stores K/V into an f16 cache
// (write-kv, and the streaming decode when it writes the new token's K/V itself). Invariant: f16Bits(x)
// equals the CPU's f32ToF16Bits(x) bit for bit on every device — round to nearest even (subnormal
// results included), ±Inf beyond the f16 range, quiet NaN for NaN. pack2x16float is not used: WGSL leaves
// its rounding direction to the implementation and its result outside the f16 range indeterminate.

fn f16Bits(bits: u32) -> u32 {
  let sign = (bits >> 16u) & 0x8000u;
  let exponent = (bits >> 23u) & 0xffu;
  let mantissa = bits & 0x7fffffu;
  if (exponent == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u, mantissa != 0u); }
  let e = i32(exponent) - 112; // rebias 127 -> 15
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    let full = mantissa | 0x800000u;
    let shift = u32(14 - e);
    let rest = full & ((1u << shift) - 1u);
    let halfway = 1u << (shift - 1u);
    var half = full >> shift;
    if (rest > halfway || (rest == halfway && (half & 1u) == 1u)) { half += 1u; }
    return sign | half;
  }
  var half = (u32(e) << 10u) | (mantissa >> 13u);
  let rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u) == 1u)) { half += 1u; } // may carry into Inf: correct
  return sign | half;
}
