// CPU reference of flush-staged-kv on one layer's chunk words. Invariants: the staged words are in the
// layout flush-staged-kv.ts states (row r: K of kv head h at ((r · numKvHeads + h) · 2) · wordsPerRow
// words, its V right after) and are copied bit for bit; the slot rule is write-kv's (padding slot
// 0xffffffff and blocks past numBlocks skipped). A decode staging rows and this flush equal writeKvRef.
import type { KvLayout } from '../pool/kv-layout';
import { rowWordOffset } from '../pool/kv-layout';
import { slotTarget } from './write-kv.ref';

export function flushStagedKvRef(layout: KvLayout, chunkWords: Uint32Array[], staged: Uint32Array, slots: ArrayLike<number>): void {
  const { numKvHeads, wordsPerRow } = layout;
  for (let row = 0; row < slots.length; row++) {
    const target = slotTarget(layout, chunkWords, slots[row]!);
    if (target === undefined) continue;
    const { words, block, inBlock } = target;
    for (let head = 0; head < numKvHeads; head++) {
      for (const kv of [0, 1] as const) {
        const src = ((row * numKvHeads + head) * 2 + kv) * wordsPerRow;
        words.set(staged.subarray(src, src + wordsPerRow), rowWordOffset(layout, block, kv, head, inBlock));
      }
    }
  }
}
