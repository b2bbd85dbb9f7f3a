// Host side of shaders/write-kv.wgsl: writes tokens' K and V rows into one layer's paged cache.
// Invariants: one dispatch writes all tokens; the pipeline is built once per device and layout
// (pipeline cache); each encode takes one ParamRing slot and reuses a cached bind group, so after
// the first call with given buffers no GPU object is created. At most `paramSlots` encodes of one kernel
// object may go into command buffers submitted together (see ParamRing). numTokens = 0 encodes nothing.
// Tokens must map to distinct slots (two tokens writing one slot race); 0xffffffff marks a padding slot.
import writeCode from '../../shaders/write-kv.wgsl?raw';
import f16BitsCode from '../../shaders/f16-bits.wgsl?raw';
import { InvalidArgumentError } from '../errors';
import type { KvLayout } from '../pool/kv-layout';
import {
  chunkSlotBuffers,
  requireCount,
  requireWords,
  type BindingKind,
  type KvKernelOptions,
} from './kv-bindings';
import { KvKernelCore } from './kv-kernel-core';

const WORKGROUP_SIZE = 64;
const BINDINGS: BindingKind[] = ['params', 'read', 'read', 'read', 'read-write', 'read-write', 'read-write', 'read-write'];

export interface WriteKvArgs {
  /** The layer's chunk buffers, `layout.numChunks` of them. */
  chunks: readonly GPUBuffer[];
  /** f32 K rows: token i, head h starts at element kOffsetElements + i * tokenStrideElements + h * headDim. */
  k: GPUBuffer;
  /** f32 V rows, addressed like `k` with vOffsetElements. May be the same buffer as `k`. */
  v: GPUBuffer;
  /** u32 per token: block * blockSize + offsetInBlock (global block id), or 0xffffffff to skip. */
  slots: GPUBuffer;
  numTokens: number;
  /** Default offset of both K and V (elements); 0 when omitted. */
  kvOffsetElements?: number;
  kOffsetElements?: number;
  vOffsetElements?: number;
  /** Elements from one token's rows to the next; numKvHeads * headDim when omitted. */
  tokenStrideElements?: number;
}

export class WriteKvKernel {
  readonly device: GPUDevice;
  readonly layout: KvLayout;
  private readonly core: KvKernelCore;

  constructor(device: GPUDevice, layout: KvLayout, options: KvKernelOptions = {}) {
    this.device = device;
    this.layout = layout;
    this.core = new KvKernelCore(device, layout, 'write-kv', `${f16BitsCode}\n${writeCode}`, BINDINGS, options);
  }

  /** Records the write into `target` (a compute pass, or an encoder that gets a pass of its own). */
  encode(target: GPUComputePassEncoder | GPUCommandEncoder, args: WriteKvArgs): void {
    const { layout } = this;
    const n = args.numTokens;
    requireCount('numTokens', n);
    const rowElements = layout.numKvHeads * layout.headDim;
    const stride = args.tokenStrideElements ?? rowElements;
    const kOffset = args.kOffsetElements ?? args.kvOffsetElements ?? 0;
    const vOffset = args.vOffsetElements ?? args.kvOffsetElements ?? 0;
    requireCount('tokenStrideElements', stride);
    requireCount('kOffsetElements', kOffset);
    requireCount('vOffsetElements', vOffset);
    if (stride < rowElements) {
      throw new InvalidArgumentError(`tokenStrideElements (${stride}) is below one token's K or V row (${rowElements} elements)`);
    }
    const chunkBuffers = chunkSlotBuffers(this.device, layout, args.chunks);
    if (n === 0) return;
    requireWords('slots', args.slots, n);
    requireWords('k', args.k, kOffset + (n - 1) * stride + rowElements);
    requireWords('v', args.v, vOffset + (n - 1) * stride + rowElements);
    this.core.dispatch(target, [args.slots, args.k, args.v, ...chunkBuffers], [n, kOffset, vOffset, stride], n * layout.numKvHeads * layout.wordsPerRow, WORKGROUP_SIZE);
  }

  /** Frees the parameter buffer; the kernel cannot be used afterwards. */
  destroy(): void {
    this.core.destroy();
  }
}
