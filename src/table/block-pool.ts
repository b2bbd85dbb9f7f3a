// The block allocator: reference counts, block states and the free list. Invariants (all under the
// table lock, which callers hold; this class takes no lock):
//   - refCount[b] = table references to b + retainCount[b] + deferredRefs[b] (deferred-drops.ts);
//   - FREE ⇔ on the free list ⇔ refCount 0 and not cached; USED ⇔ refCount > 0; CACHED ⇔ refCount 0,
//     contents kept, off the free list, counted in CACHED_COUNT;
//   - FREE blocks have filled = 0 and are never frozen; a frozen block whose refCount reaches 0 is
//     always kept CACHED (its registration in a prefix index would otherwise dangle).
// Allocation is two-phase: ensureFree(n) checks that n blocks can be had (evicting cached blocks into
// the free list if needed) and throws OutOfBlocksError before changing anything; allocate() then pops
// without failing. Callers count every block an operation needs (copy-on-write copies included) first.
// What eviction can supply is asked of the evictor (evictable()), since a prefix index may keep cached
// blocks that only become evictable once their descendants are evicted.
import type { BlockTableConfig } from './config';
import { InvariantError, OutOfBlocksError } from './errors';
import { BlockFreeList } from './free-list';
import type { Evictor, ReleaseHook, ReviveHook } from './hooks';
import { BlockState, Counter, Ctrl, type TableViews } from './layout';

export class BlockPool {
  readonly freeList: BlockFreeList;
  readonly numBlocks: number;
  private readonly control: Int32Array;
  private readonly counters: Float64Array;
  private readonly refCount: Int32Array;
  private readonly retainCount: Int32Array;
  private readonly state: Uint8Array;
  private readonly filled: Int32Array;
  private readonly frozen: Uint8Array;
  evictor: Evictor | undefined;
  onRelease: ReleaseHook | undefined;
  onRevive: ReviveHook | undefined;

  constructor(
    views: TableViews,
    config: BlockTableConfig,
    evictor?: Evictor,
    onRelease?: ReleaseHook,
    onRevive?: ReviveHook,
  ) {
    this.numBlocks = config.numBlocks;
    this.control = views.control;
    this.counters = views.counters;
    this.refCount = views.refCount;
    this.retainCount = views.retainCount;
    this.state = views.state;
    this.filled = views.filled;
    this.frozen = views.frozen;
    this.freeList = new BlockFreeList(
      views.next,
      views.prev,
      config.numBlocks,
      views.control.subarray(Ctrl.FREE_COUNT, Ctrl.FREE_COUNT + 1),
    );
    this.evictor = evictor;
    this.onRelease = onRelease;
    this.onRevive = onRevive;
  }

  /** Whether any hook is installed (errors they throw must be rethrown after the operation). */
  get hasHooks(): boolean {
    return this.onRelease !== undefined || this.onRevive !== undefined;
  }

  get freeCount(): number {
    return this.control[Ctrl.FREE_COUNT];
  }

  get cachedCount(): number {
    return this.control[Ctrl.CACHED_COUNT];
  }

  /** Blocks an allocation could obtain: free ones, plus evictable ones when an evictor is installed. */
  available(): number {
    return this.control[Ctrl.FREE_COUNT] + this.evictable();
  }

  /** Blocks the evictor can reclaim (0 without one). */
  evictable(): number {
    const evictor = this.evictor;
    if (evictor === undefined) return 0;
    return evictor.evictable ? evictor.evictable() : this.control[Ctrl.CACHED_COUNT];
  }

  /** How many of `blocks` (about to be referenced) the evictor could otherwise reclaim. */
  evictableAmong(blocks: ArrayLike<number>): number {
    const evictor = this.evictor;
    if (evictor === undefined) return 0;
    if (evictor.evictableAmong) return evictor.evictableAmong(blocks);
    let n = 0;
    for (let i = 0; i < blocks.length; i++) if (this.state[blocks[i]] === BlockState.CACHED) n++;
    return n;
  }

  /** Guarantees `n` blocks on the free list, or throws OutOfBlocksError having changed nothing. */
  ensureFree(n: number): void {
    if (n > this.control[Ctrl.FREE_COUNT]) this.evictUntilFree(n, this.available());
  }

  /**
   * Checks that `n` blocks can be had without evicting any of `reserved`, blocks the same operation is
   * about to reference (the evictor could otherwise count them). Throws OutOfBlocksError, changing nothing.
   */
  checkAvailableExcept(n: number, reserved: ArrayLike<number>): void {
    const free = this.control[Ctrl.FREE_COUNT];
    if (n <= free) return;
    const available = free + this.evictable() - this.evictableAmong(reserved);
    if (n > available) throw new OutOfBlocksError(n, available, this.numBlocks);
  }

  /** Pops a free block and gives it one reference. Only after ensureFree covered it. */
  allocate(): number {
    const b = this.freeList.popHead();
    if (b < 0) throw new InvariantError('allocate() found the free list empty after ensureFree()');
    this.refCount[b] = 1;
    this.state[b] = BlockState.USED;
    this.counters[Counter.BLOCK_ALLOCATIONS] += 1;
    return b;
  }

  /** Drops one reference; returns true when it was the last one (the block was released). */
  dropRef(b: number): boolean {
    const remaining = this.refCount[b] - 1;
    if (remaining > 0) {
      this.refCount[b] = remaining;
      return false;
    }
    if (remaining < 0) throw new InvariantError(`block ${b} released with refCount 0 (double free)`);
    this.refCount[b] = 0;
    this.releaseUnreferenced(b);
    return true;
  }

  /** Caches or frees a USED block whose refCount has just reached 0 (the caller set it). */
  releaseUnreferenced(b: number): void {
    this.counters[Counter.BLOCK_RELEASES] += 1;
    const frozen = this.frozen[b] === 1;
    if (frozen || (this.onRelease !== undefined && this.keepCached(b))) {
      this.state[b] = BlockState.CACHED;
      this.control[Ctrl.CACHED_COUNT]++;
      if (frozen && this.onRelease !== undefined) this.keepCached(b); // a notification for frozen blocks
      return;
    }
    this.toFreeList(b);
  }

  /** Adds a reference to a USED or CACHED block (the caller checked it is not FREE); revives a cached one. */
  reference(b: number): void {
    this.refCount[b]++;
    if (this.state[b] === BlockState.CACHED) {
      this.state[b] = BlockState.USED;
      this.control[Ctrl.CACHED_COUNT]--;
      this.counters[Counter.CACHED_REVIVALS] += 1;
      if (this.onRevive !== undefined) this.notifyRevive(b);
    }
  }

  /** Adds a retain reference to a USED or CACHED block (the caller checked it is not FREE). */
  retain(b: number): void {
    this.reference(b);
    this.retainCount[b]++;
  }

  /** Moves every frozen block out of the index: unfreezes it, and frees it if it is CACHED. */
  unfreezeAll(): number {
    let freed = 0;
    for (let b = 0; b < this.numBlocks; b++) {
      if (this.frozen[b] === 0) continue;
      this.frozen[b] = 0;
      if (this.state[b] === BlockState.CACHED) {
        this.control[Ctrl.CACHED_COUNT]--;
        this.toFreeList(b);
        freed++;
      }
    }
    return freed;
  }

  /**
   * Takes the error a release hook threw during the current operation, if any. A throwing hook does not
   * leave the table half updated: its block is freed instead of cached, the operation completes, and
   * the table rethrows the error afterwards.
   */
  takeHookError(): { error: unknown } | undefined {
    const failure = this.hookFailure;
    this.hookFailure = undefined;
    return failure;
  }

  private hookFailure: { error: unknown } | undefined;

  private toFreeList(b: number): void {
    this.state[b] = BlockState.FREE;
    this.filled[b] = 0;
    this.freeList.pushTail(b);
  }

  private notifyRevive(b: number): void {
    try {
      (this.onRevive as ReviveHook)(b);
    } catch (error) {
      this.hookFailure ??= { error };
    }
  }

  private keepCached(b: number): boolean {
    try {
      return (this.onRelease as ReleaseHook)(b) === true;
    } catch (error) {
      this.hookFailure ??= { error };
      return false;
    }
  }

  private evictUntilFree(n: number, available: number): void {
    if (n > available) throw new OutOfBlocksError(n, available, this.numBlocks);
    const evictor = this.evictor as Evictor; // available() > free count implies an evictor
    while (this.control[Ctrl.FREE_COUNT] < n) {
      const b = evictor.evictOne();
      if (!Number.isInteger(b) || b < 0 || b >= this.numBlocks || this.state[b] !== BlockState.CACHED) {
        throw new InvariantError(
          `evictor returned ${String(b)} while ${this.control[Ctrl.CACHED_COUNT]} block(s) are cached; ` +
            'it must return the id of a CACHED block',
        );
      }
      this.frozen[b] = 0;
      this.control[Ctrl.CACHED_COUNT]--;
      this.toFreeList(b);
      this.counters[Counter.EVICTIONS] += 1;
    }
  }
}
