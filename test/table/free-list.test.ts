import { describe, expect, it } from 'vitest';
import { BlockFreeList } from '../../src/table/free-list';
import { BlockTable } from '../../src/table/block-table';
import { viewsOf } from './helpers';

const N = 5; // blocks 0..4, sentinel 5

function emptyList(): BlockFreeList {
  const list = new BlockFreeList(new Int32Array(N + 1).fill(-1), new Int32Array(N + 1).fill(-1), N, new Int32Array(1));
  list.clear();
  return list;
}

/** [next, prev] of every node, sentinel last. */
function links(list: BlockFreeList): Array<[number, number]> {
  return Array.from({ length: N + 1 }, (_, i) => [list.next[i], list.prev[i]] as [number, number]);
}

describe('BlockFreeList pointers', () => {
  it('an empty list is the sentinel linked to itself', () => {
    const list = emptyList();
    expect(list.next[N]).toBe(N);
    expect(list.prev[N]).toBe(N);
    expect(list.length).toBe(0);
    expect(list.popHead()).toBe(-1);
    expect(list.length).toBe(0);
  });

  it('pushTail links each block after the current tail', () => {
    const list = emptyList();
    list.pushTail(2);
    expect(links(list)).toEqual([[-1, -1], [-1, -1], [N, N], [-1, -1], [-1, -1], [2, 2]]);
    list.pushTail(0);
    expect(links(list)).toEqual([[N, 2], [-1, -1], [0, N], [-1, -1], [-1, -1], [2, 0]]);
    list.pushTail(3);
    // sentinel → 2 → 0 → 3 → sentinel
    expect(links(list)).toEqual([[3, 2], [-1, -1], [0, N], [N, 0], [-1, -1], [2, 3]]);
    expect(list.length).toBe(3);
  });

  it('pushHead links before the current head', () => {
    const list = emptyList();
    list.pushTail(1);
    list.pushHead(4);
    // sentinel → 4 → 1 → sentinel
    expect(links(list)).toEqual([[-1, -1], [N, 4], [-1, -1], [-1, -1], [1, N], [4, 1]]);
    expect(list.length).toBe(2);
  });

  it('popHead returns blocks in order and unlinks them', () => {
    const list = emptyList();
    for (const b of [2, 0, 3]) list.pushTail(b);
    expect(list.popHead()).toBe(2);
    expect(links(list)).toEqual([[3, N], [-1, -1], [-1, -1], [N, 0], [-1, -1], [0, 3]]);
    expect(list.length).toBe(2);
    expect(list.popHead()).toBe(0);
    expect(links(list)).toEqual([[-1, -1], [-1, -1], [-1, -1], [N, N], [-1, -1], [3, 3]]);
    expect(list.popHead()).toBe(3);
    expect(links(list)).toEqual([[-1, -1], [-1, -1], [-1, -1], [-1, -1], [-1, -1], [N, N]]);
    expect(list.popHead()).toBe(-1);
    expect(list.length).toBe(0);
  });

  it('remove unlinks a middle, the tail and the head node in O(1)', () => {
    const list = emptyList();
    for (const b of [4, 1, 3, 0]) list.pushTail(b);
    list.remove(1); // middle: 4 → 3 → 0
    expect(links(list)).toEqual([[N, 3], [-1, -1], [-1, -1], [0, 4], [3, N], [4, 0]]);
    list.remove(0); // tail: 4 → 3
    expect(links(list)).toEqual([[-1, -1], [-1, -1], [-1, -1], [N, 4], [3, N], [4, 3]]);
    list.remove(4); // head: 3
    expect(links(list)).toEqual([[-1, -1], [-1, -1], [-1, -1], [N, N], [-1, -1], [3, 3]]);
    expect(list.length).toBe(1);
    expect(list.contains(3)).toBe(true);
    expect(list.contains(4)).toBe(false);
  });

  it('a fresh table links every block in id order and allocates from the head', () => {
    const table = BlockTable.create({ numBlocks: 4, blockSize: 2, maxSequences: 2, maxBlocksPerSequence: 4 });
    const v = viewsOf(table);
    expect(Array.from(v.next)).toEqual([1, 2, 3, 4, 0]);
    expect(Array.from(v.prev)).toEqual([4, 0, 1, 2, 3]);
    const { id } = table.createSequence([1, 2, 3]); // takes blocks 0 and 1
    expect(Array.from(table.blocksOf(id))).toEqual([0, 1]);
    expect(Array.from(v.next)).toEqual([-1, -1, 3, 4, 2]);
    expect(Array.from(v.prev)).toEqual([-1, -1, 4, 2, 3]);
    table.free(id); // released blocks go to the tail, in table order: 2 → 3 → 0 → 1
    expect(Array.from(v.next)).toEqual([1, 4, 3, 0, 2]);
    expect(Array.from(v.prev)).toEqual([3, 0, 4, 2, 1]);
    table.checkInvariants();
  });
});
