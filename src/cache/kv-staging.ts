// K/V that decodes stage in a caller's command encoder instead of writing the pool (PagedAttentionArgs
// .write), and the flushes that store it into the pool before that encoder's command buffer ends.
// Invariants:
//   - One staging buffer of numLayers regions, layerStride bytes apart (a multiple of the storage offset alignment), each holding `rowsCapacity`
//     staged rows (stagedKvRowBytes). A decode of layer l stages into region l; the flush of an encoder
//     reads them back in the same command buffer. Command buffers run one after another, so regions are
//     private to the command buffer running: two encoders recorded side by side never need to share.
//   - Per encoder, the layers staged and not flushed yet, each with its batch's slot map and row count;
//     a layer is staged at most once between flushes (the cache flushes an encoder's staged layers
//     before anything else of that layer is recorded into it: its decodes and writes would otherwise
//     run before the staged rows reach the pool).
//   - Layers form flush groups: consecutive runs of `groupLayers` (the last one shorter when needed),
//     balanced so that each group is one flush dispatch. Staging a group's last layer flushes what the
//     encoder has staged right there, into the same pass as that decode: a step that runs its layers in
//     order records its flushes among its own dispatches and needs no pass at finish.
//   - The encoder's finish() flushes what is still staged (wrapped once, on its first staged layer), so
//     every command buffer that stages also stores; an encoder never finished leaves nothing behind but
//     its map entry, dropped with the cache.
//   - The buffer grows only while no command buffer recorded with staged rows can still be submitted
//     (the caller says so: canGrow); the old one is destroyed once the work submitted so far has run.
import type { KvLayout } from '../pool/kv-layout';
import type { KvPool } from '../pool/kv-pool';
import { flushLayersPerDispatch, FlushStagedKvKernel, stagedLayerStride } from '../kernels/flush-staged-kv';

interface StagedLayer {
  readonly layer: number;
  readonly slots: GPUBuffer;
  readonly rows: number;
}

export class KvStaging {
  /** Whether this device and layout can stage at all (a flush of one layer fits the binding limit). */
  readonly available: boolean;
  /** Layers per flush group (the last group may be shorter): as even as the flush's binding limit allows. */
  readonly groupLayers: number;
  private buffer: GPUBuffer | undefined;
  private rowsCapacity = 0;
  private layerStride = 0;
  private readonly maxBytes: number;
  private readonly pending = new Map<GPUCommandEncoder, StagedLayer[]>();
  private flushKernel: FlushStagedKvKernel | undefined;
  /** The chunk lists of one flush's layers (reused). */
  private readonly layerChunks: (readonly GPUBuffer[])[] = [];
  /** The staged binding of the last layerBinding call (reused; the bind-group cache copies what it keeps). */
  private readonly binding: { buffer: GPUBuffer; offset: number } = { buffer: undefined as unknown as GPUBuffer, offset: 0 };

  constructor(
    private readonly device: GPUDevice,
    private readonly layout: KvLayout,
    private readonly pool: KvPool,
  ) {
    const perDispatch = flushLayersPerDispatch(device, layout);
    this.available = perDispatch >= 1;
    this.groupLayers = this.available ? Math.ceil(layout.numLayers / Math.ceil(layout.numLayers / perDispatch)) : 0;
    // The flush binds the whole buffer.
    this.maxBytes = Math.min(device.limits.maxBufferSize, device.limits.maxStorageBufferBindingSize);
  }

  /**
   * Whether `rows` rows of every layer can be staged now, growing the buffer where it is too small and
   * canGrow (no recorded staged work can still be submitted); false means: write the K/V another way.
   */
  reserve(rows: number, canGrow: boolean): boolean {
    if (!this.available) return false;
    if (rows <= this.rowsCapacity) return true;
    if (!canGrow) return false;
    const strideFor = (capacity: number) => stagedLayerStride(this.device, this.layout, capacity);
    let capacity = Math.max(rows, Math.ceil(this.rowsCapacity * 1.5));
    if (strideFor(capacity) * this.layout.numLayers > this.maxBytes) capacity = rows;
    if (strideFor(capacity) * this.layout.numLayers > this.maxBytes) return false;
    const old = this.buffer;
    this.layerStride = strideFor(capacity);
    this.rowsCapacity = capacity;
    this.buffer = this.device.createBuffer({ label: 'staged-kv', size: this.layerStride * this.layout.numLayers, usage: GPUBufferUsage.STORAGE });
    if (old) this.device.queue.onSubmittedWorkDone().then(() => old.destroy(), () => old.destroy());
    return true;
  }

  /** Where a decode of `layer` stages its rows (after a successful reserve). */
  layerBinding(layer: number): { buffer: GPUBuffer; offset: number } {
    this.binding.buffer = this.buffer!;
    this.binding.offset = layer * this.layerStride;
    return this.binding;
  }

  /** Whether `encoder` holds staged rows of `layer` not flushed yet. */
  isPending(encoder: GPUCommandEncoder, layer: number): boolean {
    const staged = this.pending.get(encoder);
    if (staged === undefined) return false;
    for (let i = 0; i < staged.length; i++) if (staged[i]!.layer === layer) return true;
    return false;
  }

  /** Whether `layer` is the last of its flush group (staging it flushes the encoder's staged layers). */
  endsGroup(layer: number): boolean {
    return (layer + 1) % this.groupLayers === 0 || layer === this.layout.numLayers - 1;
  }

  /** Whether `encoder` holds staged rows of any layer not flushed yet. */
  hasPending(encoder: GPUCommandEncoder): boolean {
    return (this.pending.get(encoder)?.length ?? 0) > 0;
  }

  /** A decode of `layer` recorded into `encoder` staged `rows` rows for the slots in `slots`. */
  noteStaged(encoder: GPUCommandEncoder, layer: number, slots: GPUBuffer, rows: number): void {
    let staged = this.pending.get(encoder);
    if (staged === undefined) {
      this.pending.set(encoder, (staged = []));
      const finish = encoder.finish.bind(encoder);
      encoder.finish = (descriptor?: GPUCommandBufferDescriptor): GPUCommandBuffer => {
        if (this.hasPending(encoder)) this.flush(encoder, encoder);
        this.pending.delete(encoder);
        return finish(descriptor);
      };
    }
    staged.push({ layer, slots, rows });
  }

  /**
   * Records, into `target` (the encoder's open pass, or the encoder), the stores of every layer `encoder`
   * has staged, one dispatch per run of consecutive layers of one batch (split by the flush's binding
   * limit), and forgets them.
   */
  flush(encoder: GPUCommandEncoder, target: GPUComputePassEncoder | GPUCommandEncoder): void {
    const staged = this.pending.get(encoder);
    if (staged === undefined || staged.length === 0) return;
    const kernel = (this.flushKernel ??= new FlushStagedKvKernel(this.device, this.layout));
    const chunks = this.layerChunks;
    for (let start = 0; start < staged.length; ) {
      const first = staged[start]!;
      let end = start + 1;
      while (end < staged.length && staged[end]!.layer === first.layer + (end - start) && staged[end]!.slots === first.slots && staged[end]!.rows === first.rows) end++;
      chunks.length = 0;
      for (let i = start; i < end; i++) chunks.push(this.pool.chunks[staged[i]!.layer]!);
      kernel.encode(target, {
        layers: chunks,
        slots: first.slots,
        rows: first.rows,
        staged: this.buffer!,
        stagedOffset: first.layer * this.layerStride,
        stagedLayerStride: this.layerStride,
      });
      start = end;
    }
    staged.length = 0;
  }

  destroy(): void {
    this.pending.clear();
    this.flushKernel?.destroy();
    this.flushKernel = undefined;
    this.buffer?.destroy();
    this.buffer = undefined;
    this.rowsCapacity = 0;
  }
}
