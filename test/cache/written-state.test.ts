// WrittenState.markWrittenLayersMin against the calls it combines (minOverLayers, markWrittenLayers,
// minOverLayers) on a twin state: the same random writes, gaps, partial layer lists and reused slots must
// leave both states equal and report the same minimum before and after. Pure CPU.
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
