// Extension points for a prefix cache built on the block table. Both run inside the table's critical
// section, on the agent that made the call, and must not call back into the table (that throws
// ReentrantLockError). If onRelease throws, the block is freed instead of cached, the operation
// completes, and the error is rethrown once the lock is released. If evictOne throws, the operation
// fails before allocating; blocks evicted until then stay on the free list.
// Hooks are per agent (functions cannot live in shared memory): install the same policy on every agent
// that attaches the table, or only operate the cache from one agent.
// A cache reuses a CACHED block by retainBlocks([block]) (it becomes USED again, with one retain that
// the cache later drops with releaseBlocks); it must not offer a block to evictOne while it is in use.

/** Picks a CACHED block to reclaim when the free list cannot cover an allocation. */
export interface Evictor {
  /**
   * Forget one CACHED block (drop it from the cache index) and return its id, or -1 if none.
   * The table then moves it to the free list. Called only while cached blocks exist.
   */
  evictOne(): number;
}

/**
 * Called when a block's reference count drops to 0. Return true to keep the block and its contents as
 * CACHED (off the free list, reclaimable through the Evictor), false to put it on the free list.
 */
export type ReleaseHook = (blockId: number) => boolean;
