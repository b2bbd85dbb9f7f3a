// The reference model of a whole PagedKVCache (live sequences by id) and the check that compares the
// cache's CPU-visible state with it after every step.
// Invariants checked by verifyCache (cheap enough to run after every command):
//   - checkInvariants() passes (table, prefix index, written lengths);
//   - block accounting: free + used + evictable = total, registered = evictable + protected, the
//     block map's per-state counts equal the stats, no pins or waiters are left behind;
//   - every live sequence has the model's tokens, length and per-layer written length, and the cache
//     has no other sequence;
//   - no block is lost or double-counted: max blocks of one sequence ≤ used ≤ Σ blocks + protected.
import type { PagedKVCache } from '../../../src/cache/paged-kv-cache';
import type { CacheStats } from '../../../src/cache/cache-types';
import { assert, assertEqual } from './assert';
import type { ModelShape, SequenceModel } from './sequence-model';

export interface CacheShape extends ModelShape {
  numBlocks: number;
  maxSequences: number;
  /** As resolved by the cache (a multiple of blockSize). */
  maxSequenceLength: number;
}

export class CacheModel {
  readonly seqs = new Map<number, SequenceModel>();
  /** Recently freed ids (stale handles a caller might still hold). */
  readonly freed: number[] = [];

  constructor(readonly shape: CacheShape) {}

  get size(): number {
    return this.seqs.size;
  }

  /** The live sequence chosen by an arbitrary natural number (creation order). */
  pick(selector: number): [number, SequenceModel] {
    const ids = [...this.seqs.keys()];
    const id = ids[selector % ids.length]!;
    return [id, this.seqs.get(id)!];
  }

  add(id: number, seq: SequenceModel): void {
    assert(!this.seqs.has(id), `sequence id ${id} issued while still live`);
    assert(!this.freed.includes(id), `sequence id ${id} reissued after being freed`);
    this.seqs.set(id, seq);
  }

  remove(id: number): void {
    this.seqs.delete(id);
    this.freed.push(id);
    if (this.freed.length > 8) this.freed.shift();
  }

  blocksOf(seq: SequenceModel): number {
    return Math.ceil(seq.length / this.shape.blockSize);
  }
}

/** The stats without fields that legitimately change on a failed call (lock counters, table uploads). */
export function comparableStats(cache: PagedKVCache): Omit<CacheStats, 'lock' | 'tableEntriesUploaded' | 'tableWrites'> {
  const { lock: _lock, tableEntriesUploaded: _uploaded, tableWrites: _writes, ...rest } = cache.stats();
  return rest;
}

export function verifyCache(model: CacheModel, cache: PagedKVCache): CacheStats {
  cache.checkInvariants();
  const s = cache.stats();
  assert(s.blocksFree + s.blocksUsed + s.blocksEvictable === s.blocksTotal, () => `free ${s.blocksFree} + used ${s.blocksUsed} + evictable ${s.blocksEvictable} ≠ total ${s.blocksTotal}`);
  assert(s.blocksFree >= 0 && s.blocksUsed >= 0 && s.blocksEvictable >= 0, 'negative block count');
  assert(s.blocksRegistered === s.blocksEvictable + s.blocksProtected, () => `registered ${s.blocksRegistered} ≠ evictable ${s.blocksEvictable} + protected ${s.blocksProtected}`);
  assertEqual(s.sequences, model.size, 'live sequences');
  assertEqual([s.pinnedBlocks, s.waiters, s.prefixWaiters], [0, 0, 0], 'pins, block waiters and prefix waiters left behind');
  const map = cache.blockMap();
  const counts = [0, 0, 0];
  for (const state of map.state) counts[state]!++;
  assertEqual(counts, [s.blocksFree, s.blocksUsed, s.blocksEvictable], 'block map states [free, used, evictable] vs stats');
  assertEqual(new Set(cache.table.sequenceIds()), new Set(model.seqs.keys()), 'live sequence ids');
  let sum = 0;
  let max = 0;
  for (const [id, seq] of model.seqs) {
    assertEqual(cache.length(id), seq.length, `length of sequence ${id}`);
    assertEqual(Array.from(cache.tokens(id)), seq.tokens, `tokens of sequence ${id}`);
    for (let l = 0; l < model.shape.numLayers; l++) assertEqual(cache.writtenLength(id, l), seq.written[l], `written length of sequence ${id} layer ${l}`);
    const blocks = cache.table.blocksOf(id);
    assertEqual(blocks.length, model.blocksOf(seq), `blocks of sequence ${id}`);
    assertEqual(new Set(blocks).size, blocks.length, `sequence ${id} lists a block twice`);
    for (const b of blocks) assert(map.state[b] === 1, () => `sequence ${id} holds block ${b} in state ${map.state[b]}`);
    sum += blocks.length;
    max = Math.max(max, blocks.length);
  }
  assert(s.blocksUsed >= max && s.blocksUsed <= sum + s.blocksProtected, () => `used ${s.blocksUsed} outside [${max}, ${sum} + protected ${s.blocksProtected}]`);
  return s;
}

/** Frees every live sequence and the prefix cache, then checks that every block is free again. */
export function releaseEverything(model: CacheModel, cache: PagedKVCache): void {
  for (const id of [...model.seqs.keys()]) {
    cache.free(id);
    model.remove(id);
  }
  verifyCache(model, cache);
  const s = cache.stats();
  assertEqual([s.blocksUsed, s.blocksProtected], [0, 0], 'blocks still used after freeing every sequence');
  cache.clearPrefixCache();
  const after = verifyCache(model, cache);
  assertEqual(after.blocksFree, after.blocksTotal, 'free blocks after freeing everything and clearing the prefix cache');
}
