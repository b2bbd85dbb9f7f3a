// GPU reads on the block table (beginRead / endRead of a set of slots): while a read names a slot,
// references that slot's row drops (free, copy-on-write, adoptBlock) are deferred — from any agent —
// until every read begun before the drop has ended, rewrites of its written positions copy first and
// appends do not; rows no read names behave as without reads. Exact states and reference counts after
// each step; invariants after every call; bad calls change nothing.
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors';
import { BlockTable } from '../../src/table/block-table';
import { InvariantError } from '../../src/table/errors';
import { BlockState } from '../../src/table/layout';
import { firstMessage, spawnTsWorker } from '../helpers/workers';
import { expectFailsWithoutChange, viewsOf } from './helpers';

const config = { numBlocks: 8, blockSize: 2, maxSequences: 4, maxBlocksPerSequence: 4 };

function stateOf(table: BlockTable, blocks: readonly number[]): string[] {
  const v = viewsOf(table);
  return blocks.map((b) => ['FREE', 'USED', 'CACHED'][v.state[b]!]!);
}

describe('GPU reads on the block table', () => {
  it('keeps the blocks a freed sequence held until the read of its row ends', () => {
    const table = BlockTable.create(config);
    const id = table.createSequence([1, 2, 3]).id;
    const slots = [table.rowOf(id)];
    const blocks = [...table.blocksOf(id)];
    const epoch = table.beginRead(slots);
    expect(epoch).toBe(1);
    expect(table.free(id)).toEqual([]); // nothing released yet
    table.checkInvariants();
    expect(stateOf(table, blocks)).toEqual(['USED', 'USED']);
    expect(table.stats()).toMatchObject({ blocksFree: 6, blocksUsed: 2, readsOpen: 1, blocksDeferred: 2, sequences: 0 });
    table.endRead(epoch, slots);
    table.checkInvariants();
    expect(stateOf(table, blocks)).toEqual(['FREE', 'FREE']);
    expect(table.stats()).toMatchObject({ blocksFree: 8, readsOpen: 0, blocksDeferred: 0 });
  });

  it('rows no read names free and rewrite at once', () => {
    const table = BlockTable.create(config);
    const read = table.createSequence([1, 2]).id;
    const other = table.createSequence([3, 4, 5]).id;
    const [first] = table.blocksOf(other);
    const slots = [table.rowOf(read)];
    const epoch = table.beginRead(slots);
    expect(table.makeExclusive(other, 0, 2)).toEqual([]); // its rewrite needs no copy
    expect(table.free(other)).toHaveLength(2);
    expect(stateOf(table, [first!])).toEqual(['FREE']);
    expect(table.stats()).toMatchObject({ readsOpen: 1, blocksDeferred: 0 });
    table.checkInvariants();
    table.endRead(epoch, slots);
    table.checkInvariants();
  });

  it('a drop waits for the reads begun before it, not for later ones', () => {
    const table = BlockTable.create(config);
    const a = table.createSequence([1, 2]).id;
    const b = table.createSequence([3, 4]).id;
    const slots = [table.rowOf(a), table.rowOf(b)];
    const [blockA] = table.blocksOf(a);
    const [blockB] = table.blocksOf(b);
    const first = table.beginRead(slots);
    table.free(a); // deferred at epoch 1
    const second = table.beginRead(slots);
    table.free(b); // deferred at epoch 2
    expect(viewsOf(table).deferredAt[blockA!]).toBe(first);
    expect(viewsOf(table).deferredAt[blockB!]).toBe(second);
    // The second read ends first; the first is still open, so nothing up to epoch 0 is known ended.
    table.endRead(first - 1, slots);
    table.checkInvariants();
    expect(stateOf(table, [blockA!, blockB!])).toEqual(['USED', 'USED']);
    // The first ends too: everything goes.
    table.endRead(second, slots);
    expect(stateOf(table, [blockA!, blockB!])).toEqual(['FREE', 'FREE']);

    // Ended in recording order: the first read's end releases what only it could have read.
    const c = table.createSequence([5, 6]).id;
    const d = table.createSequence([7, 8]).id;
    const both = [table.rowOf(c), table.rowOf(d)];
    const [blockC] = table.blocksOf(c);
    const [blockD] = table.blocksOf(d);
    const third = table.beginRead(both);
    table.free(c);
    table.beginRead(both);
    table.free(d);
    table.endRead(third, both); // the fourth stays open: epoch 3 and older have ended
    table.checkInvariants();
    expect(stateOf(table, [blockC!, blockD!])).toEqual(['FREE', 'USED']);
    expect(table.stats()).toMatchObject({ readsOpen: 1, blocksDeferred: 1 });
    table.endRead(third + 1, both);
    expect(stateOf(table, [blockD!])).toEqual(['FREE']);
  });

  it('rewrites of a read row copy first; appends write in place', () => {
    const table = BlockTable.create(config);
    const id = table.createSequence([1, 2, 3]).id;
    const slots = [table.rowOf(id)];
    const [full, partial] = table.blocksOf(id);
    const epoch = table.beginRead(slots);
    expect(table.appendTokens(id, [4]).copies).toEqual([]); // position 3: no reader has seen it
    expect(table.blocksOf(id)[1]).toBe(partial);
    expect(table.makeExclusive(id, 3, 4, { newPositions: true })).toEqual([]);
    const copies = table.makeExclusive(id, 0, 2); // rewriting positions 0–1, which the read may see
    expect(copies).toHaveLength(1);
    expect(copies[0]!.src).toBe(full);
    expect(table.blocksOf(id)[0]).toBe(copies[0]!.dst);
    expect(table.tokensOf(id)).toEqual(Uint32Array.of(1, 2, 3, 4));
    // The replaced block is still held for the read.
    expect(stateOf(table, [full!])).toEqual(['USED']);
    table.checkInvariants();
    table.endRead(epoch, slots);
    expect(stateOf(table, [full!])).toEqual(['FREE']);
    expect(table.makeExclusive(id, 0, 2)).toEqual([]); // no read open: in place
    table.checkInvariants();
  });

  it('a block a freed fork held stays shared for rewrites but not for appends', () => {
    const table = BlockTable.create(config);
    const parent = table.createSequence([1, 2, 3]).id;
    const child = table.fork(parent);
    const slots = [table.rowOf(parent)];
    const epoch = table.beginRead(slots);
    table.free(parent);
    // The child now owns the partial block alone (the parent's reference is deferred): appending to it
    // needs no copy, since the read never saw positions past the parent's length.
    expect(table.appendTokens(child, [9]).copies).toEqual([]);
    expect(viewsOf(table).refCount[table.blocksOf(child)[1]!]).toBe(2);
    // Rewriting the shared full block copies: the read may see it.
    expect(table.makeExclusive(child, 0, 2)).toHaveLength(1);
    table.checkInvariants();
    table.endRead(epoch, slots);
    table.checkInvariants();
    expect(table.stats()).toMatchObject({ blocksUsed: 2, blocksDeferred: 0 });
  });

  it('adoptBlock defers the replaced block of a read row', () => {
    const table = BlockTable.create(config);
    const a = table.createSequence([1, 2]).id;
    const b = table.createSequence([1, 2]).id;
    const frozen = table.freezeBlock(a, 0);
    const slots = [table.rowOf(b)];
    const epoch = table.beginRead(slots);
    const old = table.adoptBlock(b, 0, frozen);
    expect(stateOf(table, [old])).toEqual(['USED']);
    table.checkInvariants();
    table.endRead(epoch, slots);
    expect(stateOf(table, [old])).toEqual(['FREE']);
    table.checkInvariants();
  });

  it('heldSince lists what the rows hold now and what was deferred since the read began', () => {
    const table = BlockTable.create(config);
    const a = table.createSequence([1, 2, 3]).id;
    const b = table.createSequence([4, 5]).id;
    const slots = [table.rowOf(a), table.rowOf(b)];
    const [a0] = table.blocksOf(a);
    const first = table.beginRead([slots[0]!]);
    table.free(b); // b's row is not read by the first read: freed at once
    const copies = table.makeExclusive(a, 0, 2); // a's first block replaced: deferred at epoch 1
    const second = table.beginRead([slots[0]!]);
    expect([...table.heldSince(first, [slots[0]!])].sort()).toEqual([...table.blocksOf(a), a0].sort());
    expect([...table.heldSince(second, [slots[0]!])].sort()).toEqual([...table.blocksOf(a)].sort()); // nothing deferred since
    expect(copies[0]!.src).toBe(a0);
    expectFailsWithoutChange(table, () => table.heldSince(first, [9]), InvalidArgumentError);
    table.endRead(first - 1, [slots[0]!]);
    table.endRead(second, [slots[0]!]);
    table.checkInvariants();
  });

  it('refuses bad slots, an end without a read or of other slots, and a missing epoch, changing nothing', () => {
    const table = BlockTable.create(config);
    table.createSequence([1, 2, 3]);
    expectFailsWithoutChange(table, () => table.beginRead([4]), InvalidArgumentError);
    expectFailsWithoutChange(table, () => table.beginRead([0, -1]), InvalidArgumentError);
    expectFailsWithoutChange(table, () => table.beginRead(null as unknown as number[]), InvalidArgumentError);
    expectFailsWithoutChange(table, () => table.endRead(0, [0]), InvariantError);
    table.beginRead([0, 1]);
    expectFailsWithoutChange(table, () => table.endRead(1, [0, 2]), InvariantError);
    expectFailsWithoutChange(table, () => table.endRead(Number.NaN, [0, 1]), InvalidArgumentError);
    expectFailsWithoutChange(table, () => table.endRead(undefined as unknown as number, [0, 1]), InvalidArgumentError);
  });

  it('defers a free made by a worker thread while the main thread reads its row', async () => {
    const table = BlockTable.create(config);
    const id = table.createSequence([1, 2, 3]).id;
    const slots = [table.rowOf(id)];
    const blocks = [...table.blocksOf(id)];
    const epoch = table.beginRead(slots);
    const worker = spawnTsWorker(new URL('./workers/free-worker.ts', import.meta.url), { handle: table.handle, id });
    const { released } = await firstMessage<{ released: number[] }>(worker, 'free worker');
    await worker.terminate();
    expect(released).toEqual([]);
    expect(table.has(id)).toBe(false);
    expect(stateOf(table, blocks)).toEqual(['USED', 'USED']);
    table.checkInvariants();
    table.endRead(epoch, slots);
    expect(stateOf(table, blocks)).toEqual(['FREE', 'FREE']);
    expect(viewsOf(table).state.filter((s) => s === BlockState.FREE)).toHaveLength(8);
  });
});
