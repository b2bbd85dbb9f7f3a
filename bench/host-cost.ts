// Host (CPU) cost of one decode step of a large batch, next to the GPU time of the same step measured
// in the same run. A step is what a decode loop does per generated token: appendTokens for every
// sequence, prepareAttention(entries, { writeKV: true }) once (rows resolved, block-table rows and the
// slot map uploaded), then for every layer one encodeAttention with k and v (the new tokens' K/V write
// and the attention: two dispatches, or one with decodeWritesKv) into one compute pass kept open
// across the step's layers (or, with stepPass false, a pass per layer), and cache.submit. Invariants: host time is wall time of those calls
// only (the await for the GPU is excluded); GPU time is the region timing of the same per-layer work
// (src/gpu/gpu-timing.ts); medians over the steps. Waiting for the GPU makes Dawn's Node binding poll,
// and the polling leaves garbage whose collection would land in the next step's timing: on Node the
// young generation, where that garbage is, is collected before each step (so the figure is this
// library's cost), and the bytes the step itself allocates are reported next to it (JS heap growth
// between the collection and the submit). Not the whole heap: after a full collection a step's host
// work runs 1.4–2.0 × as long as back to back (after a scavenge 1.1–1.3 ×; 2-core VM, in one process:
// bench/host-cost-collections.ts), a cost a decode loop, whose full collections are rare, does not pay
// per step; `collect: 'full'` still measures that way.
// One more step after the measured ones counts the GPU objects it creates (bench/gpu-object-count.ts;
// a steady loop should create none). The default shape is a Llama-3-8B-like model (32 layers, 32/8
// heads, head dim 128, f16 K/V) at 256 × 512 (prompts of 497–512 tokens: see promptLength).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { PagedKVCache } from '../src/cache/paged-kv-cache';
import type { PreparedAttention } from '../src/cache/cache-types';
import type { Gpu } from '../src/gpu/create-gpu';
import { GPU_WARMUP_MS, median, timeGpu, type GpuTiming } from '../src/gpu/gpu-timing';
import { countGpuObjects, type GpuObjectCount } from './gpu-object-count';

export interface HostCostOptions {
  sequences?: number;
  context?: number;
  layers?: number;
  numKvHeads?: number;
  numQueryHeads?: number;
  headDim?: number;
  steps?: number;
  /** One compute pass for every layer of a step (`pass` option; default), or one pass per layer. */
  stepPass?: boolean;
  /** The cache's decodeWritesKv: the decode dispatch stages K/V (one dispatch per layer, a flush per group of up to 16 layers, after the group's last decode) instead of a write-kv dispatch before it. */
  decodeWritesKv?: boolean;
  /**
   * The measured steps are encoded and finished but not submitted (cache.markSubmitted then releases their
   * pins and counts their writes): the host work alone, free of a software GPU sharing the CPU, so that
   * machines without a GPU measure what a GPU host would pay. The GPU time is still measured as usual.
   */
  encodeOnly?: boolean;
  /**
   * What is collected before every step, where the heap can be collected on demand (Node): 'minor'
   * (default), the young generation, so the polling garbage of the previous step's wait is not collected
   * inside the timed calls and the step's own allocation is measured; 'full', the whole heap (the form of
   * this bench until the H100 figures of 3a6ff29: steps then start cold); false, nothing: steps run back
   * to back, as in a decode loop whose collections land where they fall.
   */
  collect?: 'minor' | 'full' | false;
}

export interface HostCostResult extends DecodeShape {
  steps: number;
  stepPass: boolean;
  decodeWritesKv: boolean;
  encodeOnly: boolean;
  /** What was collected before each step (HostCostOptions.collect; false also where the heap cannot be collected on demand). */
  collected: 'minor' | 'full' | false;
  /** Median host microseconds per step: appends + prepare + every layer's encodes + submit. */
  stepMicros: number;
  /** Of which appendTokens for the whole batch. */
  appendMicros: number;
  /** prepareAttention with writeKV (once per step). */
  prepareMicros: number;
  /** One layer's encodeAttention with k and v: K/V write + attention (median over layers and steps). */
  layerMicros: number;
  /** Encoder creation, the step's compute pass begin and end, finish and cache.submit. */
  submitMicros: number;
  /** Median GPU microseconds of one step's work (every layer's K/V write and attention). */
  gpuMicros: number;
  gpuTiming: GpuTiming['method'];
  /** stepMicros / gpuMicros. */
  hostToGpu: number;
  /**
   * The part of a step the performance target names, "table upload + dispatch encoding": prepare (which
   * uploads the block-table rows) + every layer's encode + the encoder's finish (which records the flush
   * of K/V that decodeWritesKv decodes staged), median per step (uploadEncodeOf).
   */
  uploadEncodeMicros: number;
  /** uploadEncodeMicros / gpuMicros. */
  uploadEncodeToGpu: number;
  /** Block-table entries uploaded per step (incremental upload). */
  tableEntriesPerStep: number;
  /** Block-table writes (writeBuffer calls) per step. */
  tableWritesPerStep: number;
  /** Block-table entries the step's batch spans (what uploading its rows whole would send). */
  tableEntriesPerBatch: number;
  /** GPU objects (buffers, bind groups, pipelines, …) one more step created after the measured ones. */
  gpuObjectsPerStep: GpuObjectCount;
  /** Median JS heap bytes allocated by a step's host work (undefined where the heap cannot be collected on demand). */
  heapBytesPerStep: number | undefined;
}

/** Command-line options of the scripts that time a decode step's host work at a chosen batch (parseArgs). */
export const HOST_SHAPE_ARGS = {
  layers: { type: 'string', default: '32' },
  sequences: { type: 'string', default: '256' },
  context: { type: 'string', default: '512' },
} as const;

/**
 * The batch those options name, with a tiny head shape: the host work does not depend on the heads, and
 * a software adapter then writes the prompts' K/V quickly (the GPU time printed is that shape's).
 */
export function hostShapeFrom(values: { layers: string; sequences: string; context: string }): DecodeShape {
  return { layers: Number(values.layers), sequences: Number(values.sequences), context: Number(values.context), numKvHeads: 1, numQueryHeads: 4, headDim: 16 };
}

/** How the steps started (HostCostResult.collected), in the bench's words. */
export function describeCollection(collected: 'minor' | 'full' | false): string {
  if (collected === 'minor') return 'the young generation collected before each step';
  if (collected === 'full') return 'the whole heap collected before each step';
  return 'steps back to back';
}

/** A garbage collection of `kind` on demand (Node), or undefined where that is not available. */
export function collector(kind: 'minor' | 'full'): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as (options?: { type: 'minor' }) => void;
    // gc() without options collects the whole heap; Node 20's V8 takes { type: 'major' } for a minor one.
    if (kind === 'full') return () => gc();
    const minor = { type: 'minor' } as const;
    return () => gc(minor);
  } catch {
    return undefined;
  }
}

/** Steps not counted: more than the upload rings hold (UPLOAD_SLOTS), so every ring slot has its bind groups. */
const WARMUP_STEPS = 10;
/**
 * Steps of a small batch run first so the host path is JIT-compiled as in a long-running decode loop
 * (a few dozen steps of the measured batch would still run partly interpreted).
 */
export const JIT_WARMUP_STEPS = 300;
/** K/V write encodes (encodeWriteKV, or encodeAttention with k and v) one submission may hold (the write kernel's parameter ring, KvKernelOptions). */
const WRITE_ENCODES_PER_SUBMIT = 256;
/** Prompt K/V are written this many sequences at a time (bounds the staging buffers). */
const PROMPT_CHUNK = 16;
const BLOCK_SIZE = 16;

/**
 * Runs JIT_WARMUP_STEPS steps of a 4-sequence batch of `shape`'s layers and heads (submitted, or with
 * `encodeOnly` encoded and not run), so that a decode loop timed next runs JIT-compiled code: code that
 * runs a few times a step (a flush group's) is otherwise timed interpreted for the first hundred steps.
 */
async function warmHostPath(gpu: Gpu, shape: DecodeShape, stepPass: boolean, decodeWritesKv: boolean, encodeOnly = false): Promise<void> {
  const warm = await DecodeLoop.create(gpu, { ...shape, sequences: 4, context: 16 }, JIT_WARMUP_STEPS, stepPass, decodeWritesKv);
  try {
    for (let step = 0; step < JIT_WARMUP_STEPS; step++) await warm.step(step, encodeOnly);
  } finally {
    warm.destroy();
  }
}

export async function measureHostCost(gpu: Gpu, options: HostCostOptions = {}): Promise<HostCostResult> {
  const shape: DecodeShape = {
    sequences: options.sequences ?? 256,
    context: options.context ?? 512,
    layers: options.layers ?? 32,
    numKvHeads: options.numKvHeads ?? 8,
    numQueryHeads: options.numQueryHeads ?? 32,
    headDim: options.headDim ?? 128,
  };
  const steps = options.steps ?? 20;
  const stepPass = options.stepPass ?? true;
  const decodeWritesKv = options.decodeWritesKv ?? false;
  const encodeOnly = options.encodeOnly ?? false;
  const collect = options.collect ?? 'minor';
  const gc = collect === false ? undefined : collector(collect);
  await warmHostPath(gpu, shape, stepPass, decodeWritesKv);
  const loop = await DecodeLoop.create(gpu, shape, WARMUP_STEPS + steps + 1, stepPass, decodeWritesKv);
  try {
    const samples: StepTimes[] = [];
    for (let step = 0; step < WARMUP_STEPS + steps; step++) {
      gc?.();
      const times = await loop.step(step, encodeOnly && step >= WARMUP_STEPS);
      if (step >= WARMUP_STEPS) samples.push(times);
    }
    // One more step, not timed: what it creates on the device (a steady decode loop should create nothing).
    const { created } = await countGpuObjects(gpu.device, () => loop.step(WARMUP_STEPS + steps));
    const timing = await loop.timeGpu();
    const of = (pick: (t: StepTimes) => number): number => median(samples.map(pick));
    const stepMicros = of((t) => t.total) * 1e3;
    const gpuMicros = timing.seconds * 1e6;
    const uploadEncodeMicros = of(uploadEncodeOf) * 1e3;
    return {
      ...shape,
      steps,
      stepPass,
      decodeWritesKv,
      encodeOnly,
      collected: gc ? collect : false,
      stepMicros,
      appendMicros: of((t) => t.append) * 1e3,
      prepareMicros: of((t) => t.prepare) * 1e3,
      layerMicros: median(samples.flatMap((t) => t.layers)) * 1e3,
      submitMicros: of((t) => t.submit) * 1e3,
      gpuMicros,
      gpuTiming: timing.method,
      hostToGpu: stepMicros / gpuMicros,
      uploadEncodeMicros,
      uploadEncodeToGpu: uploadEncodeMicros / gpuMicros,
      tableEntriesPerStep: samples.reduce((sum, t) => sum + t.tableEntries, 0) / steps,
      tableWritesPerStep: samples.reduce((sum, t) => sum + t.tableWrites, 0) / steps,
      tableEntriesPerBatch: shape.sequences * Math.ceil((shape.context + WARMUP_STEPS + steps) / BLOCK_SIZE),
      gpuObjectsPerStep: created,
      heapBytesPerStep: gc ? of((t) => t.heapBytes) : undefined,
    };
  } finally {
    loop.destroy();
  }
}

export interface DecodeShape {
  sequences: number;
  context: number;
  layers: number;
  numKvHeads: number;
  numQueryHeads: number;
  headDim: number;
}

/**
 * The part of a step the host-cost target counts (table upload + dispatch encoding): prepare, every
 * layer's encodes and the encoder's finish (where the flush of staged K/V is recorded), in ms.
 */
export function uploadEncodeOf(t: StepTimes): number {
  return t.prepare + t.layers.reduce((a, b) => a + b, 0) + t.finish;
}

/** Milliseconds of one step's host work, by part. */
export interface StepTimes {
  total: number;
  append: number;
  prepare: number;
  /** Per layer: encodeAttention with k and v. */
  layers: number[];
  /** Encoder creation, the step's compute pass begin and end, finish and cache.submit. */
  submit: number;
  /** Of submit: the encoder's finish(), which records the flush of K/V staged by decodeWritesKv decodes still unflushed (none when the step runs every layer in order). */
  finish: number;
  tableEntries: number;
  tableWrites: number;
  heapBytes: number;
}

/**
 * A stand-in for a compute pass whose recording calls do nothing (bench/host-cost-split.ts): encoding
 * into it runs every check and bookkeeping step of this library and none of Dawn's recording.
 */
const PASS_CALLS_SKIPPED = {
  setPipeline(): void {},
  setBindGroup(): void {},
  dispatchWorkgroups(): void {},
} as unknown as GPUComputePassEncoder;

/**
 * Prompt length of sequence `s`: `context` less s mod the block size, so that in every step about one
 * sequence in BLOCK_SIZE crosses into a new block (as in serving, where requests started at different
 * times) instead of all of them in one step out of BLOCK_SIZE, which a median would not see.
 */
function promptLength(context: number, s: number): number {
  return Math.max(1, context - (s % BLOCK_SIZE));
}

/** A cache holding `sequences` prompts of about `context` tokens (K/V written), stepped one token at a time. */
export class DecodeLoop {
  private readonly buffers: GPUBuffer[] = [];
  private readonly entries: { seqId: number }[];
  private readonly k: GPUBuffer;
  private readonly v: GPUBuffer;
  private readonly q: GPUBuffer;
  private readonly out: GPUBuffer;
  private batch: PreparedAttention | undefined;

  private constructor(
    private readonly device: GPUDevice,
    private readonly cache: PagedKVCache,
    private readonly shape: DecodeShape,
    private readonly ids: number[],
    private readonly stepPass: boolean,
  ) {
    this.entries = ids.map((seqId) => ({ seqId }));
    const rows = shape.sequences;
    this.k = this.storage(rows * this.kvRowBytes);
    this.v = this.storage(rows * this.kvRowBytes);
    this.q = this.storage(rows * shape.numQueryHeads * shape.headDim * 4);
    this.out = this.storage(rows * shape.numQueryHeads * shape.headDim * 4);
  }

  /** A cache with room for `steps` more tokens per sequence, its prompts' K/V written. */
  static async create(gpu: Gpu, shape: DecodeShape, steps: number, stepPass: boolean, decodeWritesKv: boolean): Promise<DecodeLoop> {
    const { sequences, context, layers, numKvHeads, numQueryHeads, headDim } = shape;
    const blockSize = BLOCK_SIZE;
    const maxLength = context + steps;
    const cache = await PagedKVCache.create(gpu.device, {
      numLayers: layers, numKvHeads, numQueryHeads, headDim, blockSize, kvDtype: 'f16',
      numBlocks: sequences * (Math.ceil(maxLength / blockSize) + 1),
      maxSequences: sequences, maxSequenceLength: maxLength + blockSize, decodeWritesKv,
    });
    const ids: number[] = [];
    for (let s = 0; s < sequences; s++) {
      const length = promptLength(context, s);
      ids.push(cache.createSequence({ tokens: Array.from({ length }, (_, i) => (s * 7919 + i) % 50000) }).id);
    }
    const loop = new DecodeLoop(gpu.device, cache, shape, ids, stepPass);
    // The prompts' K/V (their values do not matter for timing), PROMPT_CHUNK sequences per submission.
    const promptK = loop.storage(Math.min(sequences, PROMPT_CHUNK) * context * loop.kvRowBytes);
    for (let s = 0; s < sequences; s += PROMPT_CHUNK) {
      const chunk = ids.slice(s, s + PROMPT_CHUNK).map((seqId, i) => ({ seqId, numQueries: promptLength(context, s + i), queryStart: 0 }));
      const batch = cache.prepareAttention(chunk, { writeKV: true });
      const encoder = gpu.device.createCommandEncoder();
      for (let l = 0; l < layers; l++) cache.encodeWriteKV(encoder, { layer: l, entries: batch, k: promptK, v: promptK });
      await cache.submit([encoder.finish()]);
    }
    return loop;
  }

  private get kvRowBytes(): number {
    return this.shape.numKvHeads * this.shape.headDim * 4;
  }

  private storage(bytes: number): GPUBuffer {
    const b = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE });
    this.buffers.push(b);
    return b;
  }

  /**
   * One decode step: appends, prepare, every layer's write and attention, submit (or, encodeOnly, finish
   * and markSubmitted); awaits the GPU. With skipPassCalls (encodeOnly only) the layers are encoded into
   * PASS_CALLS_SKIPPED instead of the step's pass: every call of this library runs, Dawn records nothing,
   * and the step's positions still count as written though no K/V reached the pool (a timing loop's
   * values do not matter).
   */
  async step(token: number, encodeOnly = false, skipPassCalls = false): Promise<StepTimes> {
    if (skipPassCalls && !encodeOnly) throw new Error('a step whose pass calls are skipped cannot be submitted');
    const { cache, device } = this;
    const before = cache.stats();
    const heap0 = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    for (const id of this.ids) cache.appendTokens(id, [token]);
    const t1 = performance.now();
    const batch = (this.batch = cache.prepareAttention(this.entries, { writeKV: true }));
    const t2 = performance.now();
    const encoder = device.createCommandEncoder();
    const pass = this.stepPass ? encoder.beginComputePass() : undefined;
    const into = skipPassCalls ? PASS_CALLS_SKIPPED : pass;
    const layers: number[] = [];
    for (let l = 0; l < this.shape.layers; l++) {
      const e0 = performance.now();
      this.encodeLayer(encoder, into, l, batch);
      layers.push(performance.now() - e0);
    }
    pass?.end();
    const f0 = performance.now();
    const commands = encoder.finish();
    const finish = performance.now() - f0;
    const done = encodeOnly ? cache.markSubmitted() : cache.submit([commands]);
    const t4 = performance.now();
    const heap1 = process.memoryUsage().heapUsed;
    await done;
    const layerTotal = layers.reduce((a, b) => a + b, 0);
    return {
      total: t4 - t0,
      append: t1 - t0,
      prepare: t2 - t1,
      layers,
      submit: t4 - t2 - layerTotal,
      finish,
      tableEntries: cache.stats().tableEntriesUploaded - before.tableEntriesUploaded,
      tableWrites: cache.stats().tableWrites - before.tableWrites,
      heapBytes: heap1 - heap0,
    };
  }

  /** GPU time of one step's work (every layer's write and attention of the last step's batch). */
  async timeGpu(): Promise<GpuTiming> {
    const batch = this.batch!;
    const timing = await timeGpu(this.device, (encoder) => {
      const pass = this.stepPass ? encoder.beginComputePass() : undefined;
      for (let l = 0; l < this.shape.layers; l++) this.encodeLayer(encoder, pass, l, batch);
      pass?.end();
    }, { iterations: 5, maxRepeats: Math.max(1, Math.floor(WRITE_ENCODES_PER_SUBMIT / this.shape.layers)), warmupMs: GPU_WARMUP_MS });
    await this.cache.markSubmitted();
    return timing;
  }

  private encodeLayer(encoder: GPUCommandEncoder, pass: GPUComputePassEncoder | undefined, layer: number, batch: PreparedAttention): void {
    this.cache.encodeAttention(encoder, { layer, entries: batch, q: this.q, out: this.out, k: this.k, v: this.v, pass });
  }

  destroy(): void {
    this.cache.destroy();
    for (const b of this.buffers) b.destroy();
  }
}
