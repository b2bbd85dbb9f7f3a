// Autotuning of the paged-attention kernels for one device and one model head shape: which decode and
// prefill kernels run, and their shapes, chosen by timing them on the device at hand. Invariants:
//   - A candidate is timed only after it matched the CPU reference (kernel-check.ts); one that does
//     not, or that the device refuses (a validation error), is rejected and never chosen. The default
//     kernels failing that check is a KernelMismatchError: no tuning hides a wrong kernel.
//   - Decode is scored by the geometric mean of its GPU time over the decode shapes (each shape counts
//     the same, whatever its size), prefill by its GPU time on the prefill shape. A decode is timed as
//     the cache runs a layer of a decode step: the new tokens' K/V stored, by a write-kv dispatch in the
//     same pass or, where the tuning's decodeWritesKv is on and the kernel can, by the decode itself
//     staging them and a one-layer flush after it (then checked as such: its output and every pool
//     word); GPU time is
//     timeGpu's median (timestamps where the device has them). A candidate replaces the best so far
//     only when faster by more than minGain (default 3 %), so noise keeps the defaults.
//   - The decode search runs first, the prefill search starts from its winner; the result is a frozen
//     AttentionTuning for PagedKVCache's attentionTuning option (or PagedAttentionKernel's tuning).
//   - Workloads are made once per shape and destroyed before returning, also on failure. The default
//     batches shrink (fewer sequences, then shorter contexts) to what one layer of the device holds;
//     a batch the caller names that does not fit is an InvalidArgumentError before anything runs.
import { ConfigError, InvalidArgumentError, KernelMismatchError } from '../errors';
import { checkAttentionTuning, describeTuning, type AttentionTuning } from '../kernels/attention-tuning';
import { PagedAttentionKernel, type AdapterInfoWithSubgroups } from '../kernels/paged-attention';
import { GPU_WARMUP_MS, timeGpu, type TimingOptions } from '../gpu/gpu-timing';
import { probeParallelism } from '../gpu/parallelism-probe';
import { isSoftwareDevice } from '../gpu/create-gpu';
import { bytesPerBlock, computeKvLayout, MAX_KV_CHUNKS, type KvDtype } from '../pool/kv-layout';
import { maxChunkBytes } from '../pool/kv-pool';
import type { AttentionEntry } from '../kernels/attention-types';
import { createAttentionWorkload, uniformSequences, type AttentionWorkload, type WorkloadHeads } from './attention-workload';
import { KernelChecker } from './kernel-check';
import { WriteKvKernel } from '../kernels/write-kv';
import { withComputePass } from '../kernels/kv-bindings';
import { defaultDecodeKnobs, defaultPrefillKnobs } from './tuning-knobs';
import { BaseTuningRejected, searchTuning, type SearchTrial, type TuningKnob } from './tuning-search';

export interface DecodeShape {
  batch: number;
  context: number;
}

export interface PrefillShape {
  sequences: number;
  tokens: number;
}

/** GPU-sized defaults: many mid-length decodes, many short ones, one long one; 4 prompts of 2048 tokens. */
export const DEFAULT_DECODE_SHAPES: readonly DecodeShape[] = [
  { batch: 64, context: 2048 },
  { batch: 256, context: 512 },
  { batch: 1, context: 32768 },
];
export const DEFAULT_PREFILL_SHAPE: PrefillShape = { sequences: 4, tokens: 2048 };
/** Sizes a software adapter (SwiftShader) finishes in about a minute. */
export const QUICK_DECODE_SHAPES: readonly DecodeShape[] = [
  { batch: 4, context: 256 },
  { batch: 1, context: 2048 },
];
export const QUICK_PREFILL_SHAPE: PrefillShape = { sequences: 1, tokens: 128 };

export interface TuneAttentionOptions {
  numKvHeads: number;
  /** Default numKvHeads. */
  numQueryHeads?: number;
  headDim: number;
  /** Default 'f16'. */
  kvDtype?: KvDtype;
  /** Default 16. */
  blockSize?: number;
  /** Decode batches to time (default DEFAULT_DECODE_SHAPES; QUICK_DECODE_SHAPES on a software adapter). */
  decodeShapes?: readonly DecodeShape[];
  /** The prefill batch to time (default DEFAULT_PREFILL_SHAPE), or null to keep the prefill defaults untimed. */
  prefillShape?: PrefillShape | null;
  /** Use subgroup operations (default: when the device has 'subgroups'), as the cache's useSubgroups. */
  subgroups?: boolean;
  /** As PagedKVCacheOptions.adapterInfo (subgroup-matrix configurations under Dawn's Node binding). */
  adapterInfo?: AdapterInfoWithSubgroups;
  /** Default: probeParallelism(device). */
  residentWorkgroups?: number;
  /** Where the search starts (default: the built-in choices). */
  base?: AttentionTuning;
  /** Fraction by which a candidate must beat the best so far (default 0.03). */
  minGain?: number;
  /** The knobs to try (default defaultDecodeKnobs / defaultPrefillKnobs). */
  decodeKnobs?: readonly TuningKnob[];
  prefillKnobs?: readonly TuningKnob[];
  timing?: TimingOptions;
  /** Called after each candidate (progress). */
  onTrial?: (kind: 'decode' | 'prefill', trial: SearchTrial) => void;
}

export interface TuningPart {
  /** The chosen kernel, in words (PagedAttentionKernel.describeKernels). */
  kernel: string;
  /** How much faster the chosen tuning is than the defaults, from side-by-side measurements (1: the defaults stay). */
  speedup: number;
  trials: SearchTrial[];
}

export interface AttentionTuningResult {
  /** Pass as PagedKVCacheOptions.attentionTuning (frozen; JSON-able). */
  tuning: AttentionTuning;
  timing: 'timestamp' | 'wall';
  residentWorkgroups: number;
  decode: TuningPart;
  prefill: TuningPart | undefined;
}

export async function tuneAttention(device: GPUDevice, options: TuneAttentionOptions): Promise<AttentionTuningResult> {
  const heads: WorkloadHeads = {
    numKvHeads: options.numKvHeads,
    numQueryHeads: options.numQueryHeads ?? options.numKvHeads,
    headDim: options.headDim,
    kvDtype: options.kvDtype ?? 'f16',
    blockSize: options.blockSize ?? 16,
  };
  const base = checkAttentionTuning(options.base ?? {}, 'base');
  checkOptions(options);
  computeKvLayout({ numLayers: 1, numBlocks: 1, ...heads }, maxChunkBytes(device.limits)); // ConfigError for a bad head shape
  if (!Number.isInteger(heads.numQueryHeads) || heads.numQueryHeads < 1 || heads.numQueryHeads % heads.numKvHeads !== 0) {
    throw new ConfigError(`numQueryHeads (${heads.numQueryHeads}) must be a positive multiple of numKvHeads (${heads.numKvHeads})`);
  }
  const software = isSoftwareDevice(device);
  // The default batches shrink to what one layer of this device holds; batches the caller names must fit.
  const maxBlocks = blocksPerLayer(device, heads);
  const fits = (sequences: number, context: number, what: string): void => requireFits(sequences, context, maxBlocks, heads.blockSize, what);
  let decodeShapes: readonly DecodeShape[];
  if (options.decodeShapes) {
    for (const s of options.decodeShapes) fits(s.batch, s.context, `decode batch ${s.batch} × ${s.context}`);
    decodeShapes = options.decodeShapes;
  } else {
    decodeShapes = (software ? QUICK_DECODE_SHAPES : DEFAULT_DECODE_SHAPES).map((s) => fitDecodeShape(s, maxBlocks, heads.blockSize));
  }
  let prefillShape: PrefillShape | null;
  if (options.prefillShape === undefined) {
    prefillShape = fitPrefillShape(software ? QUICK_PREFILL_SHAPE : DEFAULT_PREFILL_SHAPE, maxBlocks, heads.blockSize);
  } else {
    prefillShape = options.prefillShape;
    if (prefillShape) fits(prefillShape.sequences, prefillShape.tokens, `prefill batch ${prefillShape.sequences} × ${prefillShape.tokens}`);
  }
  const subgroups = options.subgroups ?? device.features.has('subgroups');
  const resident = options.residentWorkgroups ?? (await probeParallelism(device)).residentWorkgroups;
  const timing: TimingOptions = options.timing ?? (software ? { iterations: 3, warmup: 1 } : { warmupMs: GPU_WARMUP_MS });
  const minGain = options.minGain ?? 0.03;

  const owned: { destroy(): void }[] = [];
  try {
    const checker = new KernelChecker(device, heads);
    owned.push(checker);
    const kernelFor = (tuning: AttentionTuning, rowStride = checker.rowStride, layout = checker.layout) =>
      new PagedAttentionKernel(device, layout, { numQueryHeads: heads.numQueryHeads, rowStride, subgroups, adapterInfo: options.adapterInfo, residentWorkgroups: resident, tuning });
    /**
     * Kernel identity, or undefined where the kernel cannot be made: the selected configs, and for
     * decode the split-K counts the timed batches get (split knobs that do not change them are the same kernels).
     */
    const identity = (tuning: AttentionTuning, part: 'decode' | 'prefill', workloads: readonly AttentionWorkload[]): string | undefined => {
      let kernel: PagedAttentionKernel;
      try {
        kernel = kernelFor(tuning);
      } catch {
        return undefined;
      }
      kernel.destroy();
      if (part === 'decode') {
        const decode = kernel.decodeMmaConfig ?? kernel.streamDecodeConfig ?? kernel.decodeConfig;
        return JSON.stringify([decode, workloads.map((w) => [kernel.splitsFor(w.entries), storesKv(tuning, kernel, w.entries)])]);
      }
      return JSON.stringify(kernel.prefillMmaConfig ?? kernel.prefillBlockedConfig ?? kernel.prefillConfig);
    };
    const writers = new Map<AttentionWorkload, WriteKvKernel>();
    /** Records one run of `kernel` on `w`: a decode step's layer where `w` has new K/V (see the header), else the kernel alone. */
    const stepOf = (tuning: AttentionTuning, kernel: PagedAttentionKernel, w: AttentionWorkload): ((encoder: GPUCommandEncoder) => void) => {
      if (w.write === undefined) {
        const args = w.args();
        return (encoder) => kernel.encode(encoder, args);
      }
      if (storesKv(tuning, kernel, w.entries)) {
        // The staged rows' flush is timed with each layer, though a step flushes several layers per dispatch.
        const args = w.args({ storesKv: true });
        return (encoder) =>
          withComputePass(encoder, (pass) => {
            kernel.encode(pass, args);
            w.flushStaged(pass);
          });
      }
      let writer = writers.get(w);
      if (writer === undefined) {
        writer = new WriteKvKernel(device, w.layout);
        writers.set(w, writer);
        owned.push(writer);
      }
      const writeKv = writer;
      const write = { chunks: w.chunks, ...w.write, numTokens: w.newKv!.slots.length };
      const args = w.args();
      return (encoder) =>
        withComputePass(encoder, (pass) => {
          writeKv.encode(pass, write);
          kernel.encode(pass, args);
        });
    };
    /** Tunings whose kernels passed the check (the search measures a tuning again to confirm a win). */
    const passed = new WeakSet<AttentionTuning>();
    /** Checks (once per tuning), then times, `tuning` on every workload; the score is the geometric mean of the times. */
    const measure = async (tuning: AttentionTuning, workloads: readonly AttentionWorkload[]) => {
      device.pushErrorScope('validation');
      let mismatch: string | undefined;
      let seconds: number[] = [];
      try {
        if (!passed.has(tuning)) {
          const checked = kernelFor(tuning);
          try {
            mismatch = await checker.check(checked, { storesKv: tuning.decodeWritesKv === true });
          } finally {
            checked.destroy();
          }
        }
        if (mismatch === undefined) {
          for (const w of workloads) {
            const kernel = kernelFor(tuning, w.rowStride, w.layout);
            try {
              seconds.push((await timeGpu(device, stepOf(tuning, kernel, w), timing)).seconds);
            } finally {
              kernel.destroy();
            }
          }
        }
      } catch (error) {
        mismatch = `refused: ${error instanceof Error ? error.message : String(error)}`;
        seconds = [];
      }
      const gpuError = await device.popErrorScope();
      if (gpuError) return { rejected: `the device refused it: ${gpuError.message}` };
      if (mismatch !== undefined) return { rejected: mismatch };
      passed.add(tuning);
      const score = Math.exp(seconds.reduce((sum, s) => sum + Math.log(s), 0) / seconds.length);
      return { score, detail: seconds.map((s) => `${(s * 1e3).toFixed(3)} ms`).join(', ') };
    };
    const search = async (part: 'decode' | 'prefill', start: AttentionTuning, knobs: readonly TuningKnob[], workloads: AttentionWorkload[]) => {
      try {
        return await searchTuning(
          start,
          knobs,
          {
            identify: (tuning) => identity(tuning, part, workloads),
            measure: (tuning) => measure(tuning, workloads),
            onTrial: options.onTrial && ((trial) => options.onTrial!(part, trial)),
          },
          minGain,
        );
      } catch (error) {
        if (error instanceof BaseTuningRejected) {
          throw new KernelMismatchError(`the ${part} kernels of ${describeTuning(start)} failed their check on this device: ${error.reason}`);
        }
        throw error;
      }
    };

    const decodeWorkloads = decodeShapes.map((s) =>
      createAttentionWorkload(device, { ...heads, sequences: uniformSequences(s.batch, s.context), order: 'random', storesKv: true }),
    );
    owned.push(...decodeWorkloads);
    const decode = await search('decode', base, options.decodeKnobs ?? defaultDecodeKnobs(resident), decodeWorkloads);
    decodeWorkloads.forEach((w) => w.destroy());
    let best = decode.best;
    let prefill: TuningPart | undefined;
    if (prefillShape !== null) {
      const { sequences, tokens } = prefillShape;
      const prefillWorkload = createAttentionWorkload(device, { ...heads, sequences: uniformSequences(sequences, tokens, tokens), order: 'random' });
      owned.push(prefillWorkload);
      const found = await search('prefill', best, options.prefillKnobs ?? defaultPrefillKnobs(device.limits.maxComputeWorkgroupStorageSize), [prefillWorkload]);
      best = found.best;
      prefill = { kernel: describe(best).prefill, speedup: found.speedup, trials: found.trials };
    }
    return {
      tuning: checkAttentionTuning(best, 'tuning'),
      timing: device.features.has('timestamp-query') ? 'timestamp' : 'wall',
      residentWorkgroups: resident,
      decode: { kernel: describe(best).decode, speedup: decode.speedup, trials: decode.trials },
      prefill,
    };

    function describe(tuning: AttentionTuning): { decode: string; prefill: string } {
      const kernel = kernelFor(tuning);
      kernel.destroy();
      return kernel.describeKernels();
    }
  } finally {
    for (const o of owned) o.destroy();
  }
}

/** Whether a decode of `entries` stores its own K/V under `tuning`: asked for (decodeWritesKv) and possible there. */
function storesKv(tuning: AttentionTuning, kernel: PagedAttentionKernel, entries: readonly AttentionEntry[]): boolean {
  return tuning.decodeWritesKv === true && kernel.writesKvFor(entries);
}

/** Blocks of this head shape one layer can hold on the device (MAX_KV_CHUNKS buffers of the binding limit). */
function blocksPerLayer(device: GPUDevice, heads: WorkloadHeads): number {
  const blockBytes = bytesPerBlock(heads);
  return MAX_KV_CHUNKS * Math.floor(maxChunkBytes(device.limits) / blockBytes);
}

/** Blocks a workload of `sequences` × `context` tokens takes (the tuner's workloads give each sequence its own). */
function blocksOf(sequences: number, context: number, blockSize: number): number {
  return sequences * Math.ceil(context / blockSize);
}

/** The shape with fewer sequences (then a shorter context) until it fits `maxBlocks`. */
export function fitDecodeShape(shape: DecodeShape, maxBlocks: number, blockSize: number): DecodeShape {
  let { batch, context } = shape;
  while (batch > 1 && blocksOf(batch, context, blockSize) > maxBlocks) batch = Math.ceil(batch / 2);
  while (context > blockSize && blocksOf(batch, context, blockSize) > maxBlocks) context = Math.ceil(context / 2);
  return { batch, context };
}

export function fitPrefillShape(shape: PrefillShape, maxBlocks: number, blockSize: number): PrefillShape {
  const { batch, context } = fitDecodeShape({ batch: shape.sequences, context: shape.tokens }, maxBlocks, blockSize);
  return { sequences: batch, tokens: context };
}

function requireFits(sequences: number, context: number, maxBlocks: number, blockSize: number, what: string): void {
  const blocks = blocksOf(sequences, context, blockSize);
  if (blocks > maxBlocks) {
    throw new InvalidArgumentError(`the ${what} needs ${blocks} KV blocks of one layer; this device holds at most ${maxBlocks} for this head shape: pass a smaller one`);
  }
}

/** Throws InvalidArgumentError for batches or a minGain the tuner cannot time or compare with. */
function checkOptions(o: TuneAttentionOptions): void {
  const positive = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 1;
  if (o.decodeShapes !== undefined) {
    if (!Array.isArray(o.decodeShapes) || o.decodeShapes.length === 0 || !o.decodeShapes.every((s) => positive(s?.batch) && positive(s?.context))) {
      throw new InvalidArgumentError('decodeShapes must be a non-empty list of { batch, context } with positive integers');
    }
  }
  if (o.prefillShape != null && !(positive(o.prefillShape.sequences) && positive(o.prefillShape.tokens))) {
    throw new InvalidArgumentError('prefillShape must be { sequences, tokens } with positive integers, or null');
  }
  if (o.minGain !== undefined && !(o.minGain >= 0 && o.minGain < 1)) throw new InvalidArgumentError(`minGain must be in [0, 1) (got ${o.minGain})`);
}

