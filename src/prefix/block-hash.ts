// Hash of one trie edge: (parent key, the block's token ids). It only picks a bucket: a lookup accepts a
// candidate only if its parent key and every token are equal, so a collision costs time, never
// correctness. Invariants: a BlockHash is a pure function returning an Int32; every agent attached to
// one index must use the same function (buckets are shared). The default runs two multiply-xor lanes
// over the tokens (each step a bijection of the lane state, so no token's difference is lost before the
// end) and finishes with MurmurHash3's avalanche, which spreads every input bit over the low bits that
// pick the bucket.

/** Hash of (parentKey, tokens[offset .. offset + count)), an Int32. */
export type BlockHash = (parentKey: number, tokens: ArrayLike<number>, offset: number, count: number) => number;

const M1 = 0x9e3779b1;
const M2 = 0x85ebca77;

export const multiplyXorBlockHash: BlockHash = (parentKey, tokens, offset, count) => {
  let a = Math.imul(parentKey ^ 0x27d4eb2f, M1);
  let b = Math.imul(count ^ 0x165667b1, M2);
  const end = offset + count;
  let i = offset;
  if (tokens instanceof Uint32Array) {
    for (; i + 1 < end; i += 2) {
      a = Math.imul(a ^ tokens[i], M1);
      b = Math.imul(b ^ tokens[i + 1], M2);
    }
  } else {
    for (; i + 1 < end; i += 2) {
      a = Math.imul(a ^ tokens[i], M1);
      b = Math.imul(b ^ tokens[i + 1], M2);
    }
  }
  if (i < end) a = Math.imul(a ^ tokens[i], M1);
  let h = a ^ ((b << 16) | (b >>> 16));
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
};
