import { describe, expect, it } from 'vitest';
import { BlockTable } from '../../src/table/block-table';
import { BlockState } from '../../src/table/layout';
import { recount, viewsOf } from './helpers';

const config = { numBlocks: 16, blockSize: 4, maxSequences: 4, maxBlocksPerSequence: 6 };
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

describe('BlockTable sequences', () => {
  it('createSequence allocates ceil(n / blockSize) blocks and stores the tokens', () => {
    const table = BlockTable.create(config);
    const v = viewsOf(table);
    const { id, length } = table.createSequence(range(100, 110));
    expect(length).toBe(10);
    expect(table.length(id)).toBe(10);
    expect(Array.from(table.blocksOf(id))).toEqual([0, 1, 2]);
    expect(Array.from(table.tokensOf(id))).toEqual(range(100, 110));
    expect(Array.from(v.filled.subarray(0, 3))).toEqual([4, 4, 2]);
    expect(Array.from(v.refCount.subarray(0, 4))).toEqual([1, 1, 1, 0]);
    const row = table.rowOf(id);
    expect(Array.from(table.blockTableView.subarray(row * table.rowStride, (row + 1) * table.rowStride))).toEqual([0, 1, 2, -1, -1, -1]);
    expect(table.stats()).toMatchObject({ blocksTotal: 16, blocksFree: 13, blocksUsed: 3, blocksCached: 0, sequences: 1, allocations: 3 });
    table.checkInvariants();
  });

  it('an empty sequence holds no block, and appends allocate exactly when a block fills', () => {
    const table = BlockTable.create(config);
    const { id } = table.createSequence([]);
    expect(table.blocksOf(id).length).toBe(0);
    expect(table.stats().blocksFree).toBe(16);
    expect(table.appendTokens(id, [])).toEqual({ firstPosition: 0, newBlocks: [], copies: [] });
    expect(table.appendTokens(id, [1, 2, 3])).toEqual({ firstPosition: 0, newBlocks: [0], copies: [] });
    expect(table.appendTokens(id, [4])).toEqual({ firstPosition: 3, newBlocks: [], copies: [] });
    expect(table.appendTokens(id, [5])).toEqual({ firstPosition: 4, newBlocks: [1], copies: [] });
    expect(table.appendTokens(id, range(6, 15))).toEqual({ firstPosition: 5, newBlocks: [2, 3], copies: [] });
    expect(Array.from(table.tokensOf(id))).toEqual(range(1, 15));
    expect(table.length(id)).toBe(14);
    table.checkInvariants();
  });

  it('accepts every token representation and the extremes 0 and 2^32-1', () => {
    const table = BlockTable.create(config);
    const a = table.createSequence(new Uint32Array([0, 0xffffffff])).id;
    table.appendTokens(a, new Float64Array([7, 4294967295]));
    table.appendTokens(a, { length: 2, 0: 9, 1: 10 });
    expect(Array.from(table.tokensOf(a))).toEqual([0, 0xffffffff, 7, 0xffffffff, 9, 10]);
  });

  it('fork shares every block and increments their refcounts', () => {
    const table = BlockTable.create(config);
    const v = viewsOf(table);
    const parent = table.createSequence(range(0, 6)).id; // blocks 0 (full), 1 (2 of 4)
    const child = table.fork(parent);
    expect(child).not.toBe(parent);
    expect(Array.from(table.blocksOf(child))).toEqual([0, 1]);
    expect(Array.from(table.tokensOf(child))).toEqual(range(0, 6));
    expect(table.length(child)).toBe(6);
    expect(Array.from(v.refCount.subarray(0, 3))).toEqual([2, 2, 0]);
    const grandchild = table.fork(child);
    expect(Array.from(v.refCount.subarray(0, 3))).toEqual([3, 3, 0]);
    expect(table.stats()).toMatchObject({ blocksUsed: 2, sequences: 3, forks: 2 });
    table.free(grandchild);
    expect(Array.from(v.refCount.subarray(0, 2))).toEqual([2, 2]);
    table.checkInvariants();
  });

  it('appending to a shared partial block copies it first (copy-on-write), tokens included', () => {
    const table = BlockTable.create(config);
    const v = viewsOf(table);
    const parent = table.createSequence([10, 11, 12, 13, 14, 15]).id; // blocks 0 (full), 1 (partial)
    const child = table.fork(parent);
    const result = table.appendTokens(child, [99, 98, 97]);
    expect(result).toEqual({ firstPosition: 6, newBlocks: [3], copies: [{ src: 1, dst: 2 }] });
    // the copy holds the shared tokens, then the child's own
    expect(Array.from(v.tokens.subarray(2 * 4, 3 * 4))).toEqual([14, 15, 99, 98]);
    expect(v.filled[2]).toBe(4);
    // the original block is untouched and now owned by the parent alone
    expect(Array.from(v.tokens.subarray(4, 6))).toEqual([14, 15]);
    expect(v.filled[1]).toBe(2);
    expect(Array.from(v.refCount.subarray(0, 4))).toEqual([2, 1, 1, 1]);
    expect(Array.from(table.blocksOf(child))).toEqual([0, 2, 3]);
    expect(Array.from(table.blocksOf(parent))).toEqual([0, 1]);
    expect(Array.from(table.tokensOf(child))).toEqual([10, 11, 12, 13, 14, 15, 99, 98, 97]);
    expect(Array.from(table.tokensOf(parent))).toEqual([10, 11, 12, 13, 14, 15]);
    // the parent is now the sole owner of block 1: it appends in place
    expect(table.appendTokens(parent, [50])).toEqual({ firstPosition: 6, newBlocks: [], copies: [] });
    expect(Array.from(table.tokensOf(parent))).toEqual([10, 11, 12, 13, 14, 15, 50]);
    expect(table.stats().cowCopies).toBe(1);
    table.checkInvariants();
  });

  it('appending after a full shared block needs no copy', () => {
    const table = BlockTable.create(config);
    const parent = table.createSequence(range(0, 8)).id;
    const child = table.fork(parent);
    expect(table.appendTokens(child, [1])).toEqual({ firstPosition: 8, newBlocks: [2], copies: [] });
    expect(table.stats().cowCopies).toBe(0);
  });

  it('makeExclusive copies exactly the shared blocks covering the range', () => {
    const table = BlockTable.create(config);
    const v = viewsOf(table);
    const parent = table.createSequence(range(0, 14)).id; // blocks 0,1,2 full, 3 holds 2
    const child = table.fork(parent);
    expect(table.makeExclusive(child, 3, 3)).toEqual([]);
    const copies = table.makeExclusive(child, 5, 13); // positions 5..12 → blocks 1, 2, 3
    expect(copies).toEqual([
      { src: 1, dst: 4 },
      { src: 2, dst: 5 },
      { src: 3, dst: 6 },
    ]);
    expect(Array.from(table.blocksOf(child))).toEqual([0, 4, 5, 6]);
    expect(Array.from(v.refCount.subarray(0, 7))).toEqual([2, 1, 1, 1, 1, 1, 1]);
    expect(Array.from(v.filled.subarray(4, 7))).toEqual([4, 4, 2]);
    expect(Array.from(table.tokensOf(child))).toEqual(range(0, 14));
    // already exclusive: nothing more to copy
    expect(table.makeExclusive(child, 4, 14)).toEqual([]);
    expect(table.makeExclusive(child, 0, 14)).toEqual([{ src: 0, dst: 7 }]);
    expect(table.stats().cowCopies).toBe(4);
    table.checkInvariants();
  });

  it('free releases references and returns the blocks that reached refCount 0', () => {
    const table = BlockTable.create(config);
    const v = viewsOf(table);
    const parent = table.createSequence(range(0, 6)).id;
    const child = table.fork(parent);
    table.appendTokens(child, [7, 7, 7]); // child: 0, 2 (copy of 1), 3
    expect(table.free(parent).sort()).toEqual([1]);
    expect(v.state[1]).toBe(BlockState.FREE);
    expect(v.refCount[0]).toBe(1);
    expect(table.free(child).sort()).toEqual([0, 2, 3]);
    expect(table.stats()).toMatchObject({ blocksFree: 16, blocksUsed: 0, sequences: 0, sequencesFreed: 2 });
    expect(table.has(parent)).toBe(false);
    expect(table.sequenceIds()).toEqual([]);
    expect(Array.from(table.blockTableView).every((b) => b === -1)).toBe(true);
    expect(recount(table)).toEqual({ free: 16, used: 0, cached: 0 });
    table.checkInvariants();
  });

  it('sequence ids encode slot + maxSequences × generation; freed slots get a new generation', () => {
    const table = BlockTable.create(config);
    const a = table.createSequence([1]).id;
    const b = table.createSequence([2]).id;
    expect([a, b]).toEqual([0, 1]);
    table.free(a);
    const c = table.createSequence([3]).id;
    expect(c).toBe(0 + config.maxSequences * 1); // slot 0 reused, generation 1
    expect(table.has(a)).toBe(false);
    expect(table.has(c)).toBe(true);
    expect(table.sequenceIds().sort((x, y) => x - y)).toEqual([1, c]);
    expect(table.rowOf(c)).toBe(0);
  });

  // Int32Array lists take the one-pass path GPU pins use; plain arrays the general one.
  const listKinds = [
    ['number[]', (ids: number[]): ArrayLike<number> => ids],
    ['Int32Array', (ids: number[]): ArrayLike<number> => Int32Array.from(ids)],
  ] as const;

  it.each(listKinds)('retainBlocks pins blocks past free(); releaseBlocks returns them to the pool (%s)', (_, list) => {
    const table = BlockTable.create(config);
    const v = viewsOf(table);
    const id = table.createSequence(range(0, 5)).id; // blocks 0, 1
    table.retainBlocks(list([0, 1, 1]));
    expect(Array.from(v.refCount.subarray(0, 2))).toEqual([2, 3]);
    expect(Array.from(v.retainCount.subarray(0, 2))).toEqual([1, 2]);
    // a retained partial block is not copied by an append (its readers never see the new positions),
    // but rewriting one of its positions copies it
    expect(table.appendTokens(id, [9]).copies).toEqual([]);
    expect(table.makeExclusive(id, 5, 6, { newPositions: true })).toEqual([]);
    expect(table.makeExclusive(id, 4, 5)).toEqual([{ src: 1, dst: 2 }]);
    expect(table.free(id).sort()).toEqual([2]);
    expect(v.state[0]).toBe(BlockState.USED);
    expect(table.stats().blocksUsed).toBe(2);
    table.checkInvariants();
    expect(table.releaseBlocks(list([1]))).toEqual([]);
    expect(table.releaseBlocks(list([1, 0]))).toEqual([1, 0]);
    expect(table.stats()).toMatchObject({ blocksFree: 16, blocksUsed: 0 });
    expect(recount(table).free).toBe(16);
    table.checkInvariants();
  });

  it.each(listKinds)('a block listed twice is released once, when its last reference goes; cached blocks revive (%s)', (_, list) => {
    const table = BlockTable.create(config, { onRelease: () => true }); // keep released blocks cached
    const v = viewsOf(table);
    const a = table.createSequence(range(0, 8)).id; // blocks 0, 1
    const b = table.createSequence(range(50, 54)).id; // block 2
    table.retainBlocks(list([1, 0, 1, 2]));
    expect(Array.from(v.refCount.subarray(0, 3))).toEqual([2, 3, 2]);
    table.free(a);
    expect(table.releaseBlocks(list([1, 0, 1]))).toEqual([0, 1]); // in the order their counts reach 0
    expect([v.state[0], v.state[1], v.refCount[0], v.refCount[1]]).toEqual([BlockState.CACHED, BlockState.CACHED, 0, 0]);
    table.checkInvariants();
    // a list with a cached block among used ones: the cached one comes back into use
    table.retainBlocks(list([2, 1, 2]));
    expect([v.state[1], v.refCount[1], v.refCount[2], v.retainCount[2]]).toEqual([BlockState.USED, 1, 4, 3]);
    expect(table.stats().cachedRevivals).toBe(1);
    table.checkInvariants();
    expect(table.releaseBlocks(list([2, 1, 2, 2]))).toEqual([1]);
    table.free(b);
    expect(table.stats()).toMatchObject({ blocksUsed: 0, blocksCached: 3 });
    table.checkInvariants();
  });

  it('attach() opens the same shared state', () => {
    const table = BlockTable.create(config);
    const id = table.createSequence([5, 6, 7]).id;
    const other = BlockTable.attach(structuredClone(table.handle));
    expect(Array.from(other.tokensOf(id))).toEqual([5, 6, 7]);
    other.appendTokens(id, [8]);
    expect(table.length(id)).toBe(4);
    expect(other.blockTableView[table.rowOf(id) * table.rowStride]).toBe(table.blocksOf(id)[0]);
  });

  it('batch() runs several operations in one critical section', () => {
    const table = BlockTable.create(config);
    const acquisitionsBefore = table.lockStats().acquisitions;
    const forks = table.batch(() => {
      const id = table.createSequence([1, 2, 3]).id;
      return [table.fork(id), table.fork(id)];
    });
    expect(forks).toHaveLength(2);
    expect(table.lockStats().acquisitions).toBe(acquisitionsBefore + 1);
    table.checkInvariants();
  });

  it('batchAsync() acquires without blocking and runs a synchronous body', async () => {
    const table = BlockTable.create(config);
    const length = await table.batchAsync(() => table.length(table.createSequence([1, 2]).id));
    expect(length).toBe(2);
  });

  it('batchAsync waiters and synchronous calls of the same thread interleave safely', async () => {
    const table = BlockTable.create(config, { timeoutMs: 5000 });
    const id = table.createSequence([1, 2, 3]).id;
    const words = viewsOf(table).lockWords;
    Atomics.store(words, 0, 1); // another agent holds the lock
    Atomics.store(words, 1, 0x7654321);
    const waiters = [1, 2, 3].map((k) => table.batchAsync(() => table.appendTokens(id, [k]).firstPosition));
    const syncCalls = (async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      Atomics.store(words, 1, 0);
      if (Atomics.exchange(words, 0, 0) === 2) Atomics.notify(words, 0, 1);
      let lengths = 0;
      for (let i = 0; i < 200; i++) {
        await (i % 2 === 0 ? Promise.resolve() : new Promise((resolve) => setImmediate(resolve)));
        lengths += table.length(id);
      }
      return lengths;
    })();
    const positions = await Promise.all(waiters);
    expect(positions.sort()).toEqual([3, 4, 5]);
    expect(await syncCalls).toBeGreaterThanOrEqual(200 * 3);
    expect(table.length(id)).toBe(6);
    expect(table.lockStats().heldBy).toBe(0);
    table.checkInvariants();
  });
});
