// A one-layer paged-attention workload on the GPU for timing and checking kernels (the autotuner, the
// benchmarks): a KV pool holding random values, a block table in identity or random physical order,
// random queries, and an output buffer. Invariants: the same spec gives the same data (seeded); the K/V
// words are a random pattern (values in [-1, 1], as stored: f16 pairs or f32) of at most PATTERN_WORDS
// words repeated over each chunk by GPU copies, so even a pool of gigabytes is filled without a host
// copy of it, and `chunkWords()` rebuilds exactly what the GPU holds (for the CPU reference, on small
// workloads); block ids are a permutation of 0..numBlocks-1 and sequence s owns the s-th run of
// rowStride of them; a decode workload made with `storesKv` also has each query row's new K and V
// (random, distinct) and its slot, as the decode that stores them (or write-kv) takes them, with host
// copies for the reference, and the buffer that decode stages them in (flushStaged stores them into the
// pool); `refill` puts the pattern back over the pool after a run stored into it.
import { computeKvLayout, type KvDtype, type KvLayout } from '../pool/kv-layout';
import { packF16Pairs } from '../kernels/f16';
import { uploadWords } from '../kernels/kv-bindings';
import { maxChunkBytes } from '../pool/kv-pool';
import type { AttentionEntry } from '../kernels/attention-types';
import type { DecodeKvWrite, PagedAttentionArgs } from '../kernels/paged-attention';
import { FlushStagedKvKernel, stagedKvRowBytes, stagedLayerStride } from '../kernels/flush-staged-kv';
import { SeededRandom } from '../sim/hash';

/** Words of the random K/V pattern (4 MiB): larger pools repeat it. */
export const PATTERN_WORDS = 1 << 20;

export interface WorkloadHeads {
  numKvHeads: number;
  numQueryHeads: number;
  headDim: number;
  kvDtype: KvDtype;
  blockSize: number;
}

export interface WorkloadSequence {
  contextLength: number;
  /** Queries at the end of the context (1: decode). */
  numQueries: number;
}

export interface WorkloadSpec extends WorkloadHeads {
  sequences: readonly WorkloadSequence[];
  /** Physical order of the blocks in the table (default 'random'). */
  order?: 'identity' | 'random';
  /** Also make the new K/V rows and slots a decode that stores them needs (PagedAttentionArgs.write). */
  storesKv?: boolean;
  seed?: number;
}

export interface AttentionWorkload {
  readonly layout: KvLayout;
  readonly numQueryHeads: number;
  readonly rowStride: number;
  readonly entries: readonly AttentionEntry[];
  /** Host copies of the block table and the queries. */
  readonly blockTable: Int32Array;
  readonly q: Float32Array;
  /** K and V bytes of every attended key, once. */
  readonly kvBytes: number;
  readonly chunks: readonly GPUBuffer[];
  readonly table: GPUBuffer;
  readonly qBuffer: GPUBuffer;
  readonly out: GPUBuffer;
  readonly write: DecodeKvWrite | undefined;
  /** Host copies of `write`'s rows and slots (f32 [row][numKvHeads][headDim]; u32 per row). */
  readonly newKv: { k: Float32Array; v: Float32Array; slots: Uint32Array } | undefined;
  /** The encode arguments for this workload (with `write` when asked and made). */
  args(options?: { storesKv?: boolean; forceSplits?: number }): PagedAttentionArgs;
  /**
   * The words each chunk holds before any decode stores K/V into it, as the CPU reference takes them
   * (allocates the whole pool on the host: for small workloads).
   */
  chunkWords(): Uint32Array[];
  /** Records copies that make every chunk hold chunkWords() again (undoing stored K/V). */
  refill(encoder: GPUCommandEncoder): void;
  /** Records the flush of the rows a decode with `write` staged into the pool (workloads with storesKv). */
  flushStaged(target: GPUCommandEncoder | GPUComputePassEncoder): void;
  destroy(): void;
}

/** `batch` sequences of `context` tokens, each with `numQueries` queries at its end. */
export function uniformSequences(batch: number, context: number, numQueries = 1): WorkloadSequence[] {
  return Array.from({ length: batch }, () => ({ contextLength: context, numQueries }));
}

export function createAttentionWorkload(device: GPUDevice, spec: WorkloadSpec): AttentionWorkload {
  const { numKvHeads, numQueryHeads, headDim, kvDtype, blockSize, sequences } = spec;
  const random = new SeededRandom(spec.seed ?? 7);
  const rowStride = Math.max(1, ...sequences.map((s) => Math.ceil(s.contextLength / blockSize)));
  const numBlocks = sequences.length * rowStride;
  const layout = computeKvLayout({ numLayers: 1, numKvHeads, headDim, blockSize, numBlocks, kvDtype }, maxChunkBytes(device.limits));
  const ids = Int32Array.from({ length: numBlocks }, (_, i) => i);
  if ((spec.order ?? 'random') === 'random') {
    for (let i = ids.length - 1; i > 0; i--) {
      const j = random.int(0, i);
      [ids[i], ids[j]] = [ids[j]!, ids[i]!];
    }
  }
  const blockTable = new Int32Array(numBlocks).fill(-1);
  sequences.forEach((s, i) => blockTable.set(ids.subarray(i * rowStride, i * rowStride + Math.ceil(s.contextLength / blockSize)), i * rowStride));

  const pattern = randomKvWords(kvDtype, Math.min(PATTERN_WORDS, Math.max(...layout.chunkBytes) / 4), random);
  const patternBuffer = uploadWords(device, pattern, 'workload-kv-pattern');
  const chunks = layout.chunkBytes.map((size, c) =>
    device.createBuffer({ label: `workload-kv-${c}`, size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC }),
  );
  const refill = (encoder: GPUCommandEncoder): void => {
    for (const chunk of chunks) {
      for (let offset = 0; offset < chunk.size; offset += pattern.byteLength) {
        encoder.copyBufferToBuffer(patternBuffer, 0, chunk, offset, Math.min(pattern.byteLength, chunk.size - offset));
      }
    }
  };
  const encoder = device.createCommandEncoder();
  refill(encoder);
  device.queue.submit([encoder.finish()]);

  const rowFloats = numQueryHeads * headDim;
  const entries: AttentionEntry[] = [];
  let qRow = 0;
  sequences.forEach((s, i) => {
    entries.push({ seqSlot: i, contextLength: s.contextLength, queryStart: s.contextLength - s.numQueries, numQueries: s.numQueries, qRow });
    qRow += s.numQueries;
  });
  const q = Float32Array.from({ length: qRow * rowFloats }, () => random.next() * 2 - 1);
  const table = uploadWords(device, blockTable, 'workload-block-table');
  const qBuffer = uploadWords(device, q, 'workload-q');
  const out = device.createBuffer({ label: 'workload-out', size: Math.max(16, q.byteLength), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  const newKv = spec.storesKv ? newKvRows(entries, blockTable, rowStride, numKvHeads * headDim, blockSize, random) : undefined;
  const write = newKv && {
    k: uploadWords(device, newKv.k, 'workload-new-k'),
    v: uploadWords(device, newKv.v, 'workload-new-v'),
    slots: uploadWords(device, newKv.slots, 'workload-new-kv-slots'),
    staged: device.createBuffer({ label: 'workload-staged-kv', size: Math.max(16, newKv.slots.length * stagedKvRowBytes(layout)), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST }),
  };
  const kvBytes = sequences.reduce((sum, s) => sum + s.contextLength, 0) * numKvHeads * headDim * layout.elementBytes * 2;
  const owned: { destroy(): void }[] = [...chunks, patternBuffer, table, qBuffer, out, ...(write ? [write.k, write.v, write.slots, write.staged] : [])];
  let flusher: FlushStagedKvKernel | undefined;
  const flushStaged = (target: GPUCommandEncoder | GPUComputePassEncoder): void => {
    if (write === undefined) throw new Error('flushStaged needs a workload made with storesKv');
    if (flusher === undefined) owned.push((flusher = new FlushStagedKvKernel(device, layout)));
    const rows = newKv!.slots.length;
    flusher.encode(target, { layers: [chunks], slots: write.slots, rows, staged: write.staged, stagedOffset: 0, stagedLayerStride: stagedLayerStride(device, layout, rows) });
  };
  return {
    layout,
    numQueryHeads,
    rowStride,
    entries,
    blockTable,
    q,
    kvBytes,
    chunks,
    table,
    qBuffer,
    out,
    write,
    newKv,
    args: (options = {}) => ({
      chunks,
      blockTable: table,
      q: qBuffer,
      out,
      entries,
      scale: 1 / Math.sqrt(headDim),
      forceSplits: options.forceSplits,
      write: options.storesKv ? write : undefined,
    }),
    chunkWords: () =>
      layout.chunkBytes.map((bytes) => {
        const words = new Uint32Array(bytes / 4);
        for (let offset = 0; offset < words.length; offset += pattern.length) words.set(pattern.subarray(0, Math.min(pattern.length, words.length - offset)), offset);
        return words;
      }),
    refill,
    flushStaged,
    destroy: () => owned.forEach((b) => b.destroy()),
  };
}

/** `words` u32 words of K/V values uniform in [-1, 1]: f16 pairs, or f32 bit patterns. */
function randomKvWords(kvDtype: KvDtype, words: number, random: SeededRandom): Uint32Array<ArrayBuffer> {
  if (kvDtype === 'f16') {
    const values = Float32Array.from({ length: 2 * words }, () => random.next() * 2 - 1);
    return packF16Pairs(values, new Uint32Array(words)) as Uint32Array<ArrayBuffer>;
  }
  return new Uint32Array(Float32Array.from({ length: words }, () => random.next() * 2 - 1).buffer);
}

/** Random new K and V rows and each query row's slot (its position's block and offset; padding where none). */
function newKvRows(
  entries: readonly AttentionEntry[],
  blockTable: Int32Array,
  rowStride: number,
  rowFloats: number,
  blockSize: number,
  random: SeededRandom,
): { k: Float32Array<ArrayBuffer>; v: Float32Array<ArrayBuffer>; slots: Uint32Array<ArrayBuffer> } {
  const rows = entries.reduce((n, e) => n + e.numQueries, 0);
  const slots = new Uint32Array(rows).fill(0xffffffff);
  for (const e of entries) {
    for (let i = 0; i < e.numQueries; i++) {
      const pos = e.queryStart + i;
      slots[e.qRow + i] = blockTable[e.seqSlot * rowStride + Math.floor(pos / blockSize)]! * blockSize + (pos % blockSize);
    }
  }
  const rowsOf = () => Float32Array.from({ length: rows * rowFloats }, () => random.next() * 2 - 1);
  return { k: rowsOf(), v: rowsOf(), slots };
}
