// Keeps the GPU copy of the block table in step with the shared CPU table, uploading only what changed.
// Invariants: `mirror` holds exactly what has been written to the GPU buffer (both start as -1s); after
// syncRows(slots) the GPU rows of those slots equal the CPU rows over each sequence's used blocks; each
// changed row costs one writeBuffer of its smallest changed range, an unchanged row costs nothing.
// Entries past a sequence's used blocks may be stale on the GPU: kernels never read past contextLength.
export class TableUpload {
  readonly buffer: GPUBuffer;
  private readonly mirror: Int32Array<ArrayBuffer>;
  private readonly device: GPUDevice;
  private readonly rowStride: number;
  /** Entries uploaded since creation (a measure of upload traffic). */
  uploadedEntries = 0;

  constructor(device: GPUDevice, maxSequences: number, rowStride: number) {
    this.device = device;
    this.rowStride = rowStride;
    this.mirror = new Int32Array(maxSequences * rowStride).fill(-1);
    this.buffer = device.createBuffer({
      label: 'block-table',
      size: Math.max(16, this.mirror.byteLength),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(this.buffer, 0, this.mirror);
  }

  /** Uploads the first `numBlocks[i]` entries of row `slots[i]` of `table` where they differ. */
  syncRow(table: Int32Array, slot: number, numBlocks: number): void {
    const base = slot * this.rowStride;
    let first = -1;
    let last = -1;
    for (let i = base, end = base + numBlocks; i < end; i++) {
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
