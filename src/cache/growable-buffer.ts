// A GPU buffer that is reused across calls and only replaced when a larger size is needed (growing
// geometrically), so steady-state steps allocate nothing. Invariants: `buffer.size >= ` every size asked
// of ensure() since the last growth or discard(); a replaced or discarded buffer is destroyed only after
// the GPU work submitted so far has finished, because earlier submissions may still read it.
export class GrowableBuffer {
  private current: GPUBuffer | undefined;
  private readonly device: GPUDevice;
  private readonly usage: GPUBufferUsageFlags;
  private readonly label: string;

  constructor(device: GPUDevice, usage: GPUBufferUsageFlags, label: string) {
    this.device = device;
    this.usage = usage;
    this.label = label;
  }

  /** A buffer of at least `bytes` bytes (rounded up to 16). */
  ensure(bytes: number): GPUBuffer {
    const needed = Math.max(16, Math.ceil(bytes / 16) * 16);
    if (this.current && this.current.size >= needed) return this.current;
    const old = this.current;
    const size = Math.max(needed, Math.ceil(((old?.size ?? 0) * 1.5) / 16) * 16);
    this.current = this.device.createBuffer({ label: this.label, size, usage: this.usage });
    if (old) {
      this.device.queue.onSubmittedWorkDone().then(
        () => old.destroy(),
        () => old.destroy(),
      );
    }
    return this.current;
  }

  get buffer(): GPUBuffer | undefined {
    return this.current;
  }

  /**
   * Forgets the current buffer, e.g. because allocating it failed (on out-of-memory WebGPU returns an
   * invalid buffer): the next ensure() allocates anew. It is destroyed once the work submitted so far
   * has finished.
   */
  discard(): void {
    const old = this.current;
    this.current = undefined;
    if (old) this.device.queue.onSubmittedWorkDone().then(() => old.destroy(), () => old.destroy());
  }

  destroy(): void {
    this.current?.destroy();
    this.current = undefined;
  }
}
