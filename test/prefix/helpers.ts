// Test helpers for the prefix cache: small caches, prompts built from shared pieces, a snapshot of the
// index's shared arrays (for "a failed call changed nothing"), and a K/V content model that records, per
// block, which namespace + token prefix its K/V were computed for.
import { expect } from 'vitest';
import { PrefixCache, type PrefixCacheOptions } from '../../src/prefix/prefix-cache';
import type { BlockTableConfig } from '../../src/table/config';
import { snapshot as tableSnapshot } from '../table/helpers';

export { rng } from '../table/rng';

export function makeCache(config: Partial<BlockTableConfig> = {}, options: PrefixCacheOptions = {}): PrefixCache {
  return PrefixCache.create({ numBlocks: 32, blockSize: 4, maxSequences: 16, maxBlocksPerSequence: 16, ...config }, options);
}

/** `length` tokens: `prefix` followed by tokens derived from `seed`. */
export function prompt(prefix: readonly number[], length: number, seed: number): number[] {
  const out = prefix.slice(0, length);
  for (let i = out.length; i < length; i++) out.push(1000 * seed + i);
  return out;
}

/** Tokens 0..n-1 offset by `base`. */
export function range(n: number, base = 1): number[] {
  return Array.from({ length: n }, (_, i) => base + i);
}

/** Creates a sequence and registers its full blocks as if its K/V were written everywhere. */
export function createWritten(cache: PrefixCache, tokens: number[], namespace?: string) {
  const created = cache.createSequence(tokens, namespace);
  cache.registerWritten(created.id, tokens.length);
  return created;
}

/** Every shared array of the table and of the index, and both stats objects. */
export function fullSnapshot(cache: PrefixCache) {
  const v = cache.index.views;
  const index: Record<string, number[]> = {};
  for (const [name, view] of Object.entries(v)) {
    if (name !== 'buffer') index[name] = Array.from(view as ArrayLike<number>);
  }
  return { table: tableSnapshot(cache.table), index, stats: cache.stats(), tableStats: cache.table.stats() };
}

/** Asserts `call` throws `errorClass` and leaves the table and the index exactly as they were. */
export function expectUnchanged(cache: PrefixCache, call: () => unknown, errorClass: new (...args: never[]) => Error): Error {
  const before = fullSnapshot(cache);
  let thrown: unknown;
  try {
    call();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(errorClass);
  expect(fullSnapshot(cache)).toEqual(before);
  cache.checkInvariants();
  return thrown as Error;
}

/** Which K/V a block holds: the namespace and every token up to the block's end that produced it. */
export class KvModel {
  private readonly content = new Map<number, string>();

  constructor(private readonly cache: PrefixCache) {}

  static signature(namespace: string | undefined, tokens: ArrayLike<number>, blockIndex: number, blockSize: number): string {
    return `${namespace ?? ''}|${Array.from(tokens).slice(0, (blockIndex + 1) * blockSize).join(',')}`;
  }

  /**
   * Simulates writing K/V of positions [from, to) of sequence `id`: copies shared blocks first (their
   * content moves with the copy), then records the content of every full block touched.
   */
  write(id: number, namespace: string | undefined, from: number, to: number): void {
    const bs = this.cache.blockSize;
    this.cache.noteWrite(id, from);
    for (const { src, dst } of this.cache.table.makeExclusive(id, from, to)) {
      const c = this.content.get(src);
      if (c === undefined) this.content.delete(dst);
      else this.content.set(dst, c);
    }
    const blocks = this.cache.table.blocksOf(id);
    const tokens = this.cache.table.tokensOf(id);
    for (let i = Math.floor(from / bs); i < Math.ceil(to / bs); i++) {
      this.content.set(blocks[i], KvModel.signature(namespace, tokens, i, bs));
    }
  }

  /** Asserts the first `cachedTokens` positions of `id` hold K/V computed for exactly its own prefix. */
  checkReused(id: number, namespace: string | undefined, cachedTokens: number): void {
    const bs = this.cache.blockSize;
    const blocks = this.cache.table.blocksOf(id);
    const tokens = this.cache.table.tokensOf(id);
    for (let i = 0; i < cachedTokens / bs; i++) {
      expect(this.content.get(blocks[i]), `reused block ${blocks[i]} at column ${i}`).toBe(KvModel.signature(namespace, tokens, i, bs));
    }
  }
}
