// Random workloads on one thread, with every invariant (table and index) checked after every operation
// and the K/V content model checked on every reuse; freeing everything must leak nothing.
import { describe, expect, it } from 'vitest';
import { recount } from '../table/helpers';
import { makeCache } from './helpers';
import { PrefixOperator } from './prefix-operator';

describe('random workloads', () => {
  it.each([
    ['a roomy pool', { numBlocks: 96 }, {}, 0],
    ['a tight pool (constant eviction)', { numBlocks: 24 }, {}, 0],
    ['colliding hashes and occasional clears', { numBlocks: 40 }, { buckets: 2, hash: (p: number) => p & 1 }, 0.004],
  ] as const)('%s: 3,000 operations keep every invariant', (_, config, options, clearRate) => {
    const cache = makeCache({ ...config, maxSequences: 12, maxBlocksPerSequence: 16 }, options);
    const content = new Float64Array(cache.table.config.numBlocks);
    const operator = new PrefixOperator(cache, { seed: 99 + config.numBlocks, content, maxOwn: 10, clearRate });
    for (let i = 0; i < 3000; i++) {
      operator.step();
      cache.checkInvariants();
    }
    operator.verifyAll();
    const counts = operator.counts;
    for (const kind of ['hit', 'miss', 'write', 'rewrite', 'append', 'fork', 'free', 'pin']) expect(counts[kind] ?? 0, kind).toBeGreaterThan(0);
    const stats = cache.stats();
    expect(stats.registrations).toBeGreaterThan(0);
    if (config.numBlocks === 24) expect(stats.evictions).toBeGreaterThan(0);

    operator.freeAll();
    cache.checkInvariants();
    const { free, used, cached } = recount(cache.table);
    expect(used).toBe(0);
    expect(cached).toBe(cache.stats().evictable); // every cached block is reclaimable
    expect(cache.stats().protected).toBe(0);
    expect(free + cached).toBe(cache.table.config.numBlocks);
    cache.clear();
    cache.checkInvariants();
    expect(cache.table.stats()).toMatchObject({ blocksFree: cache.table.config.numBlocks, blocksCached: 0, sequences: 0 });
    expect(cache.stats()).toMatchObject({ registered: 0, evictable: 0, namespaces: 1 });
  });
});
