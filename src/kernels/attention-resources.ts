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
import { writeElements } from '../gpu/write-elements';
import { BindGroupCache, groupEntries, type BindingEntry } from './bind-group-cache';

export const UPLOAD_SLOTS = 8;
export const PARAMS_STRIDE = 256;
/** u32 words of one parameter block (the WGSL Params struct). */
export const PARAMS_WORDS = 16;
/** Parameter blocks per slot (decode, prefill, merge), each at a PARAMS_STRIDE-byte offset. */
export const PARAM_BLOCKS = 3;

export interface UploadSlot {
  items: GPUBuffer;
  params: GPUBuffer;
  /** contents[0..contentWords): the items then the parameters the slot holds (the array is reused, grown by doubling). */
  contents: Uint32Array;
  contentWords: number;
  lastUse: number;
  /** Version of the work list the slot holds (see upload), or -1. */
  version: number;
}

/** Whether `slot` holds itemWords words of items followed by exactly `params`. */
function sameParams(slot: UploadSlot, itemWords: number, params: Uint32Array): boolean {
  if (slot.contentWords !== itemWords + params.length) return false;
  const contents = slot.contents;
  for (let i = 0; i < params.length; i++) if (contents[itemWords + i] !== params[i]) return false;
  return true;
}

/** Whether `slot` holds exactly items[0..itemWords) followed by params. */
function holds(slot: UploadSlot, items: Uint32Array, itemWords: number, params: Uint32Array): boolean {
  if (!sameParams(slot, itemWords, params)) return false;
  const contents = slot.contents;
  for (let i = 0; i < itemWords; i++) if (contents[i] !== items[i]) return false;
  return true;
}

const PARAMS_STRIDE_WORDS = PARAMS_STRIDE / 4;

export class AttentionResources {
  private readonly device: GPUDevice;
  private readonly slots: UploadSlot[] = [];
  private partials: GPUBuffer | undefined;
  /** Groups filed by pipeline and by the buffer at binding 1 (a layer's first KV chunk, or the partials). */
  private readonly bindGroups = new BindGroupCache(1);
  private useCounter = 0;
  /** The parameter blocks at their offsets, staged for one write. */
  private readonly paramStaging = new Uint32Array((PARAM_BLOCKS - 1) * PARAMS_STRIDE_WORDS + PARAMS_WORDS);

  constructor(device: GPUDevice) {
    this.device = device;
  }

  /**
   * Returns a slot holding `items[0..itemWords)` and `params` (PARAM_BLOCKS blocks of PARAMS_WORDS words, stored at
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
        if (slot.version === version && sameParams(slot, itemWords, params)) {
          slot.lastUse = use;
          return slot;
        }
      }
    }
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i]!;
      if (holds(slot, items, itemWords, params)) {
        slot.lastUse = use;
        slot.version = version;
        return slot;
      }
    }
    const words = itemWords + params.length;
    const itemBytes = Math.max(32, itemWords * 4);
    let slot: UploadSlot;
    if (this.slots.length < UPLOAD_SLOTS) {
      slot = {
        items: this.createItems(itemBytes),
        params: this.device.createBuffer({
          label: 'paged-attention-params',
          size: PARAM_BLOCKS * PARAMS_STRIDE,
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        }),
        contents: new Uint32Array(words),
        contentWords: 0,
        lastUse: use,
        version,
      };
      this.slots.push(slot);
    } else {
      slot = slots[0]!;
      for (let i = 1; i < slots.length; i++) if (slots[i]!.lastUse < slot.lastUse) slot = slots[i]!;
      slot.lastUse = use;
      slot.version = version;
      if (slot.items.size < itemBytes) slot.items = this.createItems(Math.max(itemBytes, 2 * slot.items.size));
      if (slot.contents.length < words) slot.contents = new Uint32Array(Math.max(words, 2 * slot.contents.length));
    }
    slot.contents.set(items.subarray(0, itemWords));
    slot.contents.set(params, itemWords);
    slot.contentWords = words;
    if (itemWords > 0) writeElements(this.device.queue, slot.items, 0, items, 0, itemWords);
    const staging = this.paramStaging;
    for (let k = 0; k < PARAM_BLOCKS; k++) {
      for (let w = 0; w < PARAMS_WORDS; w++) staging[k * PARAMS_STRIDE_WORDS + w] = params[k * PARAMS_WORDS + w]!;
    }
    writeElements(this.device.queue, slot.params, 0, staging);
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
