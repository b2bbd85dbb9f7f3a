// WrittenState against a plain per-layer model (every call, random order, reused slots: each layer's
// written length, the minimum and maximum over layers after every call), and markWrittenLayersMin
// against the calls it combines (minOverLayers, markWrittenLayers, minOverLayers) on a twin state: the
// same random writes, gaps, partial layer lists and reused slots must leave both states equal and report
// the same minimum before and after. Pure CPU.
import { describe, expect, it } from 'vitest';
import { WrittenState } from '../../src/cache/written-state';
import { rng as seeded } from '../table/rng';

const SLOTS = 4, LAYERS = 6;

/** Integers in [0, n) and shuffles from a seeded generator. */
function random(seed: number): { int(n: number): number; shuffle(a: number[]): number[] } {
  const next = seeded(seed);
  const int = (n: number): number => Math.floor(next() * n);
  return {
    int,
    shuffle(a) {
      for (let i = a.length - 1; i > 0; i--) {
        const j = int(i + 1);
        [a[i], a[j]] = [a[j]!, a[i]!];
      }
      return a;
    },
  };
}

/** The written lengths as plain per-layer arrays: what WrittenState must answer. */
class PlainWritten {
  private readonly rows = new Map<number, { id: number; written: number[] }>();
  constructor(private readonly layers: number) {}
  private row(slot: number, id: number): number[] {
    let row = this.rows.get(slot);
    if (row?.id !== id) {
      row = { id, written: new Array<number>(this.layers).fill(0) };
      this.rows.set(slot, row);
    }
    return row.written;
  }
  get(slot: number, id: number, layer: number): number {
    const row = this.rows.get(slot);
    return row?.id === id ? row.written[layer]! : 0;
  }
  min(slot: number, id: number): number {
    const row = this.rows.get(slot);
    return row?.id === id ? Math.min(...row.written) : 0;
  }
  max(slot: number, id: number): number {
    const row = this.rows.get(slot);
    return row?.id === id ? Math.max(...row.written) : 0;
  }
  reset(slot: number, id: number, length: number): void {
    this.rows.set(slot, { id, written: new Array<number>(this.layers).fill(length) });
  }
  copy(parentSlot: number, parentId: number, childSlot: number, childId: number): void {
    this.rows.set(childSlot, { id: childId, written: Array.from({ length: this.layers }, (_, l) => this.get(parentSlot, parentId, l)) });
  }
  mark(slot: number, id: number, layers: readonly number[], start: number, end: number): void {
    const row = this.row(slot, id);
    for (const l of layers) if (start <= row[l]! && end > row[l]!) row[l] = end;
  }
  clamp(slot: number, id: number, length: number): void {
    const row = this.rows.get(slot);
    if (row?.id === id) row.written = row.written.map((w) => Math.min(w, length));
  }
  release(slot: number): void {
    this.rows.delete(slot);
  }
}

describe('WrittenState', () => {
  it('answers as per-layer lengths would, after every call, with the minimum and maximum over layers', () => {
    const rng = random(20261124);
    const state = WrittenState.create(SLOTS, LAYERS);
    const plain = new PlainWritten(LAYERS);
    const ids = [-1, -1, -1, -1]; // the live id of each slot (-1: free)
    let nextId = 0;
    const seen = { decodeCommits: 0, floorRaisedByOne: 0, clamps: 0, copies: 0 };
    const allLayers = Array.from({ length: LAYERS }, (_, l) => l);
    for (let step = 0; step < 6000; step++) {
      const slot = rng.int(SLOTS);
      const op = rng.int(100);
      let id = ids[slot]!;
      if (id < 0 || op < 3) {
        // A new sequence in the slot, with some positions already written (a cached prefix) or none.
        id = ids[slot] = nextId++;
        const length = rng.int(2) === 0 ? 0 : rng.int(40);
        state.reset(slot, id, length);
        plain.reset(slot, id, length);
      } else if (op < 5) {
        state.release(slot);
        plain.release(slot);
        ids[slot] = -1;
      } else if (op < 8) {
        const child = (slot + 1 + rng.int(SLOTS - 1)) % SLOTS;
        ids[child] = nextId++;
        state.copy(slot, id, child, ids[child]!);
        plain.copy(slot, id, child, ids[child]!);
        seen.copies++;
      } else if (op < 12) {
        const length = Math.max(0, plain.max(slot, id) - rng.int(20));
        state.clamp(slot, id, length);
        plain.clamp(slot, id, length);
        seen.clamps++;
      } else {
        // Writes near the floor, near some layer's length, or anywhere (gaps and rewrites change nothing).
        const kind = rng.int(3);
        // (kind 0: a layer at the minimum, so that single-layer writes move the minimum too)
        const layer = kind === 0 ? allLayers.find((l) => plain.get(slot, id, l) === plain.min(slot, id))! : rng.int(LAYERS);
        const base = kind === 0 ? plain.min(slot, id) : kind === 1 ? plain.get(slot, id, layer) : rng.int(60);
        const start = Math.max(0, base - rng.int(3));
        const end = start + 1 + rng.int(4);
        const how = rng.int(3);
        if (how === 0) {
          const before = plain.min(slot, id);
          state.markWritten(slot, id, layer, start, end);
          plain.mark(slot, id, [layer], start, end);
          if (plain.min(slot, id) > before) seen.floorRaisedByOne++;
        } else {
          const layers = how === 1 ? rng.shuffle([...allLayers]) : rng.shuffle([...allLayers]).slice(0, rng.int(LAYERS));
          if (layers.length === LAYERS && start <= plain.min(slot, id) && end > plain.min(slot, id)) seen.decodeCommits++;
          const want = { before: plain.min(slot, id), after: 0 };
          plain.mark(slot, id, layers, start, end);
          want.after = plain.min(slot, id);
          expect({ ...state.markWrittenLayersMin(slot, id, layers, start, end) }).toEqual(want);
        }
      }
      // Every slot, as its live id and as an id it never held: layers, then minimum and maximum.
      const answers = (w: { get(s: number, id: number, l: number): number; min(s: number, id: number): number; max(s: number, id: number): number }) =>
        ids.flatMap((live, s) => (live >= 0 ? [live, nextId + 7] : [nextId + 7]).flatMap((probe) => [...allLayers.map((l) => w.get(s, probe, l)), w.min(s, probe), w.max(s, probe)]));
      expect(answers({ get: (s, i, l) => state.get(s, i, l), min: (s, i) => state.minOverLayers(s, i), max: (s, i) => state.maxOverLayers(s, i) })).toEqual(answers(plain));
    }
    // Each kind of call ran often enough to matter (the counts at this seed: 794, 81, 251, 174).
    expect(seen.decodeCommits).toBeGreaterThan(400);
    expect(seen.floorRaisedByOne).toBeGreaterThan(40);
    expect(seen.clamps).toBeGreaterThan(150);
    expect(seen.copies).toBeGreaterThan(100);
  });
});

describe('WrittenState.markWrittenLayersMin', () => {
  it('matches minOverLayers + markWrittenLayers + minOverLayers over random writes', () => {
    const rng = random(20261123);
    const combined = WrittenState.create(SLOTS, LAYERS);
    const reference = WrittenState.create(SLOTS, LAYERS);
    const ids = [0, 1, 2, 3]; // slot s holds sequence ids[s]; a new id reuses the slot
    let nextId = 4;
    let fullLists = 0, partialLists = 0, maxAfter = 0;
    for (let step = 0; step < 4000; step++) {
      const slot = rng.int(SLOTS);
      if (rng.int(20) === 0) {
        ids[slot] = nextId++;
        continue; // the next write to the slot claims it for the new id (reset to 0)
      }
      const id = ids[slot]!;
      const all = rng.int(2) === 0;
      const layers = all
        ? rng.shuffle(Array.from({ length: LAYERS }, (_, l) => l))
        : rng.shuffle(Array.from({ length: LAYERS }, (_, l) => l)).slice(0, rng.int(LAYERS));
      if (layers.length === LAYERS) fullLists++;
      else partialLists++;
      // Mostly contiguous with what is written (it grows), sometimes a gap (no change) or a rewrite.
      const at = reference.minOverLayers(slot, id) + rng.int(3) - 1;
      const start = Math.max(0, at);
      const end = start + 1 + rng.int(3);
      const want = { before: reference.minOverLayers(slot, id), after: 0 };
      reference.markWrittenLayers(slot, id, layers, start, end);
      want.after = reference.minOverLayers(slot, id);
      const got = combined.markWrittenLayersMin(slot, id, layers, start, end);
      expect({ ...got }).toEqual(want);
      maxAfter = Math.max(maxAfter, got.after);
      for (let s = 0; s < SLOTS; s++) {
        for (let l = 0; l < LAYERS; l++) expect(combined.get(s, ids[s]!, l)).toBe(reference.get(s, ids[s]!, l));
      }
    }
    expect(fullLists).toBeGreaterThan(1000);
    expect(partialLists).toBeGreaterThan(1000);
    expect(maxAfter).toBeGreaterThan(10); // the writes did advance every layer of some sequence
  });
});
