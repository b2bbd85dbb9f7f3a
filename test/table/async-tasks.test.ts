// 100 concurrent async tasks on one thread, interleaving random operations with awaits; every
// operation is its own critical section, so invariants must hold between any two of them.
import { describe, expect, it } from 'vitest';
import { BlockTable } from '../../src/table/block-table';
import { recount, rng } from './helpers';
import { RandomOperator } from './random-operator';

const TASKS = 100;
const OPS_PER_TASK = 60;

describe('concurrent async tasks', () => {
  it('100 tasks doing random create/append/fork/makeExclusive/free keep the table consistent', async () => {
    const table = BlockTable.create({ numBlocks: 512, blockSize: 4, maxSequences: 400, maxBlocksPerSequence: 16 });
    const base = [{ id: 0, tokens: [11, 12, 13, 14, 15, 16] }];
    base[0].id = table.createSequence(base[0].tokens).id;
    const board = new Int32Array(new SharedArrayBuffer(4 * TASKS * 2));
    const yieldRandom = rng(12345);

    /** Awaits a random kind of yield so tasks interleave differently each time. */
    const pause = (): Promise<void> => {
      const r = yieldRandom();
      if (r < 0.3) return new Promise((resolve) => queueMicrotask(resolve));
      if (r < 0.6) return Promise.resolve();
      if (r < 0.8) return new Promise((resolve) => setImmediate(resolve));
      return new Promise((resolve) => setTimeout(resolve, Math.floor(yieldRandom() * 3)));
    };

    let operations = 0;
    const counts: Record<string, number> = {};
    const task = async (index: number): Promise<void> => {
      const operator = new RandomOperator(table, {
        seed: 1000 + index,
        baseSequences: base,
        board,
        boardOffset: index * 2,
        boardSlots: 2,
        maxOwn: 3,
      });
      for (let i = 0; i < OPS_PER_TASK; i++) {
        await pause();
        operator.step();
        operations++;
        table.checkInvariants();
      }
      await pause();
      operator.verifyAll();
      operator.releaseAll();
      operator.freeAll();
      table.checkInvariants();
      for (const [k, n] of Object.entries(operator.counts)) counts[k] = (counts[k] ?? 0) + n;
    };

    await Promise.all(Array.from({ length: TASKS }, (_, i) => task(i)));
    expect(operations).toBe(TASKS * OPS_PER_TASK);
    // the workload exercised sharing, copy-on-write and cross-task forks
    for (const kind of ['create', 'append', 'fork', 'forkPublished', 'makeExclusive', 'free', 'retain', 'release']) {
      expect(counts[kind], kind).toBeGreaterThan(0);
    }
    expect(table.stats().cowCopies).toBeGreaterThan(0);

    table.free(base[0].id);
    table.checkInvariants();
    const stats = table.stats();
    expect(stats.sequences).toBe(0);
    expect(stats.blocksFree).toBe(stats.blocksTotal);
    expect(recount(table)).toEqual({ free: 512, used: 0, cached: 0 });
  });
});
