// Prefix matching: hits and misses, block alignment, never the whole prompt, namespaces, exact compare
// under forced hash collisions, duplicates adopted, copy-on-write of registered blocks, forks.
import { describe, expect, it } from 'vitest';
import { ConfigError, InvalidArgumentError } from '../../src/errors';
import { PrefixCache } from '../../src/prefix/prefix-cache';
import { OutOfBlocksError, TooManySequencesError } from '../../src/table/errors';
import { BlockState } from '../../src/table/layout';
import { createWritten, expectUnchanged, KvModel, makeCache, prompt, range } from './helpers';
import { viewsOf } from '../table/helpers';

describe('prefix matching', () => {
  it('reuses registered full blocks of an identical prompt and counts hits and misses', () => {
    const cache = makeCache();
    const p = range(13); // blocks of 4: 3 full + 1 token
    const a = cache.createSequence(p);
    expect(a.cachedTokens).toBe(0);
    expect(cache.registerWritten(a.id, 13)).toBe(3);
    const b = cache.createSequence(p);
    expect(b).toMatchObject({ length: 13, cachedTokens: 12 });
    expect(Array.from(cache.table.blocksOf(b.id).subarray(0, 3))).toEqual(Array.from(cache.table.blocksOf(a.id).subarray(0, 3)));
    expect(cache.table.blocksOf(b.id)[3]).not.toBe(cache.table.blocksOf(a.id)[3]);
    expect(Array.from(cache.table.tokensOf(b.id))).toEqual(p);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1, hitTokens: 12, queryTokens: 26, registered: 3, evictable: 0, protected: 3 });
    expect(cache.stats().hitRate).toBeCloseTo(12 / 26);
    cache.checkInvariants();
  });

  it('reuses only blocks whose K/V are written: registration follows the written length', () => {
    const cache = makeCache();
    const p = range(13);
    const a = cache.createSequence(p);
    expect(cache.createSequence(p).cachedTokens).toBe(0); // nothing registered yet
    expect(cache.registerWritten(a.id, 7)).toBe(1); // block 1 is not complete
    expect(cache.createSequence(p).cachedTokens).toBe(4);
    expect(cache.registerWritten(a.id, 8)).toBe(2);
    expect(cache.registerWritten(a.id, 8)).toBe(2); // idempotent, O(new blocks)
    expect(cache.createSequence(p).cachedTokens).toBe(8);
    expect(cache.registeredBlocks(a.id)).toBe(2);
    cache.checkInvariants();
  });

  it('matches partial-block prompts up to their last shared full block', () => {
    const cache = makeCache();
    const base = range(16);
    createWritten(cache, base); // 4 full blocks registered
    expect(cache.cachedPrefix(base.slice(0, 10))).toBe(8); // 2 full blocks + 2 tokens
    expect(cache.cachedPrefix(prompt(base.slice(0, 9), 14, 7))).toBe(8); // diverges inside block 2
    expect(cache.cachedPrefix(prompt(base.slice(0, 3), 14, 7))).toBe(0); // diverges inside block 0
    expect(cache.cachedPrefix([...base, 99, 100])).toBe(16);
    cache.checkInvariants();
  });

  it('never reuses the whole prompt: at most floor((n - 1) / blockSize) blocks', () => {
    const cache = makeCache();
    const base = range(16);
    createWritten(cache, base);
    for (const n of [0, 1, 3, 4, 5, 8, 9, 12, 13, 16]) {
      const created = cache.createSequence(base.slice(0, n));
      expect(created.cachedTokens, `prompt of ${n}`).toBe(n > 0 ? Math.floor((n - 1) / 4) * 4 : 0);
      expect(created.cachedTokens).toBeLessThan(Math.max(n, 1));
      cache.free(created.id);
    }
    cache.checkInvariants();
  });

  it('keeps namespaces apart, compared exactly; undefined is the default namespace ""', () => {
    const cache = makeCache();
    const p = range(9);
    createWritten(cache, p, 'tenant-a');
    expect(cache.cachedPrefix(p, 'tenant-b')).toBe(0);
    expect(cache.cachedPrefix(p, 'tenant-a ')).toBe(0);
    expect(cache.cachedPrefix(p)).toBe(0);
    expect(cache.cachedPrefix(p, 'tenant-a')).toBe(8);
    createWritten(cache, p);
    expect(cache.cachedPrefix(p, '')).toBe(8);
    expect(cache.stats().namespaces).toBe(2);
    expect(() => cache.createSequence(p, 'x'.repeat(129))).toThrow(InvalidArgumentError);
    expect(() => cache.createSequence(p, 42 as unknown as string)).toThrow(/namespace must be a string/);
    cache.checkInvariants();
  });

  it('a sequence in a new namespace is left uncached when every namespace entry is in use', () => {
    const cache = makeCache({}, { maxNamespaces: 2 });
    const p = range(9);
    const a = createWritten(cache, p, 'a');
    const b = createWritten(cache, p, 'b'); // no entry left: created, but neither matched nor registered
    expect(b.cachedTokens).toBe(0);
    expect(cache.registeredBlocks(b.id)).toBe(-1);
    expect(cache.stats()).toMatchObject({ uncacheable: 1, registered: 2, namespaces: 2 });
    cache.free(a.id);
    cache.free(b.id);
    cache.clear(); // namespace 'a' had only cached blocks left: its entry is freed
    expect(cache.stats().namespaces).toBe(1);
    const c = createWritten(cache, p, 'b');
    expect(cache.registeredBlocks(c.id)).toBe(2);
    cache.checkInvariants();
  });

  it('never gives a false hit when every key collides (one bucket, constant hash)', () => {
    const cache = makeCache({ numBlocks: 64 }, { buckets: 1, hash: () => 0 });
    const model = new KvModel(cache);
    const prompts = [
      range(9, 1),
      range(9, 2), // differs in every token
      [...range(7, 1), 999, 9], // differs from the first in block 1 only
      [...range(4, 2), ...range(4, 2), 5], // block 1 equals block 0 of the second prompt: same tokens, other parent
    ];
    for (const [i, p] of prompts.entries()) {
      const ns = i === 3 ? 'other' : undefined;
      const s = cache.createSequence(p, ns);
      model.write(s.id, ns, s.cachedTokens, p.length); // the third prompt reuses block 0 of the first
      cache.registerWritten(s.id, p.length);
    }
    for (const [i, p] of prompts.entries()) {
      const ns = i === 3 ? 'other' : undefined;
      const s = cache.createSequence(p, ns);
      expect(s.cachedTokens).toBe(8);
      model.checkReused(s.id, ns, s.cachedTokens);
    }
    // Same tokens in another namespace, and a prompt sharing only block 0: exact answers.
    expect(cache.cachedPrefix(prompts[0], 'other')).toBe(0);
    expect(cache.cachedPrefix([...range(4, 1), ...range(4, 50), 1])).toBe(4);
    // Block 0 is the second prompt's; this block 1 exists only in 'other' (and there under another parent).
    expect(cache.cachedPrefix([...range(4, 2), ...range(4, 2), 5])).toBe(4);
    cache.checkInvariants();
  });

  it('a completed block identical to a registered one adopts it instead of registering a duplicate', () => {
    const cache = makeCache();
    const p = range(12);
    const a = cache.createSequence(p);
    const b = cache.createSequence(p); // both compute everything (nothing registered yet)
    expect(cache.registerWritten(a.id, 12)).toBe(3);
    const freeBefore = cache.table.stats().blocksFree;
    expect(cache.registerWritten(b.id, 12)).toBe(3);
    expect(Array.from(cache.table.blocksOf(b.id))).toEqual(Array.from(cache.table.blocksOf(a.id)));
    expect(cache.table.stats().blocksFree).toBe(freeBefore + 3); // b's copies went back to the free list
    expect(cache.stats()).toMatchObject({ registered: 3, adoptions: 3, registrations: 3 });
    // Both continue: b's own next block registers under the shared chain.
    cache.table.appendTokens(b.id, range(4, 100));
    expect(cache.registerWritten(b.id, 16)).toBe(4);
    expect(cache.cachedPrefix([...p, ...range(4, 100), 7])).toBe(16);
    cache.checkInvariants();
  });

  it('registered blocks are immutable: writes copy them even at refCount 1, and stop registration', () => {
    const cache = makeCache();
    const v = viewsOf(cache.table);
    const p = range(10);
    const a = createWritten(cache, p);
    const [b0, b1] = cache.table.blocksOf(a.id);
    expect(v.refCount[b0]).toBe(1);
    cache.noteWrite(a.id, 5);
    const copies = cache.table.makeExclusive(a.id, 5, 6);
    expect(copies).toEqual([{ src: b1, dst: cache.table.blocksOf(a.id)[1] }]);
    expect(v.state[b1]).toBe(BlockState.CACHED); // a's only reference moved to the copy; b1 stays cached
    expect(cache.registeredBlocks(a.id)).toBe(-1);
    expect(cache.stats()).toMatchObject({ evictable: 1, protected: 1 });
    expect(cache.cachedPrefix(p)).toBe(8); // the registered chain is intact
    cache.table.appendTokens(a.id, range(6, 50));
    expect(cache.registerWritten(a.id, 16)).toBe(-1); // a no longer registers
    cache.checkInvariants();
  });

  it('matches a branch that is not the latest registered: the hash where the hint misses, the hints again after it', () => {
    const cache = makeCache({ numBlocks: 64 });
    const shared = range(8); // blocks 0 and 1
    const older = [...shared, ...range(20, 100)]; // blocks 2..6 of its own
    const newer = [...shared, ...range(20, 200)]; // registered last: block 1's hint points at its block 2
    for (const p of [older, newer]) cache.free(createWritten(cache, p).id);
    const queries = [
      { tokens: [...older, 0], cached: 28 },
      { tokens: [...newer, 0], cached: 28 },
      { tokens: [...older.slice(0, 16), 999, ...older.slice(17), 0], cached: 16 }, // differs in block 4
      { tokens: [...shared, ...range(20, 300), 0], cached: 8 },
    ];
    for (const { tokens, cached } of queries) {
      // Both query forms take the same walk: typed array and plain array.
      expect(cache.cachedPrefix(Uint32Array.from(tokens))).toBe(cached);
      expect(cache.cachedPrefix(tokens)).toBe(cached);
    }
    cache.checkInvariants();
  });

  it('forks share prefix blocks; each branch registers its own continuation', () => {
    const cache = makeCache();
    const model = new KvModel(cache);
    const p = range(8);
    const a = cache.createSequence(p);
    model.write(a.id, undefined, 0, 8);
    cache.registerWritten(a.id, 8);
    const b = cache.createSequence([...p, 1, 2, 3]);
    expect(b.cachedTokens).toBe(8);
    const child = cache.fork(b.id);
    expect(cache.registeredBlocks(child)).toBe(2);
    cache.table.appendTokens(b.id, [4]);
    cache.table.appendTokens(child, [5]);
    model.write(b.id, undefined, 8, 12);
    model.write(child, undefined, 8, 12);
    expect(cache.registerWritten(b.id, 12)).toBe(3);
    expect(cache.registerWritten(child, 12)).toBe(3);
    expect(cache.cachedPrefix([...p, 1, 2, 3, 4, 0])).toBe(12);
    expect(cache.cachedPrefix([...p, 1, 2, 3, 5, 0])).toBe(12);
    const viaB = cache.createSequence([...p, 1, 2, 3, 4, 0]);
    model.checkReused(viaB.id, undefined, viaB.cachedTokens);
    const viaChild = cache.createSequence([...p, 1, 2, 3, 5, 0]);
    model.checkReused(viaChild.id, undefined, viaChild.cachedTokens);
    for (const id of [a.id, b.id, child, viaB.id, viaChild.id]) cache.free(id);
    expect(cache.stats()).toMatchObject({ registered: 4, evictable: 4, protected: 0 });
    cache.checkInvariants();
  });

  it('attach() refuses an agent that hashes differently, or a config that does not match', () => {
    const cache = makeCache({}, { hash: () => 7 });
    expect(() => PrefixCache.attach(cache.handle)).toThrow(ConfigError);
    expect(() => PrefixCache.attach(cache.handle, { hash: () => 7 })).not.toThrow();
    expect(() => PrefixCache.attach({ ...cache.handle, index: { ...cache.handle.index, config: { ...cache.handle.index.config, buckets: 2 } } })).toThrow(ConfigError);
  });

  it('a failed createSequence changes nothing, in the table or the index', () => {
    const cache = makeCache({ numBlocks: 6, maxSequences: 3 });
    const p = range(9);
    const a = createWritten(cache, p); // 3 blocks, 2 registered
    cache.free(a.id); // 2 cached + 1 freed
    const e = expectUnchanged(cache, () => cache.createSequence([...p.slice(0, 8), ...range(20, 70)]), OutOfBlocksError);
    // 7 blocks needed; 2 are reused, 5 fresh: 4 free, and the 2 cached ones cannot be evicted for it
    expect((e as OutOfBlocksError).requested).toBe(5);
    expect((e as OutOfBlocksError).available).toBe(4);
    cache.createSequence([1]);
    cache.createSequence([2]);
    cache.createSequence([3]);
    expectUnchanged(cache, () => cache.createSequence(p, 'new-namespace'), TooManySequencesError);
  });
});
