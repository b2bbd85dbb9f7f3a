// The prefix index: a trie of registered (frozen, full) blocks plus the eviction policy, all in shared
// memory and changed only inside the block table's critical section — its methods run either from the
// table's hooks or from PrefixCache operations wrapped in table.atomic(), never with a lock of their own.
//
// Reference accounting. A registered block is ACTIVE when it is referenced (table state USED: a sequence
// or a retain holds it) or when one of its registered children is active; activeKids[b] counts active
// children. A registered block that is not active heads a subtree nobody references: it is EVICTABLE,
// and repeated evictions of leaves reclaim all of it (a subtree's deepest block is a leaf). So
//   EVICTABLE = registered blocks that are not active        (what eviction can supply, cascades included)
//   heap      = evictable blocks with no registered children (what evictOne may take now), by last use.
// Transitions come from the table's hooks: onRelease (refCount → 0) and onRevive (CACHED → USED) flip a
// block's own reference and propagate up the parent chain until an ancestor's activity is unchanged, so
// a transition costs O(1) amortized along a chain (O(depth) at worst, depth ≤ maxBlocksPerSequence).
// evictOne pops the least recently used evictable leaf in O(log n); its parent becomes a leaf and joins
// the heap when it is evictable too. Referenced blocks are active, so they are never in the heap.
import type { Evictor } from '../table/hooks';
import { BlockState } from '../table/layout';
import type { BlockHash } from './block-hash';
import { BlockTrie } from './block-trie';
import type { PrefixIndexConfig } from './config';
import { IndexCounter, IndexCtrl, NO_NAMESPACE, NOT_REGISTERED, REGISTRATION_CLOSED, resetIndexViews, type IndexViews } from './layout';
import { LruHeap } from './lru-heap';
import { Namespaces } from './namespaces';
import { SlotStates } from './slot-states';

/** The two per-block arrays of the block table the index reads (never writes). */
export interface TableBlockViews {
  readonly state: Uint8Array;
  readonly tokens: Uint32Array;
}

/** The key of a namespace's root: parentKey of the blocks registered at position 0. */
export const rootKey = (ns: number): number => -1 - ns;

export class PrefixIndex implements Evictor {
  readonly config: PrefixIndexConfig;
  readonly views: IndexViews;
  readonly trie: BlockTrie;
  readonly heap: LruHeap;
  readonly namespaces: Namespaces;
  readonly slots: SlotStates;
  private readonly tableState: Uint8Array;
  private readonly blockSize: number;
  private readonly control: Int32Array;
  private readonly counters: Float64Array;

  constructor(views: IndexViews, config: PrefixIndexConfig, table: TableBlockViews, hash: BlockHash) {
    this.config = config;
    this.views = views;
    this.blockSize = config.blockSize;
    this.tableState = table.state;
    this.control = views.control;
    this.counters = views.counters;
    this.trie = new BlockTrie(views, table.tokens, config.blockSize, hash);
    this.heap = new LruHeap(views);
    this.namespaces = new Namespaces(views, config);
    this.slots = new SlotStates(views);
  }

  // ---- table hooks (called under the lock by the table; must not call the table) -----------------

  /** ReleaseHook: a registered block stays cached (it may become evictable); others are freed. */
  readonly onRelease = (b: number): boolean => {
    if (this.views.parentKey[b] === NOT_REGISTERED) return false;
    this.touch(b);
    if (this.views.activeKids[b] === 0) this.becameInactive(b);
    return true;
  };

  /** ReviveHook: a registered block is referenced again. */
  readonly onRevive = (b: number): void => {
    if (this.views.parentKey[b] === NOT_REGISTERED) return;
    if (this.views.activeKids[b] === 0) this.becameActive(b);
    this.touch(b);
  };

  /** Evictor: unregisters the least recently used evictable leaf and returns it (the table frees it). */
  evictOne(): number {
    const b = this.heap.pop();
    if (b < 0) return -1;
    const parent = this.trie.remove(b);
    this.control[IndexCtrl.EVICTABLE]--;
    this.counters[IndexCounter.EVICTIONS] += 1;
    if (parent >= 0) {
      if (this.views.childCount[parent] === 0 && !this.isActive(parent)) this.heap.push(parent);
    } else {
      this.namespaces.release(-1 - parent);
    }
    return b;
  }

  evictable(): number {
    return this.control[IndexCtrl.EVICTABLE];
  }

  evictableAmong(blocks: ArrayLike<number>): number {
    let n = 0;
    for (let i = 0; i < blocks.length; i++) {
      const b = blocks[i];
      if (this.views.parentKey[b] !== NOT_REGISTERED && !this.isActive(b)) n++;
    }
    return n;
  }

  // ---- lookups and registration (callers hold the lock) --------------------------------------------

  /**
   * Longest chain of registered blocks from namespace `ns`'s root matching tokens[0 .. maxBlocks·bs),
   * written to `out`; returns its length. Reads only.
   */
  match(ns: number, tokens: ArrayLike<number>, maxBlocks: number, out: Int32Array): number {
    const trie = this.trie;
    const bs = this.blockSize;
    if (maxBlocks === 0) return 0;
    const root = rootKey(ns);
    let parent = trie.find(trie.hashOf(root, tokens, 0), root, tokens, 0);
    if (parent < 0) return 0;
    out[0] = parent;
    let i = 1;
    while (i < maxBlocks) {
      // The chain a prompt shares with one earlier prompt follows each block's hint; the hash is asked
      // only where a hint misses (out[i - 1] is the current parent either way).
      i = trie.followHints(parent, tokens, i, maxBlocks, out);
      if (i === maxBlocks) break;
      parent = out[i - 1]!;
      const b = trie.find(trie.hashOf(parent, tokens, i * bs), parent, tokens, i * bs);
      if (b < 0) break;
      out[i++] = b;
      parent = b;
    }
    return i;
  }

  /** Registers block `b` (frozen by the caller, referenced) under `parentKey`; `h` is its edge hash. */
  register(b: number, parentKey: number, h: number): void {
    this.trie.insert(b, parentKey, h);
    if (parentKey >= 0) {
      const v = this.views;
      if (v.activeKids[parentKey]++ === 0 && this.tableState[parentKey] !== BlockState.USED) this.becameActive(parentKey);
    } else {
      this.namespaces.addRef(-1 - parentKey);
    }
    this.touch(b);
    this.counters[IndexCounter.REGISTRATIONS] += 1;
  }

  /**
   * Marks block `b` used now (it must not be in the heap). Blocks are touched when they are registered,
   * referenced again after being cached, and released: a block's time is when it was last let go, which
   * is what LRU eviction compares; blocks in use are never in the heap, so their time needs no update.
   */
  touch(b: number): void {
    this.views.lastUse[b] = ++this.counters[IndexCounter.CLOCK];
  }

  isRegistered(b: number): boolean {
    return this.views.parentKey[b] !== NOT_REGISTERED;
  }

  /** Referenced, or an ancestor of a referenced registered block. */
  isActive(b: number): boolean {
    return this.tableState[b] === BlockState.USED || this.views.activeKids[b] > 0;
  }

  /**
   * Forgets every registration (the caller unfreezes the table's blocks in the same critical section).
   * Live sequences keep their blocks but stop registering; namespaces are kept only while sequences use them.
   */
  clear(maxSequences: number): void {
    const v = this.views;
    resetIndexViews(v, this.config);
    v.nsRefs.fill(0);
    for (let slot = 0; slot < maxSequences; slot++) {
      if (v.slotOwner[slot] < 0) continue;
      v.slotRegistered[slot] = REGISTRATION_CLOSED;
      const ns = v.slotNamespace[slot];
      if (ns !== NO_NAMESPACE) v.nsRefs[ns]++;
    }
    for (let e = 1; e < this.config.maxNamespaces; e++) {
      if (v.nsLength[e] >= 0) this.namespaces.releaseIfUnused(e);
    }
    this.counters[IndexCounter.CLEARS] += 1;
  }

  // ---- activity propagation ------------------------------------------------------------------------

  /** `b` (registered) lost its last reference in its subtree: it and maybe its ancestors become evictable. */
  private becameInactive(b: number): void {
    const v = this.views;
    for (;;) {
      this.control[IndexCtrl.EVICTABLE]++;
      if (v.childCount[b] === 0) this.heap.push(b);
      const p = v.parentKey[b];
      if (p < 0) return;
      if (--v.activeKids[p] > 0 || this.tableState[p] === BlockState.USED) return;
      b = p;
    }
  }

  /** `b` (registered, evictable until now) is referenced in its subtree again: so are its ancestors. */
  private becameActive(b: number): void {
    const v = this.views;
    for (;;) {
      this.control[IndexCtrl.EVICTABLE]--;
      if (v.heapPos[b] >= 0) this.heap.remove(b);
      const p = v.parentKey[b];
      if (p < 0) return;
      if (v.activeKids[p]++ > 0 || this.tableState[p] === BlockState.USED) return;
      b = p;
    }
  }
}
