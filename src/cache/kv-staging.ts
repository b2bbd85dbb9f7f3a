// K/V that decodes stage in a caller's command encoder instead of writing the pool (PagedAttentionArgs
// .write), and the flushes that store it into the pool before that encoder's command buffer ends.
// Invariants:
//   - One staging buffer of numLayers regions, layerStride bytes apart (a multiple of the storage offset
//     alignment), each holding `rowsCapacity` staged rows (stagedKvRowBytes): a row per sequence the
//     cache can hold (maxSequences), or as many as one binding allows. It is allocated once, by
//     allocate() under the cache's creation error scope, and never grows: a decode batch has a row per
//     sequence, so it always fits, and recording a step never allocates (an out-of-memory there could
//     not be reported at the call, and the bind groups made over the invalid buffer would fail every
//     later step). A decode of layer l stages into region l; the flush of an encoder reads them back in
//     the same command buffer. Command buffers run one after another, so regions are private to the
//     command buffer running: two encoders recorded side by side never need to share.
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
import type { KvLayout } from '../pool/kv-layout';
import type { KvPool } from '../pool/kv-pool';
import { flushLayersPerDispatch, FlushStagedKvKernel, stagedKvRowBytes, stagedLayerStride } from '../kernels/flush-staged-kv';

interface StagedLayer {
  readonly layer: number;
  readonly slots: GPUBuffer;
  readonly rows: number;
}

export class KvStaging {
  /** Layers per flush group (the last group may be shorter): as even as the flush's binding limit allows. */
  readonly groupLayers: number;
  /** Rows each layer's region holds once allocated (0: this device and layout cannot stage). */
  readonly rowsCapacity: number;
  private readonly layerStride: number;
  private buffer: GPUBuffer | undefined;
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
    maxRows: number,
  ) {
    const perDispatch = flushLayersPerDispatch(device, layout);
    this.groupLayers = perDispatch >= 1 ? Math.ceil(layout.numLayers / Math.ceil(layout.numLayers / perDispatch)) : 0;
    // A binding (the flush's, of a layer group; the decode's, of a layer) must fit the limit; so must the buffer.
    const maxBytes = Math.min(device.limits.maxBufferSize, device.limits.maxStorageBufferBindingSize);
    const alignment = device.limits.minStorageBufferOffsetAlignment;
    const strideLimit = Math.floor(maxBytes / layout.numLayers / alignment) * alignment;
    this.rowsCapacity = perDispatch >= 1 ? Math.min(maxRows, Math.floor(strideLimit / stagedKvRowBytes(layout))) : 0;
    this.layerStride = this.rowsCapacity > 0 ? stagedLayerStride(device, layout, this.rowsCapacity) : 0;
  }

  /** Bytes the staging buffer takes once allocated. */
  get bytes(): number {
    return this.layerStride * this.layout.numLayers;
  }

  /** Bytes of the staging buffer as allocated (0 before allocate()). */
  get allocatedBytes(): number {
    return this.buffer === undefined ? 0 : this.bytes;
  }

  /** Creates the staging buffer (call under an error scope; once). */
  allocate(): void {
    if (this.rowsCapacity === 0 || this.buffer !== undefined) return;
    this.buffer = this.device.createBuffer({ label: 'staged-kv', size: this.bytes, usage: GPUBufferUsage.STORAGE });
  }

  /** Whether `rows` rows of every layer can be staged (allocated, and they fit); false means: write the K/V another way. */
  fits(rows: number): boolean {
    return this.buffer !== undefined && rows <= this.rowsCapacity;
  }

  /** Where a decode of `layer` stages its rows (after fits said yes). */
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

  /** Hands over the flush kernel (its parameter ring may be an invalid allocation after a GPU error); a new one is made on next use. */
  takeFlushKernel(): FlushStagedKvKernel | undefined {
    const kernel = this.flushKernel;
    this.flushKernel = undefined;
    return kernel;
  }

  destroy(): void {
    this.pending.clear();
    this.flushKernel?.destroy();
    this.flushKernel = undefined;
    this.buffer?.destroy();
    this.buffer = undefined;
  }
}
