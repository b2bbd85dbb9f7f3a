// Runs one scheduled step's compute through every layer: for each layer, write the new tokens' K/V of
// every work item (writeKV), then one batched attend() over all items, then check the sampled outputs
// against the CPU reference. Invariants: K/V are written before the attend that reads them; Q/K/V come
// from qkv.ts so the reference sees exactly what the GPU got (K/V rounded to f16 for an f16 cache);
// attention bytes count the whole context each query row set reads (context × kvHeads × headDim × K+V);
// a checked output is compared row by row (at most MAX_ROWS_CHECKED rows of a long prefill chunk, always
// its first and last), and a must-check item is checked at the last layer.
import { roundToF16 } from '../kernels/f16';
import { attentionScale, bytesPerKvElement, type ModelShape } from './model-shape';
import { keyValueRows, queryRows } from './qkv';
import { referenceAttention } from './reference-attention';
import type { WorkItem } from './scheduler';
import type { SimCache } from './sim-cache';
import type { OutputLabel, Verifier } from './verifier';

/** Most query rows of one output compared with the reference (long prefill chunks are sampled). */
const MAX_ROWS_CHECKED = 8;

export interface StepExecution {
  attendMs: number;
  /** CPU time spent computing references and comparing (not part of serving). */
  verifyMs: number;
  attentionBytes: number;
  attentionCalls: number;
  verified: number;
}

export async function executeStep(
  cache: SimCache,
  step: number,
  work: readonly WorkItem[],
  shape: ModelShape,
  verifier: Verifier,
): Promise<StepExecution> {
  const result: StepExecution = { attendMs: 0, verifyMs: 0, attentionBytes: 0, attentionCalls: 0, verified: 0 };
  if (work.length === 0) return result;
  const scale = attentionScale(shape);
  const rowBytes = shape.numKvHeads * shape.headDim * 2 * bytesPerKvElement(shape);
  for (let layer = 0; layer < shape.numLayers; layer++) {
    for (const item of work) {
      const { k, v } = keyValueRows(item.tokens, item.start, item.end, layer, shape);
      await cache.writeKV(layer, item.sequenceId, item.start, k, v);
    }
    const queries = work.map((item) => queryRows(item.tokens, item.start, item.end, layer, shape));
    const t0 = performance.now();
    const outputs = await cache.attend(
      layer,
      work.map((item, i) => ({ seqId: item.sequenceId, q: queries[i]!, queryStart: item.start })),
      { scale },
    );
    result.attendMs += performance.now() - t0;
    result.attentionCalls++;
    for (const item of work) result.attentionBytes += item.end * rowBytes;
    if (outputs.length !== work.length) {
      throw new Error(`attend() returned ${outputs.length} outputs for ${work.length} entries (layer ${layer}, step ${step})`);
    }
    const v0 = performance.now();
    const lastLayer = layer === shape.numLayers - 1;
    work.forEach((item, i) => {
      if (!verifier.shouldCheck(item.mustCheck && lastLayer)) return;
      checkOutput(verifier, step, layer, item, queries[i]!, outputs[i]!, shape, scale);
      result.verified++;
    });
    result.verifyMs += performance.now() - v0;
  }
  return result;
}

/** Query rows of a chunk that are compared: all of a short chunk, else first, last and evenly spaced. */
export function rowsToCheck(numRows: number): number[] {
  if (numRows <= MAX_ROWS_CHECKED) return Array.from({ length: numRows }, (_, i) => i);
  return Array.from({ length: MAX_ROWS_CHECKED }, (_, i) => Math.round((i * (numRows - 1)) / (MAX_ROWS_CHECKED - 1)));
}

function checkOutput(
  verifier: Verifier,
  step: number,
  layer: number,
  item: WorkItem,
  q: Float32Array,
  out: Float32Array,
  shape: ModelShape,
  scale: number,
): void {
  const rowFloats = shape.numQueryHeads * shape.headDim;
  const numRows = item.end - item.start;
  const rows = out.length === numRows * rowFloats ? rowsToCheck(numRows) : [];
  const label: OutputLabel = {
    step,
    layer,
    requestId: item.requestId,
    sequenceId: item.sequenceId,
    positions: rows.map((r) => item.start + r),
    numQueryHeads: shape.numQueryHeads,
    headDim: shape.headDim,
  };
  if (rows.length === 0) {
    verifier.check(label, out, new Float32Array(numRows * rowFloats)); // throws: wrong output size
    return;
  }
  const context = keyValueRows(item.tokens, 0, item.end, layer, shape);
  const k = shape.kvDtype === 'f16' ? roundToF16(context.k) : context.k;
  const v = shape.kvDtype === 'f16' ? roundToF16(context.v) : context.v;
  const got = new Float32Array(rows.length * rowFloats);
  const expected = new Float32Array(rows.length * rowFloats);
  rows.forEach((row, i) => {
    const qRow = q.subarray(row * rowFloats, (row + 1) * rowFloats);
    expected.set(referenceAttention({ q: qRow, queryStart: item.start + row, k, v, scale }, shape), i * rowFloats);
    got.set(out.subarray(row * rowFloats, (row + 1) * rowFloats), i * rowFloats);
  });
  verifier.check(label, got, expected);
}
