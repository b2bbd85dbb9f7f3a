// Deterministic K/V content for the reliability tests, the way a real model produces it: the K/V of
// position p depend on the namespace and on every token up to p (a rolling prefix key), plus a `salt`
// that is 0 for the canonical content and non-zero for a deliberately different rewrite.
// Invariants: equal (namespace, token prefix, salt, layer) give bit-identical rows; changing any of
// them changes the row (up to 32-bit hash collisions); values lie in (-1, 1) and are not f16-exact, so
// a test that compares against roundToF16(row) really checks the f16 rounding.

/** 32-bit hash combine (murmur3 finalizer over a ^ b·golden). */
export function mix32(a: number, b: number): number {
  let h = (a ^ Math.imul(b >>> 0, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export function namespaceKey(namespace: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < namespace.length; i++) h = mix32(h, namespace.charCodeAt(i));
  return mix32(h, namespace.length + 1);
}

/** Prefix key of every position: key[p] depends on the namespace and tokens[0..p]. */
export function prefixKeys(namespace: string, tokens: readonly number[], into: number[] = []): number[] {
  let h = into.length > 0 ? into[into.length - 1]! : namespaceKey(namespace);
  for (let p = into.length; p < tokens.length; p++) {
    h = mix32(h, tokens[p]!);
    into.push(h);
  }
  return into;
}

/** What a position's K/V were computed from: its prefix key and a salt (0 = canonical). */
export function contentId(prefixKey: number, salt: number): number {
  return salt === 0 ? prefixKey : mix32(prefixKey, 0x5a17 + salt);
}

/** The K (which 0) or V (which 1) row of a content id in a layer: `rowElements` floats in (-1, 1). */
export function kvRow(id: number, layer: number, which: 0 | 1, rowElements: number, out = new Float32Array(rowElements), at = 0): Float32Array {
  let h = mix32(mix32(id, layer + 1), which + 7);
  for (let i = 0; i < rowElements; i++) {
    h = mix32(h, i);
    out[at + i] = (h / 2 ** 32) * 1.9 - 0.95;
  }
  return out;
}

/** Deterministic query rows: `rows × rowElements` floats in (-1.5, 1.5). */
export function queryRows(seed: number, rows: number, rowElements: number): Float32Array {
  const out = new Float32Array(rows * rowElements);
  let h = mix32(seed >>> 0, 0x51);
  for (let i = 0; i < out.length; i++) {
    h = mix32(h, i);
    out[i] = (h / 2 ** 32) * 3 - 1.5;
  }
  return out;
}
