// Batch preparation for the cache's attention and K/V writes: under the table lock, a batch's entries
// are validated, its block-table rows uploaded (staged, then written together), the blocks under a
// write batch's queries made exclusive (copy-on-write) and its slot map uploaded. Nothing here walks a
// batch's blocks but the row upload's comparison of entries it has not synced yet. Invariants:
//   - Only a batch that passed every check touches the GPU copy of the block table or copies a block.
//   - Each entry's lastBlock is the block of its last query position as the rows stand once prepared
//     (read again by resync); the kernels take it from the work list, so its table entry may wait for a
//     later write (TableUpload's deferLast) and a decode step's new blocks cost no write of their own.
//   - A prepared batch remembers what it was checked against: the table's row-rewrite count (a write
//     batch is refused once a row under its queries changed) and the written state's shrink count
//     (written-length checks it passed, per layer, hold while lengths only grew).
//   - A batch belongs to the preparer (one per cache) that made it; any other cache refuses it.
// Everything here runs inside the caller's critical section (BlockTable.batch).
import { InvalidArgumentError } from '../errors';
import { validateEntries, type AttentionEntry } from '../kernels/attention-types';
import type { KvLayout } from '../pool/kv-layout';
import type { PrefixCache } from '../prefix/prefix-cache';
import type { BlockCopy, BlockTable } from '../table/block-table';
import { UnknownSequenceError } from '../table/errors';
import type { EncodedAttentionEntry, PreparedAttention } from './cache-types';
import { checkPosition } from './input-checks';
import type { KvGpu } from './kv-gpu';
import type { WrittenState } from './written-state';

export interface PreparedAttentionState extends PreparedAttention {
  /** Replaced (never changed in place) when a resync finds a row's last block changed. */
  entries: readonly AttentionEntry[];
  /** The preparer (one per cache) that made the batch: a batch is usable only with its own cache. */
  readonly owner: BatchPreparer;
  readonly seqIds: readonly number[];
  /** Blocks the batch reads (its rows' used entries, summed; a block shared by two rows counts twice). */
  readonly totalBlocks: number;
  readonly slots: number[];
  pinEpoch: number;
  /** The table's row-rewrite count when the rows were read and uploaded: equal later means they still match. */
  rowsAt: number;
  /** Present when prepared with { writeKV: true }. */
  readonly writes: PreparedWrites | undefined;
  /**
   * Per layer, the written-length checks this batch passed (WRITTEN_ALL: every attended position,
   * WRITTEN_BEFORE_QUERIES: those before the queries, the rest being written in the same encoder),
   * valid while the written state's shrink count equals writtenEpoch: written lengths only grow then.
   */
  readonly writtenChecks: Uint8Array;
  writtenEpoch: number;
  /** The checks (WRITTEN_ALL, WRITTEN_BEFORE_QUERIES bits) tried for every layer at once since writtenEpoch. */
  everyLayerTried: number;
}

const WRITTEN_ALL = 1;
const WRITTEN_BEFORE_QUERIES = 2;

export interface PreparedWrites {
  /** u32 per q row: the cache slot its K/V go to (0xffffffff for a row no entry uses). */
  readonly slots: GPUBuffer;
  /** The blocks under each entry's query positions, as prepared: entry i's first one (the block of its queryStart) at queryBlocks[blockStart[i]]. */
  readonly queryBlocks: Int32Array;
  readonly blockStart: Int32Array;
  /** Per encoder holding not yet submitted writes of this batch: their layers, committed together. */
  readonly layersIn: Map<GPUCommandEncoder, number[]>;
  /** The table's rowRewrites when the rows were last found unchanged (checkUnchanged): equal means no row changed since. */
  rowsCheckedAt: number;
}

const PADDING_SLOT = 0xffffffff;

/** What a preparer works on: the cache's bookkeeping and GPU side, shared with the cache. */
export interface BatchPreparerDeps {
  readonly table: BlockTable;
  readonly prefix: PrefixCache;
  readonly gpu: KvGpu;
  readonly written: WrittenState;
  readonly layout: KvLayout;
  readonly maxSequences: number;
  /** Freed sequences whose release waits for GPU work (id → slot): callers no longer know those ids. */
  readonly deferredFrees: ReadonlyMap<number, number>;
  /** Under the lock: the K/V of `id` from `position`'s block on count as unwritten in every layer. */
  forgetFromBlockOf(slot: number, id: number, position: number): void;
}

export class BatchPreparer {
  /** Per sequence slot: the mark of the last write batch that listed it (duplicate detection). */
  private readonly slotMarks: Uint32Array;
  private slotMark = 0;
  /** Reused options of the makeExclusive call per entry of a write batch (no allocation per entry). */
  private readonly exclusiveOptions = { newPositions: false };
  private writeSlotWords = new Uint32Array(64);
  private rowScratch = { slots: new Int32Array(0), lengths: new Int32Array(0) };
  private readonly table: BlockTable;
  private readonly gpu: KvGpu;
  private readonly written: WrittenState;
  private readonly layout: KvLayout;

  constructor(private readonly deps: BatchPreparerDeps) {
    this.table = deps.table;
    this.gpu = deps.gpu;
    this.written = deps.written;
    this.layout = deps.layout;
    this.slotMarks = new Uint32Array(deps.maxSequences);
  }

  /** A freed sequence whose release is deferred is already unknown to callers. */
  private checkLive(ids: readonly number[]): void {
    if (this.deps.deferredFrees.size === 0) return;
    for (const id of ids) if (this.deps.deferredFrees.has(id)) throw new UnknownSequenceError(id, 'was freed');
  }

  /** The write state of a batch prepared { writeKV: true } whose rows are still as prepared. Lock held. */
  writesOf(batch: PreparedAttentionState, call: string): PreparedWrites {
    const writes = batch.writes;
    if (writes === undefined) {
      throw new InvalidArgumentError(`${call} needs a batch from prepareAttention(entries, { writeKV: true })`);
    }
    this.checkUnchanged(batch, writes);
    return writes;
  }

  /** Under the table lock: validated kernel entries, with their block-table rows uploaded. */
  prepare(entries: EncodedAttentionEntry[], layer?: number, writeKV = false): PreparedAttentionState {
    if (!Array.isArray(entries) || entries.length === 0) throw new InvalidArgumentError('attention needs a non-empty array of entries');
    const n = entries.length;
    const seqIds = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      const e = entries[i];
      if (!e || typeof e !== 'object') throw new InvalidArgumentError(`entries[${i}] must be an object`);
      seqIds[i] = e.seqId;
    }
    this.checkLive(seqIds);
    const rowsOf = this.scratchRows(n);
    this.table.rowsOf(seqIds, rowsOf.slots, rowsOf.lengths);
    const bs = this.layout.blockSize;
    const kernelEntries = new Array<AttentionEntry>(n);
    const slots = new Array<number>(n);
    let nextRow = 0;
    let rows = 0;
    let totalBlocks = 0;
    for (let i = 0; i < n; i++) {
      const e = entries[i]!;
      const slot = rowsOf.slots[i]!;
      const length = rowsOf.lengths[i]!;
      const numQueries = e.numQueries === undefined ? 1 : checkPosition(`entries[${i}].numQueries`, e.numQueries);
      if (numQueries < 1) throw new InvalidArgumentError(`entries[${i}] needs at least one query`);
      const queryStart = e.queryStart === undefined ? length - numQueries : checkPosition(`entries[${i}].queryStart`, e.queryStart);
      const contextLength = queryStart + numQueries;
      if (queryStart < 0 || contextLength > length) {
        throw new InvalidArgumentError(
          `entries[${i}]: queries at positions ${queryStart}..${contextLength - 1} go past sequence ${e.seqId}'s length ${length}`,
        );
      }
      const qRow = e.qRow === undefined ? nextRow : checkPosition(`entries[${i}].qRow`, e.qRow);
      nextRow = qRow + numQueries;
      if (nextRow > rows) rows = nextRow;
      kernelEntries[i] = { seqSlot: slot, contextLength, queryStart, numQueries, qRow, lastBlock: 0 }; // lastBlock: set once the rows are final, below
      slots[i] = slot;
      totalBlocks += Math.ceil(contextLength / bs);
    }
    if (writeKV) this.checkWriteBatch(kernelEntries, seqIds, rows);
    if (layer !== undefined) this.checkWritten(layer, { entries: kernelEntries, seqIds });
    if (writeKV) this.makeQueriesExclusive(kernelEntries, seqIds);
    // Only a batch that passed every check touches the GPU copy of the block table.
    const view = this.table.blockTableView;
    const stride = this.table.rowStride;
    const rowRewrites = this.table.rowRewrites;
    const blockStart = writeKV ? new Int32Array(n) : undefined;
    const queryBlocks = writeKV ? new Int32Array(this.queryBlockCount(kernelEntries)) : undefined;
    let at = 0;
    try {
      for (let i = 0; i < n; i++) {
        const e = kernelEntries[i]!;
        const numBlocks = Math.ceil(e.contextLength / bs);
        // The last block reaches the kernels through the work list: its table entry may wait (TableUpload).
        e.lastBlock = view[e.seqSlot * stride + numBlocks - 1]!;
        this.gpu.stageTableRow(view, e.seqSlot, numBlocks, rowRewrites, true);
        if (blockStart && queryBlocks) {
          blockStart[i] = at;
          for (let b = e.seqSlot * stride + Math.floor(e.queryStart / bs), end = e.seqSlot * stride + numBlocks; b < end; b++) queryBlocks[at++] = view[b]!;
        }
      }
    } finally {
      this.gpu.flushTable(); // the rows that changed, in a few writes (sequences crossing block boundaries at once)
    }
    const writes = blockStart && queryBlocks && {
      slots: this.uploadWriteSlots(kernelEntries, queryBlocks, blockStart, rows),
      queryBlocks,
      blockStart,
      layersIn: new Map<GPUCommandEncoder, number[]>(),
      rowsCheckedAt: rowRewrites,
    };
    return {
      entries: kernelEntries, rows, owner: this, seqIds, totalBlocks, slots, pinEpoch: 0, rowsAt: rowRewrites, writes,
      writtenChecks: new Uint8Array(this.layout.numLayers), writtenEpoch: this.written.shrinks, everyLayerTried: 0,
    };
  }

  /** Blocks under the query positions of all entries (a write batch keeps them to check and address its writes). */
  private queryBlockCount(entries: readonly AttentionEntry[]): number {
    const bs = this.layout.blockSize;
    let count = 0;
    for (const e of entries) count += Math.ceil(e.contextLength / bs) - Math.floor(e.queryStart / bs);
    return count;
  }

  /**
   * Under the lock: a batch some of whose rows changed since it was prepared (a copy-on-write, an
   * adoption, a free anywhere in the table) is checked and uploaded again — each of its sequences must
   * still live in its slot — so that the work encoded from now on reads the rows as they are now.
   */
  resync(batch: PreparedAttentionState): void {
    this.checkLive(batch.seqIds);
    const n = batch.entries.length;
    const now = this.scratchRows(n);
    this.table.rowsOf(batch.seqIds, now.slots, now.lengths);
    for (let i = 0; i < n; i++) {
      if (now.slots[i] !== batch.entries[i]!.seqSlot) throw new UnknownSequenceError(batch.seqIds[i]!, 'was freed');
    }
    const view = this.table.blockTableView;
    const bs = this.layout.blockSize;
    const stride = this.table.rowStride;
    const rowRewrites = this.table.rowRewrites;
    let entries = batch.entries;
    try {
      for (let i = 0; i < n; i++) {
        const e = entries[i]!;
        const numBlocks = Math.ceil(e.contextLength / bs);
        const lastBlock = view[e.seqSlot * stride + numBlocks - 1]!;
        if (lastBlock !== e.lastBlock) {
          // A new array, so that work planned from the old one (the kernel keeps its last plan) is planned again.
          if (entries === batch.entries) entries = entries.map((entry) => ({ ...entry }));
          entries[i]!.lastBlock = lastBlock;
        }
        this.gpu.stageTableRow(view, e.seqSlot, numBlocks, rowRewrites, true);
      }
    } finally {
      this.gpu.flushTable();
    }
    batch.entries = entries;
    batch.rowsAt = rowRewrites;
  }

  /** A write batch names each sequence once and each q row once (two writers of one slot would race). */
  private checkWriteBatch(entries: readonly AttentionEntry[], seqIds: readonly number[], rows: number): void {
    const mark = ++this.slotMark;
    for (let i = 0; i < entries.length; i++) {
      const slot = entries[i]!.seqSlot;
      if (this.slotMarks[slot] === mark) {
        throw new InvalidArgumentError(`entries[${i}]: sequence ${seqIds[i]} appears twice in a batch that writes K/V; give each sequence one entry`);
      }
      this.slotMarks[slot] = mark;
    }
    validateEntries(entries, { blockSize: this.layout.blockSize, rowStride: this.table.rowStride, maxSequences: this.deps.maxSequences, queryRows: rows });
  }

  /**
   * Copy-on-write for every block under a write batch's query positions that another sequence shares
   * (or, for positions already written somewhere, that in-flight work reads), before the rows are
   * uploaded. Copies made before a failure (OutOfBlocksError) are still performed: the sequences then
   * hold the same K/V in private blocks.
   */
  private makeQueriesExclusive(entries: readonly AttentionEntry[], seqIds: readonly number[]): void {
    const copies: BlockCopy[] = [];
    try {
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!;
        // Positions written in no layer yet have no reader: blocks pinned by in-flight work (a decode
        // loop that encodes the next step before the last one finished) are written in place.
        const options = this.exclusiveOptions;
        options.newPositions = e.queryStart >= this.written.maxOverLayers(e.seqSlot, seqIds[i]!);
        const made = this.table.makeExclusive(seqIds[i]!, e.queryStart, e.contextLength, options);
        for (let c = 0; c < made.length; c++) copies.push(made[c]!);
        this.deps.prefix.noteWrite(seqIds[i]!, e.queryStart);
      }
    } finally {
      try {
        this.gpu.copyBlocksAllLayers(copies);
      } catch (error) {
        // The table points at copies the GPU never made: forget what those blocks held.
        entries.forEach((e, i) => this.deps.forgetFromBlockOf(e.seqSlot, seqIds[i]!, e.queryStart));
        throw error;
      }
    }
  }

  /** Uploads the cache slot of every q row of a write batch (padding for rows no entry uses). */
  private uploadWriteSlots(entries: readonly AttentionEntry[], queryBlocks: Int32Array, blockStart: Int32Array, rows: number): GPUBuffer {
    if (this.writeSlotWords.length < rows) this.writeSlotWords = new Uint32Array(Math.max(rows, 2 * this.writeSlotWords.length));
    const words = this.writeSlotWords;
    words.fill(PADDING_SLOT, 0, rows);
    const bs = this.layout.blockSize;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      for (let q = 0; q < e.numQueries; q++) {
        const pos = e.queryStart + q;
        words[e.qRow + q] = queryBlocks[blockStart[i]! + Math.floor(pos / bs) - Math.floor(e.queryStart / bs)]! * bs + (pos % bs);
      }
    }
    return this.gpu.uploadBatchSlots(words, rows);
  }

  /**
   * Under the lock: every sequence of a write batch still lives in its row, and the blocks under its
   * query positions are still the ones the slot map names (a copy-on-write since, e.g. by writeKV on a
   * sequence forked meanwhile, would send the write to a block the sequence no longer owns).
   */
  private checkUnchanged(batch: PreparedAttentionState, writes: PreparedWrites): void {
    const view = this.table.blockTableView;
    const stride = this.table.rowStride;
    const bs = this.layout.blockSize;
    const n = batch.entries.length;
    this.checkLive(batch.seqIds);
    if (writes.rowsCheckedAt === this.table.rowRewrites) return; // no row was rewritten since the last check
    const now = this.scratchRows(n);
    this.table.rowsOf(batch.seqIds, now.slots, now.lengths);
    for (let i = 0; i < n; i++) {
      const e = batch.entries[i]!;
      const id = batch.seqIds[i]!;
      if (now.slots[i] !== e.seqSlot) throw new UnknownSequenceError(id, 'was freed');
      const row = e.seqSlot * stride;
      for (let b = Math.floor(e.queryStart / bs), end = Math.ceil(e.contextLength / bs); b < end; b++) {
        if (view[row + b] !== writes.queryBlocks[writes.blockStart[i]! + b - Math.floor(e.queryStart / bs)]) {
          throw new InvalidArgumentError(
            `entries[${i}]: sequence ${id} changed since prepareAttention (block ${b} was copied or replaced); prepare the batch again`,
          );
        }
      }
    }
    writes.rowsCheckedAt = this.table.rowRewrites;
  }

  /** Scratch arrays for resolving `n` sequence rows (reused: prepare runs under the lock, one at a time). */
  private scratchRows(n: number): { slots: Int32Array; lengths: Int32Array } {
    if (this.rowScratch.slots.length < n) {
      const size = Math.max(n, 2 * this.rowScratch.slots.length);
      this.rowScratch = { slots: new Int32Array(size), lengths: new Int32Array(size) };
    }
    return this.rowScratch;
  }

  checkPrepared(batch: PreparedAttention): PreparedAttentionState {
    const state = batch as PreparedAttentionState;
    if (!state || state.owner !== this) {
      throw new InvalidArgumentError('entries must be an array of entries or a batch from this cache\'s prepareAttention()');
    }
    return state;
  }

  /**
   * Isolation: every position a batch attends must have K/V written in `layer` — or, for a write batch
   * whose write of `layer` is recorded in the same `encoder` (and so runs first) or, with `writesHere`,
   * in the same compute pass just before, every position before its queries. A prepared batch tries each
   * kind of check once for every layer at once (a decode step then checks its batch in one pass over
   * each sequence's per-layer lengths, not once per layer); where some layer falls short, layers are
   * checked one by one.
   */
  checkWritten(
    layer: number,
    batch: Pick<PreparedAttentionState, 'entries' | 'seqIds'> &
      Partial<Pick<PreparedAttentionState, 'writes' | 'writtenChecks' | 'writtenEpoch' | 'everyLayerTried'>>,
    encoder?: GPUCommandEncoder,
    writesHere = false,
  ): void {
    const writesFirst = writesHere || (encoder !== undefined && batch.writes?.layersIn.get(encoder)?.includes(layer) === true);
    const passed = batch.writtenChecks;
    const needs = writesFirst ? WRITTEN_BEFORE_QUERIES | WRITTEN_ALL : WRITTEN_ALL; // either passed check suffices
    const check = writesFirst ? WRITTEN_BEFORE_QUERIES : WRITTEN_ALL;
    if (passed !== undefined) {
      // A prepared batch re-checks a layer only if some written length may have shrunk since it passed.
      if (batch.writtenEpoch !== this.written.shrinks) {
        passed.fill(0);
        batch.writtenEpoch = this.written.shrinks;
        batch.everyLayerTried = 0;
      } else if ((passed[layer]! & needs) !== 0) {
        return;
      }
      if (((batch.everyLayerTried ?? 0) & check) === 0) {
        batch.everyLayerTried = (batch.everyLayerTried ?? 0) | check;
        if (this.writtenInEveryLayer(batch, writesFirst)) {
          for (let l = 0; l < passed.length; l++) passed[l]! |= check;
          return;
        }
      }
    }
    for (let i = 0; i < batch.entries.length; i++) {
      const e = batch.entries[i]!;
      const id = batch.seqIds[i]!;
      const written = this.written.get(e.seqSlot, id, layer);
      const needed = writesFirst ? e.queryStart : e.contextLength;
      if (needed > written) {
        throw new InvalidArgumentError(
          `entries[${i}]: positions ${written}..${needed - 1} of sequence ${id} have no K/V written in layer ${layer}; ` +
            'writeKV them (or encodeWriteKV them into the same encoder) before attention',
        );
      }
    }
    if (passed !== undefined) passed[layer]! |= check;
  }

  /** Whether every entry has its positions before its queries (writesFirst) or all of them written in every layer. */
  private writtenInEveryLayer(batch: Pick<PreparedAttentionState, 'entries' | 'seqIds'>, writesFirst: boolean): boolean {
    for (let i = 0; i < batch.entries.length; i++) {
      const e = batch.entries[i]!;
      if (this.written.minOverLayers(e.seqSlot, batch.seqIds[i]!) < (writesFirst ? e.queryStart : e.contextLength)) return false;
    }
    return true;
  }
}
