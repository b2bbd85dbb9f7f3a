// GPU scratch owned by a PagedAttentionKernel: upload slots for work lists and parameters, the split-K
// partial buffer, and a bind-group cache.
// Invariants / allocation policy:
//   - An upload slot holds one batch's work list (storage) and three 256-byte-aligned parameter blocks
//     (uniform: decode, prefill, merge). Slots are created lazily, at most UPLOAD_SLOTS of them; a slot's
//     work-list buffer grows by doubling and never shrinks. Nothing is allocated once the largest
//     batch has been seen.
//   - `upload` reuses the slot whose contents already equal the batch (the same batch encoded for every
//     layer costs one write; a caller passing the work list's version skips comparing the list itself —
//     versions must change whenever the list's contents may); otherwise it overwrites the least
//     recently used slot with queue.writeBuffer. Because writes take effect in queue order, up to UPLOAD_SLOTS different
//     batches may be encoded before one submit; more would overwrite a slot still waiting to run.
//   - The partial buffer grows by doubling; every encode binds whichever buffer is current, and
//     dispatches run in queue order, so layers and batches may share it.
//   - Bind groups come from a BindGroupCache (bind-group-cache.ts) filed by pipeline and by the buffer
//     at binding 1 (a layer's first KV chunk, or the partials), so a lookup scans only the few groups
//     that share it (one per upload slot); a grown buffer is a new identity, so stale groups age out.
import { BindGroupCache, groupEntries, type BindingEntry } from './bind-group-cache';

export const UPLOAD_SLOTS = 8;
export const PARAMS_STRIDE = 256;
/** u32 words of one parameter block (the WGSL Params struct). */
export const PARAMS_WORDS = 16;

export interface UploadSlot {
  items: GPUBuffer;
  params: GPUBuffer;
  contents: Uint32Array;
  lastUse: number;
  /** Version of the work list the slot holds (see upload), or -1. */
  version: number;
}

/** Whether `contents` holds itemWords words of items followed by exactly `params`. */
function sameParams(contents: Uint32Array, itemWords: number, params: Uint32Array): boolean {
  if (contents.length !== itemWords + params.length) return false;
  for (let i = 0; i < params.length; i++) if (contents[itemWords + i] !== params[i]) return false;
  return true;
}

/** Whether `contents` is exactly items[0..itemWords) followed by params. */
function holds(contents: Uint32Array, items: Uint32Array, itemWords: number, params: Uint32Array): boolean {
  if (contents.length !== itemWords + params.length) return false;
  for (let i = 0; i < itemWords; i++) if (contents[i] !== items[i]) return false;
  for (let i = 0; i < params.length; i++) if (contents[itemWords + i] !== params[i]) return false;
  return true;
}

export class AttentionResources {
  private readonly device: GPUDevice;
  private readonly slots: UploadSlot[] = [];
  private partials: GPUBuffer | undefined;
  /** Groups filed by pipeline and by the buffer at binding 1 (a layer's first KV chunk, or the partials). */
  private readonly bindGroups = new BindGroupCache(1);
  private useCounter = 0;

  constructor(device: GPUDevice) {
    this.device = device;
  }

  /**
   * Returns a slot holding `items[0..itemWords)` and `params` (3 blocks of PARAMS_WORDS words, stored at
   * PARAMS_STRIDE-byte strides). The
   * comparison key is items + params together.
   */
  upload(items: Uint32Array<ArrayBuffer>, itemWords: number, params: Uint32Array<ArrayBuffer>, version = -1): UploadSlot {
    const use = ++this.useCounter;
    // Fast path: the slot last filled from this very work list (same version) only needs its parameters compared.
    // Indexed loops: this runs for every layer of a step, and a for…of allocates an iterator until the JIT elides it.
    const slots = this.slots;
    if (version >= 0) {
      for (let i = 0; i < slots.length; i++) {
        const slot = slots[i]!;
        if (slot.version === version && sameParams(slot.contents, itemWords, params)) {
          slot.lastUse = use;
          return slot;
        }
      }
    }
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i]!;
      if (holds(slot.contents, items, itemWords, params)) {
        slot.lastUse = use;
        slot.version = version;
        return slot;
      }
    }
    const key = new Uint32Array(itemWords + params.length);
    key.set(items.subarray(0, itemWords));
    key.set(params, itemWords);
    const itemBytes = Math.max(32, itemWords * 4);
    let slot: UploadSlot;
    if (this.slots.length < UPLOAD_SLOTS) {
      slot = {
        items: this.createItems(itemBytes),
        params: this.device.createBuffer({
          label: 'paged-attention-params',
          size: 3 * PARAMS_STRIDE,
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        }),
        contents: key,
        lastUse: use,
        version,
      };
      this.slots.push(slot);
    } else {
      slot = this.slots.reduce((a, b) => (a.lastUse <= b.lastUse ? a : b));
      slot.contents = key;
      slot.lastUse = use;
      slot.version = version;
      if (slot.items.size < itemBytes) slot.items = this.createItems(Math.max(itemBytes, 2 * slot.items.size));
    }
    if (itemWords > 0) this.device.queue.writeBuffer(slot.items, 0, items, 0, itemWords);
    for (let k = 0; k < 3; k++) {
      this.device.queue.writeBuffer(slot.params, k * PARAMS_STRIDE, params, k * PARAMS_WORDS, PARAMS_WORDS);
    }
    return slot;
  }

  private createItems(bytes: number): GPUBuffer {
    return this.device.createBuffer({
      label: 'paged-attention-work-items',
      size: Math.ceil(bytes / 256) * 256,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
  }

  /** A partial buffer of at least `bytes` bytes. */
  partialBuffer(bytes: number): GPUBuffer {
    if (!this.partials || this.partials.size < bytes) {
      const size = Math.max(Math.ceil(bytes / 256) * 256, 2 * (this.partials?.size ?? 0));
      this.partials = this.device.createBuffer({ label: 'paged-attention-partials', size, usage: GPUBufferUsage.STORAGE });
    }
    return this.partials;
  }

  /**
   * Bind group of `entries` (binding i = entries[i]; an undefined entry is a binding the pipeline lacks),
   * cached by the identity of the pipeline and of each buffer, and each offset. `entries` may be a
   * scratch array the caller reuses: the cache keeps its own copy.
   */
  bindGroup(pipeline: GPUComputePipeline, entries: readonly BindingEntry[]): GPUBindGroup {
    const cached = this.bindGroups.find(pipeline, entries);
    if (cached !== undefined) return cached;
    const group = this.device.createBindGroup({
      label: 'paged-attention',
      layout: pipeline.getBindGroupLayout(0),
      entries: groupEntries(entries),
    });
    this.bindGroups.add(pipeline, entries, group);
    return group;
  }

  /** Number of cached bind groups (tests use it to prove reuse). */
  get bindGroupCount(): number {
    return this.bindGroups.size;
  }

  /** Destroys the scratch buffers; the owner must not encode afterwards. */
  destroy(): void {
    for (const slot of this.slots) {
      slot.items.destroy();
      slot.params.destroy();
    }
    this.slots.length = 0;
    this.partials?.destroy();
    this.partials = undefined;
    this.bindGroups.clear();
  }
}
