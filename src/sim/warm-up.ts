// Builds the GPU pipelines before the timed run: one tiny sequence is prefilled (prefill kernel),
// decoded one token (decode kernel), forked and appended into its shared tail (copy-on-write), then
// freed. Invariants: leaves no live sequence behind; its three tokens (outside the workload's
// vocabulary) fill no block unless blockSize ≤ 2; returns the seconds it took.
import { attentionScale, type ModelShape } from './model-shape';
import { keyValueRows, queryRows } from './qkv';
import type { SimCache } from './sim-cache';

/** Token ids no workload of vocabSize < 2^32 − 4 produces. */
const WARM_UP_TOKENS = [0xfffffffe, 0xfffffffd];

export async function warmUp(cache: SimCache, shape: ModelShape): Promise<number> {
  const t0 = performance.now();
  const scale = attentionScale(shape);
  const seq = cache.createSequence({ tokens: WARM_UP_TOKENS });
  const ids = [seq.id];
  try {
    const tokens = [...WARM_UP_TOKENS];
    const kv = keyValueRows(tokens, 0, 2, 0, shape);
    await cache.writeKV(0, seq.id, 0, kv.k, kv.v);
    await cache.attend(0, [{ seqId: seq.id, q: queryRows(tokens, 0, 2, 0, shape), queryStart: 0 }], { scale });
    const child = cache.fork(seq.id);
    ids.push(child);
    tokens.push(0xfffffffc);
    const position = cache.appendTokens(child, [tokens[2]!]);
    const next = keyValueRows(tokens, position, position + 1, 0, shape);
    await cache.writeKV(0, child, position, next.k, next.v);
    await cache.attend(0, [{ seqId: child, q: queryRows(tokens, position, position + 1, 0, shape), queryStart: position }], { scale });
  } finally {
    for (const id of ids) cache.free(id);
  }
  return (performance.now() - t0) / 1000;
}
