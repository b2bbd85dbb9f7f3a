// Maps simulation options to PagedKVCache options. Invariants: the cache has room for every sequence
// the scheduler can hold at once (running requests × samples, plus slack) and for the longest request.
import type { PagedKVCacheOptions } from '../cache/config';
import type { SimOptions } from './options';

export function cacheOptionsFor(o: SimOptions): PagedKVCacheOptions {
  return {
    numLayers: o.numLayers,
    numKvHeads: o.numKvHeads,
    numQueryHeads: o.numQueryHeads,
    headDim: o.headDim,
    blockSize: o.blockSize,
    numBlocks: o.numBlocks,
    kvDtype: o.kvDtype,
    maxSequences: o.maxRunningRequests * o.samplesPerRequest + 8,
    maxSequenceLength: Math.ceil(o.maxTotalLength / o.blockSize) * o.blockSize,
  };
}
