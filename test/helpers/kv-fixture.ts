// Test fixture: a random one-layer paged KV pool, a block table, queries and an output buffer, written
// to the GPU with queue.writeBuffer (independent of any cache-writing kernel).
// Invariants: the same seed gives the same data; block ids are a permutation of 0..numBlocks-1 (shuffled
// on request); a forked sequence's row starts with its parent's first `sharedBlocks` ids; unused table
// entries are -1; `out` starts filled with OUT_SENTINEL so untouched rows can be checked.
import { computeKvLayout, type KvDtype, type KvLayout } from '../../src/pool/kv-layout';
import { packF16Pairs } from '../../src/kernels/f16';
import type { AttentionEntry } from '../../src/kernels/attention-types';
import type { PagedAttentionArgs } from '../../src/kernels/paged-attention';
import { pagedAttentionRef } from '../../src/kernels/attention.ref';
import { rng } from '../table/rng';

export const OUT_SENTINEL = 12345;

export interface SequenceSpec {
  contextLength: number;
  /** Queries at the end of the context (default 1: decode). */
  numQueries?: number;
  /** Share the first `sharedBlocks` blocks of sequence `of` (which must come earlier). */
  fork?: { of: number; sharedBlocks: number };
}

export interface KvFixtureOptions {
  numKvHeads: number;
  groupSize: number;
  headDim: number;
  blockSize: number;
  kvDtype: KvDtype;
  sequences: SequenceSpec[];
  /** Blocks per chunk buffer (to split the layer over several chunks); default: all in one. */
  blocksPerChunk?: number;
  shuffleBlocks?: boolean;
  seed?: number;
  /** Scale of the random queries (larger = peakier softmax). */
  qMagnitude?: number;
  /** Free rows of q/out between entries (checked to stay untouched). */
  rowGap?: number;
}

export interface KvFixture {
  layout: KvLayout;
  numQueryHeads: number;
  rowStride: number;
  chunkWords: Uint32Array[];
  chunks: GPUBuffer[];
  blockTable: Int32Array;
  blockTableBuffer: GPUBuffer;
  q: Float32Array;
  qBuffer: GPUBuffer;
  outBuffer: GPUBuffer;
  entries: AttentionEntry[];
  scale: number;
  destroy(): void;
}

function randomWords(layout: KvLayout, words: number, rand: () => number): Uint32Array<ArrayBuffer> {
  if (layout.kvDtype === 'f16') {
    const values = new Float32Array(words * 2);
    for (let i = 0; i < values.length; i++) values[i] = rand() * 2 - 1;
    const packed = new Uint32Array(words);
    packF16Pairs(values, packed);
    return packed;
  }
  const values = new Float32Array(words);
  for (let i = 0; i < words; i++) values[i] = rand() * 2 - 1;
  return new Uint32Array(values.buffer);
}

function upload(device: GPUDevice, data: ArrayBufferView<ArrayBuffer>, usage: number, label: string): GPUBuffer {
  const buffer = device.createBuffer({ label, size: Math.max(16, Math.ceil(data.byteLength / 4) * 4), usage: usage | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  return buffer;
}

/**
 * The streaming-decode tests' batch: 2 KV heads × 4 query heads of 64, f16 blocks of 16 in shuffled
 * order, decodes at contexts 1, 17, 300 and 700 (one block, a partial second, and long enough to split).
 */
export function decodeFixtureOptions(seed: number, overrides: Partial<KvFixtureOptions> = {}): KvFixtureOptions {
  return {
    numKvHeads: 2,
    groupSize: 4,
    headDim: 64,
    blockSize: 16,
    kvDtype: 'f16',
    shuffleBlocks: true,
    sequences: [{ contextLength: 1 }, { contextLength: 17 }, { contextLength: 300 }, { contextLength: 700 }],
    seed,
    ...overrides,
  };
}

export function buildKvFixture(device: GPUDevice, o: KvFixtureOptions): KvFixture {
  const rand = rng(o.seed ?? 1);
  const bs = o.blockSize;
  const own = o.sequences.map((s) => Math.ceil(s.contextLength / bs) - (s.fork?.sharedBlocks ?? 0));
  const needed = own.reduce((a, b) => a + b, 0);
  const numBlocks = needed + 3;
  const ids = Array.from({ length: numBlocks }, (_, i) => i);
  if (o.shuffleBlocks) {
    for (let i = ids.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [ids[i], ids[j]] = [ids[j]!, ids[i]!];
    }
  }
  const rowStride = Math.max(...o.sequences.map((s) => Math.ceil(s.contextLength / bs))) + 2;
  const blockTable = new Int32Array((o.sequences.length + 1) * rowStride).fill(-1);
  let next = 0;
  const rows: number[][] = [];
  o.sequences.forEach((s, i) => {
    const row = s.fork ? rows[s.fork.of]!.slice(0, s.fork.sharedBlocks) : [];
    while (row.length < Math.ceil(s.contextLength / bs)) row.push(ids[next++]!);
    rows.push(row);
    blockTable.set(row, i * rowStride);
  });
  const shape = { numLayers: 1, numKvHeads: o.numKvHeads, headDim: o.headDim, blockSize: bs, numBlocks, kvDtype: o.kvDtype };
  const blockBytes = 2 * o.numKvHeads * bs * o.headDim * (o.kvDtype === 'f16' ? 2 : 4);
  const layout = computeKvLayout(shape, (o.blocksPerChunk ?? numBlocks) * blockBytes);
  const chunkWords: Uint32Array<ArrayBuffer>[] = layout.chunkBytes.map((bytes) => randomWords(layout, bytes / 4, rand));
  const numQueryHeads = o.numKvHeads * o.groupSize;
  const rowFloats = numQueryHeads * o.headDim;
  const gap = o.rowGap ?? 1;
  const entries: AttentionEntry[] = [];
  let qRow = gap;
  o.sequences.forEach((s, i) => {
    const numQueries = s.numQueries ?? 1;
    entries.push({ seqSlot: i, contextLength: s.contextLength, queryStart: s.contextLength - numQueries, numQueries, qRow });
    qRow += numQueries + gap;
  });
  const q = new Float32Array(qRow * rowFloats);
  const magnitude = o.qMagnitude ?? 1;
  for (let i = 0; i < q.length; i++) q[i] = (rand() * 2 - 1) * magnitude;
  const storage = GPUBufferUsage.STORAGE;
  const chunks = chunkWords.map((w, c) => upload(device, w, storage | GPUBufferUsage.COPY_SRC, `kv-chunk-${c}`));
  const blockTableBuffer = upload(device, blockTable, storage, 'block-table');
  const qBuffer = upload(device, q, storage, 'q');
  const outBuffer = upload(device, new Float32Array(q.length).fill(OUT_SENTINEL), storage | GPUBufferUsage.COPY_SRC, 'out');
  return {
    layout,
    numQueryHeads,
    rowStride,
    chunkWords,
    chunks,
    blockTable,
    blockTableBuffer,
    q,
    qBuffer,
    outBuffer,
    entries,
    scale: 1 / Math.sqrt(o.headDim),
    destroy() {
      for (const b of [...chunks, blockTableBuffer, qBuffer, outBuffer]) b.destroy();
    },
  };
}

export async function readF32(device: GPUDevice, buffer: GPUBuffer): Promise<Float32Array> {
  const staging = device.createBuffer({ size: buffer.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffer, 0, staging, 0, buffer.size);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const result = new Float32Array(staging.getMappedRange().slice(0));
  staging.destroy();
  return result;
}

export interface Tolerance {
  atol: number;
  rtol: number;
}

/**
 * Mismatches of `gpu` against `ref` (|gpu − ref| > atol + rtol·|ref|) over the rows of `entries`,
 * plus rows outside every entry that are no longer OUT_SENTINEL. Returns readable lines, first `limit`.
 */
export function attentionMismatches(
  gpu: Float32Array,
  ref: Float32Array,
  entries: readonly AttentionEntry[],
  rowFloats: number,
  tol: Tolerance,
  limit = 8,
): { count: number; lines: string[]; maxError: number } {
  const covered = new Uint8Array(gpu.length / rowFloats);
  for (const e of entries) covered.fill(1, e.qRow, e.qRow + e.numQueries);
  const lines: string[] = [];
  let count = 0;
  let maxError = 0;
  for (let i = 0; i < gpu.length; i++) {
    const row = Math.floor(i / rowFloats);
    const expected = covered[row] ? ref[i]! : OUT_SENTINEL;
    const err = Math.abs(gpu[i]! - expected);
    if (covered[row] && err > maxError) maxError = err;
    if (!(err <= tol.atol + tol.rtol * Math.abs(expected))) {
      if (count++ < limit) {
        lines.push(`row ${row} elem ${i % rowFloats}: gpu ${gpu[i]} ref ${expected} (|Δ| ${err.toExponential(2)})`);
      }
    }
  }
  return { count, lines, maxError };
}

export interface AttentionCheck {
  count: number;
  lines: string[];
  maxError: number;
  /** Splits per decode entry chosen by the kernel's plan. */
  splits: number[];
}

/** The f64 CPU reference of the fixture's attention (all entries, or `entries`), as f32. */
export function fixtureReference(fx: KvFixture, entries: readonly AttentionEntry[] = fx.entries): Float32Array {
  return pagedAttentionRef({
    layout: fx.layout,
    chunkWords: fx.chunkWords,
    blockTable: fx.blockTable,
    rowStride: fx.rowStride,
    numQueryHeads: fx.numQueryHeads,
    q: fx.q,
    entries,
    scale: fx.scale,
  });
}

/**
 * Runs `kernel` on the fixture (all entries, or `entries`) once per value of `forceSplits` (a list runs
 * several split choices against one reference) and compares each with the CPU reference; returns the
 * worst run.
 */
export async function checkAttention(
  device: GPUDevice,
  kernel: {
    encode(encoder: GPUCommandEncoder, args: PagedAttentionArgs): void;
    lastPlan?: { splitsPerEntry: number[] } | undefined;
  },
  fx: KvFixture,
  tol: Tolerance,
  opts: {
    forceSplits?: number | readonly (number | undefined)[];
    entries?: AttentionEntry[];
    /** fixtureReference(fx, entries), when the caller checks several kernels against one. */
    reference?: Float32Array;
  } = {},
): Promise<AttentionCheck> {
  const entries = opts.entries ?? fx.entries;
  const ref = opts.reference ?? fixtureReference(fx, entries);
  const runs = Array.isArray(opts.forceSplits) ? opts.forceSplits : [opts.forceSplits as number | undefined];
  let worst: AttentionCheck | undefined;
  for (const forceSplits of runs) {
    device.queue.writeBuffer(fx.outBuffer, 0, new Float32Array(fx.q.length).fill(OUT_SENTINEL));
    const encoder = device.createCommandEncoder();
    kernel.encode(encoder, {
      chunks: fx.chunks,
      blockTable: fx.blockTableBuffer,
      q: fx.qBuffer,
      out: fx.outBuffer,
      entries,
      scale: fx.scale,
      forceSplits,
    });
    device.queue.submit([encoder.finish()]);
    const gpu = await readF32(device, fx.outBuffer);
    const m = attentionMismatches(gpu, ref, entries, fx.numQueryHeads * fx.layout.headDim, tol);
    const result = { ...m, splits: kernel.lastPlan?.splitsPerEntry ?? [] };
    if (!worst || result.count > worst.count || (result.count === worst.count && result.maxError > worst.maxError)) {
      worst = result;
    }
  }
  return worst!;
}
