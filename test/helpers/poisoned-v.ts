// The NaN/∞-in-V scenario of the README's bad-input guarantee, for caches attending on subgroup matrices
// (a masked key has p = 0, and a matrix P·V would add 0 · NaN = NaN to the rows of a step that do not
// attend it). Invariant checked: the queries before the poisoned position, of every head, equal the
// reference over the clean K/V.
import type { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { queryRows } from '../reliability/helpers/kv-content';
import { mismatches, SequenceModel } from '../reliability/helpers/sequence-model';

export interface PoisonedVCase {
  heads: { numKvHeads: number; numQueryHeads: number; headDim: number };
  blockSize: number;
  /** Tokens of the one sequence (all prefilled in one attend call). */
  length: number;
  /** The position whose V is NaN for kv head 0 and +∞ (beyond f16) for the others; its K stays finite. */
  poisoned: number;
  tolerance: { atol: number; rtol: number };
}

/** Runs the case on an empty one-layer `cache`; returns the mismatches of the queries before `poisoned` (none expected). */
export async function poisonedVMismatches(cache: PagedKVCache, c: PoisonedVCase): Promise<string[]> {
  const { heads, blockSize, poisoned } = c;
  const tokens = Array.from({ length: c.length }, (_, i) => (i * 7) % 11);
  const id = cache.createSequence({ tokens }).id;
  const model = new SequenceModel({ ...heads, numLayers: 1, blockSize }, '', tokens);
  const ids = model.contentFor(0, tokens.length, 0);
  await cache.writeKV(0, id, 0, model.rows(0, ids, 0), model.rows(0, ids, 1));
  model.write(0, 0, ids);
  const v = new Float32Array(heads.numKvHeads * heads.headDim).map((_, i) => (i < heads.headDim ? NaN : 1e6));
  await cache.writeKV(0, id, poisoned, model.rows(0, model.contentFor(poisoned, 1, 0), 0), v);
  const qRow = heads.numQueryHeads * heads.headDim;
  const q = queryRows(poisoned, tokens.length, qRow);
  const [out] = await cache.attend(0, [{ seqId: id, q, queryStart: 0 }]);
  const expected = model.expectedAttention(0, q, 0, poisoned, 1 / Math.sqrt(heads.headDim));
  cache.free(id);
  return mismatches(out!.subarray(0, poisoned * qRow), expected, c.tolerance.atol, c.tolerance.rtol);
}
