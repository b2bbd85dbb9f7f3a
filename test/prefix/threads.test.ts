// Four worker threads create sequences with shared prefixes, write, fork and free against one shared
// table + prefix index; reused K/V content is checked on every hit, invariants periodically and at the end.
import { firstMessage, releaseWhenArrived, spawnTsWorker } from '../helpers/workers';
import { describe, expect, it } from 'vitest';
import { recount } from '../table/helpers';
import { makeCache } from './helpers';

const WORKERS = 4;
const OPERATIONS = 4000;

interface Report {
  counts: Record<string, number>;
  checks: number;
}


describe('worker threads sharing one prefix cache', () => {
  it(`${WORKERS} workers × ${OPERATIONS} random operations keep the table and the index consistent`, async () => {
    const cache = makeCache({ numBlocks: 160, maxSequences: 40, maxBlocksPerSequence: 16 }, { timeoutMs: 30_000 });
    const content = new Float64Array(new SharedArrayBuffer(8 * cache.table.config.numBlocks));
    const barrier = new Int32Array(new SharedArrayBuffer(8));
    const reports = Array.from({ length: WORKERS }, (_, index) => {
      const worker = spawnTsWorker(new URL('./workers/prefix-ops-worker.ts', import.meta.url), {
        handle: cache.handle, content, index, operations: OPERATIONS, checkEvery: 250, barrier,
      });
      return firstMessage<Report>(worker, `worker ${index}`);
    });
    const all = Promise.all(reports);
    all.catch(() => undefined);
    await releaseWhenArrived(barrier, WORKERS, all);
    const results = await all;

    const totals: Record<string, number> = {};
    for (const r of results) {
      expect(r.checks).toBe(OPERATIONS / 250);
      for (const [k, n] of Object.entries(r.counts)) totals[k] = (totals[k] ?? 0) + n;
    }
    for (const kind of ['hit', 'miss', 'write', 'rewrite', 'fork', 'free']) expect(totals[kind] ?? 0, kind).toBeGreaterThan(0);
    expect(cache.table.lockStats().contended).toBeGreaterThan(0);
    const stats = cache.stats();
    expect(stats.hits).toBeGreaterThan(0);
    expect(stats.registrations).toBeGreaterThan(0);
    expect(stats.evictions).toBeGreaterThan(0);

    // Every worker freed what it owned: only evictable cached blocks remain, nothing leaked.
    cache.checkInvariants();
    const { free, used, cached } = recount(cache.table);
    expect(cache.table.stats().sequences).toBe(0);
    expect(used).toBe(0);
    expect(stats.evictable).toBe(cached);
    expect(stats.protected).toBe(0);
    expect(stats.evictable + used + free).toBe(cache.table.config.numBlocks);
    cache.clear();
    cache.checkInvariants();
    expect(cache.table.stats().blocksFree).toBe(cache.table.config.numBlocks);
  });
});
