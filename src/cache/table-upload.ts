// Keeps the GPU copy of the block table in step with the shared CPU table, uploading only what changed.
// Invariants: `mirror` holds exactly what the GPU buffer holds once the staged ranges are flushed (both
// start as -1s); stageRow(slot) followed by flush() leaves the GPU row of that slot equal to the CPU row
// over the sequence's used blocks (all but the last with `deferLast`, below; flushAll() includes it);
// an unchanged row stages nothing. Each changed row stages its smallest
// changed range; flush() uploads the staged ranges in slot order, one writeBuffer per run of ranges
// whose gaps are under MERGE_GAP_ENTRIES (the gap entries are rewritten from the mirror, so with what
// the GPU already holds). A batch whose sequences cross block boundaries at once (a decode step) thus
// costs a few writes instead of one per row. Callers flush before they encode work that reads the table.
// Entries past a sequence's used blocks may be stale on the GPU: kernels never read past contextLength.
// A row staged with `deferLast` stages all but its last used entry, which the kernels take from the
// work list (AttentionEntry.lastBlock) and which stays pending: a flush that writes anything writes the
// pending entries of every row with it (flushAll() writes them alone), so a row's last block goes up
// in some later step's write, merged with the rows of the step that forced it. A decode step crossing
// block boundaries therefore writes nothing until a row's pending entry stops being its last — about
// once every blockSize steps, one merged write for the whole batch — instead of a write every step.
// The first synced[slot] entries of a row are known equal to the CPU row as of the table's row-rewrite
// count `syncedAt` (BlockTable.rowRewrites): while that count stays the same no existing entry changed
// (rows only grew at their ends), so a sync compares only the entries past synced[slot]; a new count
// forgets every synced[slot].

import { writeElements } from '../gpu/write-elements';

/**
 * Staged ranges closer than this many entries (1 KiB) go up in one write. A writeBuffer call costs about
 * as much host time as copying some tens of KiB, and each is a copy command of its own on the GPU, so
 * merging across a gap this short always pays; a longer gap would pay on the host too, but uploads
 * would stop growing with what changed (a small table would go up whole every step).
 */
export const MERGE_GAP_ENTRIES = 256;

export class TableUpload {
  readonly buffer: GPUBuffer;
  private readonly mirror: Int32Array<ArrayBuffer>;
  private readonly device: GPUDevice;
  private readonly rowStride: number;
  /** Entries uploaded since creation, merged gaps included (a measure of upload traffic). */
  uploadedEntries = 0;
  /** writeBuffer calls since creation. */
  writes = 0;
  private readonly synced: Int32Array;
  private syncedAt = -1;
  /** Staged ranges, [first, end) entry pairs, not yet uploaded. */
  private staged = new Int32Array(64);
  private stagedCount = 0;
  /** Whether the staged ranges are in increasing order (rows staged in slot order). */
  private stagedInOrder = true;
  /** The table whose rows were staged (read again for the pending entries at a flush). */
  private table: Int32Array | undefined;
  /** Rows with a pending (deferred) last entry, the first pendingCount of pendingSlots; pendingEnd[slot] = its used entries then. */
  private readonly pendingSlots: Int32Array;
  private readonly pendingEnd: Int32Array;
  private pendingCount = 0;
  /** Scratch of sortStaged: the staged ranges' starts, and each range's end indexed by its start. */
  private sortScratch = new Int32Array(64);
  private readonly rangeEnd: Int32Array;

  constructor(device: GPUDevice, maxSequences: number, rowStride: number) {
    this.device = device;
    this.rowStride = rowStride;
    this.mirror = new Int32Array(maxSequences * rowStride).fill(-1);
    this.synced = new Int32Array(maxSequences);
    this.pendingSlots = new Int32Array(maxSequences);
    this.pendingEnd = new Int32Array(maxSequences);
    this.rangeEnd = new Int32Array(this.mirror.length);
    this.buffer = device.createBuffer({
      label: 'block-table',
      size: Math.max(16, this.mirror.byteLength),
      // COPY_SRC: the GPU copy can be read back and compared with the CPU table (tests, diagnostics).
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
    device.queue.writeBuffer(this.buffer, 0, this.mirror);
  }

  /** stageRow and flush: uploads what changed of row `slot` now. */
  syncRow(table: Int32Array, slot: number, numBlocks: number, rowRewrites: number): void {
    this.stageRow(table, slot, numBlocks, rowRewrites);
    this.flush();
  }

  /**
   * Stages for the next flush() the first `numBlocks` entries of row `slot` of `table` where they
   * differ; with `deferLast`, all but the last of them, which stays pending (see the header).
   * `rowRewrites` is the table's row-rewrite count, read under the same lock as `table`.
   */
  stageRow(table: Int32Array, slot: number, numBlocks: number, rowRewrites: number, deferLast = false): void {
    this.table = table;
    if (rowRewrites !== this.syncedAt) {
      this.synced.fill(0);
      this.syncedAt = rowRewrites;
    }
    // One pending entry per row: a row whose pending entry lies further than this last one (a batch
    // reading fewer of its blocks) stages its last entry now.
    const pendingEnd = this.pendingEnd[slot]!;
    const last = slot * this.rowStride + numBlocks - 1;
    if (deferLast && numBlocks > 0 && pendingEnd <= numBlocks && table[last] !== this.mirror[last]) {
      if (pendingEnd === 0) this.pendingSlots[this.pendingCount++] = slot;
      this.pendingEnd[slot] = numBlocks;
      numBlocks--; // an earlier pending entry of the row, if any, lies before: staged below
    }
    this.stageRange(table, slot, numBlocks);
  }

  /** Stages the entries of row `slot` in [synced[slot], numBlocks) that differ from the mirror. */
  private stageRange(table: Int32Array, slot: number, numBlocks: number): void {
    const known = this.synced[slot]!;
    if (numBlocks > known) this.synced[slot] = numBlocks;
    const base = slot * this.rowStride;
    const mirror = this.mirror;
    let first = -1;
    let last = -1;
    for (let i = base + known, end = base + numBlocks; i < end; i++) {
      if (table[i] !== mirror[i]) {
        if (first < 0) first = i;
        last = i;
      }
    }
    if (first < 0) return;
    for (let i = first; i <= last; i++) mirror[i] = table[i]!;
    this.pushRange(first, last + 1);
  }

  /** Adds [first, end) (entries already copied into the mirror) to the staged ranges. */
  private pushRange(first: number, end: number): void {
    let at = this.stagedCount * 2;
    if (at === this.staged.length) {
      const grown = new Int32Array(2 * this.staged.length);
      grown.set(this.staged);
      this.staged = grown;
    }
    if (at > 0 && first < this.staged[at - 1]!) this.stagedInOrder = false;
    this.staged[at++] = first;
    this.staged[at] = end;
    this.stagedCount++;
  }

  /**
   * Uploads every staged range, and when there is any, every pending entry with them (see the header
   * for how neighbours are merged).
   */
  flush(): void {
    if (this.stagedCount === 0) return;
    this.flushAll();
  }

  /** Uploads every staged range and every pending entry: the GPU rows then match what was staged, last entries included. */
  flushAll(): void {
    this.stagePending();
    const count = this.stagedCount;
    if (count === 0) return;
    if (!this.stagedInOrder) this.sortStaged();
    const staged = this.staged;
    let runStart = staged[0]!;
    let runEnd = staged[1]!;
    for (let r = 2; r < 2 * count; r += 2) {
      if (staged[r]! - runEnd < MERGE_GAP_ENTRIES) {
        runEnd = staged[r + 1]!;
        continue;
      }
      this.write(runStart, runEnd);
      runStart = staged[r]!;
      runEnd = staged[r + 1]!;
    }
    this.write(runStart, runEnd);
    this.stagedCount = 0;
    this.stagedInOrder = true;
  }

  /**
   * Puts the staged ranges in increasing order. They never overlap, so their starts are distinct: the
   * starts are sorted as numbers (a typed array's own sort, no comparator) and each end found again
   * through `rangeEnd`, indexed by start.
   */
  private sortStaged(): void {
    const count = this.stagedCount;
    const staged = this.staged;
    if (this.sortScratch.length < count) this.sortScratch = new Int32Array(Math.max(count, 2 * this.sortScratch.length));
    const starts = this.sortScratch.subarray(0, count);
    for (let i = 0; i < count; i++) {
      const start = staged[2 * i]!;
      starts[i] = start;
      this.rangeEnd[start] = staged[2 * i + 1]!;
    }
    starts.sort();
    for (let i = 0; i < count; i++) {
      const start = starts[i]!;
      staged[2 * i] = start;
      staged[2 * i + 1] = this.rangeEnd[start]!;
    }
  }

  /** Stages the pending entry of every row that has one where it differs (what the table holds there now). */
  private stagePending(): void {
    const table = this.table;
    const mirror = this.mirror;
    for (let i = 0; i < this.pendingCount; i++) {
      const slot = this.pendingSlots[i]!;
      const entry = slot * this.rowStride + this.pendingEnd[slot]! - 1;
      this.pendingEnd[slot] = 0;
      if (table === undefined || table[entry] === mirror[entry]) continue;
      mirror[entry] = table[entry]!;
      this.pushRange(entry, entry + 1);
    }
    this.pendingCount = 0;
  }

  /** Rows whose last used entry is pending (not yet uploaded). */
  get pendingRows(): number {
    return this.pendingCount;
  }

  private write(first: number, end: number): void {
    writeElements(this.device.queue, this.buffer, first * 4, this.mirror, first, end - first);
    this.uploadedEntries += end - first;
    this.writes++;
  }

  destroy(): void {
    this.buffer.destroy();
  }
}
