// MAP_READ buffers for reading results back to the CPU, reused once unmapped. Invariants: a buffer is
// handed out by acquire() to one reader at a time and returns to the pool only after it was mapped,
// copied from and unmapped; acquire() takes the smallest idle buffer that fits (a small read never
// holds the buffer a large one needs); at most `keep` idle buffers are kept, the largest ones: a
// buffer returned to a full pool replaces the smallest idle one if it is larger, else it is destroyed.
// So the idle bytes never exceed `keep` × the largest read so far, and stop growing once reads stop
// growing.
export class ReadbackPool {
  private readonly idle: GPUBuffer[] = [];

  constructor(
    private readonly device: GPUDevice,
    private readonly keep = 4,
  ) {}

  acquire(bytes: number): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    let best = -1;
    for (let i = 0; i < this.idle.length; i++) {
      const candidate = this.idle[i]!.size;
      if (candidate >= size && (best < 0 || candidate < this.idle[best]!.size)) best = i;
    }
    if (best >= 0) return this.idle.splice(best, 1)[0]!;
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

  /** Idle buffers' sizes, smallest first (for tests and diagnostics). */
  idleSizes(): number[] {
    return this.idle.map((b) => b.size).sort((a, b) => a - b);
  }

  destroy(): void {
    for (const b of this.idle.splice(0)) b.destroy();
  }

  private release(buffer: GPUBuffer): void {
    if (this.idle.length < this.keep) {
      this.idle.push(buffer);
      return;
    }
    let smallest = 0;
    for (let i = 1; i < this.idle.length; i++) if (this.idle[i]!.size < this.idle[smallest]!.size) smallest = i;
    if (this.keep > 0 && buffer.size > this.idle[smallest]!.size) {
      this.idle[smallest]!.destroy();
      this.idle[smallest] = buffer;
    } else {
      buffer.destroy();
    }
  }
}
