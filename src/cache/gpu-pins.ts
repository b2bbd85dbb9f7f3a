// Keeps blocks alive while GPU work that reads them is encoded but not yet finished. Invariants: a block
// pinned by encodeAttention holds one extra table reference until the command buffers submitted after it
// (through PagedKVCache.submit / markSubmitted) have completed on the GPU, so the allocator cannot hand
// it to another sequence whose writes would be ordered before that read. Work the cache submits itself
// needs no pin: WebGPU has one queue and runs it in order, so a later write to a reused block always
// executes after every read submitted earlier.
//   Pins are deduplicated per submission (a block read by every layer of a step is pinned once).
export class GpuPins {
  private pending: number[] = [];
  private inFlight = 0;
  /** Per block: the submission epoch in which it was last pinned. */
  private readonly pinnedIn: Uint32Array;
  private epoch = 1;

  constructor(
    private readonly device: GPUDevice,
    numBlocks: number,
    private readonly retain: (blocks: number[]) => void,
    private readonly release: (blocks: number[]) => void,
  ) {
    this.pinnedIn = new Uint32Array(numBlocks);
  }

  /** Pins `blocks` (already-validated block ids) until the next submission completes. */
  pin(blocks: number[]): void {
    const fresh: number[] = [];
    for (const b of blocks) {
      if (this.pinnedIn[b] === this.epoch) continue;
      this.pinnedIn[b] = this.epoch;
      fresh.push(b);
    }
    if (fresh.length === 0) return;
    this.retain(fresh);
    for (const b of fresh) this.pending.push(b);
  }

  /** Pinned blocks waiting for a submission. */
  get pendingCount(): number {
    return this.pending.length;
  }

  /** Submissions whose pins have not been released yet. */
  get inFlightCount(): number {
    return this.inFlight;
  }

  /** Call right after submitting the command buffers that contain the pinned work. */
  submitted(): Promise<void> {
    const blocks = this.pending;
    if (blocks.length === 0) return Promise.resolve();
    this.pending = [];
    this.epoch++;
    this.inFlight++;
    const done = (): void => {
      this.inFlight--;
      this.release(blocks);
    };
    return this.device.queue.onSubmittedWorkDone().then(done, done);
  }

  /** Releases everything immediately (the device is gone, nothing will read the blocks again). */
  releaseAll(): void {
    const blocks = this.pending;
    this.pending = [];
    this.epoch++;
    if (blocks.length > 0) this.release(blocks);
  }
}
