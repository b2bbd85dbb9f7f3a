// Binary min-heap of block ids keyed by last-use time, in shared memory, with a position index per block
// so any member is removed in O(log n). Invariants (under the table lock, which callers hold):
// heap[0 .. size) holds distinct blocks; heapPos[heap[i]] = i for each of them and -1 for every other
// block; lastUse[heap[parent(i)]] ≤ lastUse[heap[i]]. push/pop/remove are O(log n), allocate nothing.
import { IndexCtrl, type IndexViews } from './layout';

export class LruHeap {
  private readonly heap: Int32Array;
  private readonly pos: Int32Array;
  private readonly key: Float64Array;
  private readonly control: Int32Array;

  constructor(v: IndexViews) {
    this.heap = v.heap;
    this.pos = v.heapPos;
    this.key = v.lastUse;
    this.control = v.control;
  }

  get size(): number {
    return this.control[IndexCtrl.HEAP_SIZE];
  }

  contains(b: number): boolean {
    return this.pos[b] >= 0;
  }

  /** Adds block `b` (not in the heap) with its current lastUse. */
  push(b: number): void {
    const i = this.control[IndexCtrl.HEAP_SIZE]++;
    this.heap[i] = b;
    this.pos[b] = i;
    this.siftUp(i);
  }

  /** Removes and returns the least recently used block, or -1 when empty. */
  pop(): number {
    if (this.control[IndexCtrl.HEAP_SIZE] === 0) return -1;
    const b = this.heap[0];
    this.removeAt(0);
    return b;
  }

  /** Removes block `b`, which must be in the heap. */
  remove(b: number): void {
    this.removeAt(this.pos[b]);
  }

  private removeAt(i: number): void {
    const last = --this.control[IndexCtrl.HEAP_SIZE];
    const removed = this.heap[i];
    this.pos[removed] = -1;
    if (i === last) return;
    const moved = this.heap[last];
    this.heap[i] = moved;
    this.pos[moved] = i;
    if (i > 0 && this.key[moved] < this.key[this.heap[(i - 1) >> 1]]) this.siftUp(i);
    else this.siftDown(i);
  }

  private siftUp(i: number): void {
    const heap = this.heap;
    const b = heap[i];
    const k = this.key[b];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent];
      if (this.key[p] <= k) break;
      heap[i] = p;
      this.pos[p] = i;
      i = parent;
    }
    heap[i] = b;
    this.pos[b] = i;
  }

  private siftDown(i: number): void {
    const heap = this.heap;
    const size = this.control[IndexCtrl.HEAP_SIZE];
    const b = heap[i];
    const k = this.key[b];
    for (;;) {
      let child = 2 * i + 1;
      if (child >= size) break;
      if (child + 1 < size && this.key[heap[child + 1]] < this.key[heap[child]]) child++;
      const c = heap[child];
      if (this.key[c] >= k) break;
      heap[i] = c;
      this.pos[c] = i;
      i = child;
    }
    heap[i] = b;
    this.pos[b] = i;
  }
}
