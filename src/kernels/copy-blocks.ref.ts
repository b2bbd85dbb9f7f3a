// CPU reference of copy-blocks on chunk words (one Uint32Array per chunk of one layer). Invariants:
// pairs is flat [src, dst, ...] of global block ids; each pair copies the whole block (K and V, all
// heads); pairs naming a block past numBlocks, or the same block twice, are skipped, like the shader.
// Under the kernel's contract (distinct destinations that are not sources) order does not matter.
import type { KvLayout } from '../pool/kv-layout';
import { chunkOf } from '../pool/kv-layout';

export function copyBlocksRef(layout: KvLayout, chunkWords: Uint32Array[], pairs: ArrayLike<number>): void {
  const size = layout.wordsPerBlock;
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const src = pairs[i]!;
    const dst = pairs[i + 1]!;
    if (src >= layout.numBlocks || dst >= layout.numBlocks || src === dst) continue;
    const from = chunkOf(layout, src);
    const to = chunkOf(layout, dst);
    const source = chunkWords[from.chunk]!.subarray(from.local * size, (from.local + 1) * size);
    chunkWords[to.chunk]!.set(source, to.local * size);
  }
}
