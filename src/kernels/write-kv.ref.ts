// CPU reference of write-kv on chunk words (one Uint32Array per chunk of one layer). Invariants: same
// inputs and skipping rules as shaders/write-kv.wgsl (padding slot 0xffffffff and blocks past
// numBlocks are skipped); f32 caches copy the input bits, f16 caches store f32ToF16Bits pairs, so
// the result equals the GPU's word for word.
import type { KvLayout } from '../pool/kv-layout';
import { chunkOf, rowWordOffset } from '../pool/kv-layout';
import { f32ToF16Bits } from './f16';

export const PADDING_SLOT = 0xffffffff;

export interface WriteKvRefOptions {
  kOffsetElements?: number;
  vOffsetElements?: number;
  tokenStrideElements?: number;
}

/** Where `slot` lies (its chunk's words, block and offset in the block), or undefined for a slot the kernels skip. */
export function slotTarget(layout: KvLayout, chunkWords: Uint32Array[], slot: number): { words: Uint32Array; block: number; inBlock: number } | undefined {
  if (slot === PADDING_SLOT) return undefined;
  const block = Math.floor(slot / layout.blockSize);
  if (block >= layout.numBlocks) return undefined;
  return { words: chunkWords[chunkOf(layout, block).chunk]!, block, inBlock: slot % layout.blockSize };
}

function bitsOf(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

export function writeKvRef(
  layout: KvLayout,
  chunkWords: Uint32Array[],
  k: Float32Array,
  v: Float32Array,
  slots: ArrayLike<number>,
  options: WriteKvRefOptions = {},
): void {
  const { numKvHeads, headDim, wordsPerRow } = layout;
  const stride = options.tokenStrideElements ?? numKvHeads * headDim;
  const inputs: [Float32Array, number][] = [
    [k, options.kOffsetElements ?? 0],
    [v, options.vOffsetElements ?? 0],
  ];
  for (let token = 0; token < slots.length; token++) {
    const target = slotTarget(layout, chunkWords, slots[token]!);
    if (target === undefined) continue;
    const { words, block, inBlock } = target;
    for (const kv of [0, 1] as const) {
      const [values, offset] = inputs[kv]!;
      const bits = bitsOf(values);
      for (let head = 0; head < numKvHeads; head++) {
        const src = offset + token * stride + head * headDim;
        const dst = rowWordOffset(layout, block, kv, head, inBlock);
        for (let w = 0; w < wordsPerRow; w++) {
          words[dst + w] =
            layout.kvDtype === 'f16'
              ? (f32ToF16Bits(values[src + 2 * w]!) | (f32ToF16Bits(values[src + 2 * w + 1]!) << 16)) >>> 0
              : bits[src + w]!;
        }
      }
    }
  }
}
