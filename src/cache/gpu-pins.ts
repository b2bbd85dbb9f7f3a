// Keeps blocks alive while GPU work that reads them is encoded but not yet finished. Invariants: a block
// pinned by encodeAttention holds one extra table reference until the command buffer holding that work
// has been submitted (PagedKVCache.submit / markSubmitted) and has completed on the GPU, so the allocator
// cannot hand it to another sequence whose writes would be ordered before that read. Work the cache
// submits itself needs no pin: WebGPU has one queue and runs it in order, so a later write to a reused
// block always executes after every read submitted earlier.
//   Pins belong to the command encoder the work was recorded into, not to whichever submission comes
// next: the encoder's finish() is wrapped (once) so the command buffer it returns carries its pins.
// submit(buffers) releases exactly the pins of those buffers once they have completed; markSubmitted()
// releases the pins of every finished encoder. Actions registered with onSubmit run, in order, when
// their encoder's buffer is reported submitted. So with several encoders in flight (concurrent callers),
// one caller's submission never releases blocks another caller's unsubmitted work still reads. An
// encoder that is never finished keeps its pins (visible in stats().pinnedBlocks) until destroy().
//   Block pins (pin(), and the conversion of a held read below) are deduplicated per encoder. Pinned
// block ids are kept in one growable Int32Array per encoder, retained and released in one table call;
// an encoder's first block pin keeps the Int32Array it was given, duplicate blocks (a shared prefix)
// included: each such block holds one reference per listing, all dropped by the one release.
//   The sequence slots (block-table rows) the work reads are pinned too: the kernel reads the GPU block
// table through them when it runs, so a slot must not be handed to a new sequence (whose row upload
// would be ordered before that read) until the work has completed; slotPinned() tells the cache to
// defer such a free.
//   A prepared batch is pinned without touching its blocks: it opens a table read of its slots
// (BlockTable.beginRead, deferred-drops.ts), which keeps every block those rows hold referenced —
// references they drop are deferred until the read ends — so a decode step costs O(sequences) here, not
// O(blocks). (The cache first uploads again the rows of a batch some entry of the table changed in since
// it was prepared, so the read covers what the work will read.) A read ends when its work has completed.
// A read whose encoder is still held (not finished, or finished but not reported submitted) when a newer
// read completes is turned into per-block retains of every block it may reach (BlockTable.heldSince:
// what its rows hold then, and what was deferred since it began), so work recorded and abandoned holds
// those blocks, as a per-block pin would, rather than everything its rows drop later.

interface PinBatch {
  /** Distinct per encoder: the dedupe key of pinnedIn and of prepared batches. */
  readonly epoch: number;
  /**
   * blocks[0..count) are pinned (retained) by this encoder. When it is a prepared batch's own array
   * (pinInPlace), count equals its length, so the next pin that adds blocks grows into a copy first.
   */
  blocks: Int32Array;
  count: number;
  /** Whether blocks[0..count) still lack their pinnedIn marks (a batch pinned in place). */
  unmarked: boolean;
  readonly slots: number[];
  /** Run when the encoder's command buffer is reported submitted (e.g. marking K/V it writes as written). */
  readonly onSubmit: (() => void)[];
  /** Table reads of the batches pinned through their rows. */
  readonly reads: TableRead[];
  /** Blocks those batches list (counted as pins). */
  readCount: number;
}

/** An open table read: its epoch, the slots it names, and how many blocks its batch reads. */
interface TableRead {
  readonly epoch: number;
  readonly slots: readonly number[];
  readonly count: number;
}

/** The block table's GPU reads (BlockTable.beginRead / endRead / heldSince). */
export interface TableReads {
  begin(slots: readonly number[]): number;
  end(safeEpoch: number, slots: readonly number[]): void;
  heldSince(epoch: number, slots: readonly number[]): Int32Array;
}

const NO_BLOCKS = new Int32Array(0);

/** The pinned blocks of `batches`, in one array (the batch's own array when there is one batch). */
function pinnedBlocks(batches: readonly PinBatch[]): Int32Array {
  if (batches.length === 1) return batches[0]!.blocks.subarray(0, batches[0]!.count);
  let total = 0;
  for (const b of batches) total += b.count;
  const all = new Int32Array(total);
  let at = 0;
  for (const b of batches) {
    all.set(b.blocks.subarray(0, b.count), at);
    at += b.count;
  }
  return all;
}

export class GpuPins {
  /** Encoders holding pins, not finished yet. */
  private readonly open = new Map<GPUCommandEncoder, PinBatch>();
  /** Finished encoders' pins, waiting for their command buffer's submission. */
  private finished: Array<{ buffer: GPUCommandBuffer; batch: PinBatch }> = [];
  private inFlight = 0;
  /** Per block: the epoch of the encoder that last pinned it. */
  private readonly pinnedIn: Uint32Array;
  /** Per sequence slot: the epoch of the encoder that last pinned it, and how many batches pin it. */
  private readonly slotPinnedIn: Uint32Array;
  private readonly slotPins: Int32Array;
  private nextEpoch = 1;
  /** Table reads begun and not ended (held by encoders, or by work in flight). */
  private readonly openReads = new Map<number, TableRead>();

  constructor(
    private readonly device: GPUDevice,
    numBlocks: number,
    maxSequences: number,
    private readonly retain: (blocks: Int32Array) => void,
    private readonly release: (blocks: Int32Array) => void,
    /** Without it every pin retains its blocks. */
    private readonly reads?: TableReads,
  ) {
    this.pinnedIn = new Uint32Array(numBlocks);
    this.slotPinnedIn = new Uint32Array(maxSequences);
    this.slotPins = new Int32Array(maxSequences);
  }

  /** Whether GPU work recorded or in flight still reads the block table through `slot`. */
  slotPinned(slot: number): boolean {
    return this.slotPins[slot]! > 0;
  }

  /** Pins `blocks` (already-validated block ids) until the work recorded in `encoder` has completed. */
  pin(encoder: GPUCommandEncoder, blocks: ArrayLike<number>, slots: readonly number[] = []): void {
    const batch = this.batchOf(encoder);
    this.pinSlots(batch, slots);
    this.pinBlocks(batch, blocks);
  }

  private pinSlots(batch: PinBatch, slots: readonly number[]): void {
    const epoch = batch.epoch;
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i]!;
      if (this.slotPinnedIn[slot] === epoch) continue;
      this.slotPinnedIn[slot] = epoch;
      this.slotPins[slot]!++;
      batch.slots.push(slot);
    }
  }

  /** Retains those of `blocks` the batch does not hold yet. */
  private pinBlocks(batch: PinBatch, blocks: ArrayLike<number>): void {
    const epoch = batch.epoch;
    const start = batch.count;
    const pinnedIn = this.pinnedIn;
    if (start === 0 && blocks instanceof Int32Array) return this.pinInPlace(batch, blocks);
    if (batch.unmarked) {
      // A second pin in an encoder whose first was pinned in place: mark those now, to dedupe against.
      for (let i = 0; i < start; i++) pinnedIn[batch.blocks[i]!] = epoch;
      batch.unmarked = false;
    }
    if (batch.blocks.length - start < blocks.length) {
      const grown = new Int32Array(Math.max(start + blocks.length, 2 * batch.blocks.length));
      grown.set(batch.blocks.subarray(0, start));
      batch.blocks = grown;
    }
    const pinned = batch.blocks;
    let end = start;
    for (let i = 0; i < blocks.length; i++) {
      const b = blocks[i]!;
      if (pinnedIn[b] === epoch) continue;
      pinnedIn[b] = epoch;
      pinned[end++] = b;
    }
    if (end === start) return;
    try {
      this.retain(pinned.subarray(start, end));
    } catch (error) {
      // Nothing was retained: forget these blocks so a later pin retries them.
      this.unmark(pinned, start, end);
      throw error;
    }
    batch.count = end;
  }

  /**
   * The first blocks an encoder pins, given as an Int32Array that nobody writes (a prepared batch's):
   * retained where they are, duplicates included, instead of being marked and copied (a 256 × 512
   * decode batch reads 8448 blocks). A block listed twice holds two references until the release of
   * this same array drops both. A later pin of the encoder marks these first, then copies the array
   * before adding to it.
   */
  private pinInPlace(batch: PinBatch, blocks: Int32Array): void {
    this.retain(blocks);
    batch.blocks = blocks;
    batch.count = blocks.length;
    batch.unmarked = blocks.length > 0;
  }

  /** Forgets the pin marks of blocks[from..to) (they were not retained after all). */
  private unmark(blocks: Int32Array, from: number, to: number): void {
    for (let i = from; i < to; i++) this.pinnedIn[blocks[i]!] = 0;
  }

  /**
   * Pins a prepared batch (`count` blocks, the rows of `slots`, as uploaded now) once per encoder: a
   * table read of its slots, whatever the number of blocks and layers. Needs the table's reads.
   */
  pinOnce(encoder: GPUCommandEncoder, owner: { pinEpoch: number }, count: number, slots: readonly number[]): void {
    const batch = this.batchOf(encoder);
    if (owner.pinEpoch === batch.epoch) return;
    if (this.reads === undefined) throw new Error('GpuPins.pinOnce needs the table reads (constructor argument)');
    const read = { epoch: this.reads.begin(slots), slots, count };
    this.openReads.set(read.epoch, read);
    batch.reads.push(read);
    batch.readCount += count;
    this.pinSlots(batch, slots);
    owner.pinEpoch = batch.epoch;
  }

  /** Runs `action` when the command buffer finished from `encoder` is reported submitted (submitted()). */
  onSubmit(encoder: GPUCommandEncoder, action: () => void): void {
    this.batchOf(encoder).onSubmit.push(action);
  }

  /** Block pins whose work has not been submitted yet (a block a prepared batch lists twice counts twice). */
  get pendingCount(): number {
    let n = 0;
    for (const batch of this.open.values()) n += batch.count + batch.readCount;
    for (const f of this.finished) n += f.batch.count + f.batch.readCount;
    return n;
  }

  /** Table reads begun and not ended yet. */
  get openReadCount(): number {
    return this.openReads.size;
  }

  /** Whether some encoder holding pins has not been submitted yet (the work it records may bind any buffer). */
  get hasUnsubmitted(): boolean {
    return this.open.size > 0 || this.finished.length > 0;
  }

  /** Submissions whose pins have not been released yet. */
  get inFlightCount(): number {
    return this.inFlight;
  }

  /**
   * Call right after submitting command buffers: releases, once the work submitted so far has completed,
   * the pins of `buffers` — or, without them, of every finished encoder.
   */
  submitted(buffers?: readonly GPUCommandBuffer[]): Promise<void> {
    const taken = buffers === undefined ? this.finished : this.finished.filter((f) => buffers.includes(f.buffer));
    this.finished = buffers === undefined ? [] : this.finished.filter((f) => !buffers.includes(f.buffer));
    let failure: { error: unknown } | undefined;
    for (const f of taken) {
      for (const action of f.batch.onSubmit) {
        try {
          action();
        } catch (error) {
          failure ??= { error }; // the pins are still released below
        }
      }
    }
    const blocks = pinnedBlocks(taken.map((f) => f.batch));
    const slots = taken.length === 1 ? taken[0]!.batch.slots : taken.flatMap((f) => f.batch.slots); // one encoder per step: no copy
    const reads = taken.length === 1 ? taken[0]!.batch.reads : taken.flatMap((f) => f.batch.reads);
    if (failure !== undefined) {
      void this.releaseWhenDone(blocks, slots, reads);
      throw failure.error;
    }
    if (blocks.length === 0 && slots.length === 0 && reads.length === 0) return Promise.resolve();
    return this.releaseWhenDone(blocks, slots, reads);
  }

  /** Releases `blocks` and `slots`, and ends `reads`, once the work submitted so far has completed. */
  private releaseWhenDone(blocks: Int32Array, slots: readonly number[], reads: readonly TableRead[]): Promise<void> {
    this.inFlight++;
    const done = (): void => {
      this.inFlight--;
      for (let i = 0; i < slots.length; i++) this.slotPins[slots[i]!]!--;
      try {
        if (reads.length > 0) this.endReads(reads);
      } finally {
        this.release(blocks);
      }
    };
    return this.device.queue.onSubmittedWorkDone().then(done, done);
  }

  /**
   * Ends `completed` reads (their work has completed). Reads of encoders still held that began before the
   * newest of them are converted to block retains first (see the header), and end too.
   */
  private endReads(completed: readonly TableRead[]): void {
    const reads = this.reads!;
    let newest = 0;
    const ending: TableRead[] = [];
    for (const read of completed) {
      if (!this.openReads.delete(read.epoch)) continue; // already ended by releaseAll
      ending.push(read);
      if (read.epoch > newest) newest = read.epoch;
    }
    for (const batch of this.heldBatches()) {
      for (let i = 0; i < batch.reads.length; i++) {
        const read = batch.reads[i]!;
        if (read.epoch > newest) continue;
        try {
          this.pinBlocks(batch, reads.heldSince(read.epoch, read.slots));
        } catch {
          continue; // nothing of this listing was retained: the read stays open, which is safe
        }
        this.openReads.delete(read.epoch);
        ending.push(read);
        batch.reads.splice(i--, 1);
        batch.readCount -= read.count; // its blocks are counted in batch.count now
      }
    }
    if (ending.length === 0) return;
    let oldest = Infinity;
    for (const e of this.openReads.keys()) if (e < oldest) oldest = e;
    const safe = oldest === Infinity ? newest : oldest - 1;
    for (const read of ending) reads.end(safe, read.slots);
  }

  /** Batches of encoders not yet reported submitted. */
  private *heldBatches(): Iterable<PinBatch> {
    yield* this.open.values();
    for (const f of this.finished) yield f.batch;
  }

  /** Releases everything immediately (the device is gone, nothing will read the blocks again). */
  releaseAll(): void {
    const batches = [...this.open.values(), ...this.finished.map((f) => f.batch)];
    const blocks = pinnedBlocks(batches);
    for (const b of batches) for (const slot of b.slots) this.slotPins[slot]!--;
    this.open.clear();
    this.finished = [];
    this.nextEpoch++;
    const reads = [...this.openReads.values()];
    this.openReads.clear();
    for (const read of reads) this.reads!.end(Infinity, read.slots);
    this.release(blocks);
  }

  /** The pin batch of `encoder`, created (and its finish() wrapped) on first use. */
  private batchOf(encoder: GPUCommandEncoder): PinBatch {
    let batch = this.open.get(encoder);
    if (batch !== undefined) return batch;
    const created: PinBatch = {
      epoch: this.nextEpoch++, blocks: NO_BLOCKS, count: 0, unmarked: false, slots: [], onSubmit: [], reads: [], readCount: 0,
    };
    this.open.set(encoder, created);
    const finish = encoder.finish.bind(encoder);
    encoder.finish = (descriptor?: GPUCommandBufferDescriptor): GPUCommandBuffer => {
      const buffer = finish(descriptor);
      if (this.open.get(encoder) === created) {
        this.open.delete(encoder);
        this.finished.push({ buffer, batch: created });
      }
      return buffer;
    };
    batch = created;
    return batch;
  }
}
