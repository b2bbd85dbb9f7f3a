// How many leading positions of each sequence have K/V written, per layer, in shared memory next to the
// block table so every thread sees the same answer. Invariants: row `slot` belongs to the sequence whose
// id is stored in owner[slot]; a row whose owner is not the live sequence of that slot reads as 0
// (a reused slot never inherits a freed sequence's progress); written[l] ≤ the sequence's length; it is
// only read or changed inside the block table's critical section (BlockTable.batch), so it always
// agrees with the table. Attention may read a position only if it is < written[layer]. `shrinks`
// counts the calls that may lower some sequence's written length (reset, copy, clamp, release): while
// it stays the same, written lengths only grow, so a check that they cover a batch stays true.

export interface WrittenStateHandle {
  readonly buffer: SharedArrayBuffer;
  readonly maxSequences: number;
  readonly numLayers: number;
}

export class WrittenState {
  readonly handle: WrittenStateHandle;
  private readonly owner: Float64Array;
  private readonly written: Int32Array;
  /** [0]: the shrink counter (see the header). */
  private readonly shrinkCount: Int32Array;
  /** The result markWrittenLayersMin returns (reused: no allocation per call). */
  private readonly minChange = { before: 0, after: 0 };
  private readonly numLayers: number;

  static create(maxSequences: number, numLayers: number): WrittenState {
    const bytes = maxSequences * 8 + maxSequences * numLayers * 4 + 4;
    const buffer = new SharedArrayBuffer(bytes);
    const state = new WrittenState({ buffer, maxSequences, numLayers });
    state.owner.fill(-1);
    return state;
  }

  static attach(handle: WrittenStateHandle): WrittenState {
    return new WrittenState(handle);
  }

  private constructor(handle: WrittenStateHandle) {
    this.handle = handle;
    this.numLayers = handle.numLayers;
    this.owner = new Float64Array(handle.buffer, 0, handle.maxSequences);
    this.written = new Int32Array(handle.buffer, handle.maxSequences * 8, handle.maxSequences * handle.numLayers);
    this.shrinkCount = new Int32Array(handle.buffer, handle.maxSequences * (8 + handle.numLayers * 4), 1);
  }

  /** Calls so far that may have lowered a written length (compare values read in the same critical section). */
  get shrinks(): number {
    return this.shrinkCount[0]!;
  }

  /** Written length of `layer` for sequence `id` living in row `slot`. */
  get(slot: number, id: number, layer: number): number {
    return this.owner[slot] === id ? this.written[slot * this.numLayers + layer]! : 0;
  }

  /** The smallest written length over all layers (positions complete in every layer). */
  minOverLayers(slot: number, id: number): number {
    if (this.owner[slot] !== id) return 0;
    const written = this.written;
    const base = slot * this.numLayers;
    let min = written[base]!; // numLayers ≥ 1; integer compares, not Math.min (this runs per sequence per step)
    for (let i = base + 1, end = base + this.numLayers; i < end; i++) if (written[i]! < min) min = written[i]!;
    return min;
  }

  /** The largest written length over all layers (positions at or past it are written in no layer). */
  maxOverLayers(slot: number, id: number): number {
    if (this.owner[slot] !== id) return 0;
    const written = this.written;
    let max = 0;
    for (let i = slot * this.numLayers, end = i + this.numLayers; i < end; i++) if (written[i]! > max) max = written[i]!;
    return max;
  }

  /** Claims row `slot` for a new sequence `id` with `length` positions already written in every layer. */
  reset(slot: number, id: number, length: number): void {
    this.shrinkCount[0]!++;
    this.owner[slot] = id;
    this.written.fill(length, slot * this.numLayers, (slot + 1) * this.numLayers);
  }

  /** Row `childSlot` becomes a copy of row `parentSlot` (fork: the child shares the parent's K/V). */
  copy(parentSlot: number, parentId: number, childSlot: number, childId: number): void {
    this.shrinkCount[0]!++;
    this.owner[childSlot] = childId;
    for (let l = 0; l < this.numLayers; l++) {
      this.written[childSlot * this.numLayers + l] = this.get(parentSlot, parentId, l);
    }
  }

  /** Records that positions [start, end) of `layer` were written; the written prefix grows only if contiguous. */
  markWritten(slot: number, id: number, layer: number, start: number, end: number): void {
    const i = slot * this.numLayers + layer;
    if (this.owner[slot] !== id) this.reset(slot, id, 0);
    if (start <= this.written[i]! && end > this.written[i]!) this.written[i] = end;
  }

  /**
   * markWrittenLayers of `layers` (each listed once), returning the minimum written length over all
   * layers before and after it in a result object this state reuses (read it before the next call).
   * Where `layers` lists every layer — a decode step writes them all — the row is walked once.
   */
  markWrittenLayersMin(slot: number, id: number, layers: readonly number[], start: number, end: number): { before: number; after: number } {
    const change = this.minChange;
    if (layers.length !== this.numLayers) {
      change.before = this.minOverLayers(slot, id);
      this.markWrittenLayers(slot, id, layers, start, end);
      change.after = this.minOverLayers(slot, id);
      return change;
    }
    if (this.owner[slot] !== id) this.reset(slot, id, 0);
    const written = this.written;
    let before = Infinity;
    let after = Infinity;
    for (let i = slot * this.numLayers, last = i + this.numLayers; i < last; i++) {
      let current = written[i]!;
      if (current < before) before = current;
      if (start <= current && end > current) written[i] = current = end;
      if (current < after) after = current;
    }
    change.before = before;
    change.after = after;
    return change;
  }

  /** markWritten of [start, end) for each layer in `layers` (one write batch recorded for several layers). */
  markWrittenLayers(slot: number, id: number, layers: readonly number[], start: number, end: number): void {
    if (this.owner[slot] !== id) this.reset(slot, id, 0);
    const base = slot * this.numLayers;
    const written = this.written;
    for (let k = 0; k < layers.length; k++) {
      const i = base + layers[k]!;
      const current = written[i]!;
      if (start <= current && end > current) written[i] = end;
    }
  }

  /** Cuts every layer's written length to at most `length` (the sequence was truncated). */
  clamp(slot: number, id: number, length: number): void {
    if (this.owner[slot] !== id) return;
    this.shrinkCount[0]!++;
    const base = slot * this.numLayers;
    for (let l = 0; l < this.numLayers; l++) this.written[base + l] = Math.min(this.written[base + l]!, length);
  }

  release(slot: number): void {
    this.shrinkCount[0]!++;
    this.owner[slot] = -1;
  }
}
