// The prefix-cache extension points: onRelease keeps blocks CACHED, the evictor reclaims them.
import { describe, expect, it } from 'vitest';
import { BlockTable } from '../../src/table/block-table';
import { InvariantError, OutOfBlocksError, ReentrantLockError } from '../../src/table/errors';
import { BlockState } from '../../src/table/layout';
import { expectFailsWithoutChange, recount, viewsOf } from './helpers';

const config = { numBlocks: 6, blockSize: 2, maxSequences: 4, maxBlocksPerSequence: 6 };

/** Keeps every released block, evicts oldest first; records calls. */
function lruCache() {
  const cached: number[] = [];
  const evicted: number[] = [];
  return {
    cached,
    evicted,
    onRelease: (block: number) => {
      cached.push(block);
      return true;
    },
    evictor: {
      evictOne: () => {
        const block = cached.shift();
        if (block === undefined) return -1;
        evicted.push(block);
        return block;
      },
    },
  };
}

describe('prefix-cache hooks', () => {
  it('onRelease keeps released blocks CACHED, off the free list', () => {
    const cache = lruCache();
    const table = BlockTable.create(config, { onRelease: cache.onRelease, evictor: cache.evictor });
    const v = viewsOf(table);
    const id = table.createSequence([1, 2, 3]).id; // blocks 0, 1
    expect(table.free(id)).toEqual([0, 1]);
    expect(cache.cached).toEqual([0, 1]);
    expect(Array.from(v.state.subarray(0, 2))).toEqual([BlockState.CACHED, BlockState.CACHED]);
    expect(Array.from(v.tokens.subarray(0, 3))).toEqual([1, 2, 3]); // contents kept
    expect(table.stats()).toMatchObject({ blocksFree: 4, blocksCached: 2, blocksUsed: 0 });
    expect(recount(table)).toEqual({ free: 4, used: 0, cached: 2 });
    table.checkInvariants();
  });

  it('allocation evicts cached blocks only when the free list runs short', () => {
    const cache = lruCache();
    const table = BlockTable.create(config, { onRelease: cache.onRelease, evictor: cache.evictor });
    table.free(table.createSequence([1, 2, 3, 4]).id); // 0, 1 cached
    const a = table.createSequence(new Uint32Array(8)).id; // 4 free blocks: no eviction
    expect(cache.evicted).toEqual([]);
    expect(Array.from(table.blocksOf(a))).toEqual([2, 3, 4, 5]);
    const b = table.createSequence([7]).id; // needs 1: evicts the oldest cached block
    expect(cache.evicted).toEqual([0]);
    expect(Array.from(table.blocksOf(b))).toEqual([0]);
    expect(table.stats()).toMatchObject({ blocksFree: 0, blocksCached: 1, evictions: 1 });
    table.checkInvariants();
    // 1 cached block is available, 2 are not
    const e = expectFailsWithoutChange(table, () => table.createSequence([1, 2, 3]), OutOfBlocksError);
    expect([e.requested, e.available]).toEqual([2, 1]);
    expect(cache.evicted).toEqual([0]); // the failed call evicted nothing
  });

  it('without an evictor cached blocks are not available', () => {
    const table = BlockTable.create(config, { onRelease: () => true });
    table.free(table.createSequence(new Uint32Array(12)).id);
    expect(table.stats().blocksCached).toBe(6);
    const e = expectFailsWithoutChange(table, () => table.createSequence([1]), OutOfBlocksError);
    expect(e.available).toBe(0);
  });

  it('retainBlocks brings a cached block back into use', () => {
    const cache = lruCache();
    const table = BlockTable.create(config, { onRelease: cache.onRelease, evictor: cache.evictor });
    const v = viewsOf(table);
    table.free(table.createSequence([1, 2]).id); // block 0 cached
    table.retainBlocks([0]);
    expect(v.state[0]).toBe(BlockState.USED);
    expect(table.stats()).toMatchObject({ blocksCached: 0, blocksUsed: 1, cachedRevivals: 1 });
    table.checkInvariants();
    expect(table.releaseBlocks([0])).toEqual([0]); // cached again through the hook
    expect(v.state[0]).toBe(BlockState.CACHED);
    table.checkInvariants();
  });

  it('an evictor returning a block that is not cached → InvariantError', () => {
    const table = BlockTable.create(config, { onRelease: () => true, evictor: { evictOne: () => 5 } });
    table.free(table.createSequence(new Uint32Array(12)).id); // all 6 blocks cached
    expect(Array.from(table.blocksOf(table.createSequence([1]).id))).toEqual([5]); // evicts block 5
    expect(() => table.createSequence([1])).toThrow(/evictor returned 5/); // 5 is in use now
    const none = BlockTable.create(config, { onRelease: () => true, evictor: { evictOne: () => -1 } });
    none.free(none.createSequence([1]).id);
    expect(() => none.createSequence(new Uint32Array(12))).toThrow(InvariantError);
  });

  it('a hook calling back into the table → ReentrantLockError', () => {
    let table!: BlockTable;
    table = BlockTable.create(config, {
      onRelease: () => {
        table.stats();
        return false;
      },
    });
    const id = table.createSequence([1, 2, 3]).id;
    expect(() => table.free(id)).toThrow(ReentrantLockError);
    // the operation completed consistently (blocks freed, not cached) and the lock was released
    expect(table.lockStats().heldBy).toBe(0);
    expect(table.has(id)).toBe(false);
    expect(table.stats()).toMatchObject({ blocksFree: 6, blocksCached: 0 });
    table.checkInvariants();
  });

  it('nested batch() and table calls inside hooks during batch() are refused', () => {
    const table = BlockTable.create(config);
    expect(() => table.batch(() => table.batch(() => 1))).toThrow(ReentrantLockError);
    expect(table.lockStats().heldBy).toBe(0);
    expect(table.batch(() => table.createSequence([1]).length)).toBe(1);
  });
});
