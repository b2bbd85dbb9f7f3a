// A block table with a prefix cache: sequences whose prompts share leading full blocks share those
// blocks (and so their K/V). Pure CPU bookkeeping; the GPU facade (PagedKVCache) drives it.
//
// Invariants:
//   - One lock for everything. Every operation here runs inside the block table's critical section
//     (table.atomic: a batch of its own, or the caller's batch), and the index is otherwise only touched
//     by the table's hooks, which run inside that same section. No second lock exists, so no lock-order
//     cycle can exist between agents; sections are synchronous, so the lock is never held across an await.
//   - Lookup and reuse are one critical section: a block found in the trie is referenced before anything
//     can be evicted (no check-then-act window).
//   - A reused prefix is a multiple of blockSize and never the whole prompt: at most floor((n-1)/blockSize)
//     blocks, so at least one token is left to compute and the caller gets logits.
//   - A block is registered only when full and its K/V are written for every layer (the caller says how
//     far: registerWritten); from then on it is frozen (writers copy it first). A sequence's registered
//     blocks are always a chain from its namespace's root; a sequence that overwrites a registered
//     position stops registering (its later K/V may no longer match the chain).
//   - A completed block identical (same parent, same tokens) to one already registered is not
//     registered twice: the sequence adopts the first one and its own copy is released.
//   - Namespaces are compared exactly; blocks are never shared across namespaces.
//   - Every agent must attach through PrefixCache.attach (the same hooks and the same hash function).
import { ConfigError } from '../errors';
import { BlockTable, type BlockTableHandle } from '../table/block-table';
import type { BlockTableConfig } from '../table/config';
import { BlockState, createViews, type TableViews } from '../table/layout';
import type { SpinLockOptions } from '../table/spin-lock';
import { checkTokens } from '../table/tokens';
import { multiplyXorBlockHash, type BlockHash } from './block-hash';
import { resolveIndexConfig, type PrefixIndexConfig, type PrefixIndexOptions } from './config';
import { checkIndexInvariants } from './invariants';
import {
  createIndexViews,
  indexByteLength,
  IndexCounter,
  IndexCtrl,
  initializeIndexViews,
  NO_NAMESPACE,
  REGISTRATION_CLOSED,
  verifyIndexHeader,
  type IndexViews,
} from './layout';
import { PrefixIndex, rootKey } from './prefix-index';

export interface PrefixCacheOptions extends PrefixIndexOptions, SpinLockOptions {
  /** Edge hash (default multiplyXorBlockHash). Every attached agent must pass the same function. */
  readonly hash?: BlockHash;
}

export interface PrefixCacheAttachOptions extends SpinLockOptions {
  readonly hash?: BlockHash;
}

export interface PrefixIndexHandle {
  readonly buffer: SharedArrayBuffer;
  readonly config: PrefixIndexConfig;
}

/** What another thread needs to attach the same cache; structured-cloneable. */
export interface PrefixCacheHandle {
  readonly table: BlockTableHandle;
  readonly index: PrefixIndexHandle;
}

export interface PrefixSequence {
  id: number;
  length: number;
  /** Leading tokens whose blocks (and K/V) came from the cache: a multiple of blockSize, < length. */
  cachedTokens: number;
}

export interface PrefixStats {
  /** createSequence calls that reused at least one block. */
  hits: number;
  misses: number;
  /** Prompt tokens served from the cache, and prompt tokens asked for. */
  hitTokens: number;
  queryTokens: number;
  /** hitTokens / queryTokens (0 before any query). */
  hitRate: number;
  /** Blocks registered in the trie. */
  registered: number;
  /** Registered blocks nothing references (directly or through a descendant): reclaimable. */
  evictable: number;
  /** Registered blocks that are referenced (directly or through a descendant): never evicted. */
  protected: number;
  evictions: number;
  registrations: number;
  /** Completed blocks replaced by an identical block registered first. */
  adoptions: number;
  /** Sequences created uncached because every namespace entry was in use. */
  uncacheable: number;
  /** Namespaces live (the default one included). */
  namespaces: number;
}

export class PrefixCache {
  readonly table: BlockTable;
  readonly index: PrefixIndex;
  private readonly indexHandle: PrefixCacheHandle['index'];
  readonly blockSize: number;
  private readonly tableViews: TableViews;
  private readonly iv: IndexViews;
  private readonly counters: Float64Array;
  private readonly rowStride: number;
  private readonly row: Int32Array;
  private scratch: Int32Array;
  /** noteWrite's arguments and its locked body, made once (it runs once per sequence of a decode step). */
  private readonly noteArgs = { id: 0, startPos: 0 };
  private readonly noteWriteBody = (): void => {
    const { id, startPos } = this.noteArgs;
    const slot = this.table.rowOf(id);
    const r = this.index.slots.registeredOf(slot, id);
    if (r > 0 && startPos < r * this.blockSize) this.index.slots.close(slot);
  };

  /** A new table and index with fresh shared buffers. */
  static create(config: BlockTableConfig, options: PrefixCacheOptions = {}): PrefixCache {
    const hash = checkHash(options.hash);
    let index: PrefixIndex | undefined;
    const table = BlockTable.create(config, { ...lockOptions(options), ...hooks(() => index as PrefixIndex) });
    const indexConfig = resolveIndexConfig(table.config, options);
    const bytes = indexByteLength(indexConfig);
    let buffer: SharedArrayBuffer;
    try {
      buffer = new SharedArrayBuffer(bytes);
    } catch {
      throw new ConfigError(`Could not allocate a ${bytes}-byte SharedArrayBuffer for the prefix index; lower numBlocks or buckets.`);
    }
    const views = createIndexViews(buffer, indexConfig);
    initializeIndexViews(views, indexConfig);
    views.control[IndexCtrl.HASH_PROBE] = hashProbe(hash, indexConfig.blockSize);
    const cache = new PrefixCache(table, views, indexConfig, hash);
    index = cache.index;
    return cache;
  }

  /** Opens a cache created elsewhere (another thread) from its handle. */
  static attach(handle: PrefixCacheHandle, options: PrefixCacheAttachOptions = {}): PrefixCache {
    if (typeof handle !== 'object' || handle === null || typeof handle.index !== 'object' || handle.index === null) {
      throw new ConfigError('PrefixCache.attach needs the { table, index } handle of a prefix cache.');
    }
    const hash = checkHash(options.hash);
    let index: PrefixIndex | undefined;
    const table = BlockTable.attach(handle.table, { ...lockOptions(options), ...hooks(() => index as PrefixIndex) });
    const indexConfig = resolveIndexConfig(table.config, handle.index.config);
    if (!(handle.index.buffer instanceof SharedArrayBuffer)) throw new ConfigError('The prefix index handle has no SharedArrayBuffer.');
    const views = createIndexViews(handle.index.buffer, indexConfig);
    verifyIndexHeader(views, indexConfig);
    if (views.control[IndexCtrl.HASH_PROBE] !== hashProbe(hash, indexConfig.blockSize)) {
      throw new ConfigError('This agent hashes blocks differently from the one that created the prefix cache; pass the same hash option to attach().');
    }
    const cache = new PrefixCache(table, views, indexConfig, hash);
    index = cache.index;
    return cache;
  }

  private constructor(table: BlockTable, views: IndexViews, config: PrefixIndexConfig, hash: BlockHash) {
    this.table = table;
    // The table's buffer through its views, not its handle: reading the handle would mark it shared.
    this.tableViews = createViews(table.blockTableView.buffer as SharedArrayBuffer, table.config);
    this.index = new PrefixIndex(views, config, this.tableViews, hash);
    this.iv = views;
    this.counters = views.counters;
    this.blockSize = table.config.blockSize;
    this.rowStride = table.rowStride;
    this.row = table.blockTableView;
    this.scratch = new Int32Array(Math.min(table.config.maxBlocksPerSequence, 64));
    this.indexHandle = Object.freeze({ buffer: views.buffer, config });
  }

  /** What another thread needs to attach this cache (and its table); reading it makes the table shared. */
  get handle(): PrefixCacheHandle {
    return Object.freeze({ table: this.table.handle, index: this.indexHandle });
  }

  // ---- sequences -----------------------------------------------------------------------------------

  /**
   * Creates a sequence for `tokens`, reusing the longest cached chain of full blocks of its prompt in
   * `namespace` (default ''), at most floor((n-1)/blockSize) blocks. Atomic: lookup and reuse are one
   * critical section. Throws what BlockTable.createSequence throws, having changed nothing.
   */
  createSequence(tokens: ArrayLike<number>, namespace?: string): PrefixSequence {
    const n = checkTokens(tokens);
    const name = this.index.namespaces.check(namespace);
    return this.table.atomic(() => {
      const namespaces = this.index.namespaces;
      // Hold the namespace while creating: evictions made for this very allocation could otherwise drop
      // its last root block and free the entry. A failure evicts nothing, so the release restores it.
      let ns = namespaces.find(name);
      if (ns !== NO_NAMESPACE) namespaces.addRef(ns);
      let created: { id: number; length: number };
      let k = 0;
      try {
        k = ns === NO_NAMESPACE ? 0 : this.matchLocked(ns, tokens, n);
        created = this.table.createSequence(tokens, k > 0 ? this.scratch.subarray(0, k) : undefined);
      } catch (error) {
        if (ns !== NO_NAMESPACE) namespaces.release(ns);
        throw error;
      }
      const { id, length } = created;
      if (ns === NO_NAMESPACE) {
        ns = namespaces.intern(name);
        if (ns === NO_NAMESPACE) this.counters[IndexCounter.UNCACHEABLE] += 1;
        else namespaces.addRef(ns);
      }
      this.dropStale(this.index.slots.open(this.table.rowOf(id), id, ns, k));
      const c = this.counters;
      c[IndexCounter.QUERY_TOKENS] += n;
      if (k > 0) {
        c[IndexCounter.HITS] += 1;
        c[IndexCounter.HIT_TOKENS] += k * this.blockSize;
      } else {
        c[IndexCounter.MISSES] += 1;
      }
      return { id, length, cachedTokens: k * this.blockSize };
    });
  }

  /** Validates a namespace argument; returns it ('' for undefined). Throws InvalidArgumentError. */
  checkNamespace(namespace: unknown): string {
    return this.index.namespaces.check(namespace);
  }

  /** Tokens createSequence would reuse right now (no change, no statistics). */
  cachedPrefix(tokens: ArrayLike<number>, namespace?: string): number {
    const n = checkTokens(tokens);
    const name = this.index.namespaces.check(namespace);
    return this.table.atomic(() => {
      const ns = this.index.namespaces.find(name);
      return ns === NO_NAMESPACE ? 0 : this.matchLocked(ns, tokens, n) * this.blockSize;
    });
  }

  /** A new sequence sharing every block of `id`, in the same namespace, registering where `id` stands. */
  fork(id: number): number {
    return this.table.atomic(() => {
      const child = this.table.fork(id);
      const slots = this.index.slots;
      const parentSlot = this.table.rowOf(id);
      const ns = slots.namespaceOf(parentSlot, id);
      if (ns !== NO_NAMESPACE) this.index.namespaces.addRef(ns);
      this.dropStale(slots.open(this.table.rowOf(child), child, ns, slots.registeredOf(parentSlot, id)));
      return child;
    });
  }

  /** Frees the sequence: its registered blocks stay cached (evictable once unreferenced), the rest are freed. */
  free(id: number): number[] {
    return this.table.atomic(() => {
      const slot = this.table.rowOf(id);
      const released = this.table.free(id);
      const ns = this.index.slots.release(slot, id);
      if (ns !== NO_NAMESPACE) this.index.namespaces.release(ns);
      return released;
    });
  }

  /**
   * Registers the full blocks of `id` below position `writtenLength` (K/V written in every layer) that
   * are not registered yet, walking on from the last registered one: O(new blocks). A block identical to
   * a registered one is replaced by it (adopted). Returns the registered block count, or -1 when the
   * sequence does not register (uncached namespace, or it overwrote registered positions).
   */
  registerWritten(id: number, writtenLength: number): number {
    return this.table.atomic(() => {
      const slot = this.table.rowOf(id);
      const slots = this.index.slots;
      let r = slots.registeredOf(slot, id);
      const ns = slots.namespaceOf(slot, id);
      if (r === REGISTRATION_CLOSED || ns === NO_NAMESPACE) return REGISTRATION_CLOSED;
      const bs = this.blockSize;
      const length = this.table.length(id);
      const limit = Math.floor(Math.min(writtenLength, length) / bs);
      if (r >= limit) return r;
      const row = slot * this.rowStride;
      const tokens = this.table.tokenView;
      const trie = this.index.trie;
      if (r > 0 && !this.index.isRegistered(this.row[row + r - 1])) {
        slots.close(slot); // its chain was replaced behind the prefix cache's back (makeExclusive)
        return REGISTRATION_CLOSED;
      }
      for (; r < limit; r++) {
        const b = this.row[row + r];
        const parentKey = r === 0 ? rootKey(ns) : this.row[row + r - 1];
        const h = trie.hashOf(parentKey, tokens, b * bs);
        const existing = trie.find(h, parentKey, tokens, b * bs);
        if (existing >= 0) {
          this.table.adoptBlock(id, r, existing);
          this.index.touch(existing);
          this.counters[IndexCounter.ADOPTIONS] += 1;
        } else {
          this.table.freezeBlock(id, r);
          this.index.register(b, parentKey, h);
        }
        slots.setRegistered(slot, r + 1);
      }
      return r;
    });
  }

  /**
   * Call before writing K/V of `id` from position `startPos`: writing into registered positions (which
   * copies them) stops the sequence from registering further blocks.
   */
  noteWrite(id: number, startPos: number): void {
    // No closure per call: the body runs synchronously inside atomic(), reading the arguments here.
    this.noteArgs.id = id;
    this.noteArgs.startPos = startPos;
    this.table.atomic(this.noteWriteBody);
  }

  /** Leading registered blocks of `id`, or -1 when it does not register. */
  registeredBlocks(id: number): number {
    return this.table.atomic(() => this.index.slots.registeredOf(this.table.rowOf(id), id));
  }

  /**
   * Drops every evictable block back to the free list and unregisters everything: blocks still in use
   * stay with their sequences but are no longer shareable, and those sequences stop registering.
   * Returns the blocks freed.
   */
  clear(): number {
    return this.table.atomic(() => {
      const freed = this.table.unfreezeAll();
      this.index.clear(this.table.config.maxSequences);
      return freed;
    });
  }

  // ---- observation -----------------------------------------------------------------------------------

  stats(): PrefixStats {
    return this.table.atomic(() => {
      const c = this.counters;
      const ctl = this.iv.control;
      const registered = ctl[IndexCtrl.REGISTERED];
      const evictable = ctl[IndexCtrl.EVICTABLE];
      const queryTokens = c[IndexCounter.QUERY_TOKENS];
      return {
        hits: c[IndexCounter.HITS],
        misses: c[IndexCounter.MISSES],
        hitTokens: c[IndexCounter.HIT_TOKENS],
        queryTokens,
        hitRate: queryTokens > 0 ? c[IndexCounter.HIT_TOKENS] / queryTokens : 0,
        registered,
        evictable,
        protected: registered - evictable,
        evictions: c[IndexCounter.EVICTIONS],
        registrations: c[IndexCounter.REGISTRATIONS],
        adoptions: c[IndexCounter.ADOPTIONS],
        uncacheable: c[IndexCounter.UNCACHEABLE],
        namespaces: ctl[IndexCtrl.NS_LIVE],
      };
    });
  }

  /**
   * The table's block snapshot, with state 2 meaning evictable: a cached block that is not evictable yet
   * (a registered descendant is still referenced) reads as 1, in use.
   */
  blockSnapshot(): { state: Uint8Array; refCount: Int32Array; owner: Float64Array } {
    return this.table.atomic(() => {
      const snapshot = this.table.blockSnapshot();
      const state = snapshot.state;
      for (let b = 0; b < state.length; b++) if (state[b] === BlockState.CACHED && this.index.isActive(b)) state[b] = BlockState.USED;
      return snapshot;
    });
  }

  /** Checks the table and the index together; throws InvariantError describing the first violation. */
  checkInvariants(): void {
    this.table.checkInvariants();
    this.table.atomic(() => checkIndexInvariants(this.index, this.tableViews, this.table.config));
  }

  // ---- helpers (lock held) ---------------------------------------------------------------------------

  private matchLocked(ns: number, tokens: ArrayLike<number>, n: number): number {
    const maxBlocks = n > 0 ? Math.floor((n - 1) / this.blockSize) : 0;
    if (maxBlocks > this.scratch.length) {
      this.scratch = new Int32Array(Math.max(maxBlocks, this.scratch.length * 2));
    }
    return this.index.match(ns, tokens, maxBlocks, this.scratch);
  }

  private dropStale(ns: number): void {
    if (ns !== NO_NAMESPACE) this.index.namespaces.release(ns);
  }
}

function hooks(index: () => PrefixIndex) {
  return {
    evictor: {
      evictOne: () => index().evictOne(),
      evictable: () => index().evictable(),
      evictableAmong: (blocks: ArrayLike<number>) => index().evictableAmong(blocks),
    },
    onRelease: (b: number) => index().onRelease(b),
    onRevive: (b: number) => index().onRevive(b),
  };
}

/** The hash of a fixed edge, recorded at creation and compared on attach. */
function hashProbe(hash: BlockHash, blockSize: number): number {
  const probe = Uint32Array.from({ length: blockSize }, (_, i) => (i * 2654435761) >>> 0);
  return hash(12345, probe, 0, blockSize) | 0;
}

function lockOptions(o: SpinLockOptions): SpinLockOptions {
  return { timeoutMs: o.timeoutMs, waitStrategy: o.waitStrategy, holdSampleInterval: o.holdSampleInterval };
}

function checkHash(hash: unknown): BlockHash {
  if (hash === undefined) return multiplyXorBlockHash;
  if (typeof hash !== 'function') throw new ConfigError('Prefix cache option hash must be a function (parentKey, tokens, offset, count) => int32.');
  return hash as BlockHash;
}
