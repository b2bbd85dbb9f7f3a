// GPU reads through block-table rows, and the block references rows drop while such reads are open.
// A read (BlockTable.beginRead) stands for recorded GPU work that reads the blocks its batch's rows
// held when it began; it costs O(1) however many blocks it reads. Invariants (all under the table lock,
// which callers hold; this class takes no lock):
//   - reads are numbered 1, 2, … (Counter.READ_EPOCH holds the last begun); READS_OPEN counts those not
//     ended, and only the agent that began a read ends it;
//   - while any read is open, a reference a row drops (free, copy-on-write, adoptBlock) is deferred:
//     it stays in refCount, counted in deferredRefs[b], and deferredAt[b] records the newest read begun
//     before the drop. So a block some open read may still reach keeps a reference and is neither
//     reused nor cached, whichever agent dropped it;
//   - a deferred reference goes (the block may then be freed or cached) once every read up to
//     deferredAt[b] has ended: end(safe) is told the newest epoch below which all reads have ended;
//     when no read is open, every deferred reference goes;
//   - deferredList[0 .. DEFERRED_COUNT) lists each block with deferredRefs > 0 exactly once.
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
  }

  /** Reads begun and not ended. */
  get readsOpen(): number {
    return this.control[Ctrl.READS_OPEN]!;
  }

  /** Blocks holding deferred references. */
  get count(): number {
    return this.control[Ctrl.DEFERRED_COUNT]!;
  }

  /** Opens a read; returns its epoch. */
  begin(): number {
    const epoch = this.counters[Counter.READ_EPOCH]! + 1;
    this.counters[Counter.READ_EPOCH] = epoch;
    this.control[Ctrl.READS_OPEN]!++;
    return epoch;
  }

  /**
   * Ends one read. `safeEpoch`: every read numbered up to it has ended (this one included, or it is
   * newer than every read still open). Drops the deferred references that waited only for those;
   * every one of them when no read stays open.
   */
  end(safeEpoch: number): void {
    if (this.control[Ctrl.READS_OPEN]! <= 0) throw new InvariantError('endRead() without an open read (each beginRead() is ended once)');
    const open = --this.control[Ctrl.READS_OPEN]!;
    const count = this.control[Ctrl.DEFERRED_COUNT]!;
    if (count === 0) return;
    const list = this.list;
    let kept = 0;
    for (let i = 0; i < count; i++) {
      const b = list[i]!;
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

  /**
   * A row drops its reference to `b`: deferred while a read is open (returns false), otherwise dropped
   * now (returns true when it was the block's last reference, as BlockPool.dropRef).
   */
  drop(b: number): boolean {
    if (this.control[Ctrl.READS_OPEN]! === 0) return this.pool.dropRef(b);
    if (this.refCount[b]! < 1) throw new InvariantError(`block ${b} dropped with refCount ${this.refCount[b]}`);
    if (this.deferredRefs[b]!++ === 0) this.list[this.control[Ctrl.DEFERRED_COUNT]!++] = b;
    this.deferredAt[b] = this.counters[Counter.READ_EPOCH]!;
    return false;
  }
}
