// How many leading positions of each sequence have K/V written, per layer, in shared memory next to the
// block table so every thread sees the same answer. Invariants: row `slot` belongs to the sequence whose
// id is stored in owner[slot]; a row whose owner is not the live sequence of that slot reads as 0
// (a reused slot never inherits a freed sequence's progress); written[l] ≤ the sequence's length; it is
// only read or changed inside the block table's critical section (BlockTable.batch), so it always
// agrees with the table. Attention may read a position only if it is < written[layer]. `shrinks`
// counts the calls that may lower some sequence's written length (reset, copy, clamp, release): while
// it stays the same, written lengths only grow, so a check that they cover a batch stays true.
//   Layout of a row: layer l's written length is max(floor, stored[l]), where floor is exactly the
// smallest written length over the layers and ceil exactly the largest. So the minimum and maximum over
// layers (asked per sequence every decode step) cost one read, and a write of every layer from the
// floor on (a decode step's commit) only moves floor and ceil: stored values under the floor are stale
// but never read alone. Only a write that raises the layer(s) at the floor one at a time, or one that
// starts past the floor, walks the row.

export interface WrittenStateHandle {
  readonly buffer: SharedArrayBuffer;
  readonly maxSequences: number;
  readonly numLayers: number;
}

export class WrittenState {
  readonly handle: WrittenStateHandle;
  private readonly owner: Float64Array;
  /** Per slot and layer: the layer's written length where it is above the slot's floor. */
  private readonly stored: Int32Array;
  /** Per slot: the smallest written length over its layers (and a lower bound of every stored value's meaning). */
  private readonly floor: Int32Array;
  /** Per slot: the largest written length over its layers. */
  private readonly ceil: Int32Array;
  /** [0]: the shrink counter (see the header). */
  private readonly shrinkCount: Int32Array;
  /** The result markWrittenLayersMin returns (reused: no allocation per call). */
  private readonly minChange = { before: 0, after: 0 };
  private readonly numLayers: number;

  static create(maxSequences: number, numLayers: number): WrittenState {
    const buffer = new SharedArrayBuffer(WrittenState.byteLength(maxSequences, numLayers));
    const state = new WrittenState({ buffer, maxSequences, numLayers });
    state.owner.fill(-1);
    return state;
  }

  static attach(handle: WrittenStateHandle): WrittenState {
    return new WrittenState(handle);
  }

  /** owner (f64 per slot), stored (i32 per slot and layer), floor and ceil (i32 per slot), the shrink counter. */
  private static byteLength(maxSequences: number, numLayers: number): number {
    return maxSequences * 8 + maxSequences * numLayers * 4 + 2 * maxSequences * 4 + 4;
  }

  private constructor(handle: WrittenStateHandle) {
    const { buffer, maxSequences: slots, numLayers } = handle;
    this.handle = handle;
    this.numLayers = numLayers;
    let at = 0;
    this.owner = new Float64Array(buffer, at, slots);
    at += slots * 8;
    this.stored = new Int32Array(buffer, at, slots * numLayers);
    at += slots * numLayers * 4;
    this.floor = new Int32Array(buffer, at, slots);
    at += slots * 4;
    this.ceil = new Int32Array(buffer, at, slots);
    at += slots * 4;
    this.shrinkCount = new Int32Array(buffer, at, 1);
  }

  /** Calls so far that may have lowered a written length (compare values read in the same critical section). */
  get shrinks(): number {
    return this.shrinkCount[0]!;
  }

  /** Written length of `layer` for sequence `id` living in row `slot`. */
  get(slot: number, id: number, layer: number): number {
    if (this.owner[slot] !== id) return 0;
    const stored = this.stored[slot * this.numLayers + layer]!;
    const floor = this.floor[slot]!;
    return stored > floor ? stored : floor;
  }

  /** The smallest written length over all layers (positions complete in every layer). */
  minOverLayers(slot: number, id: number): number {
    return this.owner[slot] === id ? this.floor[slot]! : 0;
  }

  /** The largest written length over all layers (positions at or past it are written in no layer). */
  maxOverLayers(slot: number, id: number): number {
    return this.owner[slot] === id ? this.ceil[slot]! : 0;
  }

  /** Claims row `slot` for a new sequence `id` with `length` positions already written in every layer. */
  reset(slot: number, id: number, length: number): void {
    this.shrinkCount[0]!++;
    this.owner[slot] = id;
    this.stored.fill(length, slot * this.numLayers, (slot + 1) * this.numLayers);
    this.floor[slot] = length;
    this.ceil[slot] = length;
  }

  /** Row `childSlot` becomes a copy of row `parentSlot` (fork: the child shares the parent's K/V). */
  copy(parentSlot: number, parentId: number, childSlot: number, childId: number): void {
    this.shrinkCount[0]!++;
    const live = this.owner[parentSlot] === parentId;
    this.owner[childSlot] = childId;
    const from = parentSlot * this.numLayers;
    const to = childSlot * this.numLayers;
    if (live) this.stored.copyWithin(to, from, from + this.numLayers);
    else this.stored.fill(0, to, to + this.numLayers);
    this.floor[childSlot] = live ? this.floor[parentSlot]! : 0;
    this.ceil[childSlot] = live ? this.ceil[parentSlot]! : 0;
  }

  /** Records that positions [start, end) of `layer` were written; the written prefix grows only if contiguous. */
  markWritten(slot: number, id: number, layer: number, start: number, end: number): void {
    if (this.owner[slot] !== id) this.reset(slot, id, 0);
    if (this.raise(slot, layer, start, end)) this.refreshFloor(slot);
  }

  /**
   * markWrittenLayers of `layers` (each listed once), returning the minimum written length over all
   * layers before and after it in a result object this state reuses (read it before the next call).
   * Where `layers` lists every layer and the write starts at or below the floor — a decode step — only
   * the floor and the ceiling move.
   */
  markWrittenLayersMin(slot: number, id: number, layers: readonly number[], start: number, end: number): { before: number; after: number } {
    const change = this.minChange;
    if (this.owner[slot] !== id) this.reset(slot, id, 0);
    const floor = this.floor[slot]!;
    change.before = floor;
    if (layers.length === this.numLayers && start <= floor) {
      // Every layer is written up to at least `floor` ≥ start: those under `end` all reach it.
      if (end > floor) {
        this.floor[slot] = end;
        if (end > this.ceil[slot]!) this.ceil[slot] = end;
      }
    } else {
      this.markWrittenLayers(slot, id, layers, start, end);
    }
    change.after = this.floor[slot]!;
    return change;
  }

  /** markWritten of [start, end) for each layer in `layers` (one write batch recorded for several layers). */
  markWrittenLayers(slot: number, id: number, layers: readonly number[], start: number, end: number): void {
    if (this.owner[slot] !== id) this.reset(slot, id, 0);
    let atFloor = false;
    for (let k = 0; k < layers.length; k++) if (this.raise(slot, layers[k]!, start, end)) atFloor = true;
    if (atFloor) this.refreshFloor(slot);
  }

  /** Cuts every layer's written length to at most `length` (the sequence was truncated). */
  clamp(slot: number, id: number, length: number): void {
    if (this.owner[slot] !== id) return;
    this.shrinkCount[0]!++;
    const base = slot * this.numLayers;
    for (let l = 0; l < this.numLayers; l++) if (this.stored[base + l]! > length) this.stored[base + l] = length;
    // min(max(floor, s), length) = max(min(floor, length), min(s, length)): floor and ceil clamp alike.
    if (this.floor[slot]! > length) this.floor[slot] = length;
    if (this.ceil[slot]! > length) this.ceil[slot] = length;
  }

  release(slot: number): void {
    this.shrinkCount[0]!++;
    this.owner[slot] = -1;
  }

  /**
   * Layer `layer` of an owned row: its written length becomes `end` if [start, end) continues it. Keeps
   * the ceiling; returns whether the raised layer was at the floor (which may have to move up then).
   */
  private raise(slot: number, layer: number, start: number, end: number): boolean {
    const i = slot * this.numLayers + layer;
    const floor = this.floor[slot]!;
    const current = this.stored[i]! > floor ? this.stored[i]! : floor;
    if (!(start <= current && end > current)) return false;
    this.stored[i] = end;
    if (end > this.ceil[slot]!) this.ceil[slot] = end;
    return current === floor;
  }

  /** The floor of an owned row set to its smallest written length again (after a layer at it was raised). */
  private refreshFloor(slot: number): void {
    const base = slot * this.numLayers;
    const floor = this.floor[slot]!;
    let min = Infinity;
    for (let i = base, end = base + this.numLayers; i < end; i++) {
      const written = this.stored[i]! > floor ? this.stored[i]! : floor;
      if (written < min) min = written;
    }
    this.floor[slot] = min;
  }
}
