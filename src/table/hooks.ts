// Extension points for a prefix cache built on the block table. All run inside the table's critical
// section, on the agent that made the call, and must not call back into the table (that throws
// ReentrantLockError). If onRelease or onRevive throws, the operation completes (a block the hook was
// asked about is freed instead of cached unless it is frozen) and the error is rethrown once the lock is
// released. If evictOne throws, the operation fails before allocating; blocks evicted until then stay
// on the free list.
// Hooks are per agent (functions cannot live in shared memory): install the same policy on every agent
// that attaches the table, or only operate the cache from one agent.
// A frozen block (registered by a prefix index) is always kept CACHED when its last reference goes;
// onRelease is still called for it, as a notification. A CACHED block that is referenced again
// (retainBlocks, createSequence with prefix blocks, adoptBlock) becomes USED and onRevive is called: the
// cache must stop offering it to evictOne.

/** Picks a CACHED block to reclaim when the free list cannot cover an allocation. */
export interface Evictor {
  /**
   * Forget one CACHED block (drop it from the cache index) and return its id, or -1 if none.
   * The table then moves it to the free list (and unfreezes it). Called only while evictable() > 0.
   */
  evictOne(): number;
  /**
   * How many blocks repeated evictOne() calls can reclaim, counting blocks that only become evictable
   * once others are evicted. Default: every CACHED block.
   */
  evictable?(): number;
  /**
   * How many of `blocks` evictOne() could reclaim right now (they are about to be referenced, so an
   * allocation in the same operation cannot count on them). Default: those that are CACHED.
   */
  evictableAmong?(blocks: ArrayLike<number>): number;
}

/**
 * Called when a block's reference count drops to 0. Return true to keep the block and its contents as
 * CACHED (off the free list, reclaimable through the Evictor), false to put it on the free list. The
 * result is ignored for frozen blocks, which are always kept.
 */
export type ReleaseHook = (blockId: number) => boolean;

/** Called when a CACHED block is referenced again and becomes USED. */
export type ReviveHook = (blockId: number) => void;
