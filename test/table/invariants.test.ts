// checkInvariants() must notice each kind of corruption, with a message that says what is wrong.
import { describe, expect, it } from 'vitest';
import { BlockTable } from '../../src/table/block-table';
import { InvariantError } from '../../src/table/errors';
import { BlockState, Ctrl, type TableViews } from '../../src/table/layout';
import { viewsOf } from './helpers';

function setup(): { table: BlockTable; v: TableViews; a: number; b: number } {
  const table = BlockTable.create({ numBlocks: 8, blockSize: 4, maxSequences: 4, maxBlocksPerSequence: 4 });
  const a = table.createSequence([1, 2, 3, 4, 5]).id; // blocks 0, 1
  const b = table.fork(a);
  table.checkInvariants();
  return { table, v: viewsOf(table), a, b };
}

const corruptions: Array<[string, (v: TableViews, table: BlockTable) => void, RegExp]> = [
  ['a refcount off by one', (v) => v.refCount[0]++, /refCount\[0\] = 3 but it has 2 table reference/],
  ['a retain count below zero', (v) => v.retainCount[0]--, /retainCount -1/],
  ['a free-list cycle', (v) => { v.next[3] = 2; }, /reached twice|prev\[2\]/],
  ['a broken prev link', (v) => { v.prev[4] = 6; }, /prev\[4\] = 6, expected 3/],
  ['an out-of-range link', (v) => { v.next[5] = 42; }, /out of range/],
  ['a wrong free count', (v) => { v.control[Ctrl.FREE_COUNT]--; }, /free list holds 6 block\(s\) but the free count is 5/],
  ['a free block that is referenced', (v, t) => {
    v.blockTable[t.rowOf(0) * t.rowStride + 1] = 5; // block 5 is free
  }, /references block 5, which is FREE/],
  ['a USED block left on the free list', (v) => { v.state[6] = BlockState.USED; v.refCount[6] = 0; }, /on the free list but is USED/],
  ['a FREE block off the free list', (v) => {
    // unlink block 7 (the tail) without marking it used
    v.next[6] = 8; v.prev[8] = 6; v.next[7] = -1; v.prev[7] = -1; v.control[Ctrl.FREE_COUNT]--;
  }, /block 7 is FREE but not on the free list/],
  ['seqNumBlocks ≠ ceil(length / blockSize)', (v, t) => { v.seqLength[t.rowOf(0)] = 9; }, /needs 3 block\(s\) but seqNumBlocks is 2/],
  ['a wrong fill level', (v) => { v.filled[1] = 3; }, /filled = 3, expected 1/],
  ['a stale entry in a free row', (v) => { v.blockTable[3 * 4] = 0; }, /free slot 3 still lists block 0/],
  ['a wrong cached count', (v) => { v.control[Ctrl.CACHED_COUNT] = 1; }, /cached count is 1|free 6 \+ used 2 \+ cached 0/],
  ['a wrong sequence count', (v) => { v.control[Ctrl.SEQUENCE_COUNT] = 3; }, /2 live slot\(s\) but the sequence count is 3/],
  ['a free-slot stack listing a live slot', (v) => { v.seqNextFreeSlot[3] = 0; }, /free-slot stack (holds live slot 0|reaches)/],
  ['an invalid block state', (v) => { v.state[0] = 7; }, /(invalid state 7|which is 7)/],
  ['a deferred reference while no read is open', (v) => {
    v.refCount[0]++; v.deferredRefs[0] = 1; v.deferredList[0] = 0; v.control[Ctrl.DEFERRED_COUNT] = 1;
  }, /1 block\(s\) hold deferred references while no GPU read is open/],
  ['a deferred reference off the deferred list', (v) => {
    v.control[Ctrl.READS_OPEN] = 1; v.refCount[0]++; v.deferredRefs[0] = 1;
  }, /block 0 has 1 deferred reference\(s\) but is not on the deferred list/],
  ['a block listed twice as deferred', (v) => {
    v.control[Ctrl.READS_OPEN] = 1; v.refCount[0]++; v.deferredRefs[0] = 1;
    v.deferredList[0] = 0; v.deferredList[1] = 0; v.control[Ctrl.DEFERRED_COUNT] = 2;
  }, /deferred list holds block 0 twice/],
  ['a deferred reference missing from the refcount', (v) => {
    v.control[Ctrl.READS_OPEN] = 1; v.deferredRefs[1] = 1; v.deferredList[0] = 1; v.control[Ctrl.DEFERRED_COUNT] = 1;
  }, /refCount\[1\] = 2 but it has 2 table reference\(s\), 0 retain\(s\) and 1 deferred/],
];

describe('checkInvariants detects corruption', () => {
  it.each(corruptions)('%s', (_, corrupt, message) => {
    const { table, v } = setup();
    corrupt(v, table);
    let error: unknown;
    try {
      table.checkInvariants();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvariantError);
    expect((error as Error).message).toMatch(message);
  });
});
