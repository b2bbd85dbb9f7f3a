// GPU reads through block-table rows, and the block references those rows drop while the reads are
// open. A read (BlockTable.beginRead) stands for recorded GPU work that reads, through the rows of the
// slots it names, the blocks those rows held when it began; it costs O(slots), however many blocks it
// reads. Invariants (all under the table lock, which callers hold; this class takes no lock):
//   - reads are numbered 1, 2, … (Counter.READ_EPOCH holds the last begun); READS_OPEN counts those not
//     ended, slotReads[s] the open reads naming slot s; only the agent that began a read ends it;
//   - while a slot is read, a reference its row drops (free, copy-on-write, adoptBlock) is deferred: it
//     stays in refCount, counted in deferredRefs[b], and deferredAt[b] records the newest read begun
//     before the drop. So a block an open read may still reach keeps a reference and is neither reused
//     nor cached, whichever agent dropped it; drops from rows no read names happen at once;
//   - a deferred reference goes (the block may then be freed or cached) once every read up to
//     deferredAt[b] has ended: end(safe) is told the newest epoch below which all reads have ended;
//     when no read is open, every deferred reference goes;
//   - deferredList[0 .. DEFERRED_COUNT) lists each block with deferredRefs > 0 exactly once.
import { InvalidArgumentError } from '../errors';
import { InvariantError } from './errors';
import type { BlockPool } from './block-pool';
import { Counter, Ctrl, type TableViews } from './layout';

export class DeferredDrops {
  private readonly control: Int32Array;
  private readonly counters: Float64Array;
  private readonly refCount: Int32Array;
  private readonly deferredRefs: Int32Array;
  private readonly deferredAt: Float64Array;
  private readonly list: Int32Array;
  private readonly slotReads: Int32Array;

  constructor(
    views: TableViews,
    private readonly pool: BlockPool,
  ) {
    this.control = views.control;
    this.counters = views.counters;
    this.refCount = views.refCount;
    this.deferredRefs = views.deferredRefs;
    this.deferredAt = views.deferredAt;
    this.list = views.deferredList;
    this.slotReads = views.slotReads;
  }

  /** Reads begun and not ended. */
  get readsOpen(): number {
    return this.control[Ctrl.READS_OPEN]!;
  }

  /** Blocks holding deferred references. */
  get count(): number {
    return this.control[Ctrl.DEFERRED_COUNT]!;
  }

  /** Whether an open read names `slot` (its row's blocks may be read). */
  reads(slot: number): boolean {
    return this.slotReads[slot]! > 0;
  }

  /** Opens a read of the rows of `slots`; returns its epoch. */
  begin(slots: ArrayLike<number>): number {
    this.checkSlots(slots);
    for (let i = 0; i < slots.length; i++) this.slotReads[slots[i]!]!++;
    const epoch = this.counters[Counter.READ_EPOCH]! + 1;
    this.counters[Counter.READ_EPOCH] = epoch;
    this.control[Ctrl.READS_OPEN]!++;
    return epoch;
  }

  /**
   * Ends one read, of the same `slots` it began with. `safeEpoch`: every read numbered up to it has ended
   * (this one included, or it is newer than every read still open). Drops the deferred references that
   * waited only for those; every one of them when no read stays open.
   */
  end(safeEpoch: number, slots: ArrayLike<number>): void {
    if (this.control[Ctrl.READS_OPEN]! <= 0) throw new InvariantError('endRead() without an open read (each beginRead() is ended once)');
    this.checkSlots(slots);
    let i = 0;
    for (; i < slots.length && this.slotReads[slots[i]!]! > 0; i++) this.slotReads[slots[i]!]!--;
    if (i < slots.length) {
      const slot = slots[i]!;
      for (let j = 0; j < i; j++) this.slotReads[slots[j]!]!++; // a failed call changes nothing
      throw new InvariantError(`endRead() names slot ${slot}, which no open read names (end a read with the slots it began with)`);
    }
    const open = --this.control[Ctrl.READS_OPEN]!;
    const count = this.control[Ctrl.DEFERRED_COUNT]!;
    if (count === 0) return;
    const list = this.list;
    let kept = 0;
    for (let k = 0; k < count; k++) {
      const b = list[k]!;
      if (open > 0 && this.deferredAt[b]! > safeEpoch) {
        list[kept++] = b;
        continue;
      }
      const remaining = this.refCount[b]! - this.deferredRefs[b]!;
      if (remaining < 0) throw new InvariantError(`block ${b} holds ${this.deferredRefs[b]} deferred reference(s) but refCount ${this.refCount[b]}`);
      this.deferredRefs[b] = 0;
      this.refCount[b] = remaining;
      if (remaining === 0) this.pool.releaseUnreferenced(b);
    }
    this.control[Ctrl.DEFERRED_COUNT] = kept;
  }

  /** Appends to `out` (from `at`) the blocks holding references deferred since read `epoch` began; returns the new end. */
  deferredSince(epoch: number, out: Int32Array, at: number): number {
    for (let k = 0, count = this.control[Ctrl.DEFERRED_COUNT]!; k < count; k++) {
      const b = this.list[k]!;
      if (this.deferredAt[b]! >= epoch) out[at++] = b;
    }
    return at;
  }

  /**
   * The row of `slot` drops its reference to `b`: deferred while a read names the slot (returns false),
   * otherwise dropped now (returns true when it was the block's last reference, as BlockPool.dropRef).
   */
  drop(b: number, slot: number): boolean {
    if (this.slotReads[slot]! === 0) return this.pool.dropRef(b);
    if (this.refCount[b]! < 1) throw new InvariantError(`block ${b} dropped with refCount ${this.refCount[b]}`);
    if (this.deferredRefs[b]!++ === 0) this.list[this.control[Ctrl.DEFERRED_COUNT]!++] = b;
    this.deferredAt[b] = this.counters[Counter.READ_EPOCH]!;
    return false;
  }

  /** Throws InvalidArgumentError unless `slots` is an array of sequence slots. */
  checkSlots(slots: ArrayLike<number>): void {
    const n = this.slotReads.length;
    if (slots === null || typeof slots !== 'object' || typeof slots.length !== 'number') {
      throw new InvalidArgumentError('a GPU read needs the sequence slots (block-table rows) it reads, as an array');
    }
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i];
      if (!Number.isInteger(s) || s! < 0 || s! >= n) throw new InvalidArgumentError(`slots[${i}] = ${String(s)} is not a sequence slot (0 ≤ slot < ${n})`);
    }
  }
}
