// Per sequence slot, in shared memory: which namespace the sequence caches its blocks under and how many
// of its leading blocks are registered. Invariants (under the table lock): the state of slot s belongs to
// the sequence whose id is slotOwner[s]; asked about any other id it reads as "not cached" (a slot reused
// outside the prefix cache never inherits another sequence's namespace); an owned slot with a namespace
// holds one reference on that namespace entry, dropped by release() — or when the slot is next opened,
// if its sequence was freed without the prefix cache knowing.
import { NO_NAMESPACE, REGISTRATION_CLOSED, type IndexViews } from './layout';

export class SlotStates {
  private readonly owner: Float64Array;
  private readonly namespace: Int32Array;
  private readonly registered: Int32Array;

  constructor(v: IndexViews) {
    this.owner = v.slotOwner;
    this.namespace = v.slotNamespace;
    this.registered = v.slotRegistered;
  }

  /**
   * Claims slot `slot` for sequence `id` in namespace `ns` with `registered` leading blocks registered.
   * Returns the namespace a previous owner still held (the caller drops that reference), or NO_NAMESPACE.
   */
  open(slot: number, id: number, ns: number, registered: number): number {
    const stale = this.owner[slot] >= 0 && this.owner[slot] !== id ? this.namespace[slot] : NO_NAMESPACE;
    this.owner[slot] = id;
    this.namespace[slot] = ns;
    this.registered[slot] = ns === NO_NAMESPACE ? REGISTRATION_CLOSED : registered;
    return stale;
  }

  namespaceOf(slot: number, id: number): number {
    return this.owner[slot] === id ? this.namespace[slot] : NO_NAMESPACE;
  }

  /** Leading registered blocks of `id`, or REGISTRATION_CLOSED. */
  registeredOf(slot: number, id: number): number {
    return this.owner[slot] === id ? this.registered[slot] : REGISTRATION_CLOSED;
  }

  setRegistered(slot: number, count: number): void {
    this.registered[slot] = count;
  }

  /** The sequence stops registering blocks (it overwrote registered positions, or the index was cleared). */
  close(slot: number): void {
    this.registered[slot] = REGISTRATION_CLOSED;
  }

  /** Forgets slot `slot` of sequence `id`; returns the namespace it held (or NO_NAMESPACE). */
  release(slot: number, id: number): number {
    const ns = this.owner[slot] === id ? this.namespace[slot] : NO_NAMESPACE;
    if (this.owner[slot] === id) {
      this.owner[slot] = -1;
      this.namespace[slot] = NO_NAMESPACE;
      this.registered[slot] = REGISTRATION_CLOSED;
    }
    return ns;
  }

  /** Owner id of a slot (-1 = none). */
  ownerOf(slot: number): number {
    return this.owner[slot];
  }

  /** Raw namespace of a slot, whoever owns it. */
  rawNamespace(slot: number): number {
    return this.namespace[slot];
  }

  rawRegistered(slot: number): number {
    return this.registered[slot];
  }
}
