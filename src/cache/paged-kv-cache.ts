// PagedKVCache: the public facade composing the block table (shared CPU bookkeeping), the KV pool (GPU
// memory) and the kernels. Invariants:
//   - Bookkeeping changes happen in synchronous critical sections of the table's one lock
//     (BlockTable.batch); nothing is decided before an await and acted upon after it.
//   - A call that throws a typed error has changed nothing (arguments are checked first; the table
//     validates before it mutates).
//   - GPU work is submitted in the order the bookkeeping happened; WebGPU's single in-order queue then
//     guarantees that copy-on-write copies run before the writes that follow them, and that a block
//     freed and reused is written only after every read submitted before the free. Work the caller
//     encodes itself (encodeAttention) pins its blocks until its submission has completed.
//   - Batches for encodeAttention / encodeWriteKV are prepared (validated, rows uploaded, blocks under a
//     write batch's queries made exclusive) by a BatchPreparer (batch-preparer.ts) inside the same
//     critical sections.
//   - Attention and readKV only read positions whose K/V were written for that layer (isolation: a
//     reused block never exposes a freed sequence's data). writeKV counts positions as written in a
//     second critical section, after the GPU accepted the write, re-checking that the sequence lives;
//     a write the GPU rejects (after which the copies it made still hold the old K/V) marks nothing.
//   - After destroy() or device loss every call throws (CacheDestroyedError / DeviceLostError).
//   - Prefix cache (src/prefix): a new sequence reuses the longest cached chain of full blocks of its
//     prompt (never the whole prompt) and starts with those positions written in every layer; a block is
//     registered for reuse by that second section of writeKV once it is full and written in every layer,
//     and is immutable from then on (writes copy it first). The prefix index shares the table's one lock.
//   - Coalescing (createSequenceAsync) is per cache object: in-flight prompt blocks are tracked on the
//     thread that owns this object; a waiting request reuses what the first one registers, or computes
//     the prefix itself after its timeout or when the first request is freed or stops registering.
import {
  CacheDestroyedError,
  GpuInternalError,
  GpuOutOfMemoryError,
  GpuValidationError,
  InvalidArgumentError,
  PagedAttentionError,
} from '../errors';
import { DeviceGuard } from '../gpu/device-guard';
import { withComputePass } from '../kernels/kv-bindings';
import { KvPool } from '../pool/kv-pool';
import type { KvLayout } from '../pool/kv-layout';
import { InflightPrefixes } from '../prefix/inflight-prefixes';
import { PrefixCache } from '../prefix/prefix-cache';
import type { BlockTable } from '../table/block-table';
import { UnknownSequenceError } from '../table/errors';
import { checkTokens } from '../table/tokens';
import { BlockWaiters, type WaitOptions } from './block-waiters';
import { resolveConfig, type PagedKVCacheOptions, type ResolvedConfig } from './config';
import { probeParallelism } from '../gpu/parallelism-probe';
import { BatchPreparer, type PreparedAttentionState, type PreparedWrites } from './batch-preparer';
import { GpuPins } from './gpu-pins';
import { checkComputePass, checkGpuBuffer, checkLayer, checkPosition, rowsOf } from './input-checks';
import { KvGpu, type StagedWrite } from './kv-gpu';
import { WrittenState } from './written-state';
import {
  DEFAULT_PREFIX_WAIT_MS,
  type SequenceInfo,
  type CreateSequenceOptions,
  type CreateSequenceWaitOptions,
  type AttendEntry,
  type AttendOptions,
  type EncodedAttentionEntry,
  type EncodeAttentionArgs,
  type EncodeWriteKVArgs,
  type PrepareAttentionOptions,
  type PreparedAttention,
  type CacheStats,
  type BlockMap,
} from './cache-types';

/** A write committed at submission: undone (positions forgotten) if the GPU rejects the submission. */
interface CommittedWrite {
  readonly batch: PreparedAttentionState;
}

export class PagedKVCache {
  readonly layout: KvLayout;
  readonly numQueryHeads: number;
  readonly maxSequences: number;
  readonly maxSequenceLength: number;
  /** 256-invocation workgroups the device runs at once (probed at create, or as given): sizes decode split-K. */
  readonly residentWorkgroups: number;
  readonly table: BlockTable;
  /** The prefix index over `table` (shares its lock). */
  readonly prefix: PrefixCache;

  private readonly guard: DeviceGuard;
  private readonly pool: KvPool;
  private readonly gpu: KvGpu;
  private readonly written: WrittenState;
  private readonly waiters = new BlockWaiters();
  private readonly inflight: InflightPrefixes;
  private readonly pins: GpuPins;
  private destroyed = false;
  /** Freed sequences whose slot is still read by encoded GPU work (id → slot). */
  private readonly deferredFrees = new Map<number, number>();
  /** Collects the writes committed by the submission being reported (see submit). */
  private committing: CommittedWrite[] | undefined;
  private readonly batches: BatchPreparer;

  private constructor(guard: DeviceGuard, config: ResolvedConfig & { residentWorkgroups: number }, pool: KvPool, prefix: PrefixCache, gpu: KvGpu) {
    const table = prefix.table;
    this.residentWorkgroups = config.residentWorkgroups;
    this.guard = guard;
    this.layout = config.layout;
    this.numQueryHeads = config.numQueryHeads;
    this.maxSequences = config.maxSequences;
    this.maxSequenceLength = config.maxSequenceLength;
    this.pool = pool;
    this.table = table;
    this.prefix = prefix;
    this.gpu = gpu;
    this.inflight = new InflightPrefixes(config.layout.blockSize);
    this.written = WrittenState.create(config.maxSequences, config.layout.numLayers);
    this.batches = new BatchPreparer({
      table, prefix, gpu, written: this.written, layout: config.layout, maxSequences: config.maxSequences,
      deferredFrees: this.deferredFrees,
      forgetFromBlockOf: (slot, id, position) => this.forgetFromBlockOf(slot, id, position),
    });
    this.pins = new GpuPins(
      guard.device,
      config.layout.numBlocks,
      config.maxSequences,
      (blocks) => table.retainBlocks(blocks),
      (blocks) => {
        if (this.destroyed) return;
        if (blocks.length > 0) table.releaseBlocks(blocks);
        this.completeDeferredFrees();
        this.waiters.notify();
      },
      {
        begin: (slots) => table.beginRead(slots),
        end: (safeEpoch, slots) => table.endRead(safeEpoch, slots),
        heldSince: (epoch, slots) => table.heldSince(epoch, slots),
      },
    );
    guard.onLost((error) => {
      this.waiters.rejectAll(() => error);
      this.inflight.rejectAll(() => error);
      this.pins.releaseAll();
    });
  }

  /** Creates the pool on `device`. Throws ConfigError, GpuOutOfMemoryError (nothing leaked) or DeviceLostError. */
  static async create(device: GPUDevice, options: PagedKVCacheOptions): Promise<PagedKVCache> {
    const guard = new DeviceGuard(device);
    const resolved = resolveConfig(device, options, device.features.has('subgroups'));
    const config = { ...resolved, residentWorkgroups: resolved.residentWorkgroups ?? (await probeParallelism(device)).residentWorkgroups };
    const pool = await KvPool.create(guard, config.layout);
    try {
      const prefix = PrefixCache.create(
        {
          numBlocks: config.layout.numBlocks,
          blockSize: config.layout.blockSize,
          maxSequences: config.maxSequences,
          maxBlocksPerSequence: config.maxBlocksPerSequence,
        },
        { timeoutMs: config.lockTimeoutMs },
      );
      const gpu = await KvGpu.create(guard, pool, config, prefix.table.rowStride);
      return new PagedKVCache(guard, config, pool, prefix, gpu);
    } catch (error) {
      pool.destroy();
      throw error;
    }
  }

  get device(): GPUDevice {
    return this.guard.device;
  }

  // ---- sequences (synchronous bookkeeping) -------------------------------------------------------

  /**
   * Creates a sequence for the prompt `tokens`, reusing the longest cached chain of its full blocks in
   * `namespace`: cachedTokens leading positions (a multiple of blockSize, less than the prompt) already
   * have K/V in every layer; write K/V from cachedTokens on.
   */
  createSequence(options: CreateSequenceOptions): SequenceInfo {
    this.checkUsable();
    if (!options || typeof options !== 'object') throw new InvalidArgumentError('createSequence needs { tokens }');
    const { tokens, namespace } = options;
    const created = this.table.batch(() => {
      const info = this.prefix.createSequence(tokens, namespace);
      this.written.reset(this.table.rowOf(info.id), info.id, info.cachedTokens);
      return { info, registers: this.prefix.registeredBlocks(info.id) >= 0 };
    });
    const { id, length, cachedTokens } = created.info;
    if (created.registers) this.inflight.add(id, namespace ?? '', tokens, cachedTokens / this.layout.blockSize);
    return { id, length, cachedTokens };
  }

  /** Appends tokens; returns the position of the first. Throws OutOfBlocksError (nothing changed) when full. */
  appendTokens(id: number, tokens: ArrayLike<number>): number {
    this.checkUsable();
    this.checkLive(id);
    const result = this.table.appendTokens(id, tokens);
    if (result.copies.length > 0) {
      try {
        this.gpu.copyBlocksAllLayers(result.copies);
      } catch (error) {
        // The table already swapped the shared tail block for a copy the GPU never made: forget the
        // positions that block held rather than expose whatever its replacement held before.
        this.table.batch(() => this.forgetFromBlockOf(this.table.rowOf(id), id, result.firstPosition));
        throw error;
      }
    }
    return result.firstPosition;
  }

  /** appendTokens that waits (FIFO, retrying) for blocks to be freed instead of throwing OutOfBlocksError. */
  appendTokensAsync(id: number, tokens: ArrayLike<number>, options?: WaitOptions): Promise<number> {
    return this.waiters.run(() => this.appendTokens(id, tokens), options);
  }

  /**
   * createSequence that waits instead of duplicating work or failing: when another live sequence of this
   * cache is still computing a longer block-aligned prefix of this prompt, it waits until those blocks
   * are registered and reuses them (falling back to computing them itself after prefixWaitMs, or when
   * that sequence is freed or stops registering); then it waits for free blocks instead of throwing
   * OutOfBlocksError. timeoutMs bounds the whole call (TimeoutError when no blocks came free in time).
   * Do not await it before computing sequences you already created: it may be waiting for them.
   */
  async createSequenceAsync(options: CreateSequenceOptions, wait: CreateSequenceWaitOptions = {}): Promise<SequenceInfo> {
    this.checkUsable();
    if (!options || typeof options !== 'object') throw new InvalidArgumentError('createSequenceAsync needs { tokens }');
    if (wait === null || typeof wait !== 'object') throw new InvalidArgumentError('createSequenceAsync wait options must be an object');
    const started = performance.now();
    const n = checkTokens(options.tokens);
    const namespace = this.prefix.checkNamespace(options.namespace);
    const bs = this.layout.blockSize;
    const maxBlocks = n > 0 ? Math.floor((n - 1) / bs) : 0;
    const cachedBlocks = this.prefix.cachedPrefix(options.tokens, namespace) / bs;
    const found = this.inflight.find(namespace, options.tokens, cachedBlocks, maxBlocks);
    if (found !== undefined) {
      const prefixWaitMs = wait.prefixWaitMs ?? wait.timeoutMs ?? DEFAULT_PREFIX_WAIT_MS;
      await this.inflight.wait(found.producer, found.blocks, { timeoutMs: prefixWaitMs, signal: wait.signal });
      this.checkUsable();
    }
    const timeoutMs = wait.timeoutMs === undefined ? undefined : Math.max(0, wait.timeoutMs - (performance.now() - started));
    return this.waiters.run(() => this.createSequence(options), { timeoutMs, signal: wait.signal });
  }

  /** A new sequence sharing every block (and the written K/V) of `id`; later writes copy on write. */
  fork(id: number): number {
    this.checkUsable();
    this.checkLive(id);
    return this.table.batch(() => {
      const child = this.prefix.fork(id);
      this.written.copy(this.table.rowOf(id), id, this.table.rowOf(child), child);
      return child;
    });
  }

  /**
   * Frees the sequence. If work recorded with encodeAttention still reads it, the id is invalid at once
   * but its slot and blocks are released only when that work has completed (its block-table row must
   * not be reused under it).
   */
  free(id: number): void {
    this.checkUsable();
    this.checkLive(id);
    const slot = this.table.rowOf(id);
    if (this.pins.slotPinned(slot)) {
      this.deferredFrees.set(id, slot);
      this.inflight.remove(id);
      return;
    }
    this.freeNow(id);
  }

  private freeNow(id: number): void {
    this.table.batch(() => {
      const slot = this.table.rowOf(id);
      this.prefix.free(id);
      this.written.release(slot);
    });
    this.inflight.remove(id);
    this.waiters.notify();
  }

  /** Frees the sequences whose free waited for encoded work that has now completed. */
  private completeDeferredFrees(): void {
    if (this.deferredFrees.size === 0) return;
    for (const [id, slot] of [...this.deferredFrees]) {
      if (this.pins.slotPinned(slot)) continue;
      this.deferredFrees.delete(id);
      this.freeNow(id);
    }
  }

  /** A freed sequence whose release is deferred is already unknown to callers. */
  private checkLive(id: number): void {
    if (this.deferredFrees.has(id)) throw new UnknownSequenceError(id, 'was freed');
  }

  length(id: number): number {
    this.checkUsable();
    this.checkLive(id);
    return this.table.length(id);
  }

  tokens(id: number): Uint32Array {
    this.checkUsable();
    this.checkLive(id);
    return this.table.tokensOf(id);
  }

  /** Positions of `layer` whose K/V have been written (attention may read below this). */
  writtenLength(id: number, layer: number): number {
    this.checkUsable();
    this.checkLive(id);
    checkLayer(layer, this.layout.numLayers);
    return this.table.batch(() => this.written.get(this.table.rowOf(id), id, layer));
  }

  // ---- K/V ----------------------------------------------------------------------------------------

  /**
   * Writes K and V rows for positions [startPos, startPos + n) of sequence `id` in `layer`. k and v are
   * Float32Array [n][numKvHeads][headDim], or f32 GPUBuffers of that layout (then n = numTokens, default
   * length − startPos). Shared blocks in the range are copied first (copy-on-write).
   */
  async writeKV(
    layer: number,
    id: number,
    startPos: number,
    k: Float32Array | GPUBuffer,
    v: Float32Array | GPUBuffer,
    options: { numTokens?: number } = {},
  ): Promise<void> {
    this.checkUsable();
    this.checkLive(id);
    checkLayer(layer, this.layout.numLayers);
    checkPosition('startPos', startPos);
    const rowElements = this.layout.numKvHeads * this.layout.headDim;
    const shape = `[n][numKvHeads=${this.layout.numKvHeads}][headDim=${this.layout.headDim}]`;
    const length = this.table.length(id);
    let n: number;
    if (k instanceof Float32Array || v instanceof Float32Array) {
      n = rowsOf('k', k, rowElements, shape);
      const nv = rowsOf('v', v, rowElements, shape);
      if (n !== nv) throw new InvalidArgumentError(`k has ${n} rows but v has ${nv}; give both the same rows`);
    } else {
      n = options.numTokens ?? length - startPos;
      checkPosition('numTokens', n);
      checkGpuBuffer('k', k, n * rowElements * 4, GPUBufferUsage.STORAGE, 'STORAGE');
      checkGpuBuffer('v', v, n * rowElements * 4, GPUBufferUsage.STORAGE, 'STORAGE');
    }
    if (startPos + n > length) {
      throw new InvalidArgumentError(
        `writeKV positions ${startPos}..${startPos + n - 1} go past the sequence length ${length}; appendTokens first`,
      );
    }
    if (n === 0) return;
    await this.gpu.ensureStaging(n);
    this.checkUsable();
    await this.guard.scoped('writeKV', () =>
      this.table.batch(() => {
        // Re-read under the lock: the sequence may have changed while the staging buffers grew.
        if (startPos + n > this.table.length(id)) {
          throw new InvalidArgumentError(`sequence ${id} became shorter than position ${startPos + n - 1} while writing`);
        }
        const copies = this.table.makeExclusive(id, startPos, startPos + n);
        this.prefix.noteWrite(id, startPos); // overwriting registered positions stops registration
        // Copy-on-write copies get a submission of their own, ahead of the write: if the GPU then rejects
        // the write (e.g. a destroyed caller buffer) or recording it throws, the copied blocks still hold
        // the K/V written before. Should the copies themselves fail, the table already points at blocks
        // that never received them: forget those positions rather than expose what the blocks held.
        try {
          this.gpu.copyBlocksAllLayers(copies);
        } catch (error) {
          this.forgetFromBlockOf(this.table.rowOf(id), id, startPos);
          throw error;
        }
        this.gpu.writeKv(layer, this.table.blocksOf(id), startPos, n, k, v, []);
      }),
    ).catch((error: unknown) => this.afterFailure(error));
    // Positions count as written (and full blocks become shareable) only once the GPU accepted the
    // write: a rejected write must not expose whatever its blocks held before — another sequence's K/V.
    this.table.batch(() => this.markWrittenLocked(id, layer, startPos, startPos + n));
  }

  /**
   * Under the lock: positions [start, end) of `layer` hold K/V now (if the sequence still lives and is
   * that long); full blocks written in every layer are registered for prefix reuse.
   */
  private markWrittenLocked(id: number, layer: number, start: number, end: number): void {
    if (this.deferredFrees.has(id) || !this.table.has(id) || end > this.table.length(id)) return;
    const slot = this.table.rowOf(id);
    this.written.markWritten(slot, id, layer, start, end);
    this.inflight.progress(id, this.prefix.registerWritten(id, this.written.minOverLayers(slot, id)));
  }

  /**
   * A prepared batch's writes of `layers` (recorded in one encoder) were submitted: its query positions
   * count as written there. The batch's sequences still live in its rows (encodeWriteKV pinned them; a
   * free meanwhile was deferred). Prefix registration is asked only where a block just became complete
   * in every layer, or where other requests wait on the sequence's progress.
   */
  private commitWrites(batch: PreparedAttentionState, layers: readonly number[]): void {
    const bs = this.layout.blockSize;
    this.table.batch(() => {
      const written = this.written;
      for (let i = 0; i < batch.entries.length; i++) {
        const e = batch.entries[i]!;
        const id = batch.seqIds[i]!;
        if (this.deferredFrees.size > 0 && this.deferredFrees.has(id)) continue;
        const { before, after } = written.markWrittenLayersMin(e.seqSlot, id, layers, e.queryStart, e.contextLength);
        if (Math.floor(after / bs) > Math.floor(before / bs) || this.inflight.tracks(id)) {
          this.inflight.progress(id, this.prefix.registerWritten(id, after));
        }
      }
    });
    this.committing?.push({ batch });
  }

  /**
   * Under the lock: every layer's K/V from the start of `position`'s block on count as unwritten (the
   * block was replaced by a copy, or written by work that never ran).
   */
  private forgetFromBlockOf(slot: number, id: number, position: number): void {
    const bs = this.layout.blockSize;
    this.written.clamp(slot, id, Math.floor(position / bs) * bs);
  }

  /** Under the lock: the committed writes never happened (their submission failed). */
  private forgetWrites(writes: readonly CommittedWrite[]): void {
    for (const { batch } of writes) batch.entries.forEach((e, i) => this.forgetFromBlockOf(e.seqSlot, batch.seqIds[i]!, e.queryStart));
  }

  /** Reads back K and V of positions [0, length) (or the given range) as Float32Array [n][numKvHeads][headDim]. */
  async readKV(layer: number, id: number, range: { start?: number; end?: number } = {}): Promise<{ k: Float32Array; v: Float32Array }> {
    this.checkUsable();
    this.checkLive(id);
    checkLayer(layer, this.layout.numLayers);
    return this.submitScoped('readKV', () => {
      const length = this.table.length(id);
      const written = this.written.get(this.table.rowOf(id), id, layer);
      const start = checkPosition('range.start', range.start ?? 0);
      const end = checkPosition('range.end', range.end ?? length);
      if (start > end || end > length) {
        throw new InvalidArgumentError(`readKV range [${start}, ${end}) must lie within [0, ${length})`);
      }
      if (end > written) {
        throw new InvalidArgumentError(
          `positions ${written}..${end - 1} of sequence ${id} have no K/V written in layer ${layer}; write them before reading`,
        );
      }
      const slot = this.table.rowOf(id);
      this.gpu.syncTableRow(this.table.blockTableView, slot, Math.ceil(end / this.layout.blockSize), this.table.rowRewrites);
      return this.gpu.readKv(layer, slot, this.table.rowStride, start, end);
    });
  }

  // ---- attention ----------------------------------------------------------------------------------

  /**
   * Paged attention for a batch of sequences: decode entries (one query) and prefill entries (many
   * queries starting at queryStart, causal) mixed. Returns one Float32Array [n][numQueryHeads][headDim]
   * per entry.
   */
  async attend(layer: number, entries: AttendEntry[], options: AttendOptions = {}): Promise<Float32Array[]> {
    this.checkUsable();
    checkLayer(layer, this.layout.numLayers);
    if (!Array.isArray(entries) || entries.length === 0) throw new InvalidArgumentError('attend needs a non-empty array of entries');
    const rowElements = this.numQueryHeads * this.layout.headDim;
    const shape = `[n][numQueryHeads=${this.numQueryHeads}][headDim=${this.layout.headDim}]`;
    const numQueries = entries.map((e, i) => rowsOf(`entries[${i}].q`, e?.q, rowElements, shape, 1));
    const totalRows = numQueries.reduce((a, b) => a + b, 0);
    const scale = this.checkScale(options.scale);
    await this.gpu.ensureQueryScratch(totalRows);
    this.checkUsable();
    const encoded = entries.map((e, i) => ({ seqId: e.seqId, numQueries: numQueries[i]!, queryStart: e.queryStart }));
    const out = await this.submitScoped('attend', () => {
      const batch = this.batches.prepare(encoded, layer);
      return this.gpu.attendFromHost(layer, batch.entries, entries.map((e) => e.q), totalRows, scale);
    });
    const outputs: Float32Array[] = [];
    let row = 0;
    for (const n of numQueries) {
      outputs.push(out.slice(row * rowElements, (row + n) * rowElements));
      row += n;
    }
    return outputs;
  }

  /**
   * Encodes paged attention into the caller's encoder with no readback: q and out are GPU buffers.
   * Many layers and steps may go into one submission. The blocks read are pinned until the work has
   * completed: submit with cache.submit(), or call cache.markSubmitted() right after queue.submit().
   */
  encodeAttention(encoder: GPUCommandEncoder, args: EncodeAttentionArgs): void {
    this.checkUsable();
    const layer = checkLayer(args?.layer, this.layout.numLayers);
    const scale = this.checkScale(args.scale);
    const pass = checkComputePass(args.pass);
    if (args.k !== undefined || args.v !== undefined) {
      this.table.batch(() => this.encodeWriteAndAttentionLocked(encoder, pass, layer, args, scale));
      return;
    }
    this.table.batch(() => {
      const batch = Array.isArray(args.entries) ? this.batches.prepare(args.entries, layer) : this.batches.checkPrepared(args.entries);
      if (!Array.isArray(args.entries)) this.batches.checkWritten(layer, batch, encoder);
      const { q, out } = this.checkQueryBuffers(args, batch.rows);
      this.syncRows(batch);
      this.gpu.flushStagedBefore(encoder, pass ?? encoder, layer);
      this.gpu.encodeAttention(pass ?? encoder, layer, batch.entries, q, out, scale);
      // Pinned once recorded (still under the lock, so nothing is freed in between): a recording that
      // throws leaves no pin behind, and no block held until some later, unrelated submission.
      this.pinBatch(encoder, batch);
    });
  }

  /**
   * Lock held, before recording work of `batch`: rows some entry of the table changed in since the batch
   * was prepared (or last synced) are uploaded again (its sequences must still live: else
   * UnknownSequenceError), so the work reads them as they are now and pinBatch covers them.
   */
  private syncRows(batch: PreparedAttentionState): void {
    if (this.table.rowRewrites !== batch.rowsAt) this.batches.resync(batch);
  }

  /** Lock held, once the work is recorded: pins what `batch` reads until it has completed (a table read of its rows). */
  private pinBatch(encoder: GPUCommandEncoder, batch: PreparedAttentionState): void {
    this.pins.pinOnce(encoder, batch, batch.totalBlocks, batch.slots);
  }

  /** encodeAttention with k and v: the write, then the attention, in one compute pass (`into`, or one of its own). Lock held. */
  private encodeWriteAndAttentionLocked(
    encoder: GPUCommandEncoder,
    into: GPUComputePassEncoder | undefined,
    layer: number,
    args: EncodeAttentionArgs,
    scale: number,
  ): void {
    if (Array.isArray(args.entries)) {
      throw new InvalidArgumentError('encodeAttention with k and v needs a batch from prepareAttention(entries, { writeKV: true })');
    }
    const batch = this.batches.checkPrepared(args.entries);
    const writes = this.batches.writesOf(batch, 'encodeAttention with k and v');
    const { k, v } = this.checkKvBuffers(args, batch.rows);
    this.batches.checkWritten(layer, batch, encoder, true);
    const { q, out } = this.checkQueryBuffers(args, batch.rows);
    this.syncRows(batch);
    // A decode batch: the attention's own dispatch attends over the new K/V and stages it, and a flush
    // in the same encoder stores it for several layers at once (it cannot read k or v from the buffer it
    // writes). The staging was allocated with the cache (a row per sequence). One pass holds the
    // layer's flushes (of an earlier staging of it, and of its flush group when it ends one) and its decode.
    if (k !== out && v !== out && this.gpu.canStage(batch.entries, batch.rows)) {
      const staging: StagedWrite = { encoder, k, v, slots: writes.slots, rows: batch.rows };
      if (into !== undefined) {
        this.recordStagedLocked(into, layer, batch, writes, q, out, scale, staging); // the hot path: no closure
      } else {
        withComputePass(encoder, (pass) => this.recordStagedLocked(pass, layer, batch, writes, q, out, scale, staging), { label: 'paged-attention' });
      }
      return;
    }
    withComputePass(into ?? encoder, (pass) => {
      this.gpu.flushStagedBefore(encoder, pass, layer);
      this.gpu.encodeWriteKv(pass, layer, writes.slots, k, v, batch.rows);
      // The encoder holds the write from here on: pin and note it even if recording the attention fails,
      // exactly as if encodeWriteKV had been called on its own.
      this.pinBatch(encoder, batch);
      this.noteWriteRecorded(encoder, batch, writes, layer);
      this.gpu.encodeAttention(pass, layer, batch.entries, q, out, scale);
    }, { label: 'write-kv+paged-attention' });
  }

  /**
   * The staged form of encodeWriteAndAttentionLocked, into `pass`. Nothing of the layer is recorded if
   * the decode throws, so the pin and the note come after it; the flush of its group (when the layer
   * ends one) comes last: should it throw, the decode is pinned and noted, and its rows stay staged for
   * the encoder's finish().
   */
  private recordStagedLocked(
    pass: GPUComputePassEncoder,
    layer: number,
    batch: PreparedAttentionState,
    writes: PreparedWrites,
    q: GPUBuffer,
    out: GPUBuffer,
    scale: number,
    staging: StagedWrite,
  ): void {
    const encoder = staging.encoder;
    this.gpu.flushStagedBefore(encoder, pass, layer);
    this.gpu.encodeAttention(pass, layer, batch.entries, q, out, scale, staging);
    this.pinBatch(encoder, batch);
    this.noteWriteRecorded(encoder, batch, writes, layer);
    this.gpu.flushStagedGroup(encoder, pass, layer);
  }

  /**
   * Resolves a batch once for encodeAttention: one critical section, block-table rows uploaded, no
   * per-layer work left but the written-positions check and the dispatches.
   */
  prepareAttention(entries: EncodedAttentionEntry[], options: PrepareAttentionOptions = {}): PreparedAttention {
    this.checkUsable();
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('prepareAttention options must be an object');
    return this.table.batch(() => this.batches.prepare(entries, undefined, options.writeKV === true));
  }

  /**
   * Encodes the write of K/V for the query positions of a batch prepared with { writeKV: true } into
   * the caller's encoder (one dispatch for the whole batch: the decode step's new tokens, or a chunk of
   * prefill). Attention of the same layer and batch encoded afterwards into the same encoder may read
   * them. The positions count as written for everything else once the command buffer is submitted with
   * cache.submit() (or reported with markSubmitted()); the blocks are pinned like encodeAttention's.
   */
  encodeWriteKV(encoder: GPUCommandEncoder, args: EncodeWriteKVArgs): void {
    this.checkUsable();
    const layer = checkLayer(args?.layer, this.layout.numLayers);
    const pass = checkComputePass(args.pass);
    this.table.batch(() => {
      const batch = this.batches.checkPrepared(args.entries);
      const writes = this.batches.writesOf(batch, 'encodeWriteKV');
      const { k, v } = this.checkKvBuffers(args, batch.rows);
      this.syncRows(batch);
      this.gpu.flushStagedBefore(encoder, pass ?? encoder, layer);
      this.gpu.encodeWriteKv(pass ?? encoder, layer, writes.slots, k, v, batch.rows);
      this.pinBatch(encoder, batch);
      this.noteWriteRecorded(encoder, batch, writes, layer);
    });
  }

  private checkKvBuffers(args: { k?: GPUBuffer; v?: GPUBuffer }, rows: number): { k: GPUBuffer; v: GPUBuffer } {
    const rowBytes = this.layout.numKvHeads * this.layout.headDim * 4;
    const k = checkGpuBuffer('k', args.k, rows * rowBytes, GPUBufferUsage.STORAGE, 'STORAGE');
    const v = checkGpuBuffer('v', args.v, rows * rowBytes, GPUBufferUsage.STORAGE, 'STORAGE');
    return { k, v };
  }

  private checkQueryBuffers(args: { q: GPUBuffer; out: GPUBuffer }, rows: number): { q: GPUBuffer; out: GPUBuffer } {
    const rowBytes = this.numQueryHeads * this.layout.headDim * 4;
    const q = checkGpuBuffer('q', args.q, rows * rowBytes, GPUBufferUsage.STORAGE, 'STORAGE');
    const out = checkGpuBuffer('out', args.out, rows * rowBytes, GPUBufferUsage.STORAGE, 'STORAGE');
    return { q, out };
  }

  /**
   * Files `layer` among the layers `encoder` writes for the batch; the first write of the batch into the
   * encoder registers the commit (positions marked written) for when its command buffer is submitted.
   */
  private noteWriteRecorded(encoder: GPUCommandEncoder, batch: PreparedAttentionState, writes: PreparedWrites, layer: number): void {
    let layers = writes.layersIn.get(encoder);
    if (layers === undefined) {
      const created: number[] = (layers = []);
      writes.layersIn.set(encoder, created);
      this.pins.onSubmit(encoder, () => {
        writes.layersIn.delete(encoder);
        this.commitWrites(batch, created);
      });
    }
    if (!layers.includes(layer)) layers.push(layer);
  }

  /**
   * Submits command buffers containing encodeAttention work and releases their pins when it completes
   * (only theirs: encoders still being recorded elsewhere keep their blocks).
   */
  submit(commandBuffers: Iterable<GPUCommandBuffer>): Promise<void> {
    this.checkUsable();
    const buffers = [...commandBuffers];
    const accepted = this.guard.scoped('submit', () => this.guard.device.queue.submit(buffers));
    const committed: CommittedWrite[] = [];
    this.committing = committed;
    let done: Promise<void>;
    try {
      done = this.pins.submitted(buffers);
    } finally {
      this.committing = undefined;
    }
    this.destroyRetiredKernels();
    // A submission the GPU rejected wrote nothing: forget the positions its writes claimed.
    const checked = accepted.then(
      () => undefined,
      (error: unknown) => {
        if (committed.length > 0) this.table.batch(() => this.forgetWrites(committed));
        return this.afterFailure(error);
      },
    );
    return Promise.all([checked, done]).then(() => undefined);
  }

  /**
   * Tells the cache that work encoded with encodeAttention was submitted (call it after queue.submit of
   * the finished command buffers); resolves when it is done.
   */
  markSubmitted(): Promise<void> {
    const done = this.pins.submitted();
    this.destroyRetiredKernels();
    return done;
  }

  /**
   * Destroys kernels dropped after a GPU error once no unsubmitted encoder can hold work that binds
   * their buffers (submitted work may: WebGPU frees a destroyed buffer after the work using it).
   */
  private destroyRetiredKernels(): void {
    if (this.gpu.retiredKernels > 0 && !this.pins.hasUnsubmitted) this.gpu.destroyRetired();
  }

  // ---- observation ----------------------------------------------------------------------------------

  /**
   * The attention kernels this cache runs on its device, in words: decode (streaming with subgroup
   * shuffles or a workgroup-memory reduction, or the tile engine) and prefill (subgroup matrices,
   * register-blocked or the tile engine), each with its shape. For logs; it compiles nothing.
   */
  describeKernels(): { decode: string; prefill: string } {
    this.checkUsable();
    return this.gpu.describeAttentionKernels();
  }

  stats(): CacheStats {
    this.checkUsable();
    const { t, p } = this.table.batch(() => ({ t: this.table.stats(), p: this.prefix.stats() }));
    return {
      blocksTotal: t.blocksTotal,
      blocksFree: t.blocksFree,
      blocksUsed: t.blocksTotal - t.blocksFree - p.evictable,
      blocksEvictable: p.evictable,
      blocksProtected: p.protected,
      blocksRegistered: p.registered,
      blockSize: this.layout.blockSize,
      bytes: this.pool.bytes,
      stagingBytes: this.gpu.stagingBytes,
      bytesPerBlock: this.layout.bytesPerBlock * this.layout.numLayers,
      sequences: t.sequences,
      cowCopies: t.cowCopies,
      allocations: t.allocations,
      evictions: t.evictions,
      forks: t.forks,
      prefixHits: p.hits,
      prefixMisses: p.misses,
      prefixHitTokens: p.hitTokens,
      prefixQueryTokens: p.queryTokens,
      prefixHitRate: p.hitRate,
      prefixAdoptions: p.adoptions,
      prefixWaiters: this.inflight.waiting,
      pinnedBlocks: this.pins.pendingCount,
      blocksDeferred: t.blocksDeferred,
      waiters: this.waiters.size,
      tableEntriesUploaded: this.gpu.tableEntriesUploaded,
      tableWrites: this.gpu.tableWrites,
      lock: this.table.lockStats(),
    };
  }

  /**
   * Drops every evictable prefix block back to the free list and unregisters everything: blocks in use
   * stay with their sequences but are no longer shareable. Returns the blocks freed. Requests waiting
   * for another request's prefix stop waiting and compute it themselves.
   */
  clearPrefixCache(): number {
    this.checkUsable();
    const freed = this.prefix.clear();
    this.inflight.clear();
    this.waiters.notify();
    return freed;
  }

  /** Per-block state, reference count and an owning sequence, for visualisation and diagnostics. */
  blockMap(): BlockMap {
    this.checkUsable();
    return this.table.batch(() => this.prefix.blockSnapshot());
  }

  /** Throws InvariantError (or another typed error) describing the first broken invariant. */
  checkInvariants(): void {
    this.checkUsable();
    this.prefix.checkInvariants();
    this.table.batch(() => {
      for (const id of this.table.sequenceIds()) {
        const slot = this.table.rowOf(id);
        const length = this.table.length(id);
        for (let l = 0; l < this.layout.numLayers; l++) {
          const w = this.written.get(slot, id, l);
          if (w > length) throw new PagedAttentionError('INVARIANT', `sequence ${id} layer ${l}: written ${w} > length ${length}`);
        }
      }
    });
  }

  /** Frees GPU memory; every later call throws CacheDestroyedError. Idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.waiters.rejectAll(() => new CacheDestroyedError());
    this.inflight.rejectAll(() => new CacheDestroyedError());
    this.pins.releaseAll();
    this.gpu.destroy();
    this.pool.destroy();
  }

  // ---- helpers -------------------------------------------------------------------------------------

  private checkUsable(): void {
    this.guard.throwIfLost();
    if (this.destroyed) throw new CacheDestroyedError();
  }

  /**
   * Runs `section` (a critical section that records and submits GPU work, returning its result's
   * promise) inside error scopes, so a failed allocation (GPU out of memory: readback, gather or
   * attention scratch) or a validation error rejects with a typed error instead of surfacing as an
   * uncaptured WebGPU error and an untyped rejection.
   */
  private async submitScoped<T>(what: string, section: () => Promise<T>): Promise<T> {
    let pending: Promise<T> | undefined;
    await this.guard
      .scoped(what, () => {
        pending = this.table.batch(section);
        pending.catch(() => undefined); // awaited below, unless the scope reports an error first
      })
      .catch((error: unknown) => this.afterFailure(error));
    return this.guard.guard(pending!);
  }

  /** Rethrows `error`; if the GPU reported it, the kernels are rebuilt on next use (see discardKernels). */
  private afterFailure(error: unknown): never {
    if (error instanceof GpuOutOfMemoryError || error instanceof GpuValidationError || error instanceof GpuInternalError) {
      this.gpu.discardKernels();
      this.destroyRetiredKernels();
    }
    throw error;
  }

  private checkScale(scale: number | undefined): number {
    if (scale === undefined) return 1 / Math.sqrt(this.layout.headDim);
    if (typeof scale !== 'number' || !Number.isFinite(scale)) {
      throw new InvalidArgumentError(`scale must be a finite number (got ${String(scale)})`);
    }
    return scale;
  }
}
