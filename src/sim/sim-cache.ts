// The part of PagedKVCache's API the simulation uses, as structural types, so the scheduler can be
// driven by any store with the same contract (the GPU cache, or a CPU stand-in). Invariants (the
// contract relied on): createSequence/appendTokens either succeed or throw OutOfBlocksError having
// changed nothing; fork allocates no block; a sequence's cachedTokens leading positions already hold
// their K/V; free returns every block the sequence alone held (cached ones become evictable).

export interface CreatedSequence {
  id: number;
  length: number;
  /** Leading tokens whose K/V are already in the cache (multiple of blockSize, < tokens.length). */
  cachedTokens: number;
}

export interface CacheStatsLike {
  blocksTotal: number;
  blocksFree: number;
  blocksUsed: number;
  blocksEvictable: number;
  sequences: number;
  cowCopies?: number;
  evictions?: number;
  prefixHits?: number;
  prefixMisses?: number;
  prefixHitTokens?: number;
  prefixQueryTokens?: number;
}

export interface BlockMapLike {
  /** Per block: 0 free, 1 used, 2 evictable (cached, unreferenced). */
  state: Uint8Array;
  refCount: Int32Array;
  /** One sequence id using the block, or -1. */
  owner: Float64Array | Int32Array;
}

/** Block-level operations: everything the scheduler needs. */
export interface SequenceStore {
  createSequence(options: { tokens: ArrayLike<number> }): CreatedSequence;
  appendTokens(id: number, tokens: ArrayLike<number>): number;
  fork(id: number): number;
  free(id: number): void;
  stats(): CacheStatsLike;
}

export interface AttendEntry {
  seqId: number;
  q: Float32Array;
  queryStart?: number;
}

/** The whole surface the simulation drives. */
export interface SimCache extends SequenceStore {
  writeKV(layer: number, id: number, startPos: number, k: Float32Array, v: Float32Array): Promise<void>;
  attend(layer: number, entries: AttendEntry[], options?: { scale?: number }): Promise<Float32Array[]>;
  blockMap(): BlockMapLike;
  checkInvariants(): void;
  destroy(): void;
}

/** Blocks an allocation can draw on: free ones plus cached ones that can be evicted. */
export function availableBlocks(store: SequenceStore): number {
  const s = store.stats();
  return s.blocksFree + s.blocksEvictable;
}

/** True for the cache's OutOfBlocksError (matched by code, so any realm's instance is recognised). */
export function isOutOfBlocks(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'OUT_OF_BLOCKS';
}
