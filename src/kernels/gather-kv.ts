// Host side of shaders/gather-kv.wgsl: copies one sequence's K and V out of a layer's paged cache
// into f32 [length][numKvHeads][headDim] buffers (used by readKV and by tests). Invariants: one
// dispatch per call; pipeline cached per device and layout; parameters in a ParamRing slot and bind
// groups cached, so `encode` creates no GPU object after the first call with given buffers.
// gatherKvToHost is the allocating convenience (temporary buffers, one submit, one readback).
import code from '../../shaders/gather-kv.wgsl?raw';
import { InvalidArgumentError } from '../errors';
import type { KvLayout } from '../pool/kv-layout';
import {
  chunkSlotBuffers,
  readBackWords,
  requireCount,
  requireWords,
  uploadWords,
  type BindingKind,
  type KvKernelOptions,
} from './kv-bindings';
import { KvKernelCore } from './kv-kernel-core';

const WORKGROUP_SIZE = 64;
const BINDINGS: BindingKind[] = ['params', 'read', 'read-write', 'read-write', 'read', 'read', 'read', 'read'];

export interface GatherKvArgs {
  /** The layer's chunk buffers, `layout.numChunks` of them. */
  chunks: readonly GPUBuffer[];
  /** u32 global block ids; the sequence's table starts at element tableOffset. */
  blockTable: GPUBuffer;
  tableOffset?: number;
  /** Tokens to read. */
  length: number;
  /** f32 outputs [length][numKvHeads][headDim] from element outOffsetElements; two distinct buffers. */
  k: GPUBuffer;
  v: GPUBuffer;
  outOffsetElements?: number;
}

export class GatherKvKernel {
  readonly device: GPUDevice;
  readonly layout: KvLayout;
  private readonly core: KvKernelCore;

  constructor(device: GPUDevice, layout: KvLayout, options: KvKernelOptions = {}) {
    this.device = device;
    this.layout = layout;
    this.core = new KvKernelCore(device, layout, 'gather-kv', code, BINDINGS, options);
  }

  encode(target: GPUComputePassEncoder | GPUCommandEncoder, args: GatherKvArgs): void {
    const { layout } = this;
    const length = args.length;
    const tableOffset = args.tableOffset ?? 0;
    const outOffset = args.outOffsetElements ?? 0;
    requireCount('length', length);
    requireCount('tableOffset', tableOffset);
    requireCount('outOffsetElements', outOffset);
    if (args.k === args.v) throw new InvalidArgumentError('gather-kv needs two distinct output buffers for K and V');
    const chunkBuffers = chunkSlotBuffers(this.device, layout, args.chunks);
    if (length === 0) return;
    const outElements = outOffset + length * layout.numKvHeads * layout.headDim;
    requireWords('blockTable', args.blockTable, tableOffset + Math.ceil(length / layout.blockSize));
    requireWords('k', args.k, outElements);
    requireWords('v', args.v, outElements);
    this.core.dispatch(target, [args.blockTable, args.k, args.v, ...chunkBuffers], [length, tableOffset, outOffset], length * layout.numKvHeads * layout.wordsPerRow, WORKGROUP_SIZE);
  }

  destroy(): void {
    this.core.destroy();
  }
}

/**
 * Reads `length` tokens of the sequence whose block ids are `blocks` back to the CPU. Allocates a
 * table buffer, two output buffers and staging buffers per call (freed before it resolves).
 */
export async function gatherKvToHost(
  kernel: GatherKvKernel,
  chunks: readonly GPUBuffer[],
  blocks: Uint32Array,
  length: number,
): Promise<{ k: Float32Array; v: Float32Array }> {
  const { device, layout } = kernel;
  requireCount('length', length);
  if (blocks.length < Math.ceil(length / layout.blockSize)) {
    throw new InvalidArgumentError(`${length} tokens need ${Math.ceil(length / layout.blockSize)} blocks, got ${blocks.length}`);
  }
  const elements = length * layout.numKvHeads * layout.headDim;
  if (elements === 0) return { k: new Float32Array(0), v: new Float32Array(0) };
  const table = uploadWords(device, blocks, 'gather-kv-table');
  const size = Math.ceil((elements * 4) / 16) * 16;
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
  const k = device.createBuffer({ label: 'gather-kv-k', size, usage });
  const v = device.createBuffer({ label: 'gather-kv-v', size, usage });
  try {
    const encoder = device.createCommandEncoder({ label: 'gather-kv' });
    kernel.encode(encoder, { chunks, blockTable: table, length, k, v });
    device.queue.submit([encoder.finish()]);
    const [kWords, vWords] = await Promise.all([readBackWords(device, k, elements * 4), readBackWords(device, v, elements * 4)]);
    return { k: new Float32Array(kWords.buffer, 0, elements), v: new Float32Array(vWords.buffer, 0, elements) };
  } finally {
    table.destroy();
    k.destroy();
    v.destroy();
  }
}
