// Eight worker threads and the main thread operate on one shared table at the same time.
import { describe, expect, it } from 'vitest';
import { BlockTable } from '../../src/table/block-table';
import { recount, viewsOf } from './helpers';
import { RandomOperator } from './random-operator';
import { firstMessage, releaseWhenArrived, spawnTsWorker } from '../helpers/workers';

const WORKERS = 8;
const OPERATIONS_PER_WORKER = 20_000;
const BOARD_SLOTS = 8;

interface WorkerResult {
  counts: Record<string, number>;
  checks: number;
  own: Array<[number, number[]]>;
  retained: number[];
}

describe('worker threads sharing one table', () => {
  it('8 workers × 20,000 random operations plus the main thread keep every invariant', async () => {
    const config = { numBlocks: 1536, blockSize: 4, maxSequences: 256, maxBlocksPerSequence: 32 };
    const table = BlockTable.create(config, { timeoutMs: 30_000 });
    const base = [0, 1, 2, 3].map((k) => {
      const tokens = Array.from({ length: 5 + 4 * k }, (_, i) => 1000 * k + i);
      return { id: table.createSequence(tokens).id, tokens };
    });
    const board = new Int32Array(new SharedArrayBuffer(4 * (WORKERS + 1) * BOARD_SLOTS));
    const barrier = new Int32Array(new SharedArrayBuffer(8));

    const results: Array<Promise<WorkerResult>> = [];
    for (let index = 0; index < WORKERS; index++) {
      const worker = spawnTsWorker(new URL('./workers/random-ops-worker.ts', import.meta.url), {
        handle: table.handle,
        index,
        operations: OPERATIONS_PER_WORKER,
        checkEvery: 500,
        base,
        board,
        boardSlots: BOARD_SLOTS,
        maxOwn: 20,
        barrier,
      });
      results.push(firstMessage<WorkerResult>(worker, `worker ${index}`));
    }

    // Start everyone together, then operate from the main thread until every worker has reported.
    const failed = Promise.all(results); // rejects as soon as a worker fails
    failed.catch(() => undefined);
    await releaseWhenArrived(barrier, WORKERS, failed);
    let done = false;
    const all = Promise.all(results).finally(() => {
      done = true;
    });
    const main = new RandomOperator(table, {
      seed: 4242,
      baseSequences: base,
      board,
      boardOffset: WORKERS * BOARD_SLOTS,
      boardSlots: BOARD_SLOTS,
      maxOwn: 20,
    });
    let mainOperations = 0;
    while (!done) {
      for (let i = 0; i < 100; i++) main.step();
      mainOperations += 100;
      table.checkInvariants();
      await new Promise((resolve) => setImmediate(resolve));
    }
    const reports = await all;

    // Quiescent: check ownership from the raw arrays while every sequence is still alive.
    table.checkInvariants();
    const live = recount(table);
    expect(live.used).toBeGreaterThan(0);
    const owners = new Map<number, number>();
    const retainsByBlock = new Map<number, number>();
    const everyOperator = [...reports, { own: [...main.own.entries()], retained: main.retained } as WorkerResult];
    everyOperator.forEach((report, who) => {
      for (const [id, tokens] of report.own) {
        expect(owners.has(id), `sequence ${id} owned by two threads`).toBe(false);
        owners.set(id, who);
        expect(Array.from(table.tokensOf(id))).toEqual(tokens);
      }
      for (const b of report.retained) retainsByBlock.set(b, (retainsByBlock.get(b) ?? 0) + 1);
    });
    expect(new Set(table.sequenceIds())).toEqual(new Set([...owners.keys(), ...base.map((s) => s.id)]));
    const v = viewsOf(table);
    for (let b = 0; b < config.numBlocks; b++) expect(v.retainCount[b], `retains of block ${b}`).toBe(retainsByBlock.get(b) ?? 0);

    // Every worker did its share, with real contention, sharing and copy-on-write.
    const totals: Record<string, number> = {};
    for (const report of reports) {
      expect(report.checks).toBe(OPERATIONS_PER_WORKER / 500);
      for (const [k, n] of Object.entries(report.counts)) totals[k] = (totals[k] ?? 0) + n;
    }
    for (const kind of ['create', 'append', 'appendCow', 'fork', 'forkBase', 'forkPublished', 'makeExclusive', 'free', 'retain', 'release']) {
      expect(totals[kind] ?? 0, kind).toBeGreaterThan(0);
    }
    expect(mainOperations).toBeGreaterThan(0);
    expect(table.lockStats().contended).toBeGreaterThan(0);

    // Free everything: nothing may leak.
    for (const report of everyOperator) {
      for (const [id] of report.own) table.free(id);
      if (report.retained.length > 0) table.releaseBlocks(report.retained);
    }
    for (const s of base) table.free(s.id);
    table.checkInvariants();
    const stats = table.stats();
    expect(stats.sequences).toBe(0);
    expect(stats.blocksFree).toBe(stats.blocksTotal);
    expect(stats.blocksUsed + stats.blocksCached).toBe(0);
    expect(recount(table)).toEqual({ free: config.numBlocks, used: 0, cached: 0 });
    expect(Array.from(v.blockTable).every((b) => b === -1)).toBe(true);
  });
});
