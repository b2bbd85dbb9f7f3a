// Validation of PagedKVCache options against each other and against the device. Invariants: a config
// that passes resolveConfig() fits the device (buffer sizes, bindings, workgroup storage) and every
// field is a positive integer where one is required; everything that fails gets a ConfigError that
// names the field and what would work.
import type { AdapterInfoWithSubgroups } from '../kernels/paged-attention';
import { ConfigError } from '../errors';
import { checkAttentionTuning, type AttentionTuning } from '../kernels/attention-tuning';
import { MAX_HEAD_DIM, type KvDtype, type KvLayout } from '../pool/kv-layout';
import { maxChunkBytes, planPool } from '../pool/kv-pool';

export interface PagedKVCacheOptions {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** Query heads; a multiple of numKvHeads (GQA/MQA). Defaults to numKvHeads. */
  numQueryHeads?: number;
  /** Tokens per block (default 16). */
  blockSize?: number;
  /** Give numBlocks or memoryBudgetBytes (KV bytes over all layers; never exceeded). */
  numBlocks?: number;
  memoryBudgetBytes?: number;
  /** Storage type of K and V (default 'f16', stored packed in u32 words). */
  kvDtype?: KvDtype;
  /** Most sequences alive at once (default 1024). */
  maxSequences?: number;
  /** Longest sequence in tokens (default: the whole pool, at most 131072). */
  maxSequenceLength?: number;
  /** Use subgroup operations in kernels when the device has them (default true). */
  useSubgroups?: boolean;
  /** Cap on one KV buffer's size, below the device's binding limit (tests use it to force splitting). */
  maxBufferBytes?: number;
  /** How long a lock may be waited for before LockTimeoutError (ms, default 5000). */
  lockTimeoutMs?: number;
  /**
   * Let the attention dispatch of a decode batch take the batch's new K/V itself (encodeAttention with
   * k and v, streaming decode kernel): it attends over them and stages them beside the pool, and one
   * flush dispatch recorded into the same encoder stores up to 16 layers' staged rows (right after the
   * decode of a flush group's last layer, in its pass; before anything else of a staged layer; at the
   * latest by the encoder's finish()): one dispatch per layer instead of a
   * write-kv dispatch and the attention, so less host encoding per step, while the decode still reads
   * the pool read-only. Batches with prefill entries and devices whose decode runs without subgroup
   * shuffles (no subgroups, or the tile engine) still get the write-kv dispatch. The staging buffer,
   * allocated by create() (an out-of-memory there is its typed error), holds one token of K/V per
   * sequence and layer: maxSequences × numLayers × numKvHeads × headDim × 2 (K and V) elements of the
   * pool's dtype (fewer rows where one binding cannot hold them; larger batches then write K/V first
   * too); recording a step never allocates. Default false until a GPU
   * measurement says the flush costs less than it saves; `npm run bench` times both forms.
   */
  decodeWritesKv?: boolean;
  /**
   * Workgroups of 256 invocations the device runs at once, which sizes split-K in decode (a long
   * sequence is cut into enough parts to fill the device). Default 'probe': `create` measures it once
   * per device (`probeParallelism`, a few hundred milliseconds at most); give the number to skip that.
   */
  residentWorkgroups?: number | 'probe';
  /**
   * The adapter's info (`gpu.adapter.info`), where `device.adapterInfo` lacks the subgroup-matrix
   * configurations (Dawn's Node binding): with it, prefill runs on subgroup matrices when the device was
   * created with them (`createGpu({ subgroupMatrix: true })`).
   */
  adapterInfo?: AdapterInfoWithSubgroups;
  /**
   * Kernel knobs for this device and model: which decode and prefill kernels run and their shapes, as
   * `tuneAttention` (or the `tune` command) measures them. Default: the built-in choices. Its
   * decodeWritesKv is used where the decodeWritesKv option above is not given.
   */
  attentionTuning?: AttentionTuning;
}

export interface ResolvedConfig {
  layout: KvLayout;
  numQueryHeads: number;
  maxSequences: number;
  maxBlocksPerSequence: number;
  maxSequenceLength: number;
  useSubgroups: boolean;
  lockTimeoutMs: number;
  decodeWritesKv: boolean;
  /** undefined: probe the device (create does, then passes the number on). */
  residentWorkgroups: number | undefined;
  adapterInfo: AdapterInfoWithSubgroups | undefined;
  /** Validated and frozen; its decodeWritesKv equals the field above. */
  attentionTuning: AttentionTuning;
}

function positiveInt(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new ConfigError(`${name} must be a positive integer (got ${String(value)})`);
  }
  return value;
}

export function resolveConfig(device: GPUDevice, options: PagedKVCacheOptions, hasSubgroups: boolean): ResolvedConfig {
  if (!options || typeof options !== 'object') throw new ConfigError('options are required');
  const numLayers = positiveInt('numLayers', options.numLayers);
  const numKvHeads = positiveInt('numKvHeads', options.numKvHeads);
  const headDim = positiveInt('headDim', options.headDim);
  const numQueryHeads = positiveInt('numQueryHeads', options.numQueryHeads ?? numKvHeads);
  const blockSize = positiveInt('blockSize', options.blockSize ?? 16);
  const kvDtype = options.kvDtype ?? 'f16';
  if (numQueryHeads % numKvHeads !== 0) {
    throw new ConfigError(`numQueryHeads (${numQueryHeads}) must be a multiple of numKvHeads (${numKvHeads})`);
  }
  if (headDim % 8 !== 0 || headDim > MAX_HEAD_DIM) {
    throw new ConfigError(`headDim must be a multiple of 8 between 8 and ${MAX_HEAD_DIM} (got ${headDim})`);
  }
  if (blockSize > 256) throw new ConfigError(`blockSize must be at most 256 (got ${blockSize})`);
  const chunkLimit = maxChunkBytes(device.limits, options.maxBufferBytes);
  const layout = planPool(
    { numLayers, numKvHeads, headDim, blockSize, kvDtype, numBlocks: options.numBlocks, memoryBudgetBytes: options.memoryBudgetBytes },
    chunkLimit,
  );
  const maxSequences = positiveInt('maxSequences', options.maxSequences ?? 1024);
  const defaultMaxLength = Math.min(layout.numBlocks * blockSize, 131072);
  const maxSequenceLength = positiveInt('maxSequenceLength', options.maxSequenceLength ?? defaultMaxLength);
  const maxBlocksPerSequence = Math.ceil(maxSequenceLength / blockSize);
  const tableBytes = maxSequences * maxBlocksPerSequence * 4;
  if (tableBytes > device.limits.maxStorageBufferBindingSize) {
    throw new ConfigError(
      `the block table (${maxSequences} sequences × ${maxBlocksPerSequence} blocks) needs ${tableBytes} bytes, more than one ` +
        `GPU binding allows (${device.limits.maxStorageBufferBindingSize}); lower maxSequences or maxSequenceLength`,
    );
  }
  const lockTimeoutMs = options.lockTimeoutMs ?? 5000;
  if (!(lockTimeoutMs > 0)) throw new ConfigError(`lockTimeoutMs must be positive (got ${lockTimeoutMs})`);
  const tuning = options.attentionTuning === undefined ? {} : checkAttentionTuning(options.attentionTuning);
  const decodeWritesKv = options.decodeWritesKv ?? tuning.decodeWritesKv ?? false;
  if (typeof decodeWritesKv !== 'boolean') throw new ConfigError(`decodeWritesKv must be true or false (got ${String(decodeWritesKv)})`);
  const resident = options.residentWorkgroups ?? 'probe';
  if (resident !== 'probe' && !(Number.isInteger(resident) && resident >= 1)) {
    throw new ConfigError(`residentWorkgroups must be 'probe' or a positive integer (got ${String(resident)})`);
  }
  return {
    layout,
    numQueryHeads,
    maxSequences,
    maxBlocksPerSequence,
    maxSequenceLength: maxBlocksPerSequence * blockSize,
    useSubgroups: (options.useSubgroups ?? true) && hasSubgroups,
    lockTimeoutMs,
    decodeWritesKv,
    residentWorkgroups: resident === 'probe' ? undefined : resident,
    adapterInfo: options.adapterInfo,
    attentionTuning: Object.freeze({ ...tuning, decodeWritesKv }),
  };
}
