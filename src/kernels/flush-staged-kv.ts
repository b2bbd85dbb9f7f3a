// flush-staged-kv: stores K/V rows that decodes staged (PagedAttentionArgs.write) into their cache slots,
// for several layers in one dispatch. A decode step that stages every layer's new K/V and flushes them
// afterwards records one dispatch per layer plus one per `layersPerDispatch` layers, instead of a write
// and a decode per layer, and its decodes read the pool through read-only bindings.
// Invariants:
//   - Rows are whole vec4 words (head dims are multiples of 8), so one invocation moves 16 bytes.
//   - Staged rows are in the pool's word format (f16 pairs packed, or f32 bits): row r's K for kv head h
//     at vec4 ((r · numKvHeads + h) · 2) · vecsPerRow, its V right after; layer i at stagedOffset + i ·
//     stagedLayerStride bytes. A dispatch binds the range of its own layers, so its parameters (rows, the
//     stride) are the same for every dispatch and step of one batch size: no upload after the first.
//   - The same slot rule as write-kv: slot = block · blockSize + offset (global block id); a padding slot
//     (0xffffffff) or a block ≥ numBlocks is skipped.
//   - One invocation per vec4 of (layer, row, kv head, K|V); the WGSL is generated per layer count (its
//     bindings are that many layers' chunks, read_write, after params, slots and the staged rows), so a
//     pipeline exists per count used, built on first use.
//   - A dispatch binds 2 + layers · numChunks storage buffers: layersPerDispatch is the most the device's
//     maxStorageBuffersPerShaderStage allows (capped at MAX_FLUSH_LAYERS).
import { InvalidArgumentError } from '../errors';
import type { KvLayout } from '../pool/kv-layout';
import { requireCount, requireWords, withComputePass, type BindingKind, type KvKernelOptions } from './kv-bindings';
import { KvKernelCore } from './kv-kernel-core';

const WORKGROUP_SIZE = 64;
/** The most layers one flush dispatch stores (more gains little: a step's flushes are few already). */
export const MAX_FLUSH_LAYERS = 16;

/** Bytes one staged row takes: K and V of every kv head, in the pool's word format. */
export function stagedKvRowBytes(layout: KvLayout): number {
  return layout.numKvHeads * 2 * layout.wordsPerRow * 4;
}

/** The smallest layer stride (bytes) for `rows` staged rows that encode accepts: their bytes, rounded up to the storage offset alignment. */
export function stagedLayerStride(device: GPUDevice, layout: KvLayout, rows: number): number {
  const alignment = device.limits.minStorageBufferOffsetAlignment;
  return Math.ceil((rows * stagedKvRowBytes(layout)) / alignment) * alignment;
}

/** Layers one flush dispatch can store on `device` (0: not even one fits its storage-binding limit). */
export function flushLayersPerDispatch(device: GPUDevice, layout: KvLayout): number {
  return Math.min(MAX_FLUSH_LAYERS, Math.floor((device.limits.maxStorageBuffersPerShaderStage - 2) / layout.numChunks));
}

export interface FlushStagedKvArgs {
  /** The chunk buffers of each layer to store, in staging order (layer i's rows at stagedOffset + i · stagedLayerStride). */
  layers: readonly (readonly GPUBuffer[])[];
  /** u32 per row: its cache slot, or 0xffffffff to skip the row. */
  slots: GPUBuffer;
  rows: number;
  staged: GPUBuffer;
  /** Bytes before the first layer's rows in `staged`: a multiple of the device's minStorageBufferOffsetAlignment. */
  stagedOffset: number;
  /** Bytes from one layer's rows to the next's: at least rows · stagedKvRowBytes, a multiple of minStorageBufferOffsetAlignment. */
  stagedLayerStride: number;
}

/** The flush module for `layers` layers of `numChunks` chunks each (the pool geometry is prepended by KvKernelCore). */
function flushShader(layers: number, numChunks: number): string {
  const lines = [
    `const LAYERS: u32 = ${layers}u;`,
    'const PADDING_SLOT: u32 = 0xffffffffu;',
    'struct Params { rows: u32, stage_layer_vecs: u32, unused0: u32, unused1: u32 }',
    '@group(0) @binding(0) var<uniform> params: Params;',
    '@group(0) @binding(1) var<storage, read> slots: array<u32>;',
    '@group(0) @binding(2) var<storage, read> staged: array<vec4<u32>>;',
  ];
  const pool = (l: number, c: number) => `pool_${l}_${c}`;
  for (let l = 0; l < layers; l++) {
    for (let c = 0; c < numChunks; c++) {
      lines.push(`@group(0) @binding(${3 + l * numChunks + c}) var<storage, read_write> ${pool(l, c)}: array<vec4<u32>>;`);
    }
  }
  const caseOf = (i: number, n: number) => (i === n - 1 ? 'default' : `case ${i}u`);
  lines.push('fn store(layer: u32, chunk: u32, i: u32, value: vec4<u32>) {', '  switch layer {');
  for (let l = 0; l < layers; l++) {
    lines.push(`    ${caseOf(l, layers)}: {`, '      switch chunk {');
    for (let c = 0; c < numChunks; c++) lines.push(`        ${caseOf(c, numChunks)}: { ${pool(l, c)}[i] = value; }`);
    lines.push('      }', '    }');
  }
  lines.push(
    '  }',
    '}',
    `@compute @workgroup_size(${WORKGROUP_SIZE})`,
    'fn main(',
    '  @builtin(workgroup_id) workgroup: vec3<u32>,',
    '  @builtin(num_workgroups) workgroups: vec3<u32>,',
    '  @builtin(local_invocation_index) local: u32,',
    ') {',
    `  let index = (workgroup.y * workgroups.x + workgroup.x) * ${WORKGROUP_SIZE}u + local;`,
    '  let vecs_per_row = WORDS_PER_ROW / 4u;',
    '  let per_layer = params.rows * NUM_KV_HEADS * 2u * vecs_per_row;',
    '  let layer = index / per_layer;',
    '  if (layer >= LAYERS) { return; }',
    '  let within = index % per_layer;',
    '  let row = within / (NUM_KV_HEADS * 2u * vecs_per_row);',
    '  let head = (within / (2u * vecs_per_row)) % NUM_KV_HEADS;',
    '  let is_v = (within / vecs_per_row) % 2u;',
    '  let vec = within % vecs_per_row;',
    '  let slot = slots[row];',
    '  if (slot == PADDING_SLOT) { return; }',
    '  let block = slot / BLOCK_SIZE;',
    '  if (block >= NUM_BLOCKS) { return; }',
    '  let word = (block % BLOCKS_PER_CHUNK) * WORDS_PER_BLOCK + is_v * WORDS_PER_HALF + head * WORDS_PER_HEAD_BLOCK',
    '    + (slot % BLOCK_SIZE) * WORDS_PER_ROW + vec * 4u;',
    '  store(layer, block / BLOCKS_PER_CHUNK, word / 4u, staged[layer * params.stage_layer_vecs + within]);',
    '}',
  );
  return lines.join('\n');
}

export class FlushStagedKvKernel {
  /** Layers one dispatch stores; encode splits longer lists. */
  readonly layersPerDispatch: number;
  /** device.limits.minStorageBufferOffsetAlignment, read once (each read of device.limits is a native call). */
  private readonly storageOffsetAlignment: number;
  private readonly cores = new Map<number, KvKernelCore>();
  /** The bindings of the next dispatch (slots, its layers' staged range, then each layer's chunks), rewritten in place. */
  private readonly buffers: (GPUBuffer | Required<GPUBufferBinding>)[] = [];
  private readonly stagedRange: Required<GPUBufferBinding> = { buffer: undefined as unknown as GPUBuffer, offset: 0, size: 0 };

  constructor(
    private readonly device: GPUDevice,
    private readonly layout: KvLayout,
    private readonly options: KvKernelOptions = {},
  ) {
    this.layersPerDispatch = flushLayersPerDispatch(device, layout);
    this.storageOffsetAlignment = device.limits.minStorageBufferOffsetAlignment;
    if (this.layersPerDispatch < 1) {
      throw new InvalidArgumentError(`a flush binds 2 + ${layout.numChunks} storage buffers per layer; the device allows ${device.limits.maxStorageBuffersPerShaderStage}`);
    }
  }

  /** Records the flush of `args.layers` into `target` (a compute pass, or an encoder that gets passes of its own). */
  encode(target: GPUComputePassEncoder | GPUCommandEncoder, args: FlushStagedKvArgs): void {
    const { rows, stagedOffset, stagedLayerStride } = args;
    requireCount('rows', rows);
    requireCount('stagedOffset', stagedOffset);
    requireCount('stagedLayerStride', stagedLayerStride);
    const rowBytes = stagedKvRowBytes(this.layout);
    const alignment = this.storageOffsetAlignment;
    if (stagedOffset % alignment !== 0 || stagedLayerStride % alignment !== 0 || stagedLayerStride < rows * rowBytes) {
      throw new InvalidArgumentError(
        `stagedOffset and stagedLayerStride must be multiples of ${alignment} bytes, the stride at least ${rows * rowBytes} (got ${stagedOffset}, ${stagedLayerStride})`,
      );
    }
    const count = args.layers.length;
    if (rows === 0 || count === 0) return;
    for (const chunks of args.layers) {
      if (chunks.length !== this.layout.numChunks) throw new InvalidArgumentError(`expected ${this.layout.numChunks} chunk buffer(s) per layer, got ${chunks.length}`);
    }
    requireWords('slots', args.slots, rows);
    requireWords('staged', args.staged, (stagedOffset + (count - 1) * stagedLayerStride + rows * rowBytes) / 4);
    const rowVecs = rowBytes / 16;
    // Every dispatch of the call in one compute pass (the caller's, or one of its own).
    withComputePass(target, (pass) => {
      for (let first = 0; first < count; first += this.layersPerDispatch) {
        const layers = Math.min(this.layersPerDispatch, count - first);
        const staged = this.stagedRange;
        staged.buffer = args.staged;
        staged.offset = stagedOffset + first * stagedLayerStride;
        staged.size = (layers - 1) * stagedLayerStride + rows * rowBytes;
        const buffers = this.buffers;
        buffers.length = 0;
        buffers.push(args.slots, staged);
        for (let l = first; l < first + layers; l++) buffers.push(...args.layers[l]!);
        this.core(layers).dispatch(pass, buffers, [rows, stagedLayerStride / 16], layers * rows * rowVecs, WORKGROUP_SIZE);
      }
    }, { label: 'flush-staged-kv' });
  }

  private core(layers: number): KvKernelCore {
    let core = this.cores.get(layers);
    if (core === undefined) {
      const bindings: BindingKind[] = ['params', 'read', 'read', ...Array<BindingKind>(layers * this.layout.numChunks).fill('read-write')];
      const name = `flush-staged-kv-l${layers}-c${this.layout.numChunks}`;
      core = new KvKernelCore(this.device, this.layout, name, flushShader(layers, this.layout.numChunks), bindings, this.options);
      this.cores.set(layers, core);
    }
    return core;
  }

  destroy(): void {
    for (const core of this.cores.values()) core.destroy();
    this.cores.clear();
  }
}
