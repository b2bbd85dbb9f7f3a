// Keeps the GPU copy of the block table in step with the shared CPU table, uploading only what changed.
// Invariants: `mirror` holds exactly what the GPU buffer holds once the staged ranges are flushed (both
// start as -1s); stageRow(slot) followed by flush() leaves the GPU row of that slot equal to the CPU row
// over the sequence's used blocks; an unchanged row stages nothing. Each changed row stages its smallest
// changed range; flush() uploads the staged ranges in slot order, one writeBuffer per run of ranges
// whose gaps are under MERGE_GAP_ENTRIES (the gap entries are rewritten from the mirror, so with what
// the GPU already holds). A batch whose sequences cross block boundaries at once (a decode step) thus
// costs a few writes instead of one per row. Callers flush before they encode work that reads the table.
// Entries past a sequence's used blocks may be stale on the GPU: kernels never read past contextLength.
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

  constructor(device: GPUDevice, maxSequences: number, rowStride: number) {
    this.device = device;
    this.rowStride = rowStride;
    this.mirror = new Int32Array(maxSequences * rowStride).fill(-1);
    this.synced = new Int32Array(maxSequences);
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
   * differ. `rowRewrites` is the table's row-rewrite count, read under the same lock as `table`.
   */
  stageRow(table: Int32Array, slot: number, numBlocks: number, rowRewrites: number): void {
    if (rowRewrites !== this.syncedAt) {
      this.synced.fill(0);
      this.syncedAt = rowRewrites;
    }
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
    let at = this.stagedCount * 2;
    if (at === this.staged.length) {
      const grown = new Int32Array(2 * this.staged.length);
      grown.set(this.staged);
      this.staged = grown;
    }
    if (at > 0 && first < this.staged[at - 1]!) this.stagedInOrder = false;
    this.staged[at++] = first;
    this.staged[at] = last + 1;
    this.stagedCount++;
  }

  /** Uploads every staged range (see the header for how neighbours are merged). */
  flush(): void {
    const count = this.stagedCount;
    if (count === 0) return;
    const staged = this.staged;
    let order: number[] | undefined;
    if (!this.stagedInOrder) {
      order = Array.from({ length: count }, (_, i) => i);
      order.sort((a, b) => staged[2 * a]! - staged[2 * b]!);
    }
    const first = order === undefined ? 0 : 2 * order[0]!;
    let runStart = staged[first]!;
    let runEnd = staged[first + 1]!;
    for (let i = 1; i < count; i++) {
      const r = 2 * (order === undefined ? i : order[i]!);
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

  private write(first: number, end: number): void {
    writeElements(this.device.queue, this.buffer, first * 4, this.mirror, first, end - first);
    this.uploadedEntries += end - first;
    this.writes++;
  }

  destroy(): void {
    this.buffer.destroy();
  }
}
