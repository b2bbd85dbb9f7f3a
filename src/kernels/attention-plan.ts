// Turns a batch of attention entries into the work lists the kernels read.
// Invariants:
//   - Entries with numQueries = 1 go to the decode kernel, the others to the prefill kernel.
//   - A decode entry attends L = queryStart + 1 keys, cut into `splits` non-empty consecutive ranges
//     (split-K); prefill entries are cut into tiles of queriesPerWorkgroup queries, each attending keys
//     [0, last query position + 1).
//   - An item whose last query lies in the block of the entry's last query position carries the entry's
//     lastBlock (word 7; NO_TAIL when absent or another block): the kernels take the block of the item's
//     last query from there instead of the block table (every decode item; the prefill tiles ending in
//     that block, which all read it).
//   - Work items are 8 u32 words (see WorkItem in the WGSL): decode items, then prefill items, then
//     merge items (one per decode entry) when any decode entry has more than one split. With merging,
//     decode item i writes partial slots i × numQueryHeads + head; the partial buffer holds `partialSlots`
//     accumulators of headDim floats followed by one (max, sum, 0, 0) vec4 per slot.
//   - Split heuristic (when not forced): base = decode items × kvHeads × headTiles + prefill workgroups;
//     each decode entry gets
//         splits = clamp(min(floor(target / base), floor(L / minKeysPerSplit)), 1, MAX_SPLITS)
//     with split length rounded up to whole key tiles (so splits = ceil(L / length) may shrink): the most
//     splits whose workgroups all fit on the device at once. One more would start a second, partial
//     wave of workgroups that runs while most of the device idles. The target
//     is shape.targetWorkgroups, sized from the device: the kernel passes the 256-invocation workgroups
//     the device runs at once (src/gpu/parallelism-probe.ts; 8 × 132 on an H100 SXM) divided by
//     STREAM_TARGET_DIVISOR for the streaming decode kernel, and by TILE_TARGET_DIVISOR for the tile
//     engine (two of its workgroups per SM of an H100). Without a target,
//     TARGET_WORKGROUPS (the H100's tile-engine figure).
//     minKeysPerSplit (default MIN_KEYS_PER_SPLIT; the streaming decode passes STREAM_MIN_STEPS_PER_SPLIT
//     of its key steps) keeps each split long enough to amortise its setup, partial write and merge.
import { InvalidArgumentError } from '../errors';
import type { AttentionEntry } from './attention-types';

export const TARGET_WORKGROUPS = 2 * 132;
/** Tile-engine decode workgroups aimed for per four resident 256-invocation workgroups. */
export const TILE_TARGET_DIVISOR = 4;
/**
 * Shortest split of the streaming decode kernel, in its key steps (keysPerStep keys each: 64 for the
 * H100's default shape, so 1024 keys). A workgroup pays fixed costs once per split (loading its work
 * item, table window and queries before its first K/V load, merging its key groups through workgroup
 * memory, writing partials for the merge pass). On the H100 they are worth several steps: one sequence
 * of 32768 keys read 0.38 of the read kernel's bandwidth in 64 splits of 512 keys and 0.54 in 32 of 1024
 * (bench/RESULTS.md).
 */
export const STREAM_MIN_STEPS_PER_SPLIT = 16;
/**
 * The streaming decode aims its split-K at the probed resident 256-invocation workgroups divided by
 * this: about two of its 128-invocation workgroups fit an H100 SM, not eight (registers or workgroup
 * memory decide it; bench/workgroup-residency.ts tells which), and fewer, longer splits pay the fixed
 * costs above less often (64 × 2048: 0.69 → 0.75 of the read
 * kernel's bandwidth at half the probed count, bench/RESULTS.md).
 */
export const STREAM_TARGET_DIVISOR = 2;
export const MIN_KEYS_PER_SPLIT = 256;
export const MAX_SPLITS = 128;
export const WORK_ITEM_WORDS = 8;
/** Work-item word 7 of an item whose blocks all come from the block table. */
export const NO_TAIL = 0xffffffff;

export interface PlanShape {
  numKvHeads: number;
  numQueryHeads: number;
  /** Query-head tiles per kv head (groupSize / headsPerWorkgroup), per kernel kind. */
  decodeHeadTiles: number;
  prefillHeadTiles: number;
  decodeKeyTile: number;
  prefillQueriesPerWorkgroup: number;
  /** Tokens per KV block (which prefill tiles end in an entry's last block). */
  blockSize: number;
  /** Workgroups the split heuristic aims for (default TARGET_WORKGROUPS). */
  targetWorkgroups?: number;
  /** Shortest split in keys (default MIN_KEYS_PER_SPLIT). */
  minKeysPerSplit?: number;
}

export interface DispatchRange {
  /** First work item (index into the whole list) and count. */
  base: number;
  count: number;
}

export interface BatchPlan {
  /** Work items, WORK_ITEM_WORDS u32 each; only the first `words` entries are meaningful. */
  items: Uint32Array<ArrayBuffer>;
  words: number;
  decode: DispatchRange;
  prefill: DispatchRange;
  merge: DispatchRange;
  /** True when decode writes partials and a merge pass follows. */
  split: boolean;
  partialSlots: number;
  /** Splits per decode entry, in decode-entry order (for tests and diagnostics). */
  splitsPerEntry: number[];
}

/**
 * The split policy for a batch of `decodeEntries` decode entries: a function from an entry's key count
 * to its split length (splits = ceil(keys / length), never empty).
 */
export function splitPolicy(
  decodeEntries: number,
  workgroupsPerItem: number,
  otherWorkgroups: number,
  keyTile: number,
  forceSplits?: number,
  target = TARGET_WORKGROUPS,
  minKeys = MIN_KEYS_PER_SPLIT,
): (keys: number) => number {
  if (forceSplits !== undefined) {
    if (!Number.isInteger(forceSplits) || forceSplits < 1 || forceSplits > MAX_SPLITS) {
      throw new InvalidArgumentError(`forceSplits must be an integer in [1, ${MAX_SPLITS}] (got ${forceSplits})`);
    }
    return (l) => Math.ceil(l / Math.min(forceSplits, l));
  }
  const base = decodeEntries * workgroupsPerItem + otherWorkgroups;
  const wanted = Math.max(1, Math.floor(target / base));
  return (l) => {
    const splits = Math.max(1, Math.min(wanted, Math.floor(l / minKeys), MAX_SPLITS));
    return splits === 1 ? l : Math.ceil(Math.ceil(l / splits) / keyTile) * keyTile;
  };
}

function growWords(items: Uint32Array<ArrayBuffer>, words: number): Uint32Array<ArrayBuffer> {
  if (items.length >= words) return items;
  const grown = new Uint32Array(Math.max(words, 2 * items.length));
  grown.set(items);
  return grown;
}

/** Builds the plan into `scratch` (grown and returned through plan.items when too small), in two passes over the entries. */
export function planBatch(
  entries: readonly AttentionEntry[],
  shape: PlanShape,
  scratch: Uint32Array<ArrayBuffer>,
  forceSplits?: number,
): BatchPlan {
  const qpw = shape.prefillQueriesPerWorkgroup;
  const bs = shape.blockSize;
  let decodeEntries = 0;
  let prefillItems = 0;
  // Indexed loops: this runs once per step over every entry, and array iterators allocate until the
  // function is optimised.
  const count = entries.length;
  for (let i = 0; i < count; i++) {
    const e = entries[i]!;
    if (e.numQueries === 1) decodeEntries++;
    else prefillItems += Math.ceil(e.numQueries / qpw);
  }
  const splitLength = splitPolicy(
    decodeEntries,
    shape.numKvHeads * shape.decodeHeadTiles,
    prefillItems * shape.numKvHeads * shape.prefillHeadTiles,
    shape.decodeKeyTile,
    forceSplits,
    shape.targetWorkgroups,
    shape.minKeysPerSplit,
  );
  const splitsPerEntry: number[] = new Array<number>(decodeEntries);
  let decodeItems = 0;
  let d = 0;
  for (let i = 0; i < count; i++) {
    const e = entries[i]!;
    if (e.numQueries !== 1) continue;
    const keys = e.queryStart + 1;
    const splits = Math.ceil(keys / splitLength(keys));
    splitsPerEntry[d++] = splits;
    decodeItems += splits;
  }
  const split = decodeItems > decodeEntries;
  const mergeItems = split ? decodeEntries : 0;
  const total = decodeItems + prefillItems + mergeItems;
  const items = growWords(scratch, total * WORK_ITEM_WORDS);
  let n = 0;
  const put = (seqSlot: number, qRow: number, numQ: number, qPos: number, keyStart: number, keyEnd: number, aux: number, tail: number) => {
    const o = n++ * WORK_ITEM_WORDS;
    items[o] = seqSlot;
    items[o + 1] = qRow;
    items[o + 2] = numQ;
    items[o + 3] = qPos;
    items[o + 4] = keyStart;
    items[o + 5] = keyEnd;
    items[o + 6] = aux;
    items[o + 7] = tail;
  };
  d = 0;
  for (let i = 0; i < count; i++) {
    const e = entries[i]!;
    if (e.numQueries !== 1) continue;
    const keys = e.queryStart + 1;
    const splits = splitsPerEntry[d++]!;
    const length = splits === 1 ? keys : splitLength(keys);
    for (let s = 0; s < splits; s++) {
      put(e.seqSlot, e.qRow, 1, e.queryStart, s * length, Math.min(keys, (s + 1) * length), n * shape.numQueryHeads, e.lastBlock ?? NO_TAIL);
    }
  }
  for (let i = 0; i < count; i++) {
    const e = entries[i]!;
    if (e.numQueries === 1) continue;
    const lastQueryBlock = Math.floor((e.queryStart + e.numQueries - 1) / bs);
    for (let first = 0; first < e.numQueries; first += qpw) {
      const numQ = Math.min(qpw, e.numQueries - first);
      const qPos = e.queryStart + first;
      const inLastBlock = Math.floor((qPos + numQ - 1) / bs) === lastQueryBlock;
      put(e.seqSlot, e.qRow + first, numQ, qPos, 0, qPos + numQ, 0, inLastBlock ? e.lastBlock ?? NO_TAIL : NO_TAIL);
    }
  }
  if (split) {
    let firstSplitItem = 0;
    d = 0;
    for (let i = 0; i < count; i++) {
      const e = entries[i]!;
      if (e.numQueries !== 1) continue;
      const splits = splitsPerEntry[d++]!;
      put(e.seqSlot, e.qRow, splits, e.queryStart, 0, 0, firstSplitItem * shape.numQueryHeads, NO_TAIL);
      firstSplitItem += splits;
    }
  }
  return {
    items,
    words: total * WORK_ITEM_WORDS,
    decode: { base: 0, count: decodeItems },
    prefill: { base: decodeItems, count: prefillItems },
    merge: { base: decodeItems + prefillItems, count: mergeItems },
    split,
    partialSlots: split ? decodeItems * shape.numQueryHeads : 0,
    splitsPerEntry,
  };
}
