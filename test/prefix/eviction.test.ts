// Eviction: unreferenced leaves go first in LRU order, parents follow once they are leaves, referenced
// blocks (and ancestors of referenced blocks) are never taken, and clear() empties the cache.
import { describe, expect, it } from 'vitest';
import { OutOfBlocksError } from '../../src/table/errors';
import { BlockState } from '../../src/table/layout';
import { viewsOf } from '../table/helpers';
import { createWritten, expectUnchanged, makeCache, range } from './helpers';

/** Blocks that were CACHED and are FREE now, in the order the allocations reclaimed them. */
function evictionOrder(cache: ReturnType<typeof makeCache>, allocations: number): number[] {
  const v = viewsOf(cache.table);
  const order: number[] = [];
  for (let i = 0; i < allocations; i++) {
    const cached = new Set<number>();
    for (let b = 0; b < cache.table.config.numBlocks; b++) if (v.state[b] === BlockState.CACHED) cached.add(b);
    cache.createSequence([7]);
    for (const b of cached) if (v.state[b] !== BlockState.CACHED) order.push(b);
    cache.checkInvariants();
  }
  return order;
}

describe('eviction', () => {
  it('evicts unreferenced leaves in LRU order, each parent as soon as it becomes a leaf', () => {
    const cache = makeCache({ numBlocks: 9 });
    const seqs = [range(9, 10), range(9, 20), range(9, 30)].map((p) => createWritten(cache, p)); // 2 registered + 1 each
    const blocks = seqs.map((s) => Array.from(cache.table.blocksOf(s.id).subarray(0, 2)));
    for (const s of [seqs[1], seqs[0], seqs[2]]) cache.free(s.id); // LRU order: 1, 0, 2
    expect(cache.stats()).toMatchObject({ evictable: 6, protected: 0 });
    expect(cache.table.stats()).toMatchObject({ blocksFree: 3, blocksCached: 6 }); // partial blocks were freed
    const [s1, s0, s2] = [blocks[1], blocks[0], blocks[2]];
    // The first 3 allocations take free blocks; then leaf, parent, leaf, parent … oldest chain first.
    expect(evictionOrder(cache, 9)).toEqual([s1[1], s1[0], s0[1], s0[0], s2[1], s2[0]]);
    expect(cache.stats()).toMatchObject({ evictions: 6, registered: 0, evictable: 0 });
  });

  it('reusing a prefix makes it recently used', () => {
    const cache = makeCache({ numBlocks: 6 });
    const a = createWritten(cache, range(8, 10));
    const b = createWritten(cache, range(8, 20));
    const aBlocks = Array.from(cache.table.blocksOf(a.id));
    const bBlocks = Array.from(cache.table.blocksOf(b.id));
    cache.free(a.id);
    cache.free(b.id);
    const again = cache.createSequence([...range(8, 10), 1]); // touches a's blocks
    expect(again.cachedTokens).toBe(8);
    cache.free(again.id);
    expect(evictionOrder(cache, 6)).toEqual([bBlocks[1], bBlocks[0], aBlocks[1], aBlocks[0]]);
  });

  it('counts whole unreferenced chains as evictable: an allocation may cascade through them', () => {
    const cache = makeCache({ numBlocks: 8, maxBlocksPerSequence: 8 });
    const chain = createWritten(cache, range(32)); // 8 blocks, all registered
    cache.free(chain.id);
    expect(cache.stats()).toMatchObject({ registered: 8, evictable: 8 });
    expect(cache.table.stats().blocksCached).toBe(8);
    const big = cache.createSequence(range(30, 500)); // 8 blocks: the whole chain, leaf first
    expect(cache.table.blocksOf(big.id).length).toBe(8);
    expect(cache.stats()).toMatchObject({ registered: 0, evictable: 0, evictions: 8 });
    cache.checkInvariants();
  });

  it('never evicts referenced blocks, nor the ancestors of referenced blocks', () => {
    const cache = makeCache({ numBlocks: 6 });
    const v = viewsOf(cache.table);
    const a = createWritten(cache, range(12)); // 3 registered blocks
    const [a0, a1, a2] = cache.table.blocksOf(a.id);
    cache.table.retainBlocks([a1]); // e.g. GPU work still reading it
    cache.free(a.id);
    expect(v.state[a0]).toBe(BlockState.CACHED); // unreferenced, but its child is referenced
    expect(cache.stats()).toMatchObject({ evictable: 1, protected: 2 }); // only a2 (the leaf)
    const live = cache.createSequence([1, 2, 3, 4, 9]); // reuses a0 (cached → in use)
    expect(live.cachedTokens).toBe(4);
    const e = expectUnchanged(cache, () => cache.createSequence(range(16, 100)), OutOfBlocksError);
    expect((e as OutOfBlocksError).available).toBe(2 + 1); // 2 free + a2
    const filler = cache.createSequence(range(12, 200)); // takes the 2 free blocks and evicts a2
    expect(cache.table.blocksOf(filler.id)).toContain(a2);
    expect([v.state[a0], v.state[a1]]).toEqual([BlockState.USED, BlockState.USED]);
    expect(cache.table.releaseBlocks([a1])).toEqual([a1]);
    expect(cache.stats()).toMatchObject({ evictable: 1, protected: 1 }); // a1: unreferenced leaf; a0: live's
    cache.free(live.id);
    expect(cache.stats()).toMatchObject({ evictable: 2, protected: 0 });
    cache.free(filler.id);
    cache.checkInvariants();
  });

  it('a reused cached block cannot be evicted by the allocation that reuses it', () => {
    const cache = makeCache({ numBlocks: 6 });
    const a = createWritten(cache, range(9)); // 2 registered + 1
    const o = createWritten(cache, range(4, 50)); // 1 registered
    const [a0, a1] = cache.table.blocksOf(a.id);
    const o0 = cache.table.blocksOf(o.id)[0];
    cache.free(a.id); // a0, a1 are older than o0
    cache.free(o.id);
    cache.createSequence(range(12, 300)); // takes the 3 free blocks
    expect(cache.table.stats()).toMatchObject({ blocksFree: 0, blocksCached: 3 });
    // 2 reused blocks + 1 fresh: the eviction takes o0, never a0/a1 (they are referenced first)
    const b = cache.createSequence([...range(8), 70]);
    expect(b.cachedTokens).toBe(8);
    expect(Array.from(cache.table.blocksOf(b.id))).toEqual([a0, a1, o0]);
    // Without another evictable block the same request fails and changes nothing.
    cache.free(b.id);
    cache.createSequence([5]); // takes the freed partial block
    const e = expectUnchanged(cache, () => cache.createSequence([...range(8), 71]), OutOfBlocksError);
    expect((e as OutOfBlocksError).available).toBe(0);
  });

  it('a namespace survives the eviction of its last cached block by an allocation in that namespace', () => {
    const cache = makeCache({ numBlocks: 2 });
    cache.free(createWritten(cache, range(5), 'a').id); // block 0 cached: the namespace's only root
    const b = createWritten(cache, range(8, 40), 'a'); // 2 fresh blocks: evicts that root
    expect(cache.stats()).toMatchObject({ evictions: 1, namespaces: 2, registered: 2 });
    expect(cache.registeredBlocks(b.id)).toBe(2);
    cache.checkInvariants();
  });

  it('clear() frees every evictable block and unregisters the rest, which stay with their sequences', () => {
    const cache = makeCache();
    const gone = createWritten(cache, range(9, 10), 'ns-1');
    const kept = createWritten(cache, range(9, 20), 'ns-2');
    cache.free(gone.id);
    expect(cache.stats()).toMatchObject({ registered: 4, evictable: 2, namespaces: 3 });
    const freeBefore = cache.table.stats().blocksFree;
    expect(cache.clear()).toBe(2);
    expect(cache.table.stats()).toMatchObject({ blocksFree: freeBefore + 2, blocksCached: 0 });
    expect(cache.stats()).toMatchObject({ registered: 0, evictable: 0, protected: 0, namespaces: 2 });
    expect(cache.cachedPrefix(range(9, 20), 'ns-2')).toBe(0);
    expect(cache.registeredBlocks(kept.id)).toBe(-1); // no longer shareable, and stops registering
    expect(Array.from(cache.table.tokensOf(kept.id))).toEqual(range(9, 20));
    cache.table.makeExclusive(kept.id, 0, 4); // unfrozen: written in place
    expect(cache.table.stats().cowCopies).toBe(0);
    cache.free(kept.id);
    expect(cache.table.stats().blocksFree).toBe(cache.table.config.numBlocks);
    expect(cache.stats().namespaces).toBe(1);
    cache.checkInvariants();
  });
});
