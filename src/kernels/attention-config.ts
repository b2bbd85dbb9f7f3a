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

/** Override constants of the decode/prefill WGSL for `config` (the tile shape only). */
export function tileConstants(config: TileConfig, layout: KvLayout): Record<string, number> {
  return {
    WG_SIZE: WORKGROUP_SIZE,
    HEAD_DIM: layout.headDim,
    KV_F16: layout.kvDtype === 'f16' ? 1 : 0,
    HEADS_PER_WG: config.headsPerWorkgroup,
    QUERIES_PER_WG: config.queriesPerWorkgroup,
    KEY_TILE: config.keyTile,
    KEYS_PER_THREAD: config.keysPerThread,
    DOT_SPLIT: config.dotSplit,
    PV_LANES: config.pvLanes,
    PV_SLOTS: config.pvSlots,
  };
}
