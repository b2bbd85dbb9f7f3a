// The trie of registered blocks, stored as a hash table of edges: node = block id, key = (parentKey,
// the block's token ids) where parentKey is the parent block or -1 - namespace for a namespace root.
// Invariants (under the table lock): a registered block has parentKey ≠ NOT_REGISTERED, nodeHash =
// hash(parentKey, its tokens), and sits in exactly one bucket chain (buckets[nodeHash & mask]), doubly
// linked; no two registered blocks have equal keys; find() returns a block only if its parentKey and
// every token are equal to the query (the hash is never trusted); the tokens of a block are read from
// the block table's token storage, which is immutable while the block is registered (frozen).
// childHint[p] is -1 or a registered child of p (the latest registered): following a chain,
// followHints tries it first and needs no hash when it matches — it is verified exactly like any
// candidate; the caller asks find() where a hint misses.
import type { BlockHash } from './block-hash';
import { IndexCtrl, NOT_REGISTERED, type IndexViews } from './layout';

export class BlockTrie {
  readonly hash: BlockHash;
  private readonly v: IndexViews;
  private readonly tokens: Uint32Array;
  private readonly blockSize: number;
  private readonly mask: number;

  /** `tableTokens` is the block table's token storage (numBlocks × blockSize, block-major). */
  constructor(v: IndexViews, tableTokens: Uint32Array, blockSize: number, hash: BlockHash) {
    this.v = v;
    this.tokens = tableTokens;
    this.blockSize = blockSize;
    this.mask = v.buckets.length - 1;
    this.hash = hash;
  }

  isRegistered(b: number): boolean {
    return this.v.parentKey[b] !== NOT_REGISTERED;
  }

  /** Hash of the edge (parentKey, query[offset .. offset + blockSize)). */
  hashOf(parentKey: number, query: ArrayLike<number>, offset: number): number {
    return this.hash(parentKey, query, offset, this.blockSize) | 0;
  }

  /** The registered block with key (parentKey, query[offset ..]), or -1. */
  find(h: number, parentKey: number, query: ArrayLike<number>, offset: number): number {
    const v = this.v;
    for (let c = v.buckets[h & this.mask]; c >= 0; c = v.bucketNext[c]) {
      if (v.nodeHash[c] === h && v.parentKey[c] === parentKey && this.holds(c, query, offset)) return c;
    }
    return -1;
  }

  /**
   * Follows the hints from registered block `parent` while the hinted child holds the query's next
   * block (verified token by token, as find() does): query block i (of query[i · blockSize ..]) for
   * i = from, from + 1, … < maxBlocks, each match written to out[i]. Returns the first i not matched this
   * way (from when the first hint misses). One loop over the shared arrays, no call per block: a prompt
   * reusing a long prefix walks it here.
   */
  followHints(parent: number, query: ArrayLike<number>, from: number, maxBlocks: number, out: Int32Array): number {
    const hints = this.v.childHint;
    const keys = this.v.parentKey;
    const store = this.tokens;
    const bs = this.blockSize;
    let i = from;
    if (query instanceof Uint32Array) {
      for (; i < maxBlocks; i++) {
        const hint = hints[parent]!;
        if (hint < 0 || keys[hint] !== parent || !sameTokens(store, hint * bs, query, i * bs, bs)) break;
        out[i] = hint;
        parent = hint;
      }
    } else {
      for (; i < maxBlocks; i++) {
        const hint = hints[parent]!;
        if (hint < 0 || keys[hint] !== parent || !sameTokensArrayLike(store, hint * bs, query, i * bs, bs)) break;
        out[i] = hint;
        parent = hint;
      }
    }
    return i;
  }

  /** Registers block `b` (not registered, no equal key registered) under `parentKey` with hash `h`. */
  insert(b: number, parentKey: number, h: number): void {
    const v = this.v;
    v.parentKey[b] = parentKey;
    v.nodeHash[b] = h;
    v.childCount[b] = 0;
    v.activeKids[b] = 0;
    v.childHint[b] = -1;
    const bucket = h & this.mask;
    const head = v.buckets[bucket];
    v.bucketPrev[b] = -1;
    v.bucketNext[b] = head;
    if (head >= 0) v.bucketPrev[head] = b;
    v.buckets[bucket] = b;
    if (parentKey >= 0) {
      v.childCount[parentKey]++;
      v.childHint[parentKey] = b;
    }
    v.control[IndexCtrl.REGISTERED]++;
  }

  /** Unregisters block `b` (a leaf: no registered children); returns its parentKey. */
  remove(b: number): number {
    const v = this.v;
    const next = v.bucketNext[b];
    const prev = v.bucketPrev[b];
    if (prev >= 0) v.bucketNext[prev] = next;
    else v.buckets[v.nodeHash[b] & this.mask] = next;
    if (next >= 0) v.bucketPrev[next] = prev;
    v.bucketNext[b] = -1;
    v.bucketPrev[b] = -1;
    const parentKey = v.parentKey[b];
    v.parentKey[b] = NOT_REGISTERED;
    if (parentKey >= 0) {
      v.childCount[parentKey]--;
      if (v.childHint[parentKey] === b) v.childHint[parentKey] = -1;
    }
    v.childHint[b] = -1;
    v.control[IndexCtrl.REGISTERED]--;
    return parentKey;
  }

  /** Whether registered block `c` holds exactly query[offset .. offset + blockSize). */
  private holds(c: number, query: ArrayLike<number>, offset: number): boolean {
    return query instanceof Uint32Array
      ? sameTokens(this.tokens, c * this.blockSize, query, offset, this.blockSize)
      : sameTokensArrayLike(this.tokens, c * this.blockSize, query, offset, this.blockSize);
  }
}

/** a[i .. i + n) equals b[j .. j + n); unrolled by four (the hot loop of every lookup). */
function sameTokens(a: Uint32Array, i: number, b: Uint32Array, j: number, n: number): boolean {
  let k = 0;
  for (; k + 4 <= n; k += 4) {
    if (a[i + k] !== b[j + k] || a[i + k + 1] !== b[j + k + 1] || a[i + k + 2] !== b[j + k + 2] || a[i + k + 3] !== b[j + k + 3]) {
      return false;
    }
  }
  for (; k < n; k++) if (a[i + k] !== b[j + k]) return false;
  return true;
}

function sameTokensArrayLike(a: Uint32Array, i: number, b: ArrayLike<number>, j: number, n: number): boolean {
  for (let k = 0; k < n; k++) if (a[i + k] !== b[j + k]) return false;
  return true;
}
