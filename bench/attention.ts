// Paged-attention benchmark: decode (split-K) over several batch × context shapes with the block table
// in identity and random physical order, at block sizes 8, 16 and 32, and (where the kernel can) storing
// the new token's K/V in the same dispatch (the cache's decodeWritesKv), and causal prefill, on 32 query
// heads / 8 KV heads, head dim 128, f16 KV. Invariants: every figure is a median over samples of GPU
// time (src/gpu/gpu-timing.ts: timestamps around regions of repeated work, or wall time without
// 'timestamp-query'); decode reports KV GB/s (K and V bytes of every attended key, once) and its ratio
// to a plain vec4 read kernel (shaders/bench-read.wgsl) over a buffer of the same size, measured in the
// same run right before and right after the shape's rows (the faster of the two counts); every timed
// region follows GPU_WARMUP_MS of the same work (off with quick). Prefill reports TFLOP/s =
// Σ 4·n²·d·heads / 2 (causal). K/V and queries hold random values (src/tuning/attention-workload.ts), so
// a kernel whose work depends on the scores (lazy rescaling) is timed on real softmax traffic, not on an
// all-zero pool. With verify (the default unless quick) every
// kernel is first checked against the CPU reference at this head shape, as the autotuner checks its
// candidates; one that fails, or that the device refuses, is listed as not timed and counts for no
// target. Decode rows that store K/V time the decode staging them and a one-layer flush after it (a
// decode step flushes up to 16 layers per dispatch). Results are JSON-able.
// Run: `npm run bench` (the whole suite), or bench/decode-sweep.ts for decode kernel variants.
import readCode from '../shaders/bench-read.wgsl?raw';
import { describeGpu, type Gpu } from '../src/gpu/create-gpu';
import { PagedAttentionKernel, type AttentionTuning } from '../src/kernels/paged-attention';
import { createAttentionWorkload, uniformSequences, type AttentionWorkload } from '../src/tuning/attention-workload';
import { BLOCKED_WORKGROUP_SIZES, describeBlockedPrefillTile, describeMmaPrefillTile, MMA_DEFAULT_DIRECT_KV, MMA_DEFAULT_SUBGROUPS, MMA_SUBGROUP_COUNTS, WORKGROUP_SIZE, type BlockedPrefillTuning } from '../src/kernels/attention-config';
import { getPipeline } from '../src/kernels/pipeline-cache';
import { withComputePass } from '../src/kernels/kv-bindings';
import { MATRIX_PATH } from './targets';
import { KernelChecker, kernelRejection } from '../src/tuning/kernel-check';
import { GPU_WARMUP_MS, timeGpu, type TimingOptions } from '../src/gpu/gpu-timing';
import { describeParallelism, probeParallelism, type ParallelismProbe } from '../src/gpu/parallelism-probe';

export interface AttentionBenchOptions {
  /** SwiftShader-sized shapes (about a minute there) instead of GPU-sized ones. */
  quick?: boolean;
  /** Multiplies every context and prefill length (after `quick`), e.g. 0.25. */
  scale?: number;
  iterations?: number;
  warmup?: number;
  /** Subgroup reductions (default: when the device has them). */
  subgroups?: boolean;
  /** Kernel knobs (streaming decode on/off, unroll, split target); default: the tuned values. */
  tuning?: AttentionTuning;
  /** Skip prefill (decode sweeps). */
  decodeOnly?: boolean;
  /**
   * Which decode rows to time per shape: every table order, block size and the storing decode (default
   * 'all'), or only the row the decode target reads ('target': random order, block size 16, read-only).
   */
  decodeRows?: 'all' | 'target';
  /** Skip decode (prefill sweeps). */
  prefillOnly?: boolean;
  /** The prefill kernels to time (default: the portable ones, their tile variants, and subgroup matrices where available). */
  prefillPaths?: PrefillPath[];
  /** Print a table (default true). */
  print?: boolean;
  /**
   * Check each kernel against the CPU reference at the bench's head shape (tuning/kernel-check.ts) before
   * timing it, and time none that fails or that the device refuses (default: unless quick; on a software
   * adapter the test suite runs the same kernels).
   */
  verify?: boolean;
}

/** A prefill kernel to time: a name for the table and the tuning that selects it. */
export interface PrefillPath {
  path: string;
  tuning: AttentionTuning;
}

export interface DecodeBenchResult {
  batch: number;
  blockSize: number;
  context: number;
  tableOrder: 'identity' | 'random';
  /** The decode also stored each sequence's new K/V (PagedAttentionArgs.write, the cache's decodeWritesKv). */
  storesKv: boolean;
  /** Largest split-K count the kernel chose. */
  splits: number;
  ms: number;
  kvBytes: number;
  kvGBps: number;
  baselineGBps: number;
  ratioToBaseline: number;
}

export interface PrefillBenchResult {
  /**
   * Which kernel: by default 'scalar' (portable tile engine), 'register-blocked' with its variants
   * (', f32 tiles': K/V widened to f32 as they are staged; ', device memory': all the workgroup memory
   * the device has instead of 32 KiB), or MATRIX_PATH (tensor cores), also with ', N subgroups' per
   * workgroup; a sweep's own names.
   */
  path: string;
  /** The tile (register-blocked: rows × keys; subgroup matrices: rows and subgroups), for those paths. */
  tile?: string;
  sequences: number;
  tokens: number;
  ms: number;
  tflops: number;
}

export interface AttentionBenchResult {
  device: string;
  timing: 'timestamp' | 'wall';
  /** What probeParallelism found (the kernels' split-K target comes from it). */
  parallelism: ParallelismProbe;
  subgroups: boolean;
  numQueryHeads: number;
  numKvHeads: number;
  headDim: number;
  kvDtype: 'f16';
  blockSize: number;
  decode: DecodeBenchResult[];
  prefill: PrefillBenchResult[];
  /** Kernels not timed because they failed the CPU-reference check or the device refused them. */
  rejected: RejectedKernel[];
}

export interface RejectedKernel {
  part: 'decode' | 'prefill';
  /** 'decode', 'decode storing its K/V', or the prefill path's name. */
  what: string;
  reason: string;
}

const NUM_QUERY_HEADS = 32;
const NUM_KV_HEADS = 8;
const HEAD_DIM = 128;
const BLOCK_SIZE = 16;
/** The bench's head shape (what `tune` in the suite tunes for). */
export const BENCH_HEADS = { numQueryHeads: NUM_QUERY_HEADS, numKvHeads: NUM_KV_HEADS, headDim: HEAD_DIM, kvDtype: 'f16', blockSize: BLOCK_SIZE } as const;
export const DECODE_SHAPES = [
  { batch: 64, context: 2048 },
  { batch: 16, context: 8192 },
  { batch: 256, context: 512 },
  { batch: 1, context: 32768 },
];
export const QUICK_DECODE_SHAPES = [
  { batch: 4, context: 256 },
  { batch: 2, context: 1024 },
  { batch: 16, context: 64 },
  { batch: 1, context: 2048 },
];
/** Block sizes compared with BLOCK_SIZE on every decode shape (random table order). */
const OTHER_BLOCK_SIZES = [8, 32];
export const PREFILL = { sequences: 8, tokens: 2048 };
export const QUICK_PREFILL = { sequences: 2, tokens: 128 };

/** Read bandwidth (bytes/s) of the baseline kernel over a buffer of `bytes` bytes (capped by the device). */
async function measureReadBaseline(device: GPUDevice, bytes: number, timing: TimingOptions): Promise<number> {
  const size = Math.min(bytes, device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize) & ~15;
  const src = device.createBuffer({ label: 'bench-read-src', size, usage: GPUBufferUsage.STORAGE });
  const sink = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
  const params = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(params, 0, new Uint32Array([size / 16, 0x9e3779b9, 0, 0]));
  const wgSize = 256;
  const pipeline = getPipeline(device, { name: 'bench-read', code: readCode, entryPoint: 'read_main', constants: { WG_SIZE: wgSize } });
  const group = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [src, sink, params].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const workgroups = Math.min(device.limits.maxComputeWorkgroupsPerDimension, Math.ceil(size / 16 / wgSize / 8));
  const { seconds } = await timeGpu(
    device,
    (encoder) => {
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(workgroups);
      pass.end();
    },
    timing,
  );
  for (const b of [src, sink, params]) b.destroy();
  return size / seconds;
}

/** `batch` sequences of `context` tokens with `numQueries` queries each at the end of the context (random K/V and queries). */
function createWorkload(
  device: GPUDevice,
  batch: number,
  context: number,
  numQueries: number,
  order: 'identity' | 'random',
  blockSize = BLOCK_SIZE,
  storesKv = false,
): AttentionWorkload {
  return createAttentionWorkload(device, {
    numKvHeads: NUM_KV_HEADS,
    numQueryHeads: NUM_QUERY_HEADS,
    headDim: HEAD_DIM,
    kvDtype: 'f16',
    blockSize,
    sequences: uniformSequences(batch, context, numQueries),
    order,
    storesKv,
  });
}

interface KernelChoice {
  subgroups: boolean;
  residentWorkgroups: number;
  tuning?: AttentionTuning;
}

function benchKernel(gpu: Gpu, w: AttentionWorkload, choice: KernelChoice): PagedAttentionKernel {
  return new PagedAttentionKernel(gpu.device, w.layout, { numQueryHeads: NUM_QUERY_HEADS, rowStride: w.rowStride, adapterInfo: gpu.adapter.info, ...choice });
}

/** GPU time of one encode of `w` (storesKv: the decode staging its K/V, and a one-layer flush after it, as the tuner times it); the caller destroys the kernel. */
async function timeAttention(gpu: Gpu, kernel: PagedAttentionKernel, w: AttentionWorkload, timing: TimingOptions, storesKv = false) {
  const args = w.args({ storesKv });
  const record = storesKv
    ? (encoder: GPUCommandEncoder) => withComputePass(encoder, (pass) => (kernel.encode(pass, args), w.flushStaged(pass)))
    : (encoder: GPUCommandEncoder) => kernel.encode(encoder, args);
  const { seconds } = await timeGpu(gpu.device, record, timing);
  const splits = Math.max(1, ...(kernel.lastPlan?.splitsPerEntry ?? [1]));
  return { seconds, splits };
}

export async function runAttentionBench(gpu: Gpu, opts: AttentionBenchOptions = {}): Promise<AttentionBenchResult> {
  const quick = opts.quick ?? false;
  const scale = opts.scale ?? 1;
  const timing: TimingOptions = { iterations: opts.iterations ?? (quick ? 3 : 7), warmup: opts.warmup ?? (quick ? 1 : 2), warmupMs: quick ? 0 : GPU_WARMUP_MS };
  const subgroups = opts.subgroups ?? gpu.features.subgroups;
  const device = gpu.device;
  const parallelism = await probeParallelism(device);
  const choice: KernelChoice = { subgroups, residentWorkgroups: parallelism.residentWorkgroups, tuning: opts.tuning };
  const result: AttentionBenchResult = {
    device: describeGpu(gpu),
    timing: device.features.has('timestamp-query') ? 'timestamp' : 'wall',
    parallelism,
    subgroups,
    numQueryHeads: NUM_QUERY_HEADS,
    numKvHeads: NUM_KV_HEADS,
    headDim: HEAD_DIM,
    kvDtype: 'f16',
    blockSize: BLOCK_SIZE,
    decode: [],
    prefill: [],
    rejected: [],
  };
  const checker = (opts.verify ?? !quick) ? new KernelChecker(device, BENCH_HEADS) : undefined;
  try {
    await runParts({ gpu, opts, quick, scale, timing, choice, checker, result });
  } finally {
    checker?.destroy();
  }
  return result;
}

/** One runAttentionBench call: its options as resolved, its checker (when verifying) and its result so far. */
interface BenchRun {
  gpu: Gpu;
  opts: AttentionBenchOptions;
  quick: boolean;
  scale: number;
  timing: TimingOptions;
  choice: KernelChoice;
  checker: KernelChecker | undefined;
  result: AttentionBenchResult;
}

/** The decode table, then (unless decodeOnly) the prefill paths, into `run.result`. */
async function runParts(run: BenchRun): Promise<void> {
  const { gpu, opts, quick, scale, timing, choice, checker, result } = run;
  const device = gpu.device;
  const reject = async (part: RejectedKernel['part'], what: string, tuning: AttentionTuning | undefined, storesKv: boolean): Promise<boolean> => {
    if (checker === undefined) return false;
    const kernel = new PagedAttentionKernel(device, checker.layout, {
      numQueryHeads: NUM_QUERY_HEADS, rowStride: checker.rowStride, adapterInfo: gpu.adapter.info, ...choice, tuning,
    });
    const reason = await kernelRejection(device, checker, kernel, storesKv);
    kernel.destroy();
    if (reason !== undefined) result.rejected.push({ part, what, reason });
    return reason !== undefined;
  };
  const decodeRejected = !opts.prefillOnly && (await reject('decode', 'decode', choice.tuning, false));
  const storingRejected = !opts.prefillOnly && !decodeRejected && (await reject('decode', 'decode storing its K/V', choice.tuning, true));
  for (const shape of opts.prefillOnly || decodeRejected ? [] : quick ? QUICK_DECODE_SHAPES : DECODE_SHAPES) {
    const context = Math.max(1, Math.round(shape.context * scale));
    const kvBytes = shape.batch * context * NUM_KV_HEADS * HEAD_DIM * 2 * 2;
    // The read kernel runs right before and right after the shape's rows, and the faster of the two is
    // the baseline, so a GPU whose clocks moved during the rows cannot flatter them.
    const before = await measureReadBaseline(device, kvBytes, timing);
    const variants = [
      { tableOrder: 'identity' as const, blockSize: BLOCK_SIZE, storesKv: false },
      { tableOrder: 'random' as const, blockSize: BLOCK_SIZE, storesKv: false },
      ...OTHER_BLOCK_SIZES.map((blockSize) => ({ tableOrder: 'random' as const, blockSize, storesKv: false })),
      // The same decode storing the new token's K/V itself (one dispatch per layer instead of two).
      { tableOrder: 'random' as const, blockSize: BLOCK_SIZE, storesKv: true },
    ].filter((v) => opts.decodeRows !== 'target' || (v.tableOrder === 'random' && v.blockSize === BLOCK_SIZE && !v.storesKv));
    const rows: Omit<DecodeBenchResult, 'baselineGBps' | 'ratioToBaseline'>[] = [];
    for (const { tableOrder, blockSize, storesKv } of variants) {
      if (storesKv && storingRejected) continue;
      const w = createWorkload(device, shape.batch, context, 1, tableOrder, blockSize, storesKv);
      const kernel = benchKernel(gpu, w, choice);
      const timed = storesKv && !kernel.writesKvFor(w.entries) ? undefined : await timeAttention(gpu, kernel, w, timing, storesKv);
      kernel.destroy();
      w.destroy();
      if (timed === undefined) continue; // this device's decode cannot store K/V
      const { seconds, splits } = timed;
      rows.push({ batch: shape.batch, blockSize, context, tableOrder, storesKv, splits, ms: seconds * 1e3, kvBytes, kvGBps: kvBytes / seconds / 1e9 });
    }
    const baselineGBps = Math.max(before, await measureReadBaseline(device, kvBytes, timing)) / 1e9;
    for (const row of rows) result.decode.push({ ...row, baselineGBps, ratioToBaseline: row.kvGBps / baselineGBps });
  }
  // Printed as each part finishes, so a run cut short keeps the decode table.
  if (opts.print ?? true) console.log([...decodeLines(result), ...rejectedLines(result, 'decode')].join('\n'));
  if (opts.decodeOnly) return;
  const prefill = quick ? QUICK_PREFILL : PREFILL;
  const tokens = Math.max(2, Math.round(prefill.tokens * scale));
  const w = createWorkload(device, prefill.sequences, tokens, tokens, 'identity');
  const flops = prefill.sequences * ((4 * tokens * tokens * HEAD_DIM * NUM_QUERY_HEADS) / 2);
  // The portable paths (tile engine, register-blocked in its tile variants) always; the subgroup-matrix
  // path where the device has it. A variant whose tile comes out the same as an earlier one is not re-timed.
  const blocked = (variant: BlockedPrefillTuning): AttentionTuning => ({ ...opts.tuning, prefillMatrix: false, prefillBlocked: true, blocked: variant });
  const paths: PrefillPath[] = opts.prefillPaths ?? [
    { path: 'scalar', tuning: { ...opts.tuning, prefillMatrix: false, prefillBlocked: false } },
    { path: 'register-blocked', tuning: blocked({}) },
    { path: 'register-blocked, 32 KiB', tuning: blocked({ workgroupBytes: 32 * 1024 }) },
    { path: 'register-blocked, f32 tiles', tuning: blocked({ stagedF32: true }) },
    { path: 'register-blocked, f32 tiles, 32 KiB', tuning: blocked({ stagedF32: true, workgroupBytes: 32 * 1024 }) },
    // The same tiles shared by more invocations (more warps where workgroup memory holds one tile per compute unit).
    ...BLOCKED_WORKGROUP_SIZES.filter((size) => size > WORKGROUP_SIZE && size <= device.limits.maxComputeInvocationsPerWorkgroup).flatMap((workgroupSize) => [
      { path: `register-blocked, ${workgroupSize} invocations`, tuning: blocked({ workgroupSize }) },
      { path: `register-blocked, f32 tiles, ${workgroupSize} invocations`, tuning: blocked({ stagedF32: true, workgroupSize }) },
    ]),
  ];
  if (!opts.prefillPaths) {
    const configs = benchKernel(gpu, w, choice);
    if (configs.prefillMmaConfig) {
      paths.push({ path: MATRIX_PATH, tuning: { ...opts.tuning, prefillMatrix: true } });
      // 1–8 subgroups per workgroup sharing each step (where the device's workgroup memory holds them), with
      // K/V staged through workgroup memory and with the K/V matrices of fully attended steps read from the pool.
      for (const subgroups of MMA_SUBGROUP_COUNTS) {
        for (const directKv of [false, true]) {
          paths.push({
            path: `${MATRIX_PATH}, ${subgroups} subgroup(s), K/V ${directKv ? 'from the pool' : 'staged'}`,
            tuning: { ...opts.tuning, prefillMatrix: true, prefillMatrixSubgroups: subgroups, prefillMatrixDirectKv: directKv },
          });
        }
      }
      // Longer steps (more matrix work between barriers): 4 subgroups × 32 keys, 2 × 64 (both fit 48 KiB at head dim 128).
      for (const [subgroups, keyTile] of [[4, 32], [2, 64]] as const) {
        paths.push({
          path: `${MATRIX_PATH}, ${subgroups} subgroups, ${keyTile} keys per step`,
          tuning: { ...opts.tuning, prefillMatrix: true, prefillMatrixSubgroups: subgroups, prefillMatrixKeyTile: keyTile },
        });
      }
      // Pool-read steps' loads moved earlier so their latency overlaps other work: V before the softmax,
      // the next step's K right after this step's scores, and both (2 subgroups; both also with 4).
      for (const [subgroups, earlyV, nextK] of [[2, true, false], [2, false, true], [2, true, true], [4, true, true]] as const) {
        const early = [earlyV ? 'V before the softmax' : '', nextK ? 'next K early' : ''].filter(Boolean).join(', ');
        paths.push({
          path: `${MATRIX_PATH}, ${subgroups} subgroup(s), K/V from the pool, ${early}`,
          tuning: { ...opts.tuning, prefillMatrix: true, prefillMatrixSubgroups: subgroups, prefillMatrixDirectKv: true, prefillMatrixEarlyV: earlyV, prefillMatrixNextK: nextK },
        });
      }
      // A staged step's V into K's place after its scores: half the staging area (2 subgroups: 12.2 → 8.1 KiB at
      // head dim 128, 6 workgroups per 48 KiB instead of 4; 4 subgroups: 15.3 → 11.3 KiB, 4 instead of 3).
      for (const subgroups of [2, 4] as const) {
        paths.push({
          path: `${MATRIX_PATH}, ${subgroups} subgroup(s), K/V from the pool, V staged in K's place`,
          tuning: { ...opts.tuning, prefillMatrix: true, prefillMatrixSubgroups: subgroups, prefillMatrixDirectKv: true, prefillMatrixReuseKForV: true },
        });
      }
      // Two row tiles per subgroup (each K/V matrix loaded feeds two multiplications): 2 subgroups × 32 keys
      // and 4 × 16 keys (128 rows, as FlashAttention-2's 4 warps of 32 rows); 29.0 and 21.5 KiB at head dim
      // 128 with 16 × 16 matrices (the Q rows staged in rounds through the K/V area), so both fit 48 KiB.
      for (const [subgroups, keyTile] of [[2, 32], [4, 16]] as const) {
        paths.push({
          path: `${MATRIX_PATH}, ${subgroups} subgroup(s) of 2 row tiles, ${keyTile} keys per step`,
          tuning: { ...opts.tuning, prefillMatrix: true, prefillMatrixSubgroups: subgroups, prefillMatrixRowTiles: 2, prefillMatrixKeyTile: keyTile },
        });
      }
    }
    configs.destroy();
  }
  const tilesTimed = new Set<string>();
  for (const { path, tuning } of paths) {
    const kernel = benchKernel(gpu, w, { ...choice, tuning });
    const mma = kernel.prefillMmaConfig;
    const config = mma ? undefined : kernel.prefillBlockedConfig; // the tile it runs, if register-blocked
    const tile = mma ? describeMmaPrefillTile(mma) : config && describeBlockedPrefillTile(config);
    // The shape asked for runs (a kernel falls back to 1 subgroup × 16 keys where it does not fit).
    const fits =
      mma !== undefined &&
      mma.subgroups === (tuning.prefillMatrixSubgroups ?? MMA_DEFAULT_SUBGROUPS) &&
      mma.rowTiles === (tuning.prefillMatrixRowTiles ?? 1) &&
      mma.keyTile === (tuning.prefillMatrixKeyTile ?? 16) &&
      mma.directKv === (tuning.prefillMatrixDirectKv ?? MMA_DEFAULT_DIRECT_KV) &&
      mma.earlyV === (tuning.prefillMatrixEarlyV ?? false) &&
      mma.nextK === (tuning.prefillMatrixNextK ?? false) &&
      mma.reuseKForV === (tuning.prefillMatrixReuseKForV ?? false);
    if (path.startsWith(MATRIX_PATH) && !fits) {
      kernel.destroy(); // no subgroup matrices, or this shape does not fit the device (the kernel fell back)
      continue;
    }
    if (tile !== undefined && tilesTimed.has(tile)) {
      kernel.destroy();
      continue;
    }
    if (await reject('prefill', path, tuning, false)) {
      kernel.destroy();
      continue;
    }
    if (tile !== undefined) tilesTimed.add(tile);
    const { seconds } = await timeAttention(gpu, kernel, w, timing);
    kernel.destroy();
    result.prefill.push({ path, tile, sequences: prefill.sequences, tokens, ms: seconds * 1e3, tflops: flops / seconds / 1e12 });
  }
  w.destroy();
  if (opts.print ?? true) console.log([...prefillLines(result), ...rejectedLines(result, 'prefill')].join('\n'));
}

function decodeLines(r: AttentionBenchResult): string[] {
  const lines = [
    `paged attention on ${r.device}`,
    `  ${r.numQueryHeads}/${r.numKvHeads} heads, head dim ${r.headDim}, ${r.kvDtype} KV, block ${r.blockSize}, ` +
      `subgroups ${r.subgroups}, ${r.timing} timing`,
    `  workgroups at once (split-K target): ${describeParallelism(r.parallelism)}`,
    '  decode  batch × context   block  table     splits        ms     KV GB/s   read GB/s   ratio',
  ];
  for (const d of r.decode) {
    lines.push(
      `          ${`${d.batch} × ${d.context}`.padEnd(16)}  ${String(d.blockSize).padStart(5)}  ${d.tableOrder.padEnd(8)}  ${String(d.splits).padStart(6)}  ` +
        `${d.ms.toFixed(3).padStart(8)}  ${d.kvGBps.toFixed(3).padStart(10)}  ${d.baselineGBps.toFixed(3).padStart(10)}  ` +
        `${d.ratioToBaseline.toFixed(2).padStart(6)}${d.storesKv ? '  (stores its K/V)' : ''}`,
    );
  }
  return lines;
}

function rejectedLines(r: AttentionBenchResult, part: RejectedKernel['part']): string[] {
  return r.rejected.filter((x) => x.part === part).map((x) => `  not timed: ${x.what}: ${x.reason}`);
}

function prefillLines(r: AttentionBenchResult): string[] {
  return r.prefill.map(
    (p) => `  prefill ${p.sequences} × ${p.tokens} causal, ${p.path}${p.tile ? ` (tile ${p.tile})` : ''}: ${p.ms.toFixed(3)} ms, ${p.tflops.toFixed(4)} TFLOP/s`,
  );
}
