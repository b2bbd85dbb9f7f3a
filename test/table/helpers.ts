// Test helpers: raw views over a table's shared buffer, whole-state snapshots, and an independent
// recount of the table's bookkeeping straight from the arrays.
import { expect } from 'vitest';
import type { BlockTable } from '../../src/table/block-table';
import { BlockState, Ctrl, createViews, type TableViews } from '../../src/table/layout';

export { rng } from './rng';

export function viewsOf(table: BlockTable): TableViews {
  // Through a view, not `handle`: reading the handle would make the table shared (and locking).
  return createViews(table.blockTableView.buffer as SharedArrayBuffer, table.config);
}

const STATE_ARRAYS = [
  'control', 'counters', 'refCount', 'retainCount', 'deferredRefs', 'deferredAt', 'deferredList', 'next', 'prev', 'state', 'filled', 'frozen', 'tokens',
  'blockTable', 'seqLength', 'seqNumBlocks', 'seqGeneration', 'seqLive', 'seqNextFreeSlot', 'slotReads',
] as const;

export type TableSnapshot = Record<(typeof STATE_ARRAYS)[number], number[]>;

/** Copies every state array (everything but the lock words and lock statistics). */
export function snapshot(table: BlockTable): TableSnapshot {
  const v = viewsOf(table);
  const out = {} as TableSnapshot;
  for (const name of STATE_ARRAYS) out[name] = Array.from(v[name] as ArrayLike<number>);
  return out;
}

/** Asserts that `call` throws `errorClass` and leaves every array and stats() exactly as they were. */
export function expectFailsWithoutChange<E extends Error>(
  table: BlockTable,
  call: () => unknown,
  errorClass: new (...args: never[]) => E,
  code?: string,
  { checkInvariants = true }: { checkInvariants?: boolean } = {},
): E {
  const before = snapshot(table);
  const statsBefore = table.stats();
  let thrown: unknown;
  try {
    call();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(errorClass);
  if (code !== undefined) expect((thrown as { code?: string }).code).toBe(code);
  const after = snapshot(table);
  for (const name of STATE_ARRAYS) expect(after[name], `array ${name} changed`).toEqual(before[name]);
  expect(table.stats()).toEqual(statsBefore);
  if (checkInvariants) table.checkInvariants();
  return thrown as E;
}

/**
 * Recomputes ownership from the raw arrays (not through checkInvariants) and asserts: every block is
 * referenced exactly refCount times (table references + retains), no block is both free and
 * referenced, the free list holds exactly the FREE blocks once each, free + used + cached = total.
 */
export function recount(table: BlockTable): { free: number; used: number; cached: number } {
  const v = viewsOf(table);
  const { numBlocks, maxSequences, maxBlocksPerSequence } = table.config;
  const references = new Int32Array(numBlocks);
  for (let slot = 0; slot < maxSequences; slot++) {
    if (v.seqLive[slot] !== 1) continue;
    for (let i = 0; i < v.seqNumBlocks[slot]; i++) references[v.blockTable[slot * maxBlocksPerSequence + i]]++;
  }
  const onList = new Uint8Array(numBlocks);
  let listed = 0;
  for (let b = v.next[numBlocks]; b !== numBlocks; b = v.next[b]) {
    expect(onList[b], `block ${b} twice on the free list`).toBe(0);
    onList[b] = 1;
    listed++;
    expect(listed).toBeLessThanOrEqual(numBlocks);
  }
  let free = 0;
  let used = 0;
  let cached = 0;
  for (let b = 0; b < numBlocks; b++) {
    expect(v.refCount[b], `refCount of block ${b}`).toBe(references[b] + v.retainCount[b]);
    if (v.state[b] === BlockState.FREE) {
      free++;
      expect(references[b] + v.retainCount[b], `free block ${b} is referenced`).toBe(0);
      expect(onList[b]).toBe(1);
    } else {
      expect(onList[b], `non-free block ${b} on the free list`).toBe(0);
      if (v.state[b] === BlockState.USED) used++;
      else cached++;
    }
  }
  expect(listed).toBe(free);
  expect(v.control[Ctrl.FREE_COUNT]).toBe(free);
  expect(free + used + cached).toBe(numBlocks);
  return { free, used, cached };
}
