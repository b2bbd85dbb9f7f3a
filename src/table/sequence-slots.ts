// Sequence slots (rows of the block table) and the ids that name them. A live sequence in slot s with
// generation g has id s + maxSequences × g; freeing the slot bumps g (wrapping at 2^31-1), so an id
// outlives its sequence only as a detectable stale id. Invariants (under the table lock): a slot is
// live ⇔ seqLive = 1 ⇔ it is not on the free-slot stack; a free slot has length 0, no blocks and an
// all -1 row; SEQUENCE_COUNT = live slots. The free-slot stack is singly linked through
// seqNextFreeSlot, head in FREE_SLOT_HEAD, -1 terminated.
import type { BlockTableConfig } from './config';
import { UnknownSequenceError } from './errors';
import { Ctrl, type TableViews } from './layout';

const MAX_GENERATION = 0x7fffffff;

export class SequenceSlots {
  readonly maxSequences: number;
  private readonly control: Int32Array;
  private readonly live: Uint8Array;
  private readonly generation: Int32Array;
  private readonly nextFree: Int32Array;
  private readonly length: Int32Array;
  private readonly numBlocks: Int32Array;

  constructor(views: TableViews, config: BlockTableConfig) {
    this.maxSequences = config.maxSequences;
    this.control = views.control;
    this.live = views.seqLive;
    this.generation = views.seqGeneration;
    this.nextFree = views.seqNextFreeSlot;
    this.length = views.seqLength;
    this.numBlocks = views.seqNumBlocks;
  }

  /** Whether a slot is free to take. */
  hasFree(): boolean {
    return this.control[Ctrl.FREE_SLOT_HEAD] >= 0;
  }

  /** Takes a free slot (the caller checked hasFree()) and marks it live with length 0. */
  acquire(): number {
    const slot = this.control[Ctrl.FREE_SLOT_HEAD];
    this.control[Ctrl.FREE_SLOT_HEAD] = this.nextFree[slot];
    this.nextFree[slot] = -1;
    this.live[slot] = 1;
    this.control[Ctrl.SEQUENCE_COUNT]++;
    return slot;
  }

  /** Returns a live slot whose row the caller already cleared; invalidates its id. */
  release(slot: number): void {
    const g = this.generation[slot];
    this.generation[slot] = g === MAX_GENERATION ? 0 : g + 1;
    this.live[slot] = 0;
    this.length[slot] = 0;
    this.numBlocks[slot] = 0;
    this.nextFree[slot] = this.control[Ctrl.FREE_SLOT_HEAD];
    this.control[Ctrl.FREE_SLOT_HEAD] = slot;
    this.control[Ctrl.SEQUENCE_COUNT]--;
  }

  idOf(slot: number): number {
    return slot + this.maxSequences * this.generation[slot];
  }

  /** The live slot named by `id`, else UnknownSequenceError. */
  resolve(id: number): number {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      throw new UnknownSequenceError(id, 'sequence ids are non-negative integers returned by createSequence or fork');
    }
    const slot = id % this.maxSequences;
    if (this.live[slot] !== 1 || this.generation[slot] * this.maxSequences + slot !== id) {
      throw new UnknownSequenceError(id, this.describeMiss(id, slot));
    }
    return slot;
  }

  /** Whether `id` names a live sequence (never throws). */
  isLive(id: unknown): boolean {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) return false;
    const slot = id % this.maxSequences;
    return this.live[slot] === 1 && this.generation[slot] * this.maxSequences + slot === id;
  }

  private describeMiss(id: number, slot: number): string {
    const generation = (id - slot) / this.maxSequences;
    const current = this.generation[slot];
    if (generation < current || (generation === current && this.live[slot] !== 1)) {
      return 'the sequence was freed (stale id)';
    }
    return 'no such sequence was created';
  }
}
