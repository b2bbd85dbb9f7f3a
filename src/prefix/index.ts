// Public surface of the prefix cache module.
export { PrefixCache } from './prefix-cache';
export type {
  PrefixCacheAttachOptions,
  PrefixCacheHandle,
  PrefixCacheOptions,
  PrefixIndexHandle,
  PrefixSequence,
  PrefixStats,
} from './prefix-cache';
export type { PrefixIndexConfig, PrefixIndexOptions } from './config';
export { multiplyXorBlockHash } from './block-hash';
export type { BlockHash } from './block-hash';
