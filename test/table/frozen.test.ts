// Frozen blocks (registered by a prefix index): immutable, kept cached, shareable into new sequences and
// adoptable in place of an identical block; every misuse fails with a typed error and changes nothing.
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors';
import { BlockTable } from '../../src/table/block-table';
import { InvalidBlockError, InvariantError, OutOfBlocksError } from '../../src/table/errors';
import { BlockState } from '../../src/table/layout';
import { expectFailsWithoutChange, viewsOf } from './helpers';

const config = { numBlocks: 8, blockSize: 2, maxSequences: 4, maxBlocksPerSequence: 4 };

describe('frozen blocks', () => {
  it('freezeBlock: full blocks only, once; a frozen block is kept CACHED when released', () => {
    const table = BlockTable.create(config);
    const v = viewsOf(table);
    const id = table.createSequence([1, 2, 3]).id; // block 0 full, block 1 partial
    expectFailsWithoutChange(table, () => table.freezeBlock(id, 1), InvalidArgumentError);
    expectFailsWithoutChange(table, () => table.freezeBlock(id, -1), InvalidArgumentError);
    const b = table.freezeBlock(id, 0);
    expect(table.isFrozen(b)).toBe(true);
    expectFailsWithoutChange(table, () => table.freezeBlock(id, 0), InvalidBlockError);
    expect(table.free(id)).toEqual([0, 1]); // no hooks installed: the frozen block is cached anyway
    expect([v.state[0], v.state[1]]).toEqual([BlockState.CACHED, BlockState.FREE]);
    table.checkInvariants();
    expect(table.unfreezeAll()).toBe(1);
    expect(table.stats()).toMatchObject({ blocksFree: 8, blocksCached: 0 });
    table.checkInvariants();
  });

  it('writes into a frozen block copy it even when it has one reference', () => {
    const table = BlockTable.create(config);
    const v = viewsOf(table);
    const id = table.createSequence([1, 2, 3, 4]).id;
    table.freezeBlock(id, 1);
    expect(table.makeExclusive(id, 0, 2)).toEqual([]); // block 0 is not frozen
    const copies = table.makeExclusive(id, 2, 3);
    expect(copies).toEqual([{ src: 1, dst: table.blocksOf(id)[1] }]);
    expect(v.state[1]).toBe(BlockState.CACHED); // the frozen original is kept
    expect(Array.from(table.tokensOf(id))).toEqual([1, 2, 3, 4]);
    table.checkInvariants();
  });

  it('createSequence with prefix blocks references them and allocates the rest', () => {
    const table = BlockTable.create(config);
    const a = table.createSequence([1, 2, 3, 4, 5]).id;
    const [b0, b1] = table.blocksOf(a);
    table.freezeBlock(a, 0);
    table.freezeBlock(a, 1);
    table.free(a); // b0, b1 cached
    const b = table.createSequence([1, 2, 3, 4, 9], [b0, b1]).id;
    expect(Array.from(table.blocksOf(b).subarray(0, 2))).toEqual([b0, b1]);
    expect(Array.from(table.tokensOf(b))).toEqual([1, 2, 3, 4, 9]);
    expect(table.stats()).toMatchObject({ blocksCached: 0, cachedRevivals: 2 });
    table.checkInvariants();
    // Misuse: an unfrozen block, more prefix blocks than fit, a block id out of range.
    const tail = table.blocksOf(b)[2];
    expectFailsWithoutChange(table, () => table.createSequence([1, 2, 3, 4, 9], [b0, tail]), InvalidBlockError);
    expectFailsWithoutChange(table, () => table.createSequence([1, 2, 3], [b0, b1]), InvalidArgumentError);
    expectFailsWithoutChange(table, () => table.createSequence([1, 2], [99]), InvalidBlockError);
  });

  it('prefix blocks the evictor could reclaim do not count as available for the same creation', () => {
    const cached: number[] = [];
    const table = BlockTable.create(config, {
      onRelease: (b) => (cached.push(b), true),
      evictor: { evictOne: () => cached.shift() ?? -1 },
    });
    const a = table.createSequence([1, 2]).id;
    table.freezeBlock(a, 0);
    table.free(a);
    table.createSequence(new Uint32Array(8)); // 4 blocks
    table.createSequence(new Uint32Array(6)); // the last 3 free blocks
    const e = expectFailsWithoutChange(table, () => table.createSequence([1, 2, 3], [0]), OutOfBlocksError);
    expect([e.requested, e.available]).toEqual([1, 0]);
  });

  it('adoptBlock swaps a full block for an identical frozen one', () => {
    const table = BlockTable.create(config);
    const a = table.createSequence([1, 2, 3]).id;
    const b = table.createSequence([1, 2, 7]).id;
    const frozen = table.freezeBlock(a, 0);
    const own = table.blocksOf(b)[0];
    expectFailsWithoutChange(table, () => table.adoptBlock(b, 1, frozen), InvalidArgumentError); // partial block
    expectFailsWithoutChange(table, () => table.adoptBlock(b, 0, table.blocksOf(a)[1]), InvalidBlockError); // not frozen
    const c = table.createSequence([5, 6]).id;
    const other = table.freezeBlock(c, 0);
    expectFailsWithoutChange(table, () => table.adoptBlock(b, 0, other), InvalidArgumentError); // other tokens
    expect(table.adoptBlock(b, 0, frozen)).toBe(own);
    expect(table.blocksOf(b)[0]).toBe(frozen);
    expect(viewsOf(table).state[own]).toBe(BlockState.FREE);
    expectFailsWithoutChange(table, () => table.adoptBlock(b, 0, frozen), InvalidBlockError); // already frozen there
    table.checkInvariants();
  });

  it('checkInvariants notices a frozen block that is free or not full', () => {
    const table = BlockTable.create(config);
    const v = viewsOf(table);
    v.frozen[5] = 1;
    expect(() => table.checkInvariants()).toThrow(InvariantError);
    expect(() => table.checkInvariants()).toThrow(/frozen but FREE/);
    v.frozen[5] = 0;
    const id = table.createSequence([1]).id;
    v.frozen[table.blocksOf(id)[0]] = 1;
    expect(() => table.checkInvariants()).toThrow(/holds 1 of 2 tokens/);
  });
});
