// Paged attention over the paged KV cache: decode (split-K + merge) and prefill in one encode.
// Invariants:
//   - Pipelines (decode, prefill, merge) come from getPipeline, created at a kernel's first use of each
//     (or by warmUp) and shared by every kernel with the same tile shape, so after warm-up encode creates
//     none; the table/pool geometry travels in the uniform block, so block size, pool size, chunking,
//     row stride and head counts never cause a new pipeline. GPU scratch is owned by AttentionResources
//     (see its header for what is allocated when); bind groups are cached by buffer identity.
//   - encode validates everything it can check on the host and throws InvalidArgumentError before
//     recording anything; block ids inside the table are not checked on the host (an id outside
//     [0, numBlocks) reads as zeros).
//   - Decode runs on subgroup matrices where asked (tuning.decodeMatrix) and the device has them (the
//     prefill kernel's code, one query per item), else on the streaming kernel (paged-attention-decode-stream.wgsl, generated entry point;
//     subgroup shuffles when subgroups are on, else the portable shared reduction) where its shape
//     limits allow, else on the tile engine; prefill runs on subgroup
//     matrices (paged-attention-prefill-mma.wgsl) where the device has f16 ones with f32 results
//     (16×16×16, else 8×8×8) and the layout fits, else on the register-blocked kernel (paged-attention-prefill-
//     blocked.wgsl, portable) where a tile fits the device's workgroup memory, else on the tile engine.
//     Every decode kernel writes the same partial format for the merge kernel.
//   - Per encode: one compute pass with up to three dispatches (decode, merge, prefill); dispatches
//     wider than maxComputeWorkgroupsPerDimension wrap into a second dimension.
//   - Every encode between two submits may use a different batch, up to UPLOAD_SLOTS distinct ones
//     (encoding the same batch for every layer reuses one slot).
//   - An entries array passed to encode is treated as immutable: encoding the same array again (every
//     layer of a step) reuses its validation and its work-list plan.
//   - Bindings: ≤ 8 storage buffers per stage (4 KV chunks, table, q, work items, output) plus one
//     uniform block; the decode that takes the new K/V (args.write) adds slots, new K, new V and the
//     staged rows (the layer's chunks + 8), offered only where the device's limit allows it (writesKvFor).
//   - With args.write the decode dispatch attends over the entries' new K/V and stages them
//     (paged-attention-decode-write.wgsl), its pool bindings read-only: its output, and the pool after
//     FlushStagedKvKernel, are those of write-kv then the decode.
//   - On a software adapter (SwiftShader) the caller's tuning applies on top of SOFTWARE_ADAPTER_TUNING;
//     on a GPU, on top of the built-in choices.
import { ConfigError, InvalidArgumentError } from '../errors';
import { bufferFacts } from '../gpu/buffer-facts';
import { MAX_KV_CHUNKS, type KvLayout } from '../pool/kv-layout';
import { dummyStorageBuffer, getPipeline, type PipelineSpec } from './pipeline-cache';
import {
  blockedPrefillConfig,
  describeBlockedPrefillTile,
  describeMmaPrefillTile,
  blockedPrefillConstants,
  mmaPrefillConfig,
  MMA_DEFAULT_DIRECT_KV,
  MMA_DEFAULT_SUBGROUPS,
  MMA_MATRIX_SIZES,
  type MmaMatrixSize,
  type MmaPrefillShape,
  mmaPrefillConstants,
  streamConstants,
  streamDecodeConfig,
  tileConfig,
  tileConstants,
  MERGE_WORKGROUP_SIZE,
  type BlockedPrefillConfig,
  type MmaPrefillConfig,
  type StreamDecodeConfig,
  type TileConfig,
} from './attention-config';
import { planBatch, MIN_KEYS_PER_SPLIT, type PlanShape, STREAM_MIN_STEPS_PER_SPLIT, STREAM_TARGET_DIVISOR, TILE_TARGET_DIVISOR, type BatchPlan, type DispatchRange } from './attention-plan';
import { DEFAULT_RESIDENT_WORKGROUPS } from '../gpu/parallelism-probe';
import { AttentionResources, PARAM_BLOCKS, PARAMS_STRIDE, PARAMS_WORDS, type UploadSlot } from './attention-resources';
import { attentionShader, decodeStreamShader, mergeShader, POOL_HALF_VIEW_BINDING, prefillBlockedShader, prefillMmaShader } from './attention-shaders';
import { validateEntries, type AttentionEntry } from './attention-types';
import { isComputePass, withComputePass } from './kv-bindings';
import { stagedKvRowBytes } from './flush-staged-kv';
import { checkAttentionTuning, mergeTuning, SOFTWARE_ADAPTER_TUNING, type AttentionTuning } from './attention-tuning';
import { isSoftwareDevice } from '../gpu/create-gpu';

export type { AttentionEntry } from './attention-types';
export type { AttentionTuning } from './attention-tuning';

export interface PagedAttentionOptions {
  numQueryHeads: number;
  /** Entries per block-table row. */
  rowStride: number;
  /**
   * Use subgroup operations (needs the 'subgroups' feature): subgroup reductions and shuffles; false =
   * portable path (workgroup-memory reductions). Decode runs on the streaming kernel either way where
   * its shape limits allow, else on the tile engine.
   */
  subgroups: boolean;
  /**
   * Workgroups of 256 invocations the device runs at once (`(await probeParallelism(device))
   * .residentWorkgroups`): split-K aims the streaming decode at half this many workgroups and the tile
   * engine at a quarter. Default DEFAULT_RESIDENT_WORKGROUPS (an H100 SXM's 8 × 132).
   */
  residentWorkgroups?: number;
  /** Kernel knobs (tuneAttention chooses them for a device; checkAttentionTuning validates them); default: the built-in choices. */
  tuning?: AttentionTuning;
  /**
   * The adapter's info (subgroup sizes, subgroup-matrix configurations) when the device does not expose
   * it as `device.adapterInfo` with those fields (Dawn's Node binding omits the matrix configurations).
   */
  adapterInfo?: AdapterInfoWithSubgroups;
}

/** The new tokens' K/V that a decode encode attends over and stages for the pool (PagedAttentionArgs.write). */
export interface DecodeKvWrite {
  /** f32 K rows [q row][numKvHeads][headDim]: an entry's new K row is at its q row. */
  k: GPUBuffer;
  /** f32 V rows, laid out like k. May be the same buffer as k. */
  v: GPUBuffer;
  /** u32 per q row: the cache slot (block · blockSize + offset, global block id) of the entry's query position, or 0xffffffff. */
  slots: GPUBuffer;
  /**
   * Where the decode stages each entry's K and V rows in the pool's word format (rows · stagedKvRowBytes(layout)
   * bytes from `stagedOffset`), for FlushStagedKvKernel to store into the slots afterwards; the decode
   * itself never writes the pool. No other binding of the dispatch may be this buffer.
   */
  staged: GPUBuffer;
  /** Byte offset of the staged rows in `staged`: a multiple of the device's minStorageBufferOffsetAlignment. 0 when omitted. */
  stagedOffset?: number;
}

export interface PagedAttentionArgs {
  /** This layer's KV chunk buffers (layout.numChunks of them). */
  chunks: readonly GPUBuffer[];
  /** Int32 block table, maxSequences × rowStride, -1 = no block. */
  blockTable: GPUBuffer;
  /** f32 [rows][numQueryHeads][headDim]. */
  q: GPUBuffer;
  /** f32, same shape as q; rows of the entries are overwritten, others untouched. */
  out: GPUBuffer;
  entries: readonly AttentionEntry[];
  /** Softmax scale applied to q·k (usually 1 / sqrt(headDim)). */
  scale: number;
  /** Force this many split-K splits per decode entry (capped at its key count); for tests and tuning. */
  forceSplits?: number;
  /**
   * Attend over these K/V rows as the entries' own keys and stage them (write.staged) for the slots
   * named: the output is what a write-kv dispatch before the attention would give, and
   * FlushStagedKvKernel afterwards leaves the pool as that write-kv would (one flush dispatch for
   * several layers instead of a write-kv dispatch per layer). Only where
   * writesKvFor(entries) is true: decode entries only, on the streaming kernel, within the device's
   * storage-binding limit. As with write-kv, the slots must be distinct, and no entry may read a slot
   * that another entry writes (a sequence once per batch, its written blocks private: the cache
   * ensures both).
   */
  write?: DecodeKvWrite;
  /**
   * Timestamps around the kernel's compute pass (benchmarks; needs 'timestamp-query'). Only when encode()
   * opens the pass itself (it is given an encoder, not a pass).
   */
  timestampWrites?: GPUComputePassTimestampWrites;
}

interface KernelPipeline {
  pipeline: GPUComputePipeline;
  /** KV chunk bindings the shader declares and uses (the generated decode names only the layer's). */
  chunkBindings: number;
  /** The shader also reads chunk 0 through an f16 view at POOL_HALF_VIEW_BINDING (matrix loads). */
  poolHalfView?: boolean;
}

const EMPTY_WORK_LIST: Uint32Array<ArrayBuffer> = new Uint32Array(0);
/** Storage buffers of the decode that writes K/V besides the layer's chunks: table, q, work items, results, slots, new K, new V, staged K/V. */
const DECODE_WRITE_STORAGE_BINDINGS = 8;

export class PagedAttentionKernel {
  readonly device: GPUDevice;
  readonly layout: KvLayout;
  readonly numQueryHeads: number;
  readonly rowStride: number;
  readonly subgroups: boolean;
  readonly groupSize: number;
  /** Tile-engine decode shape (used when streamDecodeConfig is undefined). */
  readonly decodeConfig: TileConfig;
  /** Streaming decode shape, where the head shape allows it (and tuning does not turn it off). */
  readonly streamDecodeConfig: StreamDecodeConfig | undefined;
  /** Query heads per decode workgroup and keys split lengths are rounded to, for the decode kernel in use. */
  private readonly decodeShape: { readonly headsPerWorkgroup: number; readonly keyTile: number };
  readonly prefillConfig: TileConfig;
  /** Subgroup-matrix decode shape, where asked for (tuning.decodeMatrix) and the device has f16 subgroup matrices. */
  readonly decodeMmaConfig: MmaPrefillConfig | undefined;
  /** Subgroup-matrix prefill shape, when the device has f16 subgroup matrices and the layout fits. */
  readonly prefillMmaConfig: MmaPrefillConfig | undefined;
  /** Register-blocked prefill shape, when it is chosen (no subgroup matrices) and a tile fits. */
  readonly prefillBlockedConfig: BlockedPrefillConfig | undefined;
  /** Workgroups the decode's split-K aims for, and its shortest split in keys. */
  readonly decodeSplitTarget: number;
  readonly decodeMinKeysPerSplit: number;
  private readonly tuning: AttentionTuning;
  /** The plan of the last encode (splits per decode entry etc.), for diagnostics. */
  lastPlan: BatchPlan | undefined;
  private decodePipeline: KernelPipeline | undefined;
  private decodeWritePipeline: KernelPipeline | undefined;
  /** Whether the device has the storage bindings of the decode kernel that writes K/V. */
  private readonly writeBindingsFit: boolean;
  /** The entries array writesKvFor last answered for, and its answer. */
  private writesKvEntries: readonly AttentionEntry[] | undefined;
  private writesKvAnswer = false;
  /** q rows the entries of writesKvEntries span (1 + the largest qRow). */
  private writesKvRows = 0;
  private prefillPipeline: KernelPipeline | undefined;
  private mergePipeline: KernelPipeline | undefined;
  private readonly resources: AttentionResources;
  private planScratch = EMPTY_WORK_LIST;
  /** Incremented whenever a new plan is written into planScratch (the work list's version for upload). */
  private planVersion = 0;
  /** The entries array the last plan / validation was made for (encoding it again reuses both). */
  private plannedEntries: readonly AttentionEntry[] | undefined;
  private plannedSplits: number | undefined;
  private validated: { entries: readonly AttentionEntry[]; maxSequences: number; queryRows: number } | undefined;
  private readonly params = new Uint32Array(PARAM_BLOCKS * PARAMS_WORDS);
  private readonly paramsFloat = new Float32Array(this.params.buffer);
  private readonly maxWorkgroupsPerDimension: number;
  /** device.limits.minStorageBufferOffsetAlignment, read once (each read of device.limits is a native call; validateWrite runs per layer). */
  private readonly storageOffsetAlignment: number;
  /** Bound to chunk bindings a layer does not use. */
  private readonly dummy: GPUBuffer;
  /** Reused binding lists (the bind-group cache compares them by identity and copies what it keeps). */
  private readonly tileBindings: (GPUBufferBinding | undefined)[];
  private readonly chunkBindings: GPUBufferBinding[];
  /** Chunk 0 again, for a subgroup-matrix kernel that also reads it through an f16 view (K/V matrices from the pool). */
  private readonly poolHalfView: GPUBufferBinding;
  /** Slots, new K, new V (bindings 9–11 of the decode that writes K/V). */
  private readonly writeBindings: GPUBufferBinding[];
  private readonly mergeBindings: GPUBufferBinding[];

  constructor(device: GPUDevice, layout: KvLayout, opts: PagedAttentionOptions) {
    const { numQueryHeads, rowStride } = opts;
    if (!Number.isInteger(numQueryHeads) || numQueryHeads < 1 || numQueryHeads % layout.numKvHeads !== 0) {
      throw new ConfigError(`numQueryHeads (${numQueryHeads}) must be a positive multiple of numKvHeads (${layout.numKvHeads})`);
    }
    if (!Number.isInteger(rowStride) || rowStride < 1) {
      throw new ConfigError(`rowStride must be a positive integer (got ${rowStride})`);
    }
    if (opts.subgroups && !device.features.has('subgroups')) {
      throw new ConfigError("subgroups: true needs a device created with the 'subgroups' feature");
    }
    this.device = device;
    this.layout = layout;
    this.numQueryHeads = numQueryHeads;
    this.rowStride = rowStride;
    this.subgroups = opts.subgroups;
    this.groupSize = numQueryHeads / layout.numKvHeads;
    const wgBytes = device.limits.maxComputeWorkgroupStorageSize;
    this.decodeConfig = tileConfig('decode', layout, this.groupSize, wgBytes);
    const requested = opts.tuning === undefined ? {} : checkAttentionTuning(opts.tuning, 'tuning');
    const tuning = (this.tuning = isSoftwareDevice(device) ? mergeTuning(SOFTWARE_ADAPTER_TUNING, requested) : requested);
    const info = opts.adapterInfo ?? adapterInfoOf(device);
    // Mesa's lavapipe at subgroups wider than 8 (LP_NATIVE_VECTOR_WIDTH 512 or 1024) misnumbers the
    // invocations past its first 8 lanes, so shuffles across 8 lanes read the wrong lane or zero (Mesa
    // 26.2): shuffles there stay inside 8 lanes.
    const subgroupMinSize = Math.min(info?.subgroupMinSize || 4, /llvmpipe/i.test(info?.description ?? '') ? 8 : Infinity);
    for (const [knob, size] of [['stream', tuning.stream?.workgroupSize], ['blocked', tuning.blocked?.workgroupSize]] as const) {
      if (size !== undefined && size > device.limits.maxComputeInvocationsPerWorkgroup) {
        throw new ConfigError(
          `${knob}.workgroupSize ${size} is more than the device runs per workgroup ` +
            `(maxComputeInvocationsPerWorkgroup ${device.limits.maxComputeInvocationsPerWorkgroup}); choose a smaller size`,
        );
      }
    }
    // The streaming decode adds up its lanes' scores with subgroup shuffles where it may, else through
    // workgroup memory; asking for shuffles without subgroups leaves decode to the tile engine.
    const reduction = tuning.stream?.reduction ?? (opts.subgroups ? 'subgroup' : 'shared');
    const streamAllowed = tuning.streamDecode !== false && (opts.subgroups || reduction === 'shared');
    this.streamDecodeConfig = streamAllowed
      ? streamDecodeConfig(layout, this.groupSize, subgroupMinSize, wgBytes, {
          ...tuning.stream,
          reduction,
          halfScores: tuning.stream?.halfScores === true && device.features.has('shader-f16'),
        })
      : undefined;
    const matrixSize = opts.subgroups ? subgroupMatrixSize(device, info) : undefined;
    /** A subgroup-matrix kernel of `shape` on this device and layout, where the device has matrices and it fits. */
    const matrixKernel = (shape: Omit<MmaPrefillShape, 'matrixSize' | 'rescaleThreshold'>) =>
      matrixSize === undefined
        ? undefined
        : mmaPrefillConfig(layout, this.groupSize, subgroupSizeOf(info), device.limits, { ...shape, matrixSize, rescaleThreshold: tuning.prefillRescaleThreshold });
    // A key tile whose workgroup memory does not fit falls back to 16 keys (still on subgroup matrices).
    this.decodeMmaConfig =
      tuning.decodeMatrix === true ? (matrixKernel({ keyTile: tuning.decodeMatrixKeyTile, directKv: true }) ?? matrixKernel({ directKv: true })) : undefined;
    const stream = this.streamDecodeConfig;
    const decodeMma = this.decodeMmaConfig;
    this.decodeShape = decodeMma
      ? { headsPerWorkgroup: decodeMma.headsPerWorkgroup, keyTile: decodeMma.keyTile }
      : stream
        ? { headsPerWorkgroup: stream.headsPerWorkgroup, keyTile: stream.keysPerStep }
        : { headsPerWorkgroup: this.decodeConfig.headsPerWorkgroup, keyTile: this.decodeConfig.keyTile };
    const resident = opts.residentWorkgroups ?? DEFAULT_RESIDENT_WORKGROUPS;
    if (!Number.isInteger(resident) || resident < 1) {
      throw new ConfigError(`residentWorkgroups must be a positive integer (got ${resident}); probeParallelism(device) measures it`);
    }
    // The subgroup-matrix decode's workgroups are one subgroup each: as many as fill the device with
    // the same invocations as `resident` 256-invocation ones.
    this.decodeSplitTarget =
      tuning.decodeTargetWorkgroups ??
      (decodeMma
        ? Math.max(1, Math.round((resident * 256) / decodeMma.workgroupSize))
        : stream
          ? Math.max(1, Math.round(resident / STREAM_TARGET_DIVISOR))
          : Math.max(1, Math.round(resident / TILE_TARGET_DIVISOR)));
    this.decodeMinKeysPerSplit =
      tuning.decodeMinKeysPerSplit ??
      (decodeMma ? STREAM_MIN_STEPS_PER_SPLIT * decodeMma.keyTile : stream ? STREAM_MIN_STEPS_PER_SPLIT * stream.keysPerStep : MIN_KEYS_PER_SPLIT);
    this.prefillConfig = tileConfig('prefill', layout, this.groupSize, wgBytes);
    // A subgroup count or key tile whose workgroup memory does not fit falls back to the one-subgroup,
    // 16-key shape (still on subgroup matrices), not to the portable kernel.
    const kvSource = { directKv: tuning.prefillMatrixDirectKv ?? MMA_DEFAULT_DIRECT_KV, earlyV: tuning.prefillMatrixEarlyV, nextK: tuning.prefillMatrixNextK, reuseKForV: tuning.prefillMatrixReuseKForV };
    this.prefillMmaConfig =
      tuning.prefillMatrix === false
        ? undefined
        : (matrixKernel({
            subgroups: tuning.prefillMatrixSubgroups ?? MMA_DEFAULT_SUBGROUPS,
            rowTiles: tuning.prefillMatrixRowTiles,
            keyTile: tuning.prefillMatrixKeyTile,
            ...kvSource,
          }) ?? matrixKernel(kvSource));
    this.prefillBlockedConfig =
      this.prefillMmaConfig === undefined && tuning.prefillBlocked !== false ? blockedPrefillConfig(layout, this.groupSize, wgBytes, tuning.blocked) : undefined;
    this.resources = new AttentionResources(device);
    this.writeBindingsFit = layout.numChunks + DECODE_WRITE_STORAGE_BINDINGS <= device.limits.maxStorageBuffersPerShaderStage;
    this.maxWorkgroupsPerDimension = device.limits.maxComputeWorkgroupsPerDimension;
    this.storageOffsetAlignment = device.limits.minStorageBufferOffsetAlignment;
    this.dummy = dummyStorageBuffer(device);
    const buffer = this.dummy;
    this.chunkBindings = Array.from({ length: MAX_KV_CHUNKS }, () => ({ buffer }));
    this.tileBindings = [
      { buffer, offset: 0, size: PARAMS_WORDS * 4 },
      ...this.chunkBindings,
      { buffer },
      { buffer },
      { buffer },
      { buffer },
      undefined,
      undefined,
      undefined,
      undefined,
    ];
    this.writeBindings = [{ buffer }, { buffer }, { buffer }, { buffer, offset: 0, size: 16 }];
    this.poolHalfView = { buffer };
    this.mergeBindings = [{ buffer, offset: 2 * PARAMS_STRIDE, size: PARAMS_WORDS * 4 }, { buffer }, { buffer }, { buffer }];
    this.setLayoutParams();
  }

  private get decode(): KernelPipeline {
    const stream = this.streamDecodeConfig;
    const mma = this.decodeMmaConfig;
    if (mma) return (this.decodePipeline ??= this.mmaPipeline(mma));
    return (this.decodePipeline ??= stream
      ? this.pipeline(
          { ...decodeStreamShader(stream, this.layout.kvDtype === 'f16', this.layout.numChunks), constants: streamConstants(stream, this.layout) },
          this.layout.numChunks,
        )
      : this.tilePipeline(this.decodeConfig));
  }

  /** The streaming decode that also takes and stages the new tokens' K/V (PagedAttentionArgs.write). */
  private get decodeWrite(): KernelPipeline {
    const stream = this.streamDecodeConfig!;
    return (this.decodeWritePipeline ??= this.pipeline(
      { ...decodeStreamShader(stream, this.layout.kvDtype === 'f16', this.layout.numChunks, true), constants: streamConstants(stream, this.layout) },
      this.layout.numChunks,
    ));
  }

  /**
   * Whether this kernel's decode can take a batch's new K/V at all (writesKvFor then asks the batch):
   * the streaming kernel with subgroup reduction, within the device's storage-binding limit, and not
   * turned off by the tuning (decodeWritesKv: false).
   */
  get storesKv(): boolean {
    return (
      this.decodeMmaConfig === undefined &&
      this.streamDecodeConfig?.reduction === 'subgroup' &&
      this.writeBindingsFit &&
      this.tuning.decodeWritesKv !== false
    );
  }

  /**
   * Whether encode can store the new K/V of `entries` in its decode dispatch (args.write): every entry is a
   * decode (one query), decode runs on the streaming kernel and the device allows its bindings (the
   * layer's chunks + 7 storage buffers). Answers for the same array again without looking at it.
   */
  writesKvFor(entries: readonly AttentionEntry[]): boolean {
    if (entries === this.writesKvEntries) return this.writesKvAnswer;
    let answer = this.storesKv;
    let rows = 0;
    for (let i = 0; answer && i < entries.length; i++) {
      answer = entries[i]!.numQueries === 1;
      rows = Math.max(rows, entries[i]!.qRow + 1);
    }
    this.writesKvEntries = entries;
    this.writesKvAnswer = answer;
    this.writesKvRows = rows;
    return answer;
  }

  private get prefill(): KernelPipeline {
    const mma = this.prefillMmaConfig;
    const blocked = this.prefillBlockedConfig;
    return (this.prefillPipeline ??= mma
      ? this.mmaPipeline(mma)
      : blocked
        ? this.pipeline({ ...prefillBlockedShader(blocked, this.layout.headDim), constants: blockedPrefillConstants(blocked, this.layout) })
        : this.tilePipeline(this.prefillConfig));
  }

  /** Query heads and queries per prefill workgroup, for the prefill kernel in use. */
  private get prefillShape(): { headsPerWorkgroup: number; queriesPerWorkgroup: number } {
    return this.prefillMmaConfig ?? this.prefillBlockedConfig ?? this.prefillConfig;
  }

  private get merge(): KernelPipeline {
    return (this.mergePipeline ??= this.pipeline({
      ...mergeShader(),
      constants: { WG_SIZE: MERGE_WORKGROUP_SIZE, HEAD_DIM: this.layout.headDim },
    }));
  }

  /**
   * Creates the pipelines `kinds` will use now instead of at their first encode (on software
   * adapters a pipeline takes seconds to compile).
   */
  warmUp(kinds: ReadonlyArray<'decode' | 'prefill' | 'merge'> = ['decode', 'prefill', 'merge']): void {
    for (const kind of kinds) void this[kind];
  }

  private tilePipeline(config: TileConfig): KernelPipeline {
    const shader = attentionShader(config.kind, this.subgroups);
    return this.pipeline({ ...shader, constants: tileConstants(config, this.layout) });
  }

  /** The subgroup-matrix kernel of `config` (prefill, or decode writing split partials where asked). */
  private mmaPipeline(config: MmaPrefillConfig): KernelPipeline {
    const spec = { ...prefillMmaShader(config, this.layout.headDim), constants: mmaPrefillConstants(config, this.layout) };
    return { ...this.pipeline(spec, config.directKv ? 1 : MAX_KV_CHUNKS), poolHalfView: config.directKv };
  }

  private pipeline(spec: PipelineSpec, chunkBindings = MAX_KV_CHUNKS): KernelPipeline {
    return { pipeline: getPipeline(this.device, spec), chunkBindings };
  }

  /**
   * The split-K count encode would give each decode entry of `entries` (in decode-entry order), without
   * encoding anything; a valid batch is assumed (encode validates it).
   */
  splitsFor(entries: readonly AttentionEntry[]): number[] {
    return planBatch(entries, this.planShape(), new Uint32Array(0)).splitsPerEntry;
  }

  private planShape(): PlanShape {
    const decodeShape = this.decodeShape;
    const prefillShape = this.prefillShape;
    return {
      numKvHeads: this.layout.numKvHeads,
      numQueryHeads: this.numQueryHeads,
      decodeHeadTiles: this.groupSize / decodeShape.headsPerWorkgroup,
      prefillHeadTiles: this.groupSize / prefillShape.headsPerWorkgroup,
      decodeKeyTile: decodeShape.keyTile,
      prefillQueriesPerWorkgroup: prefillShape.queriesPerWorkgroup,
      blockSize: this.layout.blockSize,
      targetWorkgroups: this.decodeSplitTarget,
      minKeysPerSplit: this.decodeMinKeysPerSplit,
    };
  }

  /**
   * Records the attention of `args.entries`: into the caller's compute pass (after other dispatches that
   * produce what it reads: each dispatch sees the writes of those before it), or into a pass of its own
   * on the caller's encoder.
   */
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, args: PagedAttentionArgs): void {
    this.validate(args);
    if (isComputePass(target) && args.timestampWrites !== undefined) {
      throw new InvalidArgumentError('timestampWrites needs a command encoder: the pass given already has its own');
    }
    if (args.write !== undefined) this.validateWrite(args.write, args);
    if (args.entries.length === 0) return;
    const hd = this.layout.headDim;
    const reuse = this.lastPlan !== undefined && this.plannedEntries === args.entries && this.plannedSplits === args.forceSplits;
    const plan = reuse ? this.lastPlan! : planBatch(args.entries, this.planShape(), this.planScratch, args.forceSplits);
    if (!reuse) this.planVersion++;
    this.planScratch = plan.items;
    this.lastPlan = plan;
    this.plannedEntries = args.entries;
    this.plannedSplits = args.forceSplits;
    const statsBase = (plan.partialSlots * hd) / 4;
    this.setParams(0, plan.decode, statsBase, args.scale, plan.split);
    this.setParams(1, plan.prefill, 0, args.scale, false);
    this.setParams(2, plan.merge, statsBase, args.scale, false);
    const slot = this.resources.upload(plan.items, plan.words, this.params, this.planVersion);
    const partials = plan.split ? this.resources.partialBuffer((plan.partialSlots * (hd + 4)) * 4) : undefined;

    // Into the caller's pass directly (every layer of a step): no closure or descriptor to allocate.
    if (isComputePass(target)) {
      this.record(target, plan, slot, partials, args);
      return;
    }
    withComputePass(target, (pass) => this.record(pass, plan, slot, partials, args), {
      label: 'paged-attention',
      timestampWrites: args.timestampWrites,
    });
  }

  /** Records the dispatches of `plan`: decode (split partials when split), merge, prefill. */
  private record(pass: GPUComputePassEncoder, plan: BatchPlan, slot: UploadSlot, partials: GPUBuffer | undefined, args: PagedAttentionArgs): void {
    const decodeShape = this.decodeShape;
    const prefillShape = this.prefillShape;
    const decodeWorkgroupsPerItem = this.layout.numKvHeads * (this.groupSize / decodeShape.headsPerWorkgroup);
    const prefillWorkgroupsPerItem = this.layout.numKvHeads * (this.groupSize / prefillShape.headsPerWorkgroup);
    if (plan.decode.count > 0) {
      const kernel = args.write ? this.decodeWrite : this.decode;
      this.dispatchTile(pass, kernel, args, slot, 0, partials ?? args.out, plan.decode.count * decodeWorkgroupsPerItem, args.write);
    }
    if (plan.split && partials) {
      const bindings = this.mergeBindings;
      bindings[0]!.buffer = slot.params;
      bindings[1]!.buffer = partials;
      bindings[2]!.buffer = slot.items;
      bindings[3]!.buffer = args.out;
      const group = this.resources.bindGroup(this.merge.pipeline, bindings);
      pass.setPipeline(this.merge.pipeline);
      pass.setBindGroup(0, group);
      this.dispatch(pass, plan.merge.count * this.numQueryHeads);
    }
    if (plan.prefill.count > 0) {
      this.dispatchTile(pass, this.prefill, args, slot, 1, args.out, plan.prefill.count * prefillWorkgroupsPerItem);
    }
  }

  /** Writes the per-encode words of parameter block `block`; the layout words are set once (constructor). */
  private setParams(block: number, range: DispatchRange, statsBase: number, scale: number, writePartials: boolean): void {
    const at = block * PARAMS_WORDS;
    const params = this.params;
    params[at] = range.base;
    params[at + 1] = range.count;
    params[at + 2] = statsBase;
    this.paramsFloat[at + 3] = scale;
    params[at + 4] = writePartials ? 1 : 0;
  }

  /** The words of every parameter block that depend only on the layout and head counts. */
  private setLayoutParams(): void {
    const layout = this.layout;
    const vecsPerRow = layout.wordsPerRow / 4;
    const blockShift = Number.isInteger(Math.log2(layout.blockSize)) ? Math.log2(layout.blockSize) : 32;
    for (let block = 0; block < PARAM_BLOCKS; block++) {
      this.params.set(
        [
          layout.blockSize,
          layout.numBlocks,
          layout.blocksPerChunk,
          this.rowStride,
          layout.numKvHeads,
          this.groupSize,
          this.numQueryHeads,
          vecsPerRow * layout.blockSize,
          vecsPerRow * layout.blockSize * layout.numKvHeads,
          2 * vecsPerRow * layout.blockSize * layout.numKvHeads,
          blockShift,
        ],
        block * PARAMS_WORDS + 5,
      );
    }
  }

  private dispatchTile(
    pass: GPUComputePassEncoder,
    kernel: KernelPipeline,
    args: PagedAttentionArgs,
    slot: UploadSlot,
    paramsBlock: number,
    results: GPUBuffer,
    workgroups: number,
    write?: DecodeKvWrite,
  ): void {
    // Binding order: params, KV chunks (MAX_KV_CHUNKS slots), block table, q, work items, results, then
    // for the decode that writes K/V: slots, new K, new V, staged K/V; or for a subgroup-matrix kernel reading the pool as f16 matrices: chunk 0 again.
    const bindings = this.tileBindings;
    const params = bindings[0]!;
    params.buffer = slot.params;
    params.offset = paramsBlock * PARAMS_STRIDE;
    for (let c = 0; c < MAX_KV_CHUNKS; c++) {
      const chunk = this.chunkBindings[c]!;
      chunk.buffer = args.chunks[c] ?? this.dummy;
      bindings[1 + c] = c < kernel.chunkBindings ? chunk : undefined;
    }
    bindings[MAX_KV_CHUNKS + 1]!.buffer = args.blockTable;
    bindings[MAX_KV_CHUNKS + 2]!.buffer = args.q;
    bindings[MAX_KV_CHUNKS + 3]!.buffer = slot.items;
    bindings[MAX_KV_CHUNKS + 4]!.buffer = results;
    const writes = this.writeBindings;
    if (write) {
      writes[0]!.buffer = write.slots;
      writes[1]!.buffer = write.k;
      writes[2]!.buffer = write.v;
      const staged = writes[3]!;
      staged.buffer = write.staged;
      staged.offset = write.stagedOffset ?? 0;
      staged.size = this.writesKvRows * stagedKvRowBytes(this.layout);
    }
    for (let i = 0; i < writes.length; i++) bindings[MAX_KV_CHUNKS + 5 + i] = write ? writes[i] : undefined;
    if (kernel.poolHalfView) {
      this.poolHalfView.buffer = args.chunks[0]!;
      bindings[POOL_HALF_VIEW_BINDING] = this.poolHalfView;
    }
    const group = this.resources.bindGroup(kernel.pipeline, bindings);
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, group);
    this.dispatch(pass, workgroups);
  }

  private dispatch(pass: GPUComputePassEncoder, workgroups: number): void {
    const maxX = this.maxWorkgroupsPerDimension;
    const x = Math.min(workgroups, maxX);
    const y = Math.ceil(workgroups / x);
    if (y > maxX) throw new InvalidArgumentError(`batch needs ${workgroups} workgroups, more than ${maxX}² per dispatch`);
    pass.dispatchWorkgroups(x, y);
  }

  private validate(args: PagedAttentionArgs): void {
    const layout = this.layout;
    if (args.chunks.length !== layout.numChunks) {
      throw new InvalidArgumentError(`expected ${layout.numChunks} KV chunk buffers for this layer, got ${args.chunks.length}`);
    }
    for (let c = 0; c < args.chunks.length; c++) {
      const size = storageSize(`chunks[${c}]`, args.chunks[c]!);
      if (size < layout.chunkBytes[c]!) {
        throw new InvalidArgumentError(`chunks[${c}] holds ${size} bytes; the layout needs ${layout.chunkBytes[c]}`);
      }
    }
    const tableBytes = storageSize('blockTable', args.blockTable);
    const qBytes = storageSize('q', args.q);
    const outBytes = storageSize('out', args.out);
    if (args.q === args.out) throw new InvalidArgumentError('q and out must be different buffers');
    if (!Number.isFinite(args.scale)) throw new InvalidArgumentError(`scale must be finite (got ${args.scale})`);
    const rowBytes = this.numQueryHeads * layout.headDim * 4;
    const maxSequences = Math.floor(tableBytes / (this.rowStride * 4));
    const queryRows = Math.floor(Math.min(qBytes, outBytes) / rowBytes);
    // The same entries array encoded again (every layer of a step) was validated already.
    const v = this.validated;
    if (v && v.entries === args.entries && v.maxSequences === maxSequences && queryRows >= v.queryRows) return;
    validateEntries(args.entries, { blockSize: layout.blockSize, rowStride: this.rowStride, maxSequences, queryRows });
    this.validated = { entries: args.entries, maxSequences, queryRows };
  }

  /** args.write is usable for `entries`, its buffers hold every entry's row and none is written by the dispatch. */
  private validateWrite(write: DecodeKvWrite, args: PagedAttentionArgs): void {
    if (!this.writesKvFor(args.entries)) {
      throw new InvalidArgumentError(
        'write needs decode entries only (numQueries 1) on the streaming decode kernel; check writesKvFor(entries) and write K/V with write-kv otherwise',
      );
    }
    const rows = this.writesKvRows;
    const kvRowBytes = this.layout.numKvHeads * this.layout.headDim * 4;
    requireBytes('write.k', write.k, rows * kvRowBytes);
    requireBytes('write.v', write.v, rows * kvRowBytes);
    requireBytes('write.slots', write.slots, rows * 4);
    if (writtenByDecode(write.k, args) || writtenByDecode(write.v, args) || writtenByDecode(write.slots, args)) {
      throw new InvalidArgumentError('write.k, write.v and write.slots must not be out or a KV chunk (the decode writes out, and the staged rows are flushed into the chunks)');
    }
    const offset = write.stagedOffset ?? 0;
    const alignment = this.storageOffsetAlignment;
    if (!Number.isInteger(offset) || offset < 0 || offset % alignment !== 0) {
      throw new InvalidArgumentError(`write.stagedOffset must be a non-negative multiple of ${alignment} bytes (got ${offset})`);
    }
    requireBytes('write.staged', write.staged, offset + rows * stagedKvRowBytes(this.layout));
    const s = write.staged;
    if (s === write.k || s === write.v || s === write.slots || s === args.q || s === args.out || s === args.blockTable || args.chunks.includes(s)) {
      throw new InvalidArgumentError('write.staged must be a buffer of its own (the decode writes it while reading every other binding)');
    }
  }

  /** Bind groups currently cached (tests use it to prove reuse). */
  get cachedBindGroups(): number {
    return this.resources.bindGroupCount;
  }

  /** The decode and prefill kernels this object runs, and their shapes, in words (`info`, diagnostics). */
  describeKernels(): { decode: string; prefill: string } {
    const s = this.streamDecodeConfig;
    const dm = this.decodeMmaConfig;
    const decode = dm
      ? `subgroup matrices ${dm.matrixSize}×${dm.matrixSize}: ${dm.headsPerWorkgroup} heads per workgroup, ${dm.keyTile} keys per step` +
        `${dm.directKv ? ', K/V from the pool' : ''}, ${dm.workgroupBytes} B`
      : s
      ? `streaming (${s.reduction === 'subgroup' ? 'subgroup shuffles' : 'workgroup-memory reduction'}): ` +
        `${s.lanes} lanes per key row, unroll ${s.unroll}, ${s.headsPerWorkgroup} heads per workgroup${s.halfScores ? ', f16 scores' : ''}, ${s.workgroupBytes} B`
      : `tile engine: ${this.decodeConfig.keyTile}-key tiles, ${this.decodeConfig.headsPerWorkgroup} heads per workgroup, ${this.decodeConfig.workgroupBytes} B`;
    const m = this.prefillMmaConfig;
    const b = this.prefillBlockedConfig;
    const t = this.prefillConfig;
    const prefill = m
      ? `subgroup matrices ${m.matrixSize}×${m.matrixSize}: ${describeMmaPrefillTile(m)}`
      : b
        ? `register-blocked: ${describeBlockedPrefillTile(b)}`
        : `tile engine: ${t.rows} rows × ${t.keyTile} keys, ${t.workgroupBytes} B`;
    return { decode, prefill };
  }

  /** Frees the kernel's scratch buffers (pipelines stay cached per device). */
  destroy(): void {
    this.resources.destroy();
  }
}

export interface AdapterInfoWithSubgroups {
  /** The adapter's description (GPUAdapterInfo.description): names drivers with known faults. */
  description?: string;
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  subgroupMatrixConfigs?: Iterable<{ componentType: string; resultComponentType: string; M: number; N: number; K: number }>;
}

function adapterInfoOf(device: GPUDevice): AdapterInfoWithSubgroups | undefined {
  return (device as { adapterInfo?: AdapterInfoWithSubgroups }).adapterInfo;
}

function subgroupSizeOf(info: AdapterInfoWithSubgroups | undefined): number {
  return info?.subgroupMinSize && info.subgroupMinSize === info.subgroupMaxSize ? info.subgroupMinSize : 0;
}

/**
 * The size n of the square f16 subgroup matrices with f32 results (n × n × n) the device offers, 16
 * preferred over 8, at one subgroup size; undefined where it offers neither.
 */
export function subgroupMatrixSize(device: GPUDevice, info: AdapterInfoWithSubgroups | undefined): MmaMatrixSize | undefined {
  if (!device.features.has('chromium-experimental-subgroup-matrix') || !device.features.has('shader-f16')) return undefined;
  if (!device.features.has('subgroups') || subgroupSizeOf(info) === 0) return undefined;
  // Mesa's lavapipe offers its 8×8 matrices at every subgroup size, but any matrix operation crashes the
  // process (SIGSEGV in the driver, Mesa 26.2) unless its subgroups are 8 wide (LP_NATIVE_VECTOR_WIDTH 256).
  if (/llvmpipe/i.test(info?.description ?? '') && subgroupSizeOf(info) !== 8) return undefined;
  const configs = [...(info?.subgroupMatrixConfigs ?? [])];
  return MMA_MATRIX_SIZES.find((n) => configs.some((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && c.M === n && c.N === n && c.K === n));
}

/** Whether the decode binds `buffer` writable: out, or one of the layer's KV chunks. */
function writtenByDecode(buffer: GPUBuffer, args: PagedAttentionArgs): boolean {
  return buffer === args.out || args.chunks.includes(buffer);
}

/** Throws unless `buffer` is a STORAGE GPUBuffer of at least `bytes` bytes. */
function requireBytes(name: string, buffer: GPUBuffer, bytes: number): void {
  const size = storageSize(name, buffer);
  if (size < bytes) throw new InvalidArgumentError(`${name} holds ${size} bytes; the entries' rows need ${bytes}`);
}

/** The size of `buffer`, which must be a GPUBuffer with STORAGE usage. */
function storageSize(name: string, buffer: GPUBuffer): number {
  const facts = bufferFacts(buffer);
  if (facts === undefined) throw new InvalidArgumentError(`${name} must be a GPUBuffer`);
  if (!(facts.usage & GPUBufferUsage.STORAGE)) {
    throw new InvalidArgumentError(`${name} must be created with GPUBufferUsage.STORAGE`);
  }
  return facts.size;
}
