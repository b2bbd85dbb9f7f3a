// The public argument and result types of PagedKVCache (src/cache/paged-kv-cache.ts), apart from the
// class itself so that callers and the facade share one definition. Types only, plus the default
// prefix wait; nothing here holds state.
import type { AttentionEntry } from '../kernels/attention-types';
import type { LockStats } from '../table/spin-lock';
import type { WaitOptions } from './block-waiters';

export interface SequenceInfo {
  id: number;
  length: number;
  /** Leading tokens whose K/V are already cached (prefix reuse); compute K/V only from here on. */
  cachedTokens: number;
}

export interface CreateSequenceOptions {
  tokens: ArrayLike<number>;
  /** Prefix-reuse namespace (tenant, adapter); prefixes are never shared across namespaces. */
  namespace?: string;
}

export interface CreateSequenceWaitOptions extends WaitOptions {
  /**
   * Longest wait for another request of this cache computing the same prompt prefix before computing it
   * here instead (ms). Default: timeoutMs, or 10 s without one.
   */
  prefixWaitMs?: number;
}

/** Default bound on waiting for another request's prefix (a stalled request must not stall others forever). */
export const DEFAULT_PREFIX_WAIT_MS = 10_000;

export interface AttendEntry {
  seqId: number;
  /** Queries, Float32Array [n][numQueryHeads][headDim]. */
  q: Float32Array;
  /** Position of the first query (default: length − n, i.e. the last n tokens). */
  queryStart?: number;
}

export interface AttendOptions {
  /** Softmax scale (default 1/sqrt(headDim)). */
  scale?: number;
}

export interface EncodedAttentionEntry {
  seqId: number;
  /** Query rows of this entry (default 1: decode). */
  numQueries?: number;
  /** Position of the first query (default: length − numQueries). */
  queryStart?: number;
  /** First row of q/out used by this entry (default: packed after the previous entry). */
  qRow?: number;
}

export interface EncodeAttentionArgs {
  layer: number;
  /** The batch: entries to resolve now, or a batch from prepareAttention() (cheaper for every layer). */
  entries: EncodedAttentionEntry[] | PreparedAttention;
  /** f32 [rows][numQueryHeads][headDim], usage STORAGE. */
  q: GPUBuffer;
  /** f32 [rows][numQueryHeads][headDim], usage STORAGE. */
  out: GPUBuffer;
  scale?: number;
  /**
   * K/V of the batch's query positions for this layer (laid out as in EncodeWriteKVArgs), written before
   * the attention in the same compute pass: what encodeWriteKV followed by encodeAttention records, with
   * one compute pass fewer per layer. A batch of decodes (one query each) on the streaming decode kernel
   * goes further with decodeWritesKv: its attention dispatch takes the K/V itself and stages it, one
   * dispatch per layer instead of two, and a flush recorded into the same encoder stores several layers'
   * staged rows into the pool at once: in this call's pass when its layer ends a flush group (up to 16
   * consecutive layers), before other work of a staged layer, at the latest by finish().
   * Give both or neither; needs a batch from prepareAttention(entries, { writeKV: true }).
   */
  k?: GPUBuffer;
  v?: GPUBuffer;
  /**
   * An open compute pass of `encoder` to record into, instead of a pass of the call's own: a step that
   * keeps one pass open across its layers (the model's own dispatches in it too) saves a begin/end per
   * layer. Dispatches in one pass see the writes of those before them.
   */
  pass?: GPUComputePassEncoder;
}

export interface EncodeWriteKVArgs {
  layer: number;
  /** A batch from prepareAttention(entries, { writeKV: true }): K/V of its query positions are written. */
  entries: PreparedAttention;
  /** f32 [rows][numKvHeads][headDim], usage STORAGE: row qRow + i holds the K of entry query i. */
  k: GPUBuffer;
  /** f32 [rows][numKvHeads][headDim], usage STORAGE, laid out like k. */
  v: GPUBuffer;
  /** An open compute pass of `encoder` to record into (as in EncodeAttentionArgs). */
  pass?: GPUComputePassEncoder;
}

export interface PrepareAttentionOptions {
  /**
   * The batch will also write K/V of its query positions (encodeWriteKV): their blocks are made private
   * now (copy-on-write) and the slot of every q row is uploaded once for all layers.
   */
  writeKV?: boolean;
}

/**
 * A batch resolved once by prepareAttention() (sequence rows, context lengths, q rows, block-table rows
 * uploaded) and encoded for every layer of a step. It snapshots the sequences' lengths when prepared:
 * tokens appended later are not attended through it.
 */
export interface PreparedAttention {
  readonly entries: readonly AttentionEntry[];
  /** q/out rows the batch uses. */
  readonly rows: number;
}

export type CacheStats = {
  blocksTotal: number;
  blocksFree: number;
  /** Blocks that are neither free nor evictable (blocksEvictable + blocksUsed + blocksFree = blocksTotal). */
  blocksUsed: number;
  /** Cached prefix blocks nothing references, directly or through a descendant (reclaimable). */
  blocksEvictable: number;
  /** Registered prefix blocks that are referenced, directly or through a descendant (never evicted). */
  blocksProtected: number;
  /** Blocks registered in the prefix cache (evictable + protected). */
  blocksRegistered: number;
  blockSize: number;
  /** Bytes of the pool's K/V blocks. */
  bytes: number;
  bytesPerBlock: number;
  /** Bytes of the decode's K/V staging buffer (decodeWritesKv; 0 without it). */
  stagingBytes: number;
  sequences: number;
  cowCopies: number;
  allocations: number;
  evictions: number;
  forks: number;
  /** createSequence calls that reused cached blocks, and those that did not. */
  prefixHits: number;
  prefixMisses: number;
  /** Prompt tokens served from the prefix cache, and prompt tokens asked for. */
  prefixHitTokens: number;
  prefixQueryTokens: number;
  /** prefixHitTokens / prefixQueryTokens (0 before any query). */
  prefixHitRate: number;
  /** Completed blocks replaced by an identical block another sequence registered first. */
  prefixAdoptions: number;
  /** createSequenceAsync calls waiting for another request's prefix. */
  prefixWaiters: number;
  /** Block pins held by recorded work not yet submitted (a block a prepared batch lists twice counts twice). */
  pinnedBlocks: number;
  /**
   * Blocks that rows read by recorded or running work let go of (freed, copied, adopted), held until that
   * work completes (counted in blocksUsed); they are free again after it.
   */
  blocksDeferred: number;
  waiters: number;
  /** Block-table entries written to the GPU since creation (changed entries and the short gaps merged between them). */
  tableEntriesUploaded: number;
  /** Block-table writes (queue.writeBuffer calls) since creation. */
  tableWrites: number;
  lock: LockStats;
};

export interface BlockMap {
  /** Per block: 0 free, 1 used, 2 evictable (cached, unreferenced). */
  state: Uint8Array;
  refCount: Int32Array;
  /** Per block: the id of one sequence using it, or -1. */
  owner: Float64Array;
}
