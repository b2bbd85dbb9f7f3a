// CPU reference of gather-kv on chunk words (one Uint32Array per chunk of one layer). Invariants: same
// inputs and rules as shaders/gather-kv.wgsl: token t is row t % blockSize of block blocks[t / blockSize];
// a block id past numBlocks yields zeros; f32 caches give back the stored bits, f16 caches the exact
// f32 value of each stored half.
import type { KvLayout } from '../pool/kv-layout';
import { chunkOf, rowWordOffset } from '../pool/kv-layout';
import { f16BitsToF32 } from './f16';

export function gatherKvRef(
  layout: KvLayout,
  chunkWords: Uint32Array[],
  blocks: ArrayLike<number>,
  length: number,
): { k: Float32Array; v: Float32Array } {
  const { numKvHeads, headDim, blockSize, wordsPerRow } = layout;
  const k = new Float32Array(length * numKvHeads * headDim);
  const v = new Float32Array(length * numKvHeads * headDim);
  const outputs = [k, v] as const;
  for (let token = 0; token < length; token++) {
    const block = blocks[Math.floor(token / blockSize)]!;
    if (block >= layout.numBlocks) continue;
    const words = chunkWords[chunkOf(layout, block).chunk]!;
    for (const kv of [0, 1] as const) {
      const out = outputs[kv];
      const outBits = new Uint32Array(out.buffer);
      for (let head = 0; head < numKvHeads; head++) {
        const src = rowWordOffset(layout, block, kv, head, token % blockSize);
        const dst = (token * numKvHeads + head) * headDim;
        for (let w = 0; w < wordsPerRow; w++) {
          const word = words[src + w]!;
          if (layout.kvDtype === 'f16') {
            out[dst + 2 * w] = f16BitsToF32(word & 0xffff);
            out[dst + 2 * w + 1] = f16BitsToF32(word >>> 16);
          } else {
            outBits[dst + w] = word;
          }
        }
      }
    }
  }
  return { k, v };
}
