// Shape of a prefix index. Invariants checked here, once: the block geometry matches the block table it
// serves; the hash-bucket count is a power of two (the bucket of a hash is hash & (buckets - 1));
// namespace limits are positive and small enough for an Int32 index into the namespace character store.
import { ConfigError } from '../errors';
import type { BlockTableConfig } from '../table/config';

export interface PrefixIndexOptions {
  /** Hash buckets for the block trie, a power of two (default: the power of two ≥ numBlocks). */
  readonly buckets?: number;
  /** Namespaces that may be live at once (with live sequences or cached blocks), default 256. */
  readonly maxNamespaces?: number;
  /** Longest namespace in UTF-16 code units, default 128. */
  readonly maxNamespaceLength?: number;
}

export interface PrefixIndexConfig {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly maxSequences: number;
  readonly buckets: number;
  readonly maxNamespaces: number;
  readonly maxNamespaceLength: number;
}

const MAX_BUCKETS = 1 << 30;
const MAX_NAMESPACE_CHARS = 1 << 28;

export function resolveIndexConfig(table: BlockTableConfig, options: PrefixIndexOptions = {}): PrefixIndexConfig {
  if (typeof options !== 'object' || options === null) throw new ConfigError('Prefix index options must be an object.');
  const buckets = options.buckets ?? nextPowerOfTwo(table.numBlocks);
  if (!Number.isInteger(buckets) || buckets < 1 || buckets > MAX_BUCKETS || (buckets & (buckets - 1)) !== 0) {
    throw new ConfigError(`Prefix index option buckets must be a power of two in 1..${MAX_BUCKETS}, got ${String(buckets)}.`);
  }
  const maxNamespaces = positive('maxNamespaces', options.maxNamespaces ?? 256);
  const maxNamespaceLength = positive('maxNamespaceLength', options.maxNamespaceLength ?? 128);
  if (maxNamespaces * maxNamespaceLength > MAX_NAMESPACE_CHARS) {
    throw new ConfigError(
      `maxNamespaces × maxNamespaceLength = ${maxNamespaces * maxNamespaceLength} exceeds ${MAX_NAMESPACE_CHARS} characters; lower one of them.`,
    );
  }
  return Object.freeze({
    numBlocks: table.numBlocks,
    blockSize: table.blockSize,
    maxSequences: table.maxSequences,
    buckets,
    maxNamespaces,
    maxNamespaceLength,
  });
}

function positive(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 0x7fffffff) {
    throw new ConfigError(`Prefix index option ${name} must be a positive integer, got ${String(value)}.`);
  }
  return value;
}

export function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n && p < MAX_BUCKETS) p *= 2;
  return p;
}
