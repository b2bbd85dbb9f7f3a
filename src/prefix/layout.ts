// Where every piece of prefix-index state lives inside its one SharedArrayBuffer (separate from the
// block table's buffer, guarded by the table's lock). Struct-of-arrays, each region on a 64-byte
// boundary; the layout is a pure function of the config, so every agent holding the handle builds
// identical views; the control words record a magic number, the version and the config so attach()
// refuses a foreign or mismatched buffer.
import { ConfigError } from '../errors';
import type { PrefixIndexConfig } from './config';

export const INDEX_MAGIC = 0x50465849; // "PFXI"
export const INDEX_LAYOUT_VERSION = 1;

/** parentKey of a block that is not registered. Registered: ≥ 0 (parent block) or -1 - namespace (root). */
export const NOT_REGISTERED = -0x80000000;
/** Per-slot registered count of a sequence that no longer registers blocks. */
export const REGISTRATION_CLOSED = -1;
/** Per-slot namespace of a sequence that is not cached (no namespace entry was free). */
export const NO_NAMESPACE = -1;

/** Int32 control words. */
export const IndexCtrl = Object.freeze({
  MAGIC: 0,
  VERSION: 1,
  NUM_BLOCKS: 2,
  BLOCK_SIZE: 3,
  MAX_SEQUENCES: 4,
  BUCKETS: 5,
  MAX_NAMESPACES: 6,
  MAX_NAMESPACE_LENGTH: 7,
  /** Blocks in the LRU heap (evictable leaves). */
  HEAP_SIZE: 8,
  /** Registered blocks. */
  REGISTERED: 9,
  /** Registered blocks with no reference anywhere in their subtree (reclaimable by eviction). */
  EVICTABLE: 10,
  /** Head of the free namespace-entry stack (-1 = none). */
  NS_FREE_HEAD: 11,
  /** Namespace entries in use (the default namespace included). */
  NS_LIVE: 12,
  /** The hash function's value on a fixed probe: attach() refuses an agent hashing differently. */
  HASH_PROBE: 13,
} as const);
export const INDEX_CTRL_WORDS = 16;

/** Float64 counters (written under the lock; exact up to 2^53). */
export const IndexCounter = Object.freeze({
  /** Logical clock for last-use times: +1 per touch. */
  CLOCK: 0,
  HITS: 1,
  MISSES: 2,
  HIT_TOKENS: 3,
  QUERY_TOKENS: 4,
  REGISTRATIONS: 5,
  /** Completed blocks that matched an identical registered block and were replaced by it. */
  ADOPTIONS: 6,
  EVICTIONS: 7,
  /** Sequences created without caching because no namespace entry was free. */
  UNCACHEABLE: 8,
  CLEARS: 9,
} as const);
export const INDEX_COUNTER_WORDS = 16;

export interface IndexViews {
  readonly buffer: SharedArrayBuffer;
  readonly control: Int32Array;
  readonly counters: Float64Array;
  /** Per block: parent block, -1 - namespace for a root block, NOT_REGISTERED when unregistered. */
  readonly parentKey: Int32Array;
  /** Per block: hash of (parentKey, tokens), fixed while registered. */
  readonly nodeHash: Int32Array;
  /** Per block: doubly linked hash-bucket chain (-1 = end). */
  readonly bucketNext: Int32Array;
  readonly bucketPrev: Int32Array;
  /** Per block: registered children. */
  readonly childCount: Int32Array;
  /** Per block: its most recently registered child, or -1 (a lookup hint, always verified exactly). */
  readonly childHint: Int32Array;
  /** Per block: registered children whose subtree holds a reference (see prefix-index.ts). */
  readonly activeKids: Int32Array;
  /** Per block: position in the heap, -1 when not in it. */
  readonly heapPos: Int32Array;
  /** Per block: logical time of the last use (registration, reuse, release). */
  readonly lastUse: Float64Array;
  /** Per bucket: first block of the chain, -1 = empty. */
  readonly buckets: Int32Array;
  /** Binary min-heap of evictable leaves by lastUse; HEAP_SIZE entries used. */
  readonly heap: Int32Array;
  /** Per sequence slot: id of the sequence the slot state belongs to (-1 = none). */
  readonly slotOwner: Float64Array;
  /** Per sequence slot: namespace entry, or NO_NAMESPACE. */
  readonly slotNamespace: Int32Array;
  /** Per sequence slot: leading blocks registered (a chain from the namespace root), or REGISTRATION_CLOSED. */
  readonly slotRegistered: Int32Array;
  /** Per namespace entry: references (live sequences + registered root blocks). */
  readonly nsRefs: Int32Array;
  readonly nsHash: Int32Array;
  /** Per namespace entry: length in UTF-16 units, -1 when the entry is free. */
  readonly nsLength: Int32Array;
  /** Per namespace entry: next in its hash chain, or in the free stack. */
  readonly nsNext: Int32Array;
  readonly nsBuckets: Int32Array;
  /** maxNamespaces × maxNamespaceLength UTF-16 code units. */
  readonly nsChars: Uint16Array;
}

interface ViewCtor {
  new (buffer: SharedArrayBuffer, byteOffset: number, length: number): unknown;
  readonly BYTES_PER_ELEMENT: number;
}

interface Region {
  readonly name: Exclude<keyof IndexViews, 'buffer'>;
  readonly ctor: ViewCtor;
  readonly length: number;
}

/** Hash buckets of the namespace table. */
export function namespaceBuckets(c: PrefixIndexConfig): number {
  let p = 1;
  while (p < 2 * c.maxNamespaces) p *= 2;
  return p;
}

function regions(c: PrefixIndexConfig): Region[] {
  const n = c.numBlocks;
  const s = c.maxSequences;
  const m = c.maxNamespaces;
  return [
    { name: 'control', ctor: Int32Array, length: INDEX_CTRL_WORDS },
    { name: 'counters', ctor: Float64Array, length: INDEX_COUNTER_WORDS },
    { name: 'parentKey', ctor: Int32Array, length: n },
    { name: 'nodeHash', ctor: Int32Array, length: n },
    { name: 'bucketNext', ctor: Int32Array, length: n },
    { name: 'bucketPrev', ctor: Int32Array, length: n },
    { name: 'childCount', ctor: Int32Array, length: n },
    { name: 'childHint', ctor: Int32Array, length: n },
    { name: 'activeKids', ctor: Int32Array, length: n },
    { name: 'heapPos', ctor: Int32Array, length: n },
    { name: 'lastUse', ctor: Float64Array, length: n },
    { name: 'buckets', ctor: Int32Array, length: c.buckets },
    { name: 'heap', ctor: Int32Array, length: n },
    { name: 'slotOwner', ctor: Float64Array, length: s },
    { name: 'slotNamespace', ctor: Int32Array, length: s },
    { name: 'slotRegistered', ctor: Int32Array, length: s },
    { name: 'nsRefs', ctor: Int32Array, length: m },
    { name: 'nsHash', ctor: Int32Array, length: m },
    { name: 'nsLength', ctor: Int32Array, length: m },
    { name: 'nsNext', ctor: Int32Array, length: m },
    { name: 'nsBuckets', ctor: Int32Array, length: namespaceBuckets(c) },
    { name: 'nsChars', ctor: Uint16Array, length: m * c.maxNamespaceLength },
  ];
}

const align64 = (bytes: number): number => Math.ceil(bytes / 64) * 64;

export function indexByteLength(config: PrefixIndexConfig): number {
  let offset = 0;
  for (const r of regions(config)) offset = align64(offset + r.length * r.ctor.BYTES_PER_ELEMENT);
  return offset;
}

export function createIndexViews(buffer: SharedArrayBuffer, config: PrefixIndexConfig): IndexViews {
  const expected = indexByteLength(config);
  if (buffer.byteLength !== expected) {
    throw new ConfigError(
      `The prefix index buffer holds ${buffer.byteLength} bytes but this config needs ${expected}; pass the handle of the index that created it.`,
    );
  }
  const views: Record<string, unknown> = { buffer };
  let offset = 0;
  for (const r of regions(config)) {
    views[r.name] = new r.ctor(buffer, offset, r.length);
    offset = align64(offset + r.length * r.ctor.BYTES_PER_ELEMENT);
  }
  return views as unknown as IndexViews;
}

/** The empty index: nothing registered, every slot unowned, only the default namespace ('') live. */
export function initializeIndexViews(v: IndexViews, c: PrefixIndexConfig): void {
  const ctl = v.control;
  ctl[IndexCtrl.MAGIC] = INDEX_MAGIC;
  ctl[IndexCtrl.VERSION] = INDEX_LAYOUT_VERSION;
  ctl[IndexCtrl.NUM_BLOCKS] = c.numBlocks;
  ctl[IndexCtrl.BLOCK_SIZE] = c.blockSize;
  ctl[IndexCtrl.MAX_SEQUENCES] = c.maxSequences;
  ctl[IndexCtrl.BUCKETS] = c.buckets;
  ctl[IndexCtrl.MAX_NAMESPACES] = c.maxNamespaces;
  ctl[IndexCtrl.MAX_NAMESPACE_LENGTH] = c.maxNamespaceLength;
  resetIndexViews(v, c);
}

/** Forgets every registration and namespace (the default namespace stays); slot states are kept. */
export function resetIndexViews(v: IndexViews, c: PrefixIndexConfig): void {
  v.control[IndexCtrl.HEAP_SIZE] = 0;
  v.control[IndexCtrl.REGISTERED] = 0;
  v.control[IndexCtrl.EVICTABLE] = 0;
  v.parentKey.fill(NOT_REGISTERED);
  v.bucketNext.fill(-1);
  v.bucketPrev.fill(-1);
  v.childCount.fill(0);
  v.childHint.fill(-1);
  v.activeKids.fill(0);
  v.heapPos.fill(-1);
  v.buckets.fill(-1);
  if (v.control[IndexCtrl.NS_LIVE] === 0) {
    // First initialization: every slot unowned, every namespace entry but 0 on the free stack.
    v.slotOwner.fill(-1);
    v.slotNamespace.fill(NO_NAMESPACE);
    v.slotRegistered.fill(REGISTRATION_CLOSED);
    v.nsBuckets.fill(-1);
    v.nsLength.fill(-1);
    v.nsRefs.fill(0);
    v.nsLength[0] = 0; // the default namespace '' is entry 0, never freed
    v.nsNext[0] = -1;
    for (let e = 1; e < c.maxNamespaces; e++) v.nsNext[e] = e + 1 < c.maxNamespaces ? e + 1 : -1;
    v.control[IndexCtrl.NS_FREE_HEAD] = c.maxNamespaces > 1 ? 1 : -1;
    v.control[IndexCtrl.NS_LIVE] = 1;
  }
}

export function verifyIndexHeader(v: IndexViews, c: PrefixIndexConfig): void {
  const ctl = v.control;
  if (ctl[IndexCtrl.MAGIC] !== INDEX_MAGIC || ctl[IndexCtrl.VERSION] !== INDEX_LAYOUT_VERSION) {
    throw new ConfigError('The shared buffer does not hold a prefix index of this version; pass the handle unchanged.');
  }
  const stored = [
    ctl[IndexCtrl.NUM_BLOCKS], ctl[IndexCtrl.BLOCK_SIZE], ctl[IndexCtrl.MAX_SEQUENCES], ctl[IndexCtrl.BUCKETS],
    ctl[IndexCtrl.MAX_NAMESPACES], ctl[IndexCtrl.MAX_NAMESPACE_LENGTH],
  ];
  const given = [c.numBlocks, c.blockSize, c.maxSequences, c.buckets, c.maxNamespaces, c.maxNamespaceLength];
  if (stored.some((x, i) => x !== given[i])) {
    throw new ConfigError(
      `The index handle's config (${given.join(', ')}) does not match the buffer's (${stored.join(', ')}) ` +
        '[numBlocks, blockSize, maxSequences, buckets, maxNamespaces, maxNamespaceLength].',
    );
  }
}
