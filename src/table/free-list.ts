// Intrusive doubly linked list of free blocks, stored in two Int32 arrays indexed by block id, with a
// sentinel node at index `sentinel` (= numBlocks): next[sentinel] is the head, prev[sentinel] the tail,
// and an empty list is the sentinel linked to itself. Invariants: a block is on the list iff its links
// are ≥ 0 (removed blocks get next = prev = -1); prev[next[x]] === x for every x on the list;
// the count word equals the number of blocks on the list. push/pop/remove are O(1) and allocate
// nothing. Callers hold the table lock; this class does no locking and no validation of its own.

export class BlockFreeList {
  readonly next: Int32Array;
  readonly prev: Int32Array;
  readonly sentinel: number;
  /** Element 0 holds the number of blocks on the list. */
  private readonly count: Int32Array;

  /** `next`/`prev` have `sentinel + 1` elements; `count[0]` is the list length. */
  constructor(next: Int32Array, prev: Int32Array, sentinel: number, count: Int32Array) {
    this.next = next;
    this.prev = prev;
    this.sentinel = sentinel;
    this.count = count;
  }

  get length(): number {
    return this.count[0];
  }

  /** Makes the list empty (sentinel linked to itself). Links of former members are left as they were. */
  clear(): void {
    const s = this.sentinel;
    this.next[s] = s;
    this.prev[s] = s;
    this.count[0] = 0;
  }

  /** Appends block `b` (not on the list) at the tail. */
  pushTail(b: number): void {
    const next = this.next;
    const prev = this.prev;
    const s = this.sentinel;
    const tail = prev[s];
    next[tail] = b;
    prev[b] = tail;
    next[b] = s;
    prev[s] = b;
    this.count[0]++;
  }

  /** Inserts block `b` (not on the list) at the head. */
  pushHead(b: number): void {
    const next = this.next;
    const prev = this.prev;
    const s = this.sentinel;
    const head = next[s];
    prev[head] = b;
    next[b] = head;
    prev[b] = s;
    next[s] = b;
    this.count[0]++;
  }

  /** Removes and returns the head block, or -1 when the list is empty. */
  popHead(): number {
    const b = this.next[this.sentinel];
    if (b === this.sentinel) return -1;
    this.remove(b);
    return b;
  }

  /** Unlinks block `b`, which must be on the list. */
  remove(b: number): void {
    const next = this.next;
    const prev = this.prev;
    const before = prev[b];
    const after = next[b];
    next[before] = after;
    prev[after] = before;
    next[b] = -1;
    prev[b] = -1;
    this.count[0]--;
  }

  /** Whether block `b` is linked (O(1)). */
  contains(b: number): boolean {
    return this.next[b] >= 0;
  }
}
