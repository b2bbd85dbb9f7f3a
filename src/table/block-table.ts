// The paged KV-cache block table: which blocks each sequence owns, in order, plus the tokens stored in
// them, all in one SharedArrayBuffer that several threads attach (BlockTable.attach(table.handle)).
// Invariants (checked by checkInvariants()):
//   - every public call is one synchronous critical section under the table's single lock. While no
//     other agent can reach the table — its creator has not read `handle`, the only way to attach it
//     (attach() refuses a buffer whose handle was never read) — the sections skip the atomic lock: one
//     thread's synchronous calls cannot interleave. Reading `handle` switches to the lock for good, and
//     a section open at that moment takes it on the spot;
//   - a call that throws a typed error has changed nothing: it validates input and counts every block
//     it needs (copy-on-write copies included) before mutating anything;
//   - a block is written only while this sequence is its sole owner and it is not frozen; a shared or
//     frozen block is first copied (tokens and fill level) and the {src, dst} pair returned so the GPU
//     copies its K/V. References taken by retainBlocks (readers such as in-flight GPU work) make a
//     block shared for rewrites of its positions, but not for appends, which only add positions no
//     reader has seen;
//   - row `slot` of blockTableView lists the sequence's blocks in order, then -1s;
//   - frozen blocks (registered by a prefix index) are full, immutable, and kept CACHED when their last
//     reference goes; a sequence may start with frozen blocks (createSequence with prefixBlocks) or
//     swap one of its full blocks for an identical frozen one (adoptBlock);
//   - GPU reads (beginRead / endRead, deferred-drops.ts) protect whole rows at once: while a read names
//     a row's slot, a reference that row drops is deferred until the reads begun before the drop have
//     ended, and rewrites of its existing positions copy first (appends still write in place).
import { ConfigError, InvalidArgumentError } from '../errors';
import { BlockPool } from './block-pool';
import { validateConfig, type BlockTableConfig } from './config';
import { DeferredDrops } from './deferred-drops';
import { InvalidBlockError, InvariantError, ReentrantLockError, SequenceTooLongError, TooManySequencesError } from './errors';
import { blockHoldsTokens, checkFullBlockIndex, checkPrefixBlocks, checkShareable } from './frozen-blocks';
import type { Evictor, ReleaseHook, ReviveHook } from './hooks';
import { checkTableInvariants } from './invariants';
import { BlockState, Counter, Ctrl, createViews, initializeViews, tableByteLength, verifyHeader, type TableViews } from './layout';
import { SequenceSlots } from './sequence-slots';
import { SpinLock, type LockStats, type SpinLockOptions } from './spin-lock';
import { checkTokens } from './tokens';

/** What another thread needs to attach the same table; structured-cloneable (postMessage it). */
export interface BlockTableHandle {
  readonly buffer: SharedArrayBuffer;
  readonly config: BlockTableConfig;
}

export interface BlockTableOptions extends SpinLockOptions {
  /** Reclaims CACHED blocks when the free list runs short. Default: none (cached blocks are never reclaimed). */
  readonly evictor?: Evictor;
  /** Decides whether a block whose refCount reaches 0 is kept CACHED. Default: every such block is freed. */
  readonly onRelease?: ReleaseHook;
  /** Told when a CACHED block is referenced again. */
  readonly onRevive?: ReviveHook;
}

/** A copy the GPU must perform (K/V of block src into block dst) before writing to dst. */
export interface BlockCopy {
  readonly src: number;
  readonly dst: number;
}

export interface AppendResult {
  /** Position of the first appended token (the sequence length before the call). */
  readonly firstPosition: number;
  /** Blocks newly added to the end of the sequence. */
  readonly newBlocks: readonly number[];
  /** Copy-on-write copies made before writing (at most one: the shared partial last block). */
  readonly copies: readonly BlockCopy[];
}

/** The copies of an append that copied nothing (shared: appends allocate no array for it). */
const NO_COPIES: readonly BlockCopy[] = Object.freeze([]);
const NO_BLOCKS: readonly number[] = Object.freeze([]);

export interface BlockTableStats {
  readonly blocksTotal: number;
  readonly blocksFree: number;
  readonly blocksUsed: number;
  readonly blocksCached: number;
  readonly sequences: number;
  readonly maxSequences: number;
  readonly cowCopies: number;
  /** Blocks taken from the free list. */
  readonly allocations: number;
  /** Blocks whose refCount dropped to 0. */
  readonly releases: number;
  /** Cached blocks reclaimed through the evictor. */
  readonly evictions: number;
  /** Cached blocks brought back into use by retainBlocks. */
  readonly cachedRevivals: number;
  readonly sequencesCreated: number;
  readonly forks: number;
  readonly sequencesFreed: number;
  /** GPU reads begun (beginRead) and not ended. */
  readonly readsOpen: number;
  /** Blocks kept referenced because a row dropped them while reads were open. */
  readonly blocksDeferred: number;
}

export class BlockTable {
  readonly config: BlockTableConfig;
  /** The raw block table, maxSequences rows × rowStride columns, -1 = no block. Upload as is. */
  readonly blockTableView: Int32Array;
  /** Columns per row (= maxBlocksPerSequence). */
  readonly rowStride: number;
  /** Longest sequence in tokens (= maxBlocksPerSequence × blockSize). */
  readonly maxSequenceLength: number;
  /** Token ids of every block, numBlocks × blockSize, block-major. Read it only under the lock. */
  readonly tokenView: Uint32Array;

  private readonly views: TableViews;
  private readonly lock: SpinLock;
  private readonly pool: BlockPool;
  private readonly drops: DeferredDrops;
  private readonly slots: SequenceSlots;
  private readonly blockSize: number;
  private readonly tokenSlots: Uint32Array;
  private readonly refCount: Int32Array;
  private readonly filled: Int32Array;
  private readonly frozen: Uint8Array;
  private readonly seqLength: Int32Array;
  private readonly seqNumBlocks: Int32Array;
  private readonly counters: Float64Array;
  private inOperation = false;
  private inBatch = false;
  private readonly sharedHandle: BlockTableHandle;
  /**
   * Whether another agent may reach the table (see the header); once true, it stays true. An open
   * critical section holds the atomic lock exactly when this is true (share() takes it mid-section).
   */
  private shared: boolean;

  /** Allocates and initializes a new table in a fresh SharedArrayBuffer. */
  static create(config: BlockTableConfig, options: BlockTableOptions = {}): BlockTable {
    const c = validateConfig(config);
    const bytes = tableByteLength(c);
    let buffer: SharedArrayBuffer;
    try {
      buffer = new SharedArrayBuffer(bytes);
    } catch {
      throw new ConfigError(
        `Could not allocate a ${bytes}-byte SharedArrayBuffer for the block table; lower numBlocks, blockSize ` +
          'or maxSequences × maxBlocksPerSequence (in a browser, the page must be cross-origin isolated).',
      );
    }
    const views = createViews(buffer, c);
    initializeViews(views, c);
    return new BlockTable(c, views, options);
  }

  /** Opens a table created elsewhere (another thread) from its handle. */
  static attach(handle: BlockTableHandle, options: BlockTableOptions = {}): BlockTable {
    if (typeof handle !== 'object' || handle === null || !(handle.buffer instanceof SharedArrayBuffer)) {
      throw new ConfigError('BlockTable.attach needs the { buffer: SharedArrayBuffer, config } handle of a table.');
    }
    const c = validateConfig(handle.config);
    const views = createViews(handle.buffer, c);
    verifyHeader(views, c);
    if (Atomics.load(views.control, Ctrl.SHARED) !== 1) {
      throw new ConfigError('This table was never shared: attach() needs the handle read from the creating table (table.handle), not a buffer taken from its views.');
    }
    return new BlockTable(c, views, options);
  }

  private constructor(config: BlockTableConfig, views: TableViews, options: BlockTableOptions) {
    if (options.evictor !== undefined && typeof options.evictor?.evictOne !== 'function') {
      throw new ConfigError('BlockTable option evictor must be an object with an evictOne() method.');
    }
    if (options.onRelease !== undefined && typeof options.onRelease !== 'function') {
      throw new ConfigError('BlockTable option onRelease must be a function (blockId) => boolean.');
    }
    if (options.onRevive !== undefined && typeof options.onRevive !== 'function') {
      throw new ConfigError('BlockTable option onRevive must be a function (blockId) => void.');
    }
    this.config = config;
    this.sharedHandle = Object.freeze({ buffer: views.buffer, config });
    this.shared = Atomics.load(views.control, Ctrl.SHARED) === 1;
    this.views = views;
    this.lock = new SpinLock(views.lockWords, views.lockStats, options);
    this.pool = new BlockPool(views, config, options.evictor, options.onRelease, options.onRevive);
    this.drops = new DeferredDrops(views, this.pool);
    this.slots = new SequenceSlots(views, config);
    this.blockSize = config.blockSize;
    this.rowStride = config.maxBlocksPerSequence;
    this.maxSequenceLength = config.maxBlocksPerSequence * config.blockSize;
    this.blockTableView = views.blockTable;
    this.tokenSlots = views.tokens;
    this.tokenView = views.tokens;
    this.refCount = views.refCount;
    this.filled = views.filled;
    this.frozen = views.frozen;
    this.seqLength = views.seqLength;
    this.seqNumBlocks = views.seqNumBlocks;
    this.counters = views.counters;
  }

  /**
   * What another thread needs to attach this table (postMessage it, then BlockTable.attach). Reading it
   * makes the table shared: from then on every critical section takes the atomic lock.
   */
  get handle(): BlockTableHandle {
    if (!this.shared) this.share();
    return this.sharedHandle;
  }

  private share(): void {
    // No other agent can hold the lock yet; a section open now (handle read inside batch()) takes it.
    if (this.inBatch || this.inOperation) this.lock.lock();
    Atomics.store(this.views.control, Ctrl.SHARED, 1);
    this.shared = true;
  }

  // ---- sequences -------------------------------------------------------------------------------

  /**
   * Creates a sequence holding `tokens` in ceil(n / blockSize) blocks (none when n = 0). With
   * `prefixBlocks`, its first k blocks are those frozen, full blocks — the caller (a prefix index) has
   * matched each against the prompt's tokens at its position exactly; each gains a reference, a CACHED
   * one comes back into use — and the rest are new. The prefix blocks are referenced before anything is evicted, so eviction cannot take them.
   */
  createSequence(tokens: ArrayLike<number>, prefixBlocks?: ArrayLike<number>): { id: number; length: number } {
    const n = checkTokens(tokens);
    if (n > this.maxSequenceLength) throw new SequenceTooLongError(n, this.maxSequenceLength);
    const k = prefixBlocks === undefined ? 0 : this.checkBlockIds(prefixBlocks);
    this.enter();
    try {
      if (!this.slots.hasFree()) throw new TooManySequencesError(this.config.maxSequences);
      const blocks = Math.ceil(n / this.blockSize);
      if (k > 0) {
        const prefix = prefixBlocks as ArrayLike<number>;
        checkPrefixBlocks(this.views, this.blockSize, prefix, k, n);
        this.pool.checkAvailableExcept(blocks - k, prefix);
      } else {
        this.pool.ensureFree(blocks);
      }
      const slot = this.slots.acquire();
      const row = slot * this.rowStride;
      for (let i = 0; i < k; i++) {
        const b = (prefixBlocks as ArrayLike<number>)[i];
        this.pool.reference(b);
        this.blockTableView[row + i] = b;
      }
      if (k > 0) this.pool.ensureFree(blocks - k); // checked above; the prefix is referenced now, so safe
      for (let i = k; i < blocks; i++) {
        const b = this.pool.allocate();
        this.blockTableView[row + i] = b;
        const count = Math.min(this.blockSize, n - i * this.blockSize);
        this.writeTokens(b, 0, tokens, i * this.blockSize, count);
      }
      this.seqLength[slot] = n;
      this.seqNumBlocks[slot] = blocks;
      this.counters[Counter.SEQUENCES_CREATED] += 1;
      return { id: this.slots.idOf(slot), length: n };
    } finally {
      this.exit();
    }
  }

  /**
   * Appends tokens at the end of the sequence. A partial last block shared with another sequence (or
   * frozen) is copied first (its {src, dst} returned); one merely retained is not. New blocks are added
   * as needed.
   */
  appendTokens(id: number, tokens: ArrayLike<number>): AppendResult {
    const k = checkTokens(tokens);
    this.enter();
    try {
      return this.appendLocked(id, tokens, k);
    } finally {
      this.exit();
    }
  }

  /** A new sequence sharing every block of `id` (refcounts + 1), with the same tokens and length. */
  fork(id: number): number {
    this.enter();
    try {
      const slot = this.slots.resolve(id);
      if (!this.slots.hasFree()) throw new TooManySequencesError(this.config.maxSequences);
      const child = this.slots.acquire();
      const blocks = this.seqNumBlocks[slot];
      const row = slot * this.rowStride;
      const childRow = child * this.rowStride;
      for (let i = 0; i < blocks; i++) {
        const b = this.blockTableView[row + i];
        this.blockTableView[childRow + i] = b;
        this.refCount[b]++;
      }
      this.seqLength[child] = this.seqLength[slot];
      this.seqNumBlocks[child] = blocks;
      this.counters[Counter.FORKS] += 1;
      return this.slots.idOf(child);
    } finally {
      this.exit();
    }
  }

  /**
   * Copies every shared block covering positions [fromPosition, toPosition) so the caller may write K/V
   * there; returns the copies for the GPU. Requires 0 ≤ fromPosition ≤ toPosition ≤ length(id). With
   * `newPositions`, the caller states that no reader has seen those positions (they were never
   * written): a block shared only through retains is then written in place, as for an append.
   */
  makeExclusive(id: number, fromPosition: number, toPosition: number, options: { newPositions?: boolean } = {}): readonly BlockCopy[] {
    this.enter();
    try {
      const slot = this.slots.resolve(id);
      const length = this.seqLength[slot];
      if (
        !Number.isInteger(fromPosition) || !Number.isInteger(toPosition) ||
        fromPosition < 0 || fromPosition > toPosition || toPosition > length
      ) {
        throw new InvalidArgumentError(
          `makeExclusive range [${String(fromPosition)}, ${String(toPosition)}) must be integers with ` +
            `0 ≤ from ≤ to ≤ the sequence length ${length}.`,
        );
      }
      if (fromPosition === toPosition) return NO_COPIES;
      const row = slot * this.rowStride;
      const first = Math.floor(fromPosition / this.blockSize);
      const last = Math.floor((toPosition - 1) / this.blockSize);
      const isShared = options?.newPositions === true ? this.sharedBySequences : this.isShared;
      let shared = 0;
      for (let i = first; i <= last; i++) if (isShared.call(this, this.blockTableView[row + i], slot)) shared++;
      if (shared === 0) return NO_COPIES; // nothing to copy: no allocation (a decode step calls this per sequence)
      this.pool.ensureFree(shared);
      const copies: BlockCopy[] = [];
      for (let i = first; i <= last; i++) {
        const src = this.blockTableView[row + i];
        if (isShared.call(this, src, slot)) copies.push({ src, dst: this.copyOnWrite(row + i, src, this.filled[src]) });
      }
      return copies;
    } finally {
      this.exit();
    }
  }

  /** Frees the sequence; returns the blocks whose refCount reached 0 (now free, or cached by the hook). */
  free(id: number): number[] {
    this.enter();
    try {
      const slot = this.slots.resolve(id);
      const row = slot * this.rowStride;
      const blocks = this.seqNumBlocks[slot];
      const table = this.blockTableView;
      const deferring = this.drops.reads(slot);
      let lastReferences = 0;
      for (let i = 0; i < blocks; i++) {
        const rc = this.refCount[table[row + i]];
        if (rc < 1) throw new InvariantError(`sequence ${id} references block ${table[row + i]} with refCount ${rc}`);
        if (rc === 1 && !deferring) lastReferences++;
      }
      const released = new Array<number>(lastReferences);
      for (let i = 0, n = 0; i < blocks; i++) {
        const b = table[row + i];
        table[row + i] = -1;
        if (this.drops.drop(b, slot)) released[n++] = b;
      }
      this.slots.release(slot);
      this.counters[Counter.SEQUENCES_FREED] += 1;
      this.counters[Counter.ROW_REWRITES] += 1;
      return released;
    } finally {
      this.exit();
    }
  }

  // ---- frozen blocks (prefix index support) ----------------------------------------------------

  /**
   * Freezes block `index` (a full block) of sequence `id`: its contents become immutable (writers copy
   * it first) and it is kept CACHED when its last reference goes. Returns the block id.
   */
  freezeBlock(id: number, index: number): number {
    this.enter();
    try {
      const slot = this.slots.resolve(id);
      checkFullBlockIndex(index, this.seqLength[slot], this.blockSize);
      const b = this.blockTableView[slot * this.rowStride + index];
      if (this.frozen[b] === 1) throw new InvalidBlockError(b, 'is already frozen');
      this.frozen[b] = 1;
      return b;
    } finally {
      this.exit();
    }
  }

  /**
   * Replaces full block `index` of sequence `id` (not frozen) by the frozen block `frozenBlock`, which
   * must hold the same tokens (an identical block registered first by another sequence). The replaced
   * block loses this reference (freed if it was the last). Returns the replaced block's id.
   */
  adoptBlock(id: number, index: number, frozenBlock: number): number {
    this.checkBlockIds([frozenBlock]);
    this.enter();
    try {
      const slot = this.slots.resolve(id);
      checkFullBlockIndex(index, this.seqLength[slot], this.blockSize);
      const entry = slot * this.rowStride + index;
      const old = this.blockTableView[entry];
      if (this.frozen[old] === 1) throw new InvalidBlockError(old, 'is frozen already; only an unfrozen block can be replaced');
      checkShareable(this.views, this.blockSize, frozenBlock);
      if (!blockHoldsTokens(this.views, this.blockSize, frozenBlock, this.tokenSlots, old * this.blockSize)) {
        throw new InvalidArgumentError(`block ${frozenBlock} does not hold the tokens of block ${old}; only an identical block can be adopted`);
      }
      this.pool.reference(frozenBlock);
      this.blockTableView[entry] = frozenBlock;
      this.counters[Counter.ROW_REWRITES] += 1;
      this.drops.drop(old, slot);
      return old;
    } finally {
      this.exit();
    }
  }

  /** Unfreezes every frozen block; CACHED ones go to the free list. Returns how many were freed. */
  unfreezeAll(): number {
    this.enter();
    try {
      return this.pool.unfreezeAll();
    } finally {
      this.exit();
    }
  }

  /** Whether block `b` is frozen (read under the lock). */
  isFrozen(b: number): boolean {
    this.checkBlockIds([b]);
    this.enter();
    try {
      return this.frozen[b] === 1;
    } finally {
      this.exit();
    }
  }

  // ---- pins ------------------------------------------------------------------------------------

  /**
   * Adds one reference per listed block (duplicates count), e.g. while submitted GPU work still reads
   * them. Blocks must be in use or cached (a cached block comes back into use).
   */
  retainBlocks(blockIds: ArrayLike<number>): void {
    if (blockIds instanceof Int32Array && this.retainUsedBlocks(blockIds)) return;
    const count = this.checkBlockIds(blockIds);
    this.enter();
    try {
      const state = this.views.state;
      for (let i = 0; i < count; i++) {
        const b = blockIds[i];
        if (state[b] === BlockState.FREE) throw new InvalidBlockError(b, 'is free; only blocks in use or cached can be retained');
      }
      const refCount = this.refCount;
      const retains = this.views.retainCount;
      for (let i = 0; i < count; i++) {
        const b = blockIds[i];
        // A used block (the common case: pinned GPU reads) needs two increments; a cached one comes back.
        if (state[b] === BlockState.USED) {
          refCount[b]++;
          retains[b]++;
        } else {
          this.pool.retain(b);
        }
      }
    } finally {
      this.exit();
    }
  }

  /** Drops references taken by retainBlocks; returns the blocks whose refCount reached 0. */
  releaseBlocks(blockIds: ArrayLike<number>): number[] {
    if (blockIds instanceof Int32Array) {
      const released = this.releaseRetainedBlocks(blockIds);
      if (released !== undefined) return released;
    }
    const count = this.checkBlockIds(blockIds);
    this.enter();
    try {
      const retains = this.views.retainCount;
      for (let i = 0; i < count; i++) {
        const b = blockIds[i];
        if (retains[b] > 0) {
          retains[b]--;
          continue;
        }
        for (let j = 0; j < i; j++) retains[blockIds[j]]++; // undo: a failed call changes nothing
        throw new InvariantError(`block ${b} released more times than it was retained`);
      }
      const released: number[] = [];
      for (let i = 0; i < count; i++) {
        const b = blockIds[i];
        if (this.pool.dropRef(b)) released.push(b);
      }
      return released;
    } finally {
      this.exit();
    }
  }

  /**
   * Opens a GPU read of the blocks that the rows of `slots` (sequence slots, as rowOf gives them) hold
   * now — e.g. recorded work whose batch was resolved while no row entry changed since: O(slots),
   * however many blocks it reads. Until it ends, references those rows drop are deferred and rewrites of
   * their existing positions copy first. Returns the read's epoch (1, 2, …).
   */
  beginRead(slots: ArrayLike<number>): number {
    this.enter();
    try {
      return this.drops.begin(slots);
    } finally {
      this.exit();
    }
  }

  /**
   * Ends one read, naming the slots it began with. `safeEpoch`: every read numbered up to it has ended —
   * the oldest read still open, minus one (or the newest epoch when none stays open). Deferred
   * references that waited only for those go now (their blocks freed or cached when it was the last
   * reference).
   */
  endRead(safeEpoch: number, slots: ArrayLike<number>): void {
    if (typeof safeEpoch !== 'number' || Number.isNaN(safeEpoch)) throw new InvalidArgumentError(`endRead needs a read epoch (got ${String(safeEpoch)})`);
    this.enter();
    try {
      this.drops.end(safeEpoch, slots);
    } finally {
      this.exit();
    }
  }

  /**
   * Every block open read `epoch` (of `slots`) may still reach: those the rows of its slots hold now and
   * those deferred since it began — a superset of what its rows held when it began (each of those is in
   * its row still, or was dropped since, and so deferred). Retaining them lets the read end early.
   */
  heldSince(epoch: number, slots: ArrayLike<number>): Int32Array {
    this.drops.checkSlots(slots);
    this.enter();
    try {
      let total = this.drops.count;
      for (let i = 0; i < slots.length; i++) total += this.seqNumBlocks[slots[i]!]!;
      const out = new Int32Array(total);
      let at = 0;
      for (let i = 0; i < slots.length; i++) {
        const row = slots[i]! * this.rowStride;
        out.set(this.blockTableView.subarray(row, row + this.seqNumBlocks[slots[i]!]!), at);
        at += this.seqNumBlocks[slots[i]!]!;
      }
      return out.subarray(0, this.drops.deferredSince(epoch, out, at));
    } finally {
      this.exit();
    }
  }

  /**
   * retainBlocks of blocks that are all valid and in use (GPU pins, every step): one pass that checks and
   * counts each block. Returns false, having changed nothing, at the first block that needs the general
   * path (out of range, free — an error — or cached, which must be revived).
   */
  private retainUsedBlocks(ids: Int32Array): boolean {
    const n = this.config.numBlocks;
    const refCount = this.refCount;
    const retains = this.views.retainCount;
    this.enter();
    try {
      let i = 0;
      for (; i < ids.length; i++) {
        const b = ids[i]!;
        if (!(b >= 0 && b < n)) break;
        const refs = refCount[b]!;
        if (refs === 0) break; // free or cached (a used block has a reference)
        refCount[b] = refs + 1;
        retains[b]++;
      }
      if (i === ids.length) return true;
      for (let j = 0; j < i; j++) {
        const b = ids[j]!;
        refCount[b]--;
        retains[b]--;
      }
      return false;
    } finally {
      this.exit();
    }
  }

  /**
   * releaseBlocks of valid retained blocks in one pass: blocks whose last reference goes are released
   * after the pass. Returns undefined, having changed nothing, at the first block that is out of range
   * or not retained (the general path then reports it).
   */
  private releaseRetainedBlocks(ids: Int32Array): number[] | undefined {
    const n = this.config.numBlocks;
    const refCount = this.refCount;
    const retains = this.views.retainCount;
    this.enter();
    try {
      const released: number[] = [];
      let i = 0;
      for (; i < ids.length; i++) {
        const b = ids[i]!;
        if (!(b >= 0 && b < n) || retains[b]! <= 0) break;
        retains[b]--;
        if (--refCount[b]! === 0) released.push(b); // in the order the general path releases them
      }
      if (i < ids.length) {
        for (let j = 0; j < i; j++) {
          const b = ids[j]!;
          refCount[b]++;
          retains[b]++;
        }
        return undefined;
      }
      for (const b of released) this.pool.releaseUnreferenced(b);
      return released;
    } finally {
      this.exit();
    }
  }

  // ---- queries ---------------------------------------------------------------------------------

  length(id: number): number {
    this.enter();
    try {
      return this.seqLength[this.slots.resolve(id)];
    } finally {
      this.exit();
    }
  }

  /**
   * How many times an existing block-table entry was replaced or cleared (copy-on-write, adoptBlock,
   * free). While it stays the same, no live sequence's row changed, except by growing at its end. Read
   * it under the lock (inside batch()) to compare with a value read under the same lock.
   */
  get rowRewrites(): number {
    return this.counters[Counter.ROW_REWRITES];
  }

  /** Row of blockTableView that holds the sequence's blocks (valid until it is freed). */
  rowOf(id: number): number {
    this.enter();
    try {
      return this.slots.resolve(id);
    } finally {
      this.exit();
    }
  }

  /**
   * rowOf and length of many sequences in one critical section: rows[i] and lengths[i] for ids[i].
   * Throws UnknownSequenceError for the first id that is not live (rows/lengths are then partly filled).
   */
  rowsOf(ids: ArrayLike<number>, rows: Int32Array, lengths: Int32Array): void {
    this.enter();
    try {
      for (let i = 0; i < ids.length; i++) {
        const slot = this.slots.resolve(ids[i]!);
        rows[i] = slot;
        lengths[i] = this.seqLength[slot];
      }
    } finally {
      this.exit();
    }
  }

  /** Length of the sequence living in row `slot` (call inside batch(), after rowOf() resolved its id). */
  lengthOfRow(slot: number): number {
    this.enter();
    try {
      return this.seqLength[slot];
    } finally {
      this.exit();
    }
  }

  /** A copy of the sequence's block ids, in order. */
  blocksOf(id: number): Int32Array {
    this.enter();
    try {
      const slot = this.slots.resolve(id);
      const row = slot * this.rowStride;
      return this.blockTableView.slice(row, row + this.seqNumBlocks[slot]);
    } finally {
      this.exit();
    }
  }

  /** A copy of the sequence's tokens. */
  tokensOf(id: number): Uint32Array {
    this.enter();
    try {
      const slot = this.slots.resolve(id);
      const length = this.seqLength[slot];
      const out = new Uint32Array(length);
      const row = slot * this.rowStride;
      const bs = this.blockSize;
      for (let i = 0, pos = 0; pos < length; i++, pos += bs) {
        const start = this.blockTableView[row + i] * bs;
        out.set(this.tokenSlots.subarray(start, start + Math.min(bs, length - pos)), pos);
      }
      return out;
    } finally {
      this.exit();
    }
  }

  /**
   * A consistent copy of every block's state (BlockState: 0 free, 1 used, 2 cached), reference count
   * and one owning sequence id (-1 when no sequence references it), taken under the lock.
   */
  blockSnapshot(): { state: Uint8Array; refCount: Int32Array; owner: Float64Array } {
    this.enter();
    try {
      const owner = new Float64Array(this.config.numBlocks).fill(-1);
      for (let slot = 0; slot < this.config.maxSequences; slot++) {
        if (this.views.seqLive[slot] !== 1) continue;
        const id = this.slots.idOf(slot);
        const row = slot * this.rowStride;
        for (let i = 0, n = this.seqNumBlocks[slot]; i < n; i++) owner[this.blockTableView[row + i]] = id;
      }
      return { state: this.views.state.slice(), refCount: this.refCount.slice(), owner };
    } finally {
      this.exit();
    }
  }

  has(id: number): boolean {
    this.enter();
    try {
      return this.slots.isLive(id);
    } finally {
      this.exit();
    }
  }

  sequenceIds(): number[] {
    this.enter();
    try {
      const ids: number[] = [];
      for (let slot = 0; slot < this.config.maxSequences; slot++) {
        if (this.views.seqLive[slot] === 1) ids.push(this.slots.idOf(slot));
      }
      return ids;
    } finally {
      this.exit();
    }
  }

  stats(): BlockTableStats {
    this.enter();
    try {
      const ctl = this.views.control;
      const k = this.counters;
      const free = ctl[Ctrl.FREE_COUNT];
      const cached = ctl[Ctrl.CACHED_COUNT];
      return {
        blocksTotal: this.config.numBlocks,
        blocksFree: free,
        blocksUsed: this.config.numBlocks - free - cached,
        blocksCached: cached,
        sequences: ctl[Ctrl.SEQUENCE_COUNT],
        maxSequences: this.config.maxSequences,
        cowCopies: k[Counter.COW_COPIES],
        allocations: k[Counter.BLOCK_ALLOCATIONS],
        releases: k[Counter.BLOCK_RELEASES],
        evictions: k[Counter.EVICTIONS],
        cachedRevivals: k[Counter.CACHED_REVIVALS],
        sequencesCreated: k[Counter.SEQUENCES_CREATED],
        forks: k[Counter.FORKS],
        sequencesFreed: k[Counter.SEQUENCES_FREED],
        readsOpen: this.drops.readsOpen,
        blocksDeferred: this.drops.count,
      };
    } finally {
      this.exit();
    }
  }

  /** Lock statistics, read without taking the lock (usable while it is stuck). */
  lockStats(): LockStats {
    return this.lock.stats();
  }

  /** Throws InvariantError describing the first inconsistency in the shared state. */
  checkInvariants(): void {
    this.enter();
    try {
      checkTableInvariants(this.views, this.config);
    } finally {
      this.exit();
    }
  }

  // ---- critical sections -----------------------------------------------------------------------

  /**
   * Runs `body` (synchronous) holding the table lock; table calls inside it do not relock, so several
   * operations — e.g. a prefix-cache lookup plus fork — happen atomically with respect to other threads.
   */
  batch<T>(body: () => T): T {
    if (this.inBatch || this.inOperation) throw new ReentrantLockError(this.lock.agentId);
    this.acquire();
    this.inBatch = true;
    try {
      return body();
    } finally {
      this.inBatch = false;
      this.release();
    }
  }

  /**
   * batch() that waits for the lock without blocking the thread (for a browser main thread). `body`
   * runs in the same job that acquires the lock, so no other task of this agent interleaves with it.
   */
  async batchAsync<T>(body: () => T): Promise<T> {
    if (this.inBatch || this.inOperation) throw new ReentrantLockError(this.lock.agentId);
    if (!this.shared) return this.batch(body); // nothing to wait for
    return this.lock.withLockAsync(() => {
      this.inBatch = true;
      try {
        return body();
      } finally {
        this.inBatch = false;
      }
    });
  }

  /**
   * Runs `body` in the table's critical section: directly when this agent is already inside batch(),
   * otherwise as a batch(). Lets a composite operation be called both on its own and inside a batch.
   */
  atomic<T>(body: () => T): T {
    if (this.inOperation) throw new ReentrantLockError(this.lock.agentId);
    return this.inBatch ? body() : this.batch(body);
  }

  private enter(): void {
    if (this.inOperation) throw new ReentrantLockError(this.lock.agentId);
    if (!this.inBatch) this.acquire();
    this.inOperation = true;
  }

  private exit(): void {
    this.inOperation = false;
    if (!this.inBatch) this.release();
    if (this.pool.hasHooks) this.rethrowHookError();
  }

  /** Opens a critical section: the atomic lock once shared, otherwise only counted (see the header). */
  private acquire(): void {
    if (this.shared) this.lock.lock();
    else this.lock.countUnsharedAcquisition();
  }

  private release(): void {
    if (this.shared) this.lock.unlock();
  }

  private rethrowHookError(): void {
    const failure = this.pool.takeHookError();
    if (failure !== undefined) throw failure.error;
  }

  // ---- helpers (lock held) ---------------------------------------------------------------------

  private appendLocked(id: number, tokens: ArrayLike<number>, k: number): AppendResult {
    const slot = this.slots.resolve(id);
    const bs = this.blockSize;
    const length = this.seqLength[slot];
    const blocks = this.seqNumBlocks[slot];
    if (k === 0) return { firstPosition: length, newBlocks: NO_BLOCKS, copies: NO_COPIES };
    const newLength = length + k;
    if (newLength > this.maxSequenceLength) throw new SequenceTooLongError(newLength, this.maxSequenceLength);
    const row = slot * this.rowStride;
    const room = blocks * bs - length; // free slots in the last block
    const added = k > room ? Math.ceil((k - room) / bs) : 0;
    let tail = room > 0 ? this.blockTableView[row + blocks - 1] : -1;
    const copyTail = tail >= 0 && this.sharedBySequences(tail, slot);
    this.pool.ensureFree(copyTail ? added + 1 : added);

    let consumed = 0;
    let copies = NO_COPIES;
    if (tail >= 0) {
      const partial = bs - room;
      if (copyTail) {
        const dst = this.copyOnWrite(row + blocks - 1, tail, partial);
        copies = [{ src: tail, dst }];
        tail = dst;
      }
      consumed = k < room ? k : room;
      this.writeTokens(tail, partial, tokens, 0, consumed);
    }
    let newBlocks = NO_BLOCKS;
    if (added > 0) {
      const grown = new Array<number>(added);
      for (let i = 0; i < added; i++) {
        const b = this.pool.allocate();
        this.blockTableView[row + blocks + i] = b;
        const left = k - consumed;
        const count = left < bs ? left : bs;
        this.writeTokens(b, 0, tokens, consumed, count);
        consumed += count;
        grown[i] = b;
      }
      newBlocks = grown;
    }
    this.seqLength[slot] = newLength;
    this.seqNumBlocks[slot] = blocks + added;
    return { firstPosition: length, newBlocks, copies };
  }

  /**
   * Whether rewriting positions of block `b` in the row of `slot` needs a private copy first: other
   * references, frozen, or an open GPU read of that row.
   */
  private isShared(b: number, slot: number): boolean {
    return this.refCount[b] > 1 || this.frozen[b] === 1 || this.drops.reads(slot);
  }

  /**
   * Whether adding positions to block `b` needs a private copy first: another sequence references it,
   * or it is frozen. Retains and deferred references do not count — their readers never see positions
   * added after them.
   */
  private sharedBySequences(b: number, _slot: number): boolean {
    return this.refCount[b] - this.views.retainCount[b] - this.views.deferredRefs[b] > 1 || this.frozen[b] === 1;
  }

  /** Replaces shared block `src` at table index `entry` by a private copy of its first `count` tokens. */
  /** (The row of `entry` is sequence slot entry / rowStride: its reads decide whether src's reference waits.) */
  private copyOnWrite(entry: number, src: number, count: number): number {
    const dst = this.pool.allocate();
    const bs = this.blockSize;
    this.tokenSlots.copyWithin(dst * bs, src * bs, src * bs + count);
    this.filled[dst] = count;
    this.blockTableView[entry] = dst;
    this.drops.drop(src, Math.floor(entry / this.rowStride)); // a frozen src whose last reference this was stays CACHED
    this.counters[Counter.COW_COPIES] += 1;
    this.counters[Counter.ROW_REWRITES] += 1;
    return dst;
  }

  /** Writes `count` tokens from `source[from…]` into block `b` at `offset`, and sets its fill level. */
  private writeTokens(b: number, offset: number, source: ArrayLike<number>, from: number, count: number): void {
    const base = b * this.blockSize + offset;
    // One copy loop per source kind keeps each loop's element access monomorphic (fast).
    if (source instanceof Uint32Array) copyFromUint32(this.tokenSlots, base, source, from, count);
    else if (Array.isArray(source)) copyFromArray(this.tokenSlots, base, source, from, count);
    else copyFromArrayLike(this.tokenSlots, base, source, from, count);
    this.filled[b] = offset + count;
  }

  /** Checks that `ids` is an array-like of in-range block ids; returns its length. */
  private checkBlockIds(ids: ArrayLike<number>): number {
    if (typeof ids !== 'object' || ids === null || !Number.isSafeInteger(ids.length) || ids.length < 0) {
      throw new InvalidArgumentError('Block ids must be an array-like of integers.');
    }
    const n = this.config.numBlocks;
    if (ids instanceof Int32Array) {
      // Integers by construction: only the range needs checking.
      for (let i = 0; i < ids.length; i++) {
        const b = ids[i]!;
        if (b < 0 || b >= n) throw new InvalidBlockError(b, `is not a block id (integers 0..${n - 1})`);
      }
      return ids.length;
    }
    for (let i = 0; i < ids.length; i++) {
      const b = ids[i];
      if (typeof b !== 'number' || !Number.isInteger(b) || b < 0 || b >= n) {
        throw new InvalidBlockError(b, `is not a block id (integers 0..${n - 1})`);
      }
    }
    return ids.length;
  }
}

function copyFromUint32(dst: Uint32Array, at: number, src: Uint32Array, from: number, count: number): void {
  // The whole source (a block's worth of tokens, typically) in one builtin copy: once any ArrayBuffer of
  // the process has been detached (every WebGPU readback's unmap does so), V8 checks for detachment on
  // each element access, and set() pays that once.
  if (from === 0 && count === src.length) {
    dst.set(src, at);
    return;
  }
  let j = 0;
  for (; j + 4 <= count; j += 4) {
    const t0 = src[from + j];
    const t1 = src[from + j + 1];
    const t2 = src[from + j + 2];
    const t3 = src[from + j + 3];
    dst[at + j] = t0;
    dst[at + j + 1] = t1;
    dst[at + j + 2] = t2;
    dst[at + j + 3] = t3;
  }
  for (; j < count; j++) dst[at + j] = src[from + j];
}

function copyFromArray(dst: Uint32Array, at: number, src: readonly number[], from: number, count: number): void {
  for (let j = 0; j < count; j++) dst[at + j] = src[from + j];
}

function copyFromArrayLike(dst: Uint32Array, at: number, src: ArrayLike<number>, from: number, count: number): void {
  for (let j = 0; j < count; j++) dst[at + j] = src[from + j];
}
