// Plumbing shared by the KV-cache kernels (write-kv, gather-kv, copy-blocks). Invariants:
//   - A kernel always binds MAX_KV_CHUNKS chunk slots. Slots a layer does not use get distinct 16-byte
//     spare buffers (one per slot, per device): WebGPU rejects one buffer bound to two writable bindings
//     of a dispatch, so neither chunk 0 nor one shared dummy may fill several unused slots.
//   - Kernel parameters live in a ParamRing: a uniform buffer of fixed-size slots read through a dynamic
//     offset. Each encode takes the next slot and fills it with queue.writeBuffer, which the queue orders
//     before any later submit; so dispatches stay correct as long as at most `slots` encodes of one
//     kernel object go into command buffers submitted together. Nothing is allocated per encode.
//   - Bind groups are cached by the identity of the buffers they bind (bind-group-cache.ts), so
//     steady-state calls with the same buffers create no WebGPU objects.
import { bufferFacts } from '../gpu/buffer-facts';
import { writeElements } from '../gpu/write-elements';
import { InvalidArgumentError } from '../errors';
import { MAX_KV_CHUNKS, type KvLayout } from '../pool/kv-layout';

const spareChunks = new WeakMap<GPUDevice, GPUBuffer[]>();

/** MAX_KV_CHUNKS - 1 distinct 16-byte storage buffers for the chunk slots a layer leaves unused. */
function spareChunkBuffers(device: GPUDevice): GPUBuffer[] {
  let spares = spareChunks.get(device);
  if (!spares) {
    spares = [];
    for (let i = 1; i < MAX_KV_CHUNKS; i++) {
      spares.push(device.createBuffer({ label: `unused-kv-chunk-${i}`, size: 16, usage: GPUBufferUsage.STORAGE }));
    }
    spareChunks.set(device, spares);
  }
  return spares;
}

/** The MAX_KV_CHUNKS buffers to bind for one layer: its chunks, then a distinct spare per unused slot. */
export function chunkSlotBuffers(device: GPUDevice, layout: KvLayout, chunks: readonly GPUBuffer[]): GPUBuffer[] {
  if (chunks.length !== layout.numChunks) {
    throw new InvalidArgumentError(`expected ${layout.numChunks} chunk buffer(s) for one layer, got ${chunks.length}`);
  }
  const spares = spareChunkBuffers(device);
  const slots: GPUBuffer[] = [];
  for (let s = 0; s < MAX_KV_CHUNKS; s++) {
    if (s < chunks.length) {
      const chunk = chunks[s]!;
      const size = bufferFacts(chunk)?.size ?? 0;
      if (size < layout.chunkBytes[s]!) {
        throw new InvalidArgumentError(`chunk ${s} has ${size} bytes, the layout needs ${layout.chunkBytes[s]}`);
      }
      slots.push(chunk);
    } else {
      slots.push(spares[s - 1]!);
    }
  }
  return slots;
}

/** Override constants describing the layout, as every KV kernel declares them. */
export function layoutConstants(layout: KvLayout): Record<string, number> {
  return {
    BLOCK_SIZE: layout.blockSize,
    NUM_KV_HEADS: layout.numKvHeads,
    WORDS_PER_ROW: layout.wordsPerRow,
    BLOCKS_PER_CHUNK: layout.blocksPerChunk,
    NUM_BLOCKS: layout.numBlocks,
    F16: layout.kvDtype === 'f16' ? 1 : 0,
  };
}

/** Ring of uniform parameter slots, four u32 each, read through a dynamic offset (contract above). */
export class ParamRing {
  static readonly BYTES = 16;
  readonly buffer: GPUBuffer;
  readonly slots: number;
  private readonly stride: number;
  /** The last parameters pushed, and the offset of the slot holding them (-1: none yet). */
  private readonly staging = new Uint32Array(4);
  private lastOffset = -1;
  private cursor = 0;

  constructor(private readonly device: GPUDevice, label: string, slots: number) {
    if (!Number.isInteger(slots) || slots < 1) throw new InvalidArgumentError(`param slots must be a positive integer (got ${slots})`);
    this.stride = Math.max(ParamRing.BYTES, device.limits.minUniformBufferOffsetAlignment);
    this.slots = slots;
    this.buffer = device.createBuffer({ label, size: this.stride * slots, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  }

  /**
   * Writes the four parameters into the next slot and returns its dynamic offset. The same four as the
   * last push reuse its slot (no upload): that slot keeps them until the ring comes round to it again.
   */
  push(a: number, b = 0, c = 0, d = 0): number {
    const s = this.staging;
    if (this.lastOffset >= 0 && s[0] === a && s[1] === b && s[2] === c && s[3] === d) return this.lastOffset;
    const offset = this.cursor * this.stride;
    this.cursor = (this.cursor + 1) % this.slots;
    this.lastOffset = offset;
    s[0] = a;
    s[1] = b;
    s[2] = c;
    s[3] = d;
    writeElements(this.device.queue, this.buffer, offset, s);
    return offset;
  }

  destroy(): void {
    this.buffer.destroy();
  }
}

export interface KvKernelOptions {
  /** Encodes of one kernel object that may share one submit (ParamRing slots); 256 when omitted. */
  paramSlots?: number;
  /** Caps workgroups per grid dimension below the device limit (tests use it to reach the 2D grid). */
  maxWorkgroupsPerDimension?: number;
}

export type BindingKind = 'params' | 'read' | 'read-write';

const kernelLayouts = new WeakMap<GPUDevice, Map<string, { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout }>>();

/**
 * The bind group and pipeline layout of kernel `name` on `device`, made once: binding i has kind
 * kinds[i] ('params' = a ParamRing uniform with dynamic offset, else a storage buffer).
 */
export function kernelLayout(device: GPUDevice, name: string, kinds: readonly BindingKind[]): { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout } {
  let byDevice = kernelLayouts.get(device);
  if (!byDevice) kernelLayouts.set(device, (byDevice = new Map()));
  let layout = byDevice.get(name);
  if (!layout) {
    const entries: GPUBindGroupLayoutEntry[] = kinds.map((kind, binding) => ({
      binding,
      visibility: GPUShaderStage.COMPUTE,
      buffer:
        kind === 'params'
          ? { type: 'uniform', hasDynamicOffset: true, minBindingSize: ParamRing.BYTES }
          : { type: kind === 'read' ? 'read-only-storage' : 'storage' },
    }));
    const group = device.createBindGroupLayout({ label: name, entries });
    layout = { group, pipeline: device.createPipelineLayout({ label: name, bindGroupLayouts: [group] }) };
    byDevice.set(name, layout);
  }
  return layout;
}

/**
 * Workgroup counts (x, y) covering `threads` invocations in workgroups of `workgroupSize`, on a device
 * allowing `deviceMax` workgroups per dimension.
 */
export function dispatchGrid(deviceMax: number, threads: number, workgroupSize: number, options: KvKernelOptions = {}): [number, number] {
  if (threads >= 2 ** 32) throw new InvalidArgumentError(`one dispatch covers at most 2^32 - 1 words (got ${threads}); split the call`);
  const groups = Math.ceil(threads / workgroupSize);
  const maxPerDim = Math.min(deviceMax, options.maxWorkgroupsPerDimension ?? Infinity);
  const x = Math.min(groups, maxPerDim);
  const y = Math.ceil(groups / x);
  if (y > maxPerDim || x * y * workgroupSize >= 2 ** 32) {
    throw new InvalidArgumentError(`${threads} words exceed one dispatch on this device; split the call`);
  }
  return [x, y];
}

/** Whether a recording target is a compute pass (record into it) rather than a command encoder. */
export function isComputePass(target: GPUComputePassEncoder | GPUCommandEncoder): target is GPUComputePassEncoder {
  return 'dispatchWorkgroups' in target;
}

/**
 * Runs `record` inside a compute pass: the caller's pass, or a new one (`descriptor`) on the caller's
 * encoder, ended even if `record` throws.
 */
export function withComputePass(
  target: GPUComputePassEncoder | GPUCommandEncoder,
  record: (pass: GPUComputePassEncoder) => void,
  descriptor?: GPUComputePassDescriptor,
): void {
  if (isComputePass(target)) {
    record(target);
    return;
  }
  const pass = target.beginComputePass(descriptor);
  try {
    record(pass);
  } finally {
    pass.end();
  }
}

export function requireCount(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** 32) {
    throw new InvalidArgumentError(`${name} must be a non-negative integer below 2^32 (got ${value})`);
  }
}

/** Throws unless `buffer` holds at least `words` u32 words. */
export function requireWords(name: string, buffer: GPUBuffer, words: number): void {
  const size = bufferFacts(buffer)?.size ?? 0;
  if (size < words * 4) {
    throw new InvalidArgumentError(`${name} has ${size} bytes but the call reads or writes ${words * 4}`);
  }
}

/** A new storage buffer holding `words` (COPY_SRC/COPY_DST too). Allocates: not for hot paths. */
export function uploadWords(device: GPUDevice, words: Uint32Array | Int32Array | Float32Array, label = 'kv-upload'): GPUBuffer {
  const size = Math.max(16, Math.ceil(words.byteLength / 16) * 16);
  const buffer = device.createBuffer({
    label,
    size,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    mappedAtCreation: true,
  });
  new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(words.buffer, words.byteOffset, words.byteLength));
  buffer.unmap();
  return buffer;
}

/** Copies `bytes` (default: all) of `buffer` back to the CPU. Allocates a staging buffer per call. */
export async function readBackWords(device: GPUDevice, buffer: GPUBuffer, bytes = buffer.size): Promise<Uint32Array> {
  const size = Math.ceil(bytes / 4) * 4;
  const staging = device.createBuffer({ label: 'kv-readback', size: Math.max(4, size), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const encoder = device.createCommandEncoder({ label: 'kv-readback' });
    if (size > 0) encoder.copyBufferToBuffer(buffer, 0, staging, 0, size);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ, 0, Math.max(4, size));
    return new Uint32Array(staging.getMappedRange(0, size).slice(0));
  } finally {
    staging.destroy();
  }
}
