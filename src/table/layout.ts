// Where every piece of table state lives inside the one SharedArrayBuffer. Struct-of-arrays: each field
// is its own typed view, each region starts on a 64-byte boundary. Invariants: the layout is a pure
// function of the config (so any agent holding the config and the buffer builds identical views); the
// control words record a magic number, the layout version and the config, so attach() can refuse a
// foreign or mismatched buffer; `blockTable` is flat and row-major (row = sequence slot, -1 = no block)
// because that exact array is uploaded to the GPU; `frozen` marks blocks a prefix index has registered
// (their contents are immutable: writers copy them first, and a frozen block whose last reference goes
// is kept CACHED, never freed, until it is evicted or unfrozen); `deferredRefs` are references rows
// dropped while GPU reads were open (deferred-drops.ts), listed once each in `deferredList`.
import { ConfigError } from '../errors';
import type { BlockTableConfig } from './config';

export const TABLE_MAGIC = 0x50475441; // "PGTA"
export const LAYOUT_VERSION = 4;

/** Block states. FREE blocks (and only they) are on the free list. */
export const BlockState = Object.freeze({ FREE: 0, USED: 1, CACHED: 2 } as const);
export type BlockStateValue = (typeof BlockState)[keyof typeof BlockState];

/** Int32 control words (everything but the lock). */
export const Ctrl = Object.freeze({
  MAGIC: 0,
  VERSION: 1,
  NUM_BLOCKS: 2,
  BLOCK_SIZE: 3,
  MAX_SEQUENCES: 4,
  MAX_BLOCKS_PER_SEQUENCE: 5,
  FREE_COUNT: 6,
  CACHED_COUNT: 7,
  SEQUENCE_COUNT: 8,
  FREE_SLOT_HEAD: 9,
  /** 1 once the creating agent has handed out the handle (BlockTable.handle); attach() needs it. */
  SHARED: 10,
  /** GPU reads begun (BlockTable.beginRead) and not ended yet. */
  READS_OPEN: 11,
  /** Entries of deferredList: blocks holding deferred references. */
  DEFERRED_COUNT: 12,
} as const);
export const CTRL_WORDS = 16;

/** Float64 event counters (monotonic, written under the lock; exact up to 2^53). */
export const Counter = Object.freeze({
  COW_COPIES: 0,
  BLOCK_ALLOCATIONS: 1,
  BLOCK_RELEASES: 2,
  EVICTIONS: 3,
  SEQUENCES_CREATED: 4,
  FORKS: 5,
  SEQUENCES_FREED: 6,
  CACHED_REVIVALS: 7,
  /** Existing block-table entries replaced or cleared (copy-on-write, adoptBlock, free): rows of live sequences change only then. */
  ROW_REWRITES: 8,
  /** The epoch of the last GPU read begun (BlockTable.beginRead numbers them 1, 2, …). */
  READ_EPOCH: 9,
} as const);
export const COUNTER_WORDS = 10;

/** Int32 lock words and Float64 lock statistics; their meaning belongs to spin-lock.ts. */
export const LOCK_WORDS = 16;
export const LOCK_STAT_WORDS = 8;

export interface TableViews {
  readonly buffer: SharedArrayBuffer;
  readonly lockWords: Int32Array;
  readonly lockStats: Float64Array;
  readonly control: Int32Array;
  readonly counters: Float64Array;
  /** Per block: table references plus retains plus deferred references. */
  readonly refCount: Int32Array;
  /** Per block: references taken by retainBlocks (a subset of refCount). */
  readonly retainCount: Int32Array;
  /** Per block: references rows dropped while GPU reads were open, still held (a subset of refCount). */
  readonly deferredRefs: Int32Array;
  /** Per block with deferred references: the read epoch (Counter.READ_EPOCH) when the last of them was dropped. */
  readonly deferredAt: Float64Array;
  /** The blocks with deferred references, each once, in deferredList[0 .. Ctrl.DEFERRED_COUNT). */
  readonly deferredList: Int32Array;
  /** Per sequence slot: open GPU reads of its row. */
  readonly slotReads: Int32Array;
  /** Per block plus one sentinel at index numBlocks: free-list links. */
  readonly next: Int32Array;
  readonly prev: Int32Array;
  /** Per block: a BlockState value. */
  readonly state: Uint8Array;
  /** Per block: token slots in use. */
  readonly filled: Int32Array;
  /** Per block: 1 while a prefix index has it registered (contents immutable; shared even at refCount 1). */
  readonly frozen: Uint8Array;
  /** numBlocks × blockSize token ids, block-major. */
  readonly tokens: Uint32Array;
  /** maxSequences × maxBlocksPerSequence, row-major, -1 = none. */
  readonly blockTable: Int32Array;
  readonly seqLength: Int32Array;
  readonly seqNumBlocks: Int32Array;
  readonly seqGeneration: Int32Array;
  /** 1 while the slot holds a live sequence. */
  readonly seqLive: Uint8Array;
  /** Next slot in the free-slot stack (-1 = end). */
  readonly seqNextFreeSlot: Int32Array;
}

interface ViewCtor {
  new (buffer: SharedArrayBuffer, byteOffset: number, length: number): unknown;
  readonly BYTES_PER_ELEMENT: number;
}

interface Region {
  readonly name: Exclude<keyof TableViews, 'buffer'>;
  readonly ctor: ViewCtor;
  readonly length: number;
}

function regions(c: BlockTableConfig): Region[] {
  const n = c.numBlocks;
  const s = c.maxSequences;
  return [
    { name: 'lockWords', ctor: Int32Array, length: LOCK_WORDS },
    { name: 'lockStats', ctor: Float64Array, length: LOCK_STAT_WORDS },
    { name: 'control', ctor: Int32Array, length: CTRL_WORDS },
    { name: 'counters', ctor: Float64Array, length: COUNTER_WORDS },
    { name: 'refCount', ctor: Int32Array, length: n },
    { name: 'retainCount', ctor: Int32Array, length: n },
    { name: 'deferredRefs', ctor: Int32Array, length: n },
    { name: 'deferredAt', ctor: Float64Array, length: n },
    { name: 'deferredList', ctor: Int32Array, length: n },
    { name: 'next', ctor: Int32Array, length: n + 1 },
    { name: 'prev', ctor: Int32Array, length: n + 1 },
    { name: 'state', ctor: Uint8Array, length: n },
    { name: 'filled', ctor: Int32Array, length: n },
    { name: 'frozen', ctor: Uint8Array, length: n },
    { name: 'tokens', ctor: Uint32Array, length: n * c.blockSize },
    { name: 'blockTable', ctor: Int32Array, length: s * c.maxBlocksPerSequence },
    { name: 'seqLength', ctor: Int32Array, length: s },
    { name: 'seqNumBlocks', ctor: Int32Array, length: s },
    { name: 'seqGeneration', ctor: Int32Array, length: s },
    { name: 'seqLive', ctor: Uint8Array, length: s },
    { name: 'seqNextFreeSlot', ctor: Int32Array, length: s },
    { name: 'slotReads', ctor: Int32Array, length: s },
  ];
}

const align64 = (bytes: number): number => Math.ceil(bytes / 64) * 64;

/** Bytes of SharedArrayBuffer a table with this (validated) config needs. */
export function tableByteLength(config: BlockTableConfig): number {
  let offset = 0;
  for (const r of regions(config)) offset = align64(offset + r.length * r.ctor.BYTES_PER_ELEMENT);
  return offset;
}

/** Typed views over `buffer` for a (validated) config. */
export function createViews(buffer: SharedArrayBuffer, config: BlockTableConfig): TableViews {
  const expected = tableByteLength(config);
  if (buffer.byteLength !== expected) {
    throw new ConfigError(
      `The shared buffer holds ${buffer.byteLength} bytes but a table with this config needs ${expected}; ` +
        'pass the handle of the table that created the buffer.',
    );
  }
  const views: Record<string, unknown> = { buffer };
  let offset = 0;
  for (const r of regions(config)) {
    views[r.name] = new r.ctor(buffer, offset, r.length);
    offset = align64(offset + r.length * r.ctor.BYTES_PER_ELEMENT);
  }
  return views as unknown as TableViews;
}

/** Writes the empty-table state: every block free and linked in id order, every slot free. */
export function initializeViews(v: TableViews, c: BlockTableConfig): void {
  const n = c.numBlocks;
  v.control[Ctrl.MAGIC] = TABLE_MAGIC;
  v.control[Ctrl.VERSION] = LAYOUT_VERSION;
  v.control[Ctrl.NUM_BLOCKS] = n;
  v.control[Ctrl.BLOCK_SIZE] = c.blockSize;
  v.control[Ctrl.MAX_SEQUENCES] = c.maxSequences;
  v.control[Ctrl.MAX_BLOCKS_PER_SEQUENCE] = c.maxBlocksPerSequence;
  v.control[Ctrl.FREE_COUNT] = n;
  v.control[Ctrl.CACHED_COUNT] = 0;
  v.control[Ctrl.SEQUENCE_COUNT] = 0;
  v.control[Ctrl.FREE_SLOT_HEAD] = 0;
  // Sentinel n: next[n] is the head, prev[n] the tail; the list is 0 → 1 → … → n-1.
  for (let b = 0; b <= n; b++) {
    v.next[b] = b === n ? 0 : b + 1;
    v.prev[b] = b === 0 ? n : b - 1;
  }
  v.blockTable.fill(-1);
  for (let s = 0; s < c.maxSequences; s++) v.seqNextFreeSlot[s] = s + 1 < c.maxSequences ? s + 1 : -1;
}

/** Refuses a buffer that was not initialized by a table with exactly this config. */
export function verifyHeader(v: TableViews, c: BlockTableConfig): void {
  const ctl = v.control;
  if (ctl[Ctrl.MAGIC] !== TABLE_MAGIC || ctl[Ctrl.VERSION] !== LAYOUT_VERSION) {
    throw new ConfigError('The shared buffer does not hold a block table of this version; pass table.handle unchanged.');
  }
  const stored = [ctl[Ctrl.NUM_BLOCKS], ctl[Ctrl.BLOCK_SIZE], ctl[Ctrl.MAX_SEQUENCES], ctl[Ctrl.MAX_BLOCKS_PER_SEQUENCE]];
  const given = [c.numBlocks, c.blockSize, c.maxSequences, c.maxBlocksPerSequence];
  if (stored.some((x, i) => x !== given[i])) {
    throw new ConfigError(
      `The handle's config (${given.join(', ')}) does not match the buffer's (${stored.join(', ')}) ` +
        '[numBlocks, blockSize, maxSequences, maxBlocksPerSequence].',
    );
  }
}
