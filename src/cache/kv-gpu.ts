// The GPU side of a PagedKVCache: kernels, the GPU block table, staging and readback buffers.
// Invariants:
//   - Every method that records GPU work also submits it before returning (except encodeAttention and
//     encodeWriteKv, which record into the caller's encoder or compute pass), so queue order equals
//     bookkeeping order.
//   - Staging buffers (k, v, slots, q, out) are reused across calls and grow only inside
//     ensureStaging/ensureQueryScratch, which run under error scopes (GPU out-of-memory → typed error,
//     and the failed, invalid buffer is discarded rather than reused). The copy-pairs buffer is sized at
//     creation for the most copies one call makes, so copy-on-write never allocates. A steady-state
//     step allocates no GPU object except readback buffers, which are pooled and reused once unmapped.
//   - After a GPU error in a call, discardKernels() drops the kernels so none keeps an invalid scratch
//     allocation; they are rebuilt on next use. The dropped kernels' buffers are destroyed only by
//     destroyRetired(), which the cache calls once no recorded work can still use them (command
//     encoders the caller has not submitted yet may hold dispatches that bind them).
//   - Reusing a staging buffer is safe without waiting: queue.writeBuffer into it is ordered after the
//     submissions that read its previous contents.
//   - A decode that stores its new K/V itself stages them (kv-staging.ts): the rows reach the pool by a
//     flush recorded into the same encoder, at the latest when it is finished.
import type { DeviceGuard } from '../gpu/device-guard';
import { writeElements } from '../gpu/write-elements';
import type { KvPool } from '../pool/kv-pool';
import type { KvLayout } from '../pool/kv-layout';
import type { AttentionEntry } from '../kernels/attention-types';
import { CopyBlocksKernel } from '../kernels/copy-blocks';
import { GatherKvKernel } from '../kernels/gather-kv';
import { PagedAttentionKernel, type DecodeKvWrite } from '../kernels/paged-attention';
import { UPLOAD_SLOTS } from '../kernels/attention-resources';
import { WriteKvKernel } from '../kernels/write-kv';
import type { BlockCopy } from '../table/block-table';
import type { ResolvedConfig } from './config';
import { GrowableBuffer } from './growable-buffer';
import { KvStaging } from './kv-staging';
import { ReadbackPool } from './readback-pool';
import { TableUpload } from './table-upload';

// GPUBufferUsage is a global only once a WebGPU implementation is loaded, so these are functions.
/** A decode batch's new K/V that encodeAttention stages (k and v at the batch's q rows, `slots` their cache slots), recorded into `encoder`. */
export interface StagedWrite {
  encoder: GPUCommandEncoder;
  k: GPUBuffer;
  v: GPUBuffer;
  slots: GPUBuffer;
  rows: number;
}

const STORAGE_IN = (): number => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
const STORAGE_OUT = (): number => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;

/** Prepared write batches that may be encoded before a submission (as many as attention upload slots). */
export const BATCH_SLOT_STAGES = UPLOAD_SLOTS;

export class KvGpu {
  private readonly device: GPUDevice;
  private readonly layout: KvLayout;
  private readonly pool: KvPool;
  private readonly rowElements: number;
  private readonly queryRowElements: number;
  private readonly config: ResolvedConfig;
  private readonly rowStride: number;
  // Kernels are built on first use: building a pipeline is slow on some drivers (seconds on SwiftShader).
  private writeKernelOrUndefined: WriteKvKernel | undefined;
  private gatherKernelOrUndefined: GatherKvKernel | undefined;
  private copyKernelOrUndefined: CopyBlocksKernel | undefined;
  private attentionOrUndefined: PagedAttentionKernel | undefined;
  private readonly tableUpload: TableUpload;
  private readonly kStage: GrowableBuffer;
  private readonly vStage: GrowableBuffer;
  private readonly slotStage: GrowableBuffer;
  private readonly pairStage: GrowableBuffer;
  private readonly qStage: GrowableBuffer;
  private readonly outStage: GrowableBuffer;
  /** Outputs of readKv's gather, reused by every read (a fresh pair per read filled the bind-group cache). */
  private readonly gatherKStage: GrowableBuffer;
  private readonly gatherVStage: GrowableBuffer;
  private readonly readbacks: ReadbackPool;
  private slotWords = new Uint32Array(64);
  /** Slot maps of prepared write batches: a ring, one buffer per batch that may await its submission. */
  private readonly batchSlotStages: GrowableBuffer[] = [];
  /** Slot-map buffers set aside by discardKernels, destroyed with the cache. */
  private readonly droppedSlotStages: GrowableBuffer[] = [];
  private nextBatchSlotStage = 0;
  private readonly retired: { destroy(): void }[] = [];
  private readonly staging: KvStaging;
  /** The staged decode's write argument, rewritten per layer (the attention kernel keeps no reference to it). */
  private readonly stagedWrite: Required<DecodeKvWrite>;

  private constructor(private readonly guard: DeviceGuard, pool: KvPool, config: ResolvedConfig, rowStride: number) {
    const device = guard.device;
    this.device = device;
    this.layout = config.layout;
    this.pool = pool;
    this.rowElements = this.layout.numKvHeads * this.layout.headDim;
    this.queryRowElements = config.numQueryHeads * this.layout.headDim;
    this.config = config;
    this.rowStride = rowStride;
    this.tableUpload = new TableUpload(device, config.maxSequences, rowStride);
    this.kStage = new GrowableBuffer(device, STORAGE_IN(), 'k-staging');
    this.vStage = new GrowableBuffer(device, STORAGE_IN(), 'v-staging');
    this.slotStage = new GrowableBuffer(device, STORAGE_IN(), 'slot-staging');
    this.pairStage = new GrowableBuffer(device, STORAGE_IN(), 'copy-pairs');
    this.qStage = new GrowableBuffer(device, STORAGE_IN(), 'q-staging');
    this.outStage = new GrowableBuffer(device, STORAGE_OUT(), 'out-staging');
    this.gatherKStage = new GrowableBuffer(device, STORAGE_OUT(), 'read-k');
    this.gatherVStage = new GrowableBuffer(device, STORAGE_OUT(), 'read-v');
    this.readbacks = new ReadbackPool(device);
    this.staging = new KvStaging(device, this.layout, pool, config.maxSequences);
    const unset = undefined as unknown as GPUBuffer;
    this.stagedWrite = { k: unset, v: unset, slots: unset, staged: unset, stagedOffset: 0 };
  }

  static async create(guard: DeviceGuard, pool: KvPool, config: ResolvedConfig, rowStride: number): Promise<KvGpu> {
    let gpu: KvGpu | undefined;
    let stages = false;
    try {
      await guard.scoped('kernels and scratch buffers', () => {
        gpu = new KvGpu(guard, pool, config, rowStride);
        // Copy-on-write runs inside critical sections that cannot wait for an error scope (appendTokens):
        // its pair buffer is sized for the most copies one call can make, so that path never allocates.
        gpu.pairStage.ensure(config.maxBlocksPerSequence * 8);
        // Whether the decode can stage K/V is the attention kernel's to say: it is made here, in the scope.
        stages = config.attentionTuning.decodeWritesKv === true && gpu.staging.rowsCapacity > 0 && gpu.attention.storesKv;
      });
      // The decode that stages its K/V records steps that cannot wait for an error scope either: its
      // staging holds a row per sequence the cache can hold, so that path never allocates.
      const staging = gpu!.staging;
      if (stages) {
        await guard.scoped(
          `the decode K/V staging buffer (decodeWritesKv: one token of K/V per sequence and layer, ${staging.rowsCapacity} × ${config.layout.numLayers}; ` +
            'lower maxSequences or leave decodeWritesKv off)',
          () => staging.allocate(),
          staging.bytes,
        );
      }
    } catch (error) {
      gpu?.destroy(); // whatever was allocated before the failure
      throw error;
    }
    return gpu!;
  }

  private get writeKernel(): WriteKvKernel {
    return (this.writeKernelOrUndefined ??= new WriteKvKernel(this.device, this.layout));
  }

  private get gatherKernel(): GatherKvKernel {
    return (this.gatherKernelOrUndefined ??= new GatherKvKernel(this.device, this.layout));
  }

  private get copyKernel(): CopyBlocksKernel {
    return (this.copyKernelOrUndefined ??= new CopyBlocksKernel(this.device, this.layout));
  }

  private get attention(): PagedAttentionKernel {
    return (this.attentionOrUndefined ??= new PagedAttentionKernel(this.device, this.layout, {
      numQueryHeads: this.config.numQueryHeads,
      rowStride: this.rowStride,
      subgroups: this.config.useSubgroups,
      adapterInfo: this.config.adapterInfo,
      residentWorkgroups: this.config.residentWorkgroups,
      tuning: this.config.attentionTuning,
    }));
  }

  /** The decode and prefill kernels attention runs on, in words (building the kernel object compiles nothing). */
  describeAttentionKernels(): { decode: string; prefill: string } {
    return this.attention.describeKernels();
  }

  get tableEntriesUploaded(): number {
    return this.tableUpload.uploadedEntries;
  }

  get tableWrites(): number {
    return this.tableUpload.writes;
  }

  // ---- scratch sizing (async: may allocate, under error scopes) -----------------------------------

  async ensureStaging(tokens: number): Promise<void> {
    const bytes = tokens * this.rowElements * 4;
    const have = this.kStage.buffer && this.kStage.buffer.size >= bytes && this.slotStage.buffer!.size >= tokens * 4;
    if (have) return;
    await this.guard
      .scoped(
        'K/V staging buffers',
        () => {
          this.kStage.ensure(bytes);
          this.vStage.ensure(bytes);
          this.slotStage.ensure(tokens * 4);
        },
        2 * bytes,
      )
      .catch((error: unknown) => this.discard(error, [this.kStage, this.vStage, this.slotStage]));
  }

  async ensureQueryScratch(rows: number): Promise<void> {
    const bytes = rows * this.queryRowElements * 4;
    if (this.qStage.buffer && this.qStage.buffer.size >= bytes && this.outStage.buffer!.size >= bytes) return;
    await this.guard
      .scoped(
        'query staging buffers',
        () => {
          this.qStage.ensure(bytes);
          this.outStage.ensure(bytes);
        },
        2 * bytes,
      )
      .catch((error: unknown) => this.discard(error, [this.qStage, this.outStage]));
  }

  /**
   * After a GPU error in a call: drops the kernels, whose scratch (parameters, work lists, partials)
   * may be an invalid allocation that would fail every later call; they are rebuilt on next use (the
   * pipelines stay cached per device). So is everything else a step's recording allocates without an
   * error scope: the flush of staged K/V, and the ring of write batches' slot maps (set aside until
   * destroy(), not destroyed now: a batch prepared before the error may still be encoded with its
   * buffer; they are four bytes a row).
   */
  discardKernels(): void {
    for (const kernel of [this.writeKernelOrUndefined, this.gatherKernelOrUndefined, this.copyKernelOrUndefined, this.attentionOrUndefined, this.staging.takeFlushKernel()]) {
      if (kernel) this.retired.push(kernel);
    }
    this.droppedSlotStages.push(...this.batchSlotStages.splice(0));
    this.writeKernelOrUndefined = undefined;
    this.gatherKernelOrUndefined = undefined;
    this.copyKernelOrUndefined = undefined;
    this.attentionOrUndefined = undefined;
    // A failed read may have left an invalid gather buffer behind.
    this.gatherKStage.discard();
    this.gatherVStage.discard();
  }

  /** Kernels dropped by discardKernels, not destroyed yet (see the header). */
  get retiredKernels(): number {
    return this.retired.length;
  }

  /** Destroys the dropped kernels' buffers; only when no unfinished or unsubmitted work can bind them. */
  destroyRetired(): void {
    for (const kernel of this.retired.splice(0)) kernel.destroy();
  }

  // ---- synchronous recording + submission (called under the table lock) --------------------------

  /** Uploads what changed of the first `numBlocks` entries of row `slot` (see TableUpload.syncRow). */
  syncTableRow(view: Int32Array, slot: number, numBlocks: number, rowRewrites: number): void {
    this.tableUpload.syncRow(view, slot, numBlocks, rowRewrites);
  }

  /** Stages what changed of row `slot` for flushTable(), which must follow before anything is encoded (TableUpload.stageRow). */
  stageTableRow(view: Int32Array, slot: number, numBlocks: number, rowRewrites: number, deferLast = false): void {
    this.tableUpload.stageRow(view, slot, numBlocks, rowRewrites, deferLast);
  }

  /** Uploads the staged rows, neighbouring ones in one write (TableUpload.flush). */
  flushTable(): void {
    this.tableUpload.flush();
  }

  /** Copies whole blocks (copy-on-write) in every layer; one submission. */
  copyBlocksAllLayers(copies: readonly BlockCopy[]): void {
    if (copies.length === 0) return;
    const encoder = this.device.createCommandEncoder({ label: 'copy-on-write' });
    this.recordCopies(encoder, copies, undefined);
    this.device.queue.submit([encoder.finish()]);
  }

  /**
   * Writes K/V rows [startPos, startPos + n) of a sequence whose blocks are `blocks` into `layer`,
   * after performing `copies` (copy-on-write of shared blocks in the range) in every layer.
   */
  writeKv(
    layer: number,
    blocks: Int32Array,
    startPos: number,
    n: number,
    k: Float32Array | GPUBuffer,
    v: Float32Array | GPUBuffer,
    copies: readonly BlockCopy[],
  ): void {
    const bs = this.layout.blockSize;
    if (this.slotWords.length < n) this.slotWords = new Uint32Array(Math.max(n, this.slotWords.length * 2));
    const slots = this.slotWords;
    for (let i = 0; i < n; i++) {
      const pos = startPos + i;
      slots[i] = blocks[Math.floor(pos / bs)]! * bs + (pos % bs);
    }
    const queue = this.device.queue;
    const slotBuffer = this.slotStage.ensure(n * 4);
    writeElements(queue, slotBuffer, 0, slots, 0, n);
    const kBuffer = k instanceof Float32Array ? this.upload(this.kStage, k) : k;
    const vBuffer = v instanceof Float32Array ? this.upload(this.vStage, v) : v;
    const encoder = this.device.createCommandEncoder({ label: 'write-kv' });
    this.recordCopies(encoder, copies, undefined);
    this.writeKernel.encode(encoder, { chunks: this.pool.chunks[layer]!, k: kBuffer, v: vBuffer, slots: slotBuffer, numTokens: n });
    queue.submit([encoder.finish()]);
  }

  /**
   * Uploads the slot map of a prepared write batch (one cache slot, or 0xffffffff, per q row) into the
   * next of BATCH_SLOT_STAGES buffers and returns it: up to that many prepared batches may write before
   * one submission.
   */
  uploadBatchSlots(slots: Uint32Array<ArrayBuffer>, rows: number): GPUBuffer {
    const index = this.nextBatchSlotStage;
    this.nextBatchSlotStage = (index + 1) % BATCH_SLOT_STAGES;
    const stage = (this.batchSlotStages[index] ??= new GrowableBuffer(this.device, STORAGE_IN(), 'batch-slots'));
    const buffer = stage.ensure(rows * 4);
    writeElements(this.device.queue, buffer, 0, slots, 0, rows);
    return buffer;
  }

  /** Records into `encoder` the write of K/V rows [0, rows) of k and v to the cache slots in `slots`. */
  encodeWriteKv(target: GPUCommandEncoder | GPUComputePassEncoder, layer: number, slots: GPUBuffer, k: GPUBuffer, v: GPUBuffer, rows: number): void {
    this.writeKernel.encode(target, { chunks: this.pool.chunks[layer]!, k, v, slots, numTokens: rows });
  }

  /** Gathers K/V of positions [0, end) from the sequence in table row `slot` (row already synced). */
  readKv(layer: number, slot: number, rowStride: number, start: number, end: number): Promise<{ k: Float32Array; v: Float32Array }> {
    const bytes = end * this.rowElements * 4;
    const kOut = this.gatherKStage.ensure(bytes);
    const vOut = this.gatherVStage.ensure(bytes);
    const readback = this.readbacks.acquire(2 * Math.max(16, bytes));
    const encoder = this.device.createCommandEncoder({ label: 'read-kv' });
    if (end > 0) {
      this.gatherKernel.encode(encoder, {
        chunks: this.pool.chunks[layer]!,
        blockTable: this.tableUpload.buffer,
        tableOffset: slot * rowStride,
        length: end,
        k: kOut,
        v: vOut,
      });
      encoder.copyBufferToBuffer(kOut, 0, readback, 0, bytes);
      encoder.copyBufferToBuffer(vOut, 0, readback, Math.max(16, bytes), bytes);
    }
    this.device.queue.submit([encoder.finish()]);
    return this.readbacks.read(readback, (data) => {
      const all = new Float32Array(data);
      const offset = Math.max(16, bytes) / 4;
      return {
        k: all.slice(start * this.rowElements, end * this.rowElements),
        v: all.slice(offset + start * this.rowElements, offset + end * this.rowElements),
      };
    });
  }

  /** Uploads each entry's q to its rows, runs attention, reads the output back. */
  attendFromHost(
    layer: number,
    entries: readonly AttentionEntry[],
    qs: readonly Float32Array[],
    totalRows: number,
    scale: number,
  ): Promise<Float32Array> {
    const q = this.qStage.ensure(totalRows * this.queryRowElements * 4);
    const out = this.outStage.ensure(totalRows * this.queryRowElements * 4);
    entries.forEach((e, i) => {
      const data = qs[i]!;
      this.device.queue.writeBuffer(q, e.qRow * this.queryRowElements * 4, data.buffer, data.byteOffset, data.byteLength);
    });
    const bytes = totalRows * this.queryRowElements * 4;
    const readback = this.readbacks.acquire(bytes);
    const encoder = this.device.createCommandEncoder({ label: 'attend' });
    this.attention.encode(encoder, { chunks: this.pool.chunks[layer]!, blockTable: this.tableUpload.buffer, q, out, entries, scale });
    encoder.copyBufferToBuffer(out, 0, readback, 0, bytes);
    this.device.queue.submit([encoder.finish()]);
    return this.readbacks.read(readback, (data) => new Float32Array(data, 0, bytes / 4).slice());
  }

  /**
   * Attention of `entries` into `target`. With `staging` (only after canStage said yes) the decode also
   * attends over the batch's new K/V (k, v at their q rows) and stages it for `slots`; the rows reach the
   * pool by a flush recorded into `staging.encoder`: flushStagedGroup right after this decode, when
   * `layer` ends a flush group; else flushStagedBefore or the encoder's finish().
   */
  encodeAttention(
    target: GPUCommandEncoder | GPUComputePassEncoder,
    layer: number,
    entries: readonly AttentionEntry[],
    q: GPUBuffer,
    out: GPUBuffer,
    scale: number,
    staging?: StagedWrite,
  ): void {
    let write: DecodeKvWrite | undefined;
    if (staging) {
      const staged = this.staging.layerBinding(layer);
      write = this.stagedWrite;
      write.k = staging.k;
      write.v = staging.v;
      write.slots = staging.slots;
      write.staged = staged.buffer;
      write.stagedOffset = staged.offset;
    }
    this.attention.encode(target, { chunks: this.pool.chunks[layer]!, blockTable: this.tableUpload.buffer, q, out, entries, scale, write });
    if (staging) this.staging.noteStaged(staging.encoder, layer, staging.slots, staging.rows);
  }

  /** Records into `target` the flush of what `encoder` staged when `layer` (just staged) ends its flush group. */
  flushStagedGroup(encoder: GPUCommandEncoder, target: GPUCommandEncoder | GPUComputePassEncoder, layer: number): void {
    if (this.staging.endsGroup(layer)) this.staging.flush(encoder, target);
  }

  /**
   * Whether encodeAttention with `staging` can take a batch of `entries` (`rows` q rows): the staging
   * buffer (allocated with the cache) holds `rows` rows and its decode can take K/V (PagedAttentionKernel.writesKvFor).
   */
  canStage(entries: readonly AttentionEntry[], rows: number): boolean {
    return this.staging.fits(rows) && this.attention.writesKvFor(entries);
  }

  /** Bytes of the decode K/V staging buffer (0 where it was not allocated). */
  get stagingBytes(): number {
    return this.staging.allocatedBytes;
  }

  /** Records into `target` the flush of what `encoder` staged, if that includes `layer` (before other work of the layer). */
  flushStagedBefore(encoder: GPUCommandEncoder, target: GPUCommandEncoder | GPUComputePassEncoder, layer: number): void {
    if (this.staging.isPending(encoder, layer)) this.staging.flush(encoder, target);
  }

  destroy(): void {
    this.destroyRetired();
    this.writeKernelOrUndefined?.destroy();
    this.gatherKernelOrUndefined?.destroy();
    this.copyKernelOrUndefined?.destroy();
    this.attentionOrUndefined?.destroy();
    this.tableUpload.destroy();
    this.staging.destroy();
    for (const b of [this.kStage, this.vStage, this.slotStage, this.pairStage, this.qStage, this.outStage, this.gatherKStage, this.gatherVStage]) {
      b.destroy();
    }
    for (const b of [...this.batchSlotStages, ...this.droppedSlotStages]) b.destroy();
    this.readbacks.destroy();
  }

  // ---- helpers ---------------------------------------------------------------------------------------

  /** A growth failed (on out-of-memory WebGPU returns an invalid buffer): allocate afresh next time. */
  private discard(error: unknown, stages: GrowableBuffer[]): never {
    for (const stage of stages) stage.discard();
    throw error;
  }

  private upload(stage: GrowableBuffer, data: Float32Array): GPUBuffer {
    const buffer = stage.ensure(data.byteLength);
    this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return buffer;
  }

  private recordCopies(encoder: GPUCommandEncoder, copies: readonly BlockCopy[], onlyLayer: number | undefined): void {
    if (copies.length === 0) return;
    const words = new Uint32Array(copies.length * 2);
    copies.forEach((c, i) => {
      words[2 * i] = c.src;
      words[2 * i + 1] = c.dst;
    });
    const pairs = this.pairStage.ensure(words.byteLength);
    this.device.queue.writeBuffer(pairs, 0, words);
    const layers = onlyLayer === undefined ? this.pool.chunks.map((_, l) => l) : [onlyLayer];
    for (const layer of layers) {
      this.copyKernel.encode(encoder, { chunks: this.pool.chunks[layer]!, pairs, numPairs: copies.length });
    }
  }
}
