// Host side of shaders/copy-blocks.wgsl: copies whole blocks of one layer (K and V, all heads) for
// copy-on-write, across chunks if needed, in one dispatch. Invariants: pipeline cached per device and
// layout; parameters in a ParamRing slot and bind groups cached, so `encode` creates no GPU object
// after the first call with given buffers. Destinations must be distinct and must not be sources of the
// same call (checkCopyPairs verifies a host-side list); numPairs = 0 encodes nothing.
import code from '../../shaders/copy-blocks.wgsl?raw';
import { ConfigError, InvalidArgumentError } from '../errors';
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
const BINDINGS: BindingKind[] = ['params', 'read', 'read-write', 'read-write', 'read-write', 'read-write'];

export interface CopyBlocksArgs {
  /** The layer's chunk buffers, `layout.numChunks` of them. */
  chunks: readonly GPUBuffer[];
  /** u32 pairs (source, destination) of global block ids, starting at element pairsOffset. */
  pairs: GPUBuffer;
  pairsOffset?: number;
  numPairs: number;
}

/** Throws unless `pairs` (flat [src, dst, ...]) names valid blocks with distinct, non-source destinations. */
export function checkCopyPairs(layout: KvLayout, pairs: ArrayLike<number>): void {
  if (pairs.length % 2 !== 0) throw new InvalidArgumentError(`copy pairs need an even number of ids (got ${pairs.length})`);
  const sources = new Set<number>();
  const destinations = new Set<number>();
  for (let i = 0; i < pairs.length; i++) {
    const block = pairs[i]!;
    if (!Number.isInteger(block) || block < 0 || block >= layout.numBlocks) {
      throw new InvalidArgumentError(`block id ${block} is outside [0, ${layout.numBlocks})`);
    }
    (i % 2 === 0 ? sources : destinations).add(block);
  }
  if (destinations.size !== pairs.length / 2) throw new InvalidArgumentError('copy destinations must be distinct');
  for (const d of destinations) {
    if (sources.has(d)) throw new InvalidArgumentError(`block ${d} is both a copy source and a destination`);
  }
}

export class CopyBlocksKernel {
  readonly device: GPUDevice;
  readonly layout: KvLayout;
  private readonly core: KvKernelCore;

  constructor(device: GPUDevice, layout: KvLayout, options: KvKernelOptions = {}) {
    if (layout.wordsPerBlock % 4 !== 0) {
      throw new ConfigError(`copy-blocks copies vec4 words but a block has ${layout.wordsPerBlock} words`);
    }
    this.device = device;
    this.layout = layout;
    this.core = new KvKernelCore(device, layout, 'copy-blocks', code, BINDINGS, options);
  }

  encode(target: GPUComputePassEncoder | GPUCommandEncoder, args: CopyBlocksArgs): void {
    const n = args.numPairs;
    const pairsOffset = args.pairsOffset ?? 0;
    requireCount('numPairs', n);
    requireCount('pairsOffset', pairsOffset);
    const chunkBuffers = chunkSlotBuffers(this.device, this.layout, args.chunks);
    if (n === 0) return;
    requireWords('pairs', args.pairs, pairsOffset + 2 * n);
    this.core.dispatch(target, [args.pairs, ...chunkBuffers], [n, pairsOffset], (n * this.layout.wordsPerBlock) / 4, WORKGROUP_SIZE);
  }

  destroy(): void {
    this.core.destroy();
  }
}
