// Tile shapes of the paged-attention kernels, derived once per (layout, GQA group, kind, device limit).
// Invariants (they are the WGSL side's assumptions, see shaders/paged-attention-common.wgsl):
//   - WORKGROUP_SIZE = 128 threads, a multiple of every subgroup size WGSL allows;
//   - headsPerWorkgroup divides groupSize and is ≤ 8 (the largest such divisor unless memory forces a
//     smaller one); rows = queriesPerWorkgroup × headsPerWorkgroup;
//   - keyTile, keysPerThread, dotSplit, pvLanes are powers of two; keysPerThread ≤ 16;
//     rows × keyTile / keysPerThread × dotSplit ≤ 128; rows × vecsPerRow × pvLanes ≤ pvSlots × 128 with
//     pvSlots ≤ 8, and pvLanes > 1 only when pvSlots = 1;
//   - workgroupBytes (what the WGSL declares) ≤ min(device limit, 32 KiB), so the same tiles work on
//     SwiftShader, browsers and large GPUs; head dim 256 (or a 16 KiB device) shrinks the key tile, then
//     the query tile, then the heads per workgroup, rather than failing.
import { ConfigError } from '../errors';
import type { KvLayout } from '../pool/kv-layout';

export const WORKGROUP_SIZE = 128;
export const MERGE_WORKGROUP_SIZE = 64;
export const TABLE_WINDOW = 128;
export const MAX_HEADS_PER_WORKGROUP = 8;
const MAX_KEYS_PER_THREAD = 16;
const MAX_PV_SLOTS = 8;
/** Portable cap on workgroup storage, even where the device allows more. */
export const MAX_WORKGROUP_BYTES = 32 * 1024;
/** Budget for the staged query rows of a prefill tile (f32): rows ≤ this / (4 × headDim). */
const PREFILL_Q_BYTES = 16 * 1024;
/** Query rows of a prefill tile at most (half a workgroup's threads per key of the tile). */
const MAX_PREFILL_ROWS = 64;
/** Budget for the staged K+V tile: larger for decode, which has few query rows. */
const KV_STAGE_BYTES = { decode: 20 * 1024, prefill: 12 * 1024 } as const;

export type AttentionKind = 'decode' | 'prefill';

export interface TileConfig {
  kind: AttentionKind;
  headsPerWorkgroup: number;
  queriesPerWorkgroup: number;
  rows: number;
  keyTile: number;
  keysPerThread: number;
  dotSplit: number;
  pvLanes: number;
  pvSlots: number;
  vecsPerRow: number;
  workgroupBytes: number;
}

function floorPow2(n: number): number {
  return 2 ** Math.floor(Math.log2(Math.max(1, n)));
}

function largestDivisorAtMost(n: number, max: number): number {
  for (let d = Math.min(n, max); d > 1; d--) if (n % d === 0) return d;
  return 1;
}

function derive(kind: AttentionKind, layout: KvLayout, hpw: number, qpw: number, keyTile: number): TileConfig {
  const wg = WORKGROUP_SIZE;
  const vecsPerRow = layout.headDim / (layout.kvDtype === 'f16' ? 8 : 4);
  const rows = qpw * hpw;
  let keysPerThread = 1;
  while (rows * (keyTile / keysPerThread) > wg && keysPerThread < keyTile) keysPerThread *= 2;
  let dotSplit = 1;
  while (dotSplit * 2 <= vecsPerRow && rows * (keyTile / keysPerThread) * dotSplit * 2 <= wg) dotSplit *= 2;
  let pvLanes = 1;
  while (pvLanes * 2 <= keyTile && rows * vecsPerRow * pvLanes * 2 <= wg) pvLanes *= 2;
  const pvSlots = Math.ceil((rows * vecsPerRow * pvLanes) / wg);
  const tileStride = vecsPerRow + 1;
  // Mirrors the SMEM_* regions of paged-attention-common.wgsl (+ 4 bytes of subgroup bookkeeping).
  const workgroupBytes =
    16 *
      (rows * (layout.headDim / 4 + 1) + // q
        2 * keyTile * tileStride + // K and V tiles
        Math.ceil((rows * keyTile) / 4) + // p
        TABLE_WINDOW / 4 +
        rows + // row state
        wg / 4 + // reduction scratch
        (pvLanes > 1 ? 2 * wg : 0)) + // PV-lane reduction
    4;
  return {
    kind,
    headsPerWorkgroup: hpw,
    queriesPerWorkgroup: qpw,
    rows,
    keyTile,
    keysPerThread,
    dotSplit,
    pvLanes,
    pvSlots,
    vecsPerRow,
    workgroupBytes,
  };
}

function fits(c: TileConfig, maxBytes: number): boolean {
  return c.workgroupBytes <= maxBytes && c.keysPerThread <= MAX_KEYS_PER_THREAD && c.pvSlots <= MAX_PV_SLOTS;
}

/** Tile shape for `kind` on a device whose workgroup storage limit is `deviceWorkgroupBytes`. */
export function tileConfig(
  kind: AttentionKind,
  layout: KvLayout,
  groupSize: number,
  deviceWorkgroupBytes: number,
): TileConfig {
  const maxBytes = Math.min(deviceWorkgroupBytes, MAX_WORKGROUP_BYTES);
  let hpw = largestDivisorAtMost(groupSize, MAX_HEADS_PER_WORKGROUP);
  const rowBytes = 2 * (layout.headDim / (layout.kvDtype === 'f16' ? 8 : 4) + 1) * 16;
  let keyTile = Math.min(64, Math.max(4, floorPow2(KV_STAGE_BYTES[kind] / rowBytes)));
  const maxRows = Math.min(MAX_PREFILL_ROWS, Math.floor(PREFILL_Q_BYTES / (4 * layout.headDim)));
  let qpw = kind === 'decode' ? 1 : Math.max(1, Math.floor(maxRows / hpw));
  for (;;) {
    const c = derive(kind, layout, hpw, qpw, keyTile);
    if (fits(c, maxBytes)) return c;
    if (keyTile > 4) keyTile /= 2;
    else if (qpw > 1) qpw = Math.max(1, Math.floor(qpw / 2));
    else if (hpw > 1) hpw = largestDivisorAtMost(groupSize, hpw - 1);
    else {
      throw new ConfigError(
        `paged attention needs ${c.workgroupBytes} bytes of workgroup memory for headDim ${layout.headDim} ` +
          `(${kind}); the device allows ${deviceWorkgroupBytes}`,
      );
    }
  }
}

/**
 * The override constants every paged-attention module declares through the KV-access file
 * (shaders/paged-attention-kv-access.wgsl): workgroup size, head dim, K/V format, heads per workgroup.
 */
function kvAccessConstants(layout: KvLayout, workgroupSize: number, headsPerWorkgroup: number): Record<string, number> {
  return {
    WG_SIZE: workgroupSize,
    HEAD_DIM: layout.headDim,
    KV_F16: layout.kvDtype === 'f16' ? 1 : 0,
    HEADS_PER_WG: headsPerWorkgroup,
  };
}

/** Override constants of the decode/prefill WGSL for `config` (the tile shape only). */
export function tileConstants(config: TileConfig, layout: KvLayout): Record<string, number> {
  return {
    ...kvAccessConstants(layout, WORKGROUP_SIZE, config.headsPerWorkgroup),
    QUERIES_PER_WG: config.queriesPerWorkgroup,
    KEY_TILE: config.keyTile,
    KEYS_PER_THREAD: config.keysPerThread,
    DOT_SPLIT: config.dotSplit,
    PV_LANES: config.pvLanes,
    PV_SLOTS: config.pvSlots,
  };
}

/** Limits on the streaming decode kernel's per-lane variables (code size and registers of the generated entry). */
const STREAM_MAX_HW = 16;
const STREAM_MAX_UW = 16;
const STREAM_MAX_SCORES = 32;
/** Workgroup memory for merging the key groups' states (per round; StreamDecodeTuning.mergeBytes). */
export const STREAM_DEFAULT_MERGE_BYTES = 16 * 1024;
/**
 * Defaults measured on an H100 (bench/decode-sweep.ts, see bench/RESULTS.md): 8 lanes per key row
 * (16 f16 per lane at head dim 128), 4 keys per group per step, query elements read from workgroup
 * memory (fewer live registers, more resident warps). More lanes cost shuffles; more unroll or heads
 * in registers cost occupancy.
 */
export const STREAM_DEFAULT_UNROLL = 4;
const STREAM_DEFAULT_MAX_LANES = 8;

export interface StreamDecodeConfig {
  kind: 'decode-stream';
  workgroupSize: number;
  headsPerWorkgroup: number;
  /** Threads per key row: a power of two dividing the row's words, ≤ the smallest subgroup size. */
  lanes: number;
  /** 16-byte words per lane per key row. */
  words: number;
  /** Keys per key group per step. */
  unroll: number;
  prefetch: boolean;
  queryInSmem: boolean;
  keyGroups: number;
  /** Keys per workgroup step (split lengths are rounded to it). */
  keysPerStep: number;
  roundGroups: number;
  workgroupBytes: number;
  /**
   * Lazy rescaling: a head's running max (and with it the accumulators) is raised only when a step's
   * scores exceed it by more than this; undefined rescales at every step.
   */
  rescaleThreshold: number | undefined;
  /**
   * How a key group's lanes add up their partial scores: subgroup shuffles, or (portable, no subgroup
   * feature needed) through workgroup memory, double-buffered, one barrier per step.
   */
  reduction: 'subgroup' | 'shared';
  /** q·k in f16 arithmetic (StreamDecodeTuning.halfScores; f16 K/V, queries in registers). */
  halfScores: boolean;
  /** vec4 slots of one score-exchange buffer (shared reduction; 0 otherwise): keyGroups × unroll × heads × lanes / 4. */
  scoreVecs: number;
}

/** The streaming decode's workgroup sizes (StreamDecodeTuning.workgroupSize). */
export const STREAM_WORKGROUP_SIZES = [64, 128, 256, 512, 1024] as const;
export type StreamWorkgroupSize = (typeof STREAM_WORKGROUP_SIZES)[number];

/** Largest lazy-rescale threshold: e^32 × 2^17 keys × |v| stays far inside f32. */
export const MAX_RESCALE_THRESHOLD = 32;

/** Knobs of the streaming decode kernel (benchmarks); the defaults are the tuned values. */
export interface StreamDecodeTuning {
  unroll?: number;
  /**
   * Software pipelining of the K/V loads: a step's loads are issued before the previous step is folded
   * (default false: on the H100 the extra live registers cost more than the overlap gained, 0.69 → 0.71
   * of the read kernel's bandwidth without it; bench/RESULTS.md).
   */
  prefetch?: boolean;
  /** At most this many lanes per key row. */
  maxLanes?: number;
  /** At most this many query heads per workgroup. */
  maxHeads?: number;
  /**
   * Invocations per workgroup (default 128 on a GPU). 512 and 1024 need a device that runs that many
   * (maxComputeInvocationsPerWorkgroup; else a ConfigError): more key groups per workgroup, and on
   * NVIDIA a cap on registers per invocation (65536 / size), which the compiler then must meet.
   */
  workgroupSize?: StreamWorkgroupSize;
  /** Read query elements from workgroup memory at every step instead of holding them in registers (default true). */
  queryInSmem?: boolean;
  /**
   * Rescale a head's accumulators only when a step's max exceeds the running max by more than this
   * (a non-negative number; scores then reach at most e^threshold before normalising); default: at
   * every step.
   */
  rescaleThreshold?: number;
  /**
   * 'shared': add up the lanes' partial scores through workgroup memory instead of subgroup shuffles,
   * so the kernel runs without the subgroup feature (then lanes are not limited by the subgroup size,
   * but at least 4). Default: 'subgroup' on a kernel with subgroups, 'shared' on one without.
   */
  reduction?: 'subgroup' | 'shared';
  /**
   * Compute q·k in f16 arithmetic: the stored K halves are used as they are (no conversion to f32), each
   * 16-byte word's dot product is summed in f16, and the words' sums in f32. Needs f16 K/V and a device
   * with 'shader-f16' (elsewhere it is ignored). Queries are then held in registers as f16, so
   * queryInSmem does not apply. Default false; results differ from f32 scores by about 1e-3, and a
   * word's f16 sum overflows past 65504 (|q·k| of 8 elements over that, after the 1/√d scale: only for
   * K/V with extreme outliers, which the autotuner's random data does not have).
   */
  halfScores?: boolean;
  /**
   * At most this many bytes of workgroup memory for one round of merging the key groups' softmax states
   * (default 16 KiB: 7 of the 16 groups per round at 4 heads × head dim 128). Less makes the workgroup
   * smaller, so more of them may fit a compute unit where workgroup memory limits that, for more merge
   * rounds (one barrier each); a round always takes at least one group.
   */
  mergeBytes?: number;
}

/**
 * Shape of the streaming decode kernel (tuning.reduction: subgroup shuffles unless 'shared'), or
 * undefined where it does not apply (a row of more than 16 words per lane, e.g. an odd number of f16
 * words with a large head dim; the shared reduction with fewer than 4 lanes): the tile engine decodes
 * then. `subgroupMinSize` is the device's smallest subgroup size (4 when unknown). A step covers at
 * most TABLE_WINDOW keys, so it fits the table window for every block size. The shape fits
 * `deviceWorkgroupBytes` (down to WebGPU's default 16 KiB) by merging fewer key groups per round and,
 * with the shared reduction, unrolling less.
 */
export function streamDecodeConfig(
  layout: KvLayout,
  groupSize: number,
  subgroupMinSize: number,
  deviceWorkgroupBytes: number,
  tuning: StreamDecodeTuning = {},
): StreamDecodeConfig | undefined {
  const wg = tuning.workgroupSize ?? WORKGROUP_SIZE;
  const threshold = tuning.rescaleThreshold;
  if (threshold !== undefined && !(threshold >= 0 && threshold <= MAX_RESCALE_THRESHOLD)) {
    throw new ConfigError(`stream.rescaleThreshold must be a number in [0, ${MAX_RESCALE_THRESHOLD}] (got ${threshold})`);
  }
  const reduction = tuning.reduction ?? 'subgroup';
  const vecsPerRow = layout.headDim / (layout.kvDtype === 'f16' ? 8 : 4);
  let lanes = 1;
  const laneLimit = reduction === 'shared' ? 32 : Math.min(subgroupMinSize, 32);
  const maxLanes = Math.min(laneLimit, tuning.maxLanes ?? STREAM_DEFAULT_MAX_LANES);
  while (lanes * 2 <= maxLanes && vecsPerRow % (lanes * 2) === 0) lanes *= 2;
  if (reduction === 'shared' && lanes < 4) return undefined; // a lane set fills whole vec4 slots of the exchange
  const words = vecsPerRow / lanes;
  if (words > STREAM_MAX_HW) return undefined;
  const maxHeads = Math.min(MAX_HEADS_PER_WORKGROUP, tuning.maxHeads ?? MAX_HEADS_PER_WORKGROUP, Math.floor(STREAM_MAX_HW / words));
  const hpw = largestDivisorAtMost(groupSize, maxHeads);
  const keyGroups = wg / lanes;
  const cells = (hpw * layout.headDim) / 4;
  const halfScores = tuning.halfScores === true && layout.kvDtype === 'f16';
  const queryInSmem = !halfScores && (tuning.queryInSmem ?? true);
  // Workgroup memory in vec4 slots (mirrors SMEM_LEN of the WGSL): the table window, the reduction
  // scratch and the staged queries, then one region shared by the merge rounds and (shared reduction)
  // the two score buffers. The region takes what the device has left (WebGPU's default limit is
  // 16 KiB), the merge rounds at most tuning.mergeBytes of it: fewer groups per round, or a shorter
  // unroll for the score buffers, rather than no streaming decode on a small device.
  const fixedVecs = TABLE_WINDOW / 4 + wg / 4 + (queryInSmem ? cells : 0);
  const regionVecs = Math.floor((Math.min(deviceWorkgroupBytes, MAX_WORKGROUP_BYTES) - 4) / 16) - fixedVecs;
  const roundGroups = Math.min(keyGroups, Math.max(1, Math.floor(Math.min((tuning.mergeBytes ?? STREAM_DEFAULT_MERGE_BYTES) / 16, regionVecs) / (cells + hpw))));
  const scoreVecsPerKey = reduction === 'shared' ? (keyGroups * hpw * lanes) / 4 : 0;
  let u = Math.max(
    1,
    Math.min(tuning.unroll ?? STREAM_DEFAULT_UNROLL, Math.floor(STREAM_MAX_UW / words), Math.floor(STREAM_MAX_SCORES / hpw), Math.floor(TABLE_WINDOW / keyGroups)),
  );
  while (u > 1 && 2 * u * scoreVecsPerKey > regionVecs) u--;
  const scoreVecs = u * scoreVecsPerKey;
  if (roundGroups * (cells + hpw) > regionVecs || 2 * scoreVecs > regionVecs || cells > 4 * wg || keyGroups > TABLE_WINDOW) return undefined;
  const workgroupBytes = 16 * (fixedVecs + Math.max(roundGroups * (hpw + cells), 2 * scoreVecs)) + 4;
  return {
    kind: 'decode-stream',
    workgroupSize: wg,
    headsPerWorkgroup: hpw,
    lanes,
    words,
    unroll: u,
    prefetch: tuning.prefetch ?? false,
    queryInSmem,
    keyGroups,
    keysPerStep: keyGroups * u,
    roundGroups,
    workgroupBytes,
    rescaleThreshold: tuning.rescaleThreshold,
    reduction,
    scoreVecs,
    halfScores,
  };
}

/** Override constants of the streaming decode WGSL. */
export function streamConstants(config: StreamDecodeConfig, layout: KvLayout): Record<string, number> {
  return {
    ...kvAccessConstants(layout, config.workgroupSize, config.headsPerWorkgroup),
    LANES: config.lanes,
    UNROLL: config.unroll,
    ROUND_GROUPS: config.roundGroups,
    Q_STAGED: config.queryInSmem ? 1 : 0,
    SCORE_VECS: config.scoreVecs,
  };
}

export interface MmaPrefillConfig {
  kind: 'prefill-mma';
  /** M = N = K of the f16 subgroup matrices (16 on NVIDIA GPUs, 8 on Mesa's lavapipe): the rows a subgroup owns. */
  matrixSize: MmaMatrixSize;
  headsPerWorkgroup: number;
  subgroupSize: number;
  subgroups: number;
  /** Tiles of matrixSize query rows per subgroup (1 or 2): each K or V matrix loaded feeds that many multiplications. */
  rowTiles: number;
  /** Keys per step (a multiple of 16). */
  keyTile: number;
  queriesPerWorkgroup: number;
  workgroupSize: number;
  workgroupBytes: number;
  /** Rescale threshold TAU (natural-log units); P ≤ e^TAU must fit f16. */
  rescaleThreshold: number;
  /**
   * Steps whose keys every row attends load their K and V matrices straight from the pool (an f16 view of
   * its one chunk) instead of staging them through workgroup memory; needs one chunk and blocks of a
   * multiple of matrixSize tokens.
   */
  directKv: boolean;
  /**
   * With directKv: a step read from the pool loads its V matrices right after its scores, before the
   * softmax, so their latency overlaps it (the subgroup holds them through the softmax); otherwise
   * each V matrix is loaded where P·V uses it.
   */
  earlyV: boolean;
  /**
   * With directKv: right after a step's scores, the next step's K matrices are loaded when that step
   * will read them from the pool (and needs no table-window reload), so their latency overlaps this
   * step's softmax and P·V; the next step then uses them instead of loading its own.
   */
  nextK: boolean;
  /**
   * `tiles` holds one step's K or V (keyTile rows) instead of both: a staged step stages K before its
   * scores and V into K's place after them, during the softmax. Halves the staging area (at head dim 128,
   * 16 keys: 8 KiB → 4 KiB), so more workgroups fit where workgroup memory limits them; a staged step's V
   * loads then start only after its scores.
   */
  reuseKForV: boolean;
}

/** A subgroup-matrix prefill tile in words: its rows, subgroups, step, where and when K/V are loaded, bytes (the kernel's description and the bench's tile column). */
export function describeMmaPrefillTile(m: MmaPrefillConfig): string {
  return (
    `${m.queriesPerWorkgroup} queries × ${m.headsPerWorkgroup} heads per workgroup` +
    `${m.subgroups > 1 ? ` in ${m.subgroups} subgroups` : ''}${m.rowTiles > 1 ? ` of ${m.rowTiles} row tiles` : ''}, ${m.keyTile} keys per step` +
    `${m.directKv ? ', K/V from the pool' : ''}${m.earlyV ? ', V before the softmax' : ''}${m.nextK ? ', next K early' : ''}` +
    `${m.reuseKForV ? ", V in K's place" : ''}, ${m.workgroupBytes} B`
  );
}

/** Square f16 subgroup-matrix sizes (f32 results) the generator supports, the preferred first. */
export const MMA_MATRIX_SIZES = [16, 8] as const;
export type MmaMatrixSize = (typeof MMA_MATRIX_SIZES)[number];
/** Subgroups per subgroup-matrix prefill workgroup that the generator supports. */
export const MMA_SUBGROUP_COUNTS = [1, 2, 4, 8] as const;
/**
 * The subgroup-matrix prefill's default shape where the tuning names none: 2 subgroups per workgroup,
 * K/V matrices of fully attended steps read from the pool. On the H100 (8 × 2048 causal, 32/8 heads ×
 * 128) that ran 8.6 ms against 19.0 ms for 1 subgroup staging its K/V (bench/RESULTS.md); 2 subgroups
 * need 12 KiB of workgroup memory at head dim 128, inside WebGPU's default 16 KiB.
 */
export const MMA_DEFAULT_SUBGROUPS = 2;
export const MMA_DEFAULT_DIRECT_KV = true;
/** Keys per step of the subgroup-matrix prefill that the generator supports. */
export const MMA_KEY_TILES = [16, 32, 64] as const;
/** Row tiles per subgroup of the subgroup-matrix prefill that the generator supports. */
export const MMA_ROW_TILES = [1, 2] as const;

export interface MmaPrefillShape {
  /** Default 8. */
  rescaleThreshold?: number;
  /** Default 1. */
  subgroups?: number;
  /** Default 1. */
  rowTiles?: number;
  /** Default 16. */
  keyTile?: number;
  /** Default 16. */
  matrixSize?: MmaMatrixSize;
  /** Default false; ignored where the layout does not allow it (several chunks, blocks not a multiple of the matrix size). */
  directKv?: boolean;
  /** Default false; only with directKv (MmaPrefillConfig.earlyV). */
  earlyV?: boolean;
  /** Default false; only with directKv (MmaPrefillConfig.nextK). */
  nextK?: boolean;
  /** Default false (MmaPrefillConfig.reuseKForV). */
  reuseKForV?: boolean;
}

/**
 * Shape of the subgroup-matrix prefill (f16 KV, head dim a multiple of the matrix size, one subgroup
 * size from the matrix size to 64 lanes, at most one lane per matrix element), or undefined where it does not
 * apply or does not fit the device. A workgroup is `subgroups` subgroups, each owning matrixSize query
 * rows, that share the staged K/V of each step of `keyTile` keys; the heads per workgroup divide both the
 * GQA group and the matrix size.
 */
export function mmaPrefillConfig(
  layout: KvLayout,
  groupSize: number,
  subgroupSize: number,
  limits: { maxComputeWorkgroupStorageSize: number; maxComputeInvocationsPerWorkgroup: number },
  shape: MmaPrefillShape = {},
): MmaPrefillConfig | undefined {
  const { rescaleThreshold = 8, subgroups = 1, rowTiles = 1, keyTile = 16, matrixSize = 16, directKv = false, earlyV = false, nextK = false, reuseKForV = false } = shape;
  const n = matrixSize;
  const lanesOk = [8, 16, 32, 64].includes(subgroupSize) && subgroupSize >= n && subgroupSize <= n * n;
  if (layout.kvDtype !== 'f16' || layout.headDim % n !== 0 || !lanesOk) return undefined;
  let hpw = 1;
  for (let d = Math.min(groupSize, n); d > 1; d--) {
    if (groupSize % d === 0 && n % d === 0) {
      hpw = d;
      break;
    }
  }
  const wg = subgroups * subgroupSize;
  const rowTileCount = subgroups * rowTiles; // row tiles in the workgroup
  // Mirrors the workgroup variables of paged-attention-prefill-mma.wgsl (+ lanes bookkeeping).
  const bytes =
    2 * (reuseKForV ? 1 : 2) * keyTile * layout.headDim + // tiles (f16): a step's K and V rows, or one of them (and before the first step the Q rows, in rounds)
    4 * n * keyTile * rowTileCount + // s_tile
    2 * n * keyTile * rowTileCount + // p_tile
    4 * n * rowTileCount + // alpha_row
    8 + // step_flags
    16 * (TABLE_WINDOW / 4 + wg / 4) + // smem
    4;
  if (wg > limits.maxComputeInvocationsPerWorkgroup || bytes > limits.maxComputeWorkgroupStorageSize) return undefined;
  /** K/V from the pool where asked and the layout allows it (one chunk, blocks a multiple of n); earlyV and nextK need it. */
  const poolKv = directKv && layout.numChunks === 1 && layout.blockSize % n === 0;
  return {
    kind: 'prefill-mma',
    matrixSize: n,
    headsPerWorkgroup: hpw,
    subgroupSize,
    subgroups,
    rowTiles,
    keyTile,
    queriesPerWorkgroup: (n * rowTileCount) / hpw,
    workgroupSize: wg,
    workgroupBytes: bytes,
    rescaleThreshold,
    directKv: poolKv,
    earlyV: earlyV && poolKv,
    nextK: nextK && poolKv,
    reuseKForV,
  };
}

/** Override constants of the subgroup-matrix prefill WGSL. */
export function mmaPrefillConstants(config: MmaPrefillConfig, layout: KvLayout): Record<string, number> {
  return {
    ...kvAccessConstants(layout, config.workgroupSize, config.headsPerWorkgroup), // f16 K/V: mmaPrefillConfig requires it
    SG_SIZE: config.subgroupSize,
    SUBGROUPS: config.subgroups,
    ROW_TILES: config.rowTiles,
    KEY_TILE: config.keyTile,
    MAT: config.matrixSize,
    TAU: config.rescaleThreshold,
  };
}

/** Register budget of the register-blocked prefill: output floats and scores per thread. */
const BLOCKED_MAX_OUT_FLOATS = 64;
const BLOCKED_MAX_SCORES = 32;

export interface BlockedPrefillConfig {
  kind: 'prefill-blocked';
  headsPerWorkgroup: number;
  queriesPerWorkgroup: number;
  /** Query rows per workgroup (queries × heads). */
  rows: number;
  keyTile: number;
  /** Score block of a thread: rows × keys. */
  scoreRows: number;
  scoreKeys: number;
  /**
   * Threads that compute scores: WORKGROUP_SIZE, or rows × keyTile (one score each) for the smallest
   * tile, 8 rows × 8 keys, which a small device (16 KiB) gets for the largest head dims.
   */
  scoreThreads: number;
  /** Output rows of a thread (it owns one packed word of columns of each). */
  outRows: number;
  /** Threads that accumulate output: (rows / outRows) × wordsPerRow ≤ WORKGROUP_SIZE (the rest idle then). */
  outThreads: number;
  /** Packed words per K/V row and head-dim elements per word (8 for f16, 4 for f32). */
  wordsPerRow: number;
  elemsPerWord: number;
  /**
   * K and V tiles widened to f32 as they are staged (f16 K/V only): each element is converted once per
   * tile instead of once per thread that reads it, for twice the tile's workgroup memory.
   */
  stagedF32: boolean;
  /** Invocations per workgroup (BlockedPrefillTuning.workgroupSize). */
  workgroupSize: number;
  workgroupBytes: number;
}

/** Keys of a register-blocked score block per invocation (BlockedPrefillTuning.maxScoreKeys), the default first. */
export const BLOCKED_SCORE_KEYS = [4, 2, 1] as const;

/** Whether a register-blocked tile's score blocks have fewer keys than the default gives (BlockedPrefillTuning.maxScoreKeys). */
export function hasNarrowScoreBlocks(config: Pick<BlockedPrefillConfig, 'scoreRows' | 'scoreKeys'>): boolean {
  return config.scoreKeys < Math.min(BLOCKED_SCORE_KEYS[0], config.scoreRows * config.scoreKeys);
}

/** A register-blocked prefill tile in words (the kernel's description and the bench's tile column). */
export function describeBlockedPrefillTile(b: BlockedPrefillConfig): string {
  return (
    `${b.rows} rows × ${b.keyTile} keys${b.stagedF32 ? ', f32 tiles' : ''}${b.workgroupSize !== WORKGROUP_SIZE ? `, ${b.workgroupSize} invocations` : ''}` +
    `${hasNarrowScoreBlocks(b) ? `, ${b.scoreRows} × ${b.scoreKeys} scores per invocation` : ''}, ${b.workgroupBytes} B`
  );
}

/** The register-blocked prefill's workgroup sizes (BlockedPrefillTuning.workgroupSize). */
export const BLOCKED_WORKGROUP_SIZES = [128, 256, 512] as const;
export type BlockedWorkgroupSize = (typeof BLOCKED_WORKGROUP_SIZES)[number];

/** Knobs of the register-blocked prefill (benchmarks and tests); the defaults are the tuned values. */
export interface BlockedPrefillTuning {
  /** Widen f16 K/V tiles to f32 when staging them (default false). */
  stagedF32?: boolean;
  /** At most this many query rows per workgroup (default 128: the most that fit). */
  maxRows?: number;
  /** At most this many keys per tile (default 32). */
  maxKeyTile?: number;
  /** Workgroup memory the tile may use, capped by the device (default: all the device allows; 64 × 16 tiles in 48 KiB ran 1.3 × the 32 × 32 tiles of 32 KiB on the H100). */
  workgroupBytes?: number;
  /**
   * Invocations per workgroup (default 128). The same tile shared by more invocations: each computes
   * fewer scores and output rows, and a compute unit whose workgroup memory holds one tile runs more
   * warps (on the H100 through Dawn, 48 KiB per SM: one 64-row tile, so 4 warps at 128). 256 and 512
   * need a device that runs that many (maxComputeInvocationsPerWorkgroup; else a ConfigError).
   */
  workgroupSize?: BlockedWorkgroupSize;
  /**
   * At most this many keys in an invocation's block of scores (default 4; its rows make up the rest of the
   * block). Each packed f16 K word an invocation reads is widened to f32 for its block's rows alone, so
   * fewer keys and more rows per block mean fewer conversions per FMA (2 × 4: 8 per 16 FMAs; 4 × 2: 8 per
   * 32; 8 × 1: 8 per 64) for more Q loads from workgroup memory per K word.
   */
  maxScoreKeys?: (typeof BLOCKED_SCORE_KEYS)[number];
}

/**
 * Shape of the register-blocked prefill for `layout`, or undefined where no tile fits (then the tile
 * engine runs prefill). Threads (WORKGROUP_SIZE, or half of them for an 8 × 8 tile) tile the scores
 * as (rows / scoreRows) × (keyTile / scoreKeys) and the output as (rows / outRows) × wordsPerRow
 * (outThreads, all of them when wordsPerRow is a power of two). The most rows, then the longest key
 * tile (within tuning.maxRows / maxKeyTile), whose workgroup arrays fit min(device limit,
 * tuning.workgroupBytes ?? the device limit) and whose per-thread blocks fit the register budget,
 * win. Heads per workgroup: the largest power of two ≤ 8 dividing the GQA group. With
 * tuning.stagedF32, f16 K/V tiles are staged as f32 (twice the bytes).
 */
export function blockedPrefillConfig(
  layout: KvLayout,
  groupSize: number,
  deviceWorkgroupBytes: number,
  tuning: BlockedPrefillTuning = {},
): BlockedPrefillConfig | undefined {
  const wg = tuning.workgroupSize ?? WORKGROUP_SIZE;
  const elemsPerWord = layout.kvDtype === 'f16' ? 8 : 4;
  const words = layout.headDim / elemsPerWord;
  const stagedF32 = (tuning.stagedF32 ?? false) && elemsPerWord === 8;
  /** Bytes of one staged K or V row: packed words, or widened to f32 (two vec4 per f16 word), + one vec4 of padding. */
  const tileRowBytes = 16 * ((stagedF32 ? 2 * words : words) + 1);
  const maxBytes = Math.min(deviceWorkgroupBytes, tuning.workgroupBytes ?? deviceWorkgroupBytes);
  let hpw = 1;
  while (hpw * 2 <= MAX_HEADS_PER_WORKGROUP && groupSize % (hpw * 2) === 0) hpw *= 2;
  for (const rows of [128, 64, 32, 16, 8]) {
    if (rows % hpw !== 0 || rows > (tuning.maxRows ?? 128)) continue;
    // Output rows per thread: a power of two (it divides rows) leaving no row group without a thread.
    let outRows = 1;
    while ((rows / outRows) * words > wg) outRows *= 2;
    if (outRows > rows || outRows * elemsPerWord > BLOCKED_MAX_OUT_FLOATS) continue;
    for (const keyTile of [32, 16, 8]) {
      if (keyTile > (tuning.maxKeyTile ?? 32)) continue;
      // Scores per thread; a tile of half a workgroup's scores leaves the other half idle while scoring.
      const scoreThreads = Math.min(wg, rows * keyTile);
      const cells = (rows * keyTile) / scoreThreads;
      if (!Number.isInteger(cells) || scoreThreads < wg / 2 || cells > BLOCKED_MAX_SCORES) continue;
      const scoreKeys = Math.min(tuning.maxScoreKeys ?? BLOCKED_SCORE_KEYS[0], cells);
      const scoreRows = cells / scoreKeys;
      if (rows % scoreRows !== 0) continue;
      // Mirrors the generated workgroup arrays (prefill-blocked-source.ts) and the fixed part's smem.
      const workgroupBytes =
        16 * rows * (layout.headDim / 4 + 1) + // q_tile
        keyTile * tileRowBytes + // kv_tile
        4 * rows * keyTile + // sp
        4 * rows + // row_scale
        4 * wg + // red
        16 * (TABLE_WINDOW / 4 + wg / 4); // smem: table window, reduction scratch
      if (workgroupBytes > maxBytes) continue;
      return {
        kind: 'prefill-blocked',
        headsPerWorkgroup: hpw,
        queriesPerWorkgroup: rows / hpw,
        rows,
        keyTile,
        scoreRows,
        scoreKeys,
        scoreThreads,
        outRows,
        outThreads: (rows / outRows) * words,
        wordsPerRow: words,
        elemsPerWord,
        stagedF32,
        workgroupSize: wg,
        workgroupBytes,
      };
    }
  }
  return undefined;
}

/** Override constants of the register-blocked prefill WGSL (the rest is literal in its generated entry). */
export function blockedPrefillConstants(config: BlockedPrefillConfig, layout: KvLayout): Record<string, number> {
  return kvAccessConstants(layout, config.workgroupSize, config.headsPerWorkgroup);
}
