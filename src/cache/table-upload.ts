// Keeps the GPU copy of the block table in step with the shared CPU table, uploading only what changed.
// Invariants: `mirror` holds exactly what has been written to the GPU buffer (both start as -1s); after
// syncRow(slot) the GPU row of that slot equals the CPU row over the sequence's used blocks; each
// changed row costs one writeBuffer of its smallest changed range, an unchanged row costs nothing.
// Entries past a sequence's used blocks may be stale on the GPU: kernels never read past contextLength.
// The first synced[slot] entries of a row are known equal to the CPU row as of the table's row-rewrite
// count `syncedAt` (BlockTable.rowRewrites): while that count stays the same no existing entry changed
// (rows only grew at their ends), so a sync compares only the entries past synced[slot]; a new count
// forgets every synced[slot].
export class TableUpload {
  readonly buffer: GPUBuffer;
  private readonly mirror: Int32Array<ArrayBuffer>;
  private readonly device: GPUDevice;
  private readonly rowStride: number;
  /** Entries uploaded since creation (a measure of upload traffic). */
  uploadedEntries = 0;
  private readonly synced: Int32Array;
  private syncedAt = -1;

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

  /**
   * Uploads the first `numBlocks` entries of row `slot` of `table` where they differ. `rowRewrites` is
   * the table's row-rewrite count, read under the same lock as `table`.
   */
  syncRow(table: Int32Array, slot: number, numBlocks: number, rowRewrites: number): void {
    if (rowRewrites !== this.syncedAt) {
      this.synced.fill(0);
      this.syncedAt = rowRewrites;
    }
    const known = this.synced[slot]!;
    if (numBlocks > known) this.synced[slot] = numBlocks;
    const base = slot * this.rowStride;
    let first = -1;
    let last = -1;
    for (let i = base + known, end = base + numBlocks; i < end; i++) {
      if (table[i] !== this.mirror[i]) {
        if (first < 0) first = i;
        last = i;
      }
    }
    if (first < 0) return;
    this.mirror.set(table.subarray(first, last + 1), first);
    this.device.queue.writeBuffer(this.buffer, first * 4, this.mirror, first, last + 1 - first);
    this.uploadedEntries += last + 1 - first;
  }

  destroy(): void {
    this.buffer.destroy();
  }
}
