// MAP_READ buffers for reading results back to the CPU, reused once unmapped. Invariants: a buffer is
// handed out by acquire() to one reader at a time and returns to the pool only after it was mapped,
// copied from and unmapped; at most `keep` idle buffers are kept (the rest are destroyed).
export class ReadbackPool {
  private readonly idle: GPUBuffer[] = [];

  constructor(
    private readonly device: GPUDevice,
    private readonly keep = 4,
  ) {}

  acquire(bytes: number): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    const i = this.idle.findIndex((b) => b.size >= size);
    if (i >= 0) return this.idle.splice(i, 1)[0]!;
    return this.device.createBuffer({ label: 'readback', size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  /** Maps `buffer` (after the work submitted so far), runs `copy` on its contents, returns it to the pool. */
  async read<T>(buffer: GPUBuffer, copy: (data: ArrayBuffer) => T): Promise<T> {
    try {
      await buffer.mapAsync(GPUMapMode.READ);
      const result = copy(buffer.getMappedRange());
      buffer.unmap();
      this.release(buffer);
      return result;
    } catch (error) {
      buffer.destroy();
      throw error;
    }
  }

  destroy(): void {
    for (const b of this.idle.splice(0)) b.destroy();
  }

  private release(buffer: GPUBuffer): void {
    if (this.idle.length < this.keep) this.idle.push(buffer);
    else buffer.destroy();
  }
}
