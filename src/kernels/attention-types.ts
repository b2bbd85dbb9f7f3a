// Shared description of one attention batch, used by the GPU kernels and the CPU reference.
// Invariants: query i of an entry sits at position queryStart + i and attends keys 0..queryStart + i
// (causal); keys are read only through row `seqSlot` of the block table; contextLength ≥ queryStart +
// numQueries and contextLength ≤ rowStride × blockSize; the rows [qRow, qRow + numQueries) of q/out
// belong to this entry alone.
import { InvalidArgumentError } from '../errors';

export interface AttentionEntry {
  /** Row of the block table that maps this sequence's logical blocks to global block ids. */
  seqSlot: number;
  /** Tokens whose K/V are in the cache for this sequence (positions 0..contextLength-1). */
  contextLength: number;
  /** Position of the first query of this entry (the cached prefix length for chunked prefill). */
  queryStart: number;
  /** Number of query positions (1 = decode). */
  numQueries: number;
  /** First row of q / out used by this entry. */
  qRow: number;
}

export interface AttentionBatchShape {
  blockSize: number;
  rowStride: number;
  /** Rows of the block table (sequence slots). */
  maxSequences: number;
  /** Rows available in q and in out. */
  queryRows: number;
}

function requireInt(what: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new InvalidArgumentError(`${what} must be an integer ≥ ${min} (got ${value})`);
  }
}

/** Throws InvalidArgumentError for the first entry that breaks the invariants above. */
export function validateEntries(entries: readonly AttentionEntry[], shape: AttentionBatchShape): void {
  const rows: Array<[number, number]> = [];
  entries.forEach((e, i) => {
    const at = `entries[${i}]`;
    requireInt(`${at}.seqSlot`, e.seqSlot, 0);
    requireInt(`${at}.numQueries`, e.numQueries, 1);
    requireInt(`${at}.queryStart`, e.queryStart, 0);
    requireInt(`${at}.contextLength`, e.contextLength, 1);
    requireInt(`${at}.qRow`, e.qRow, 0);
    if (e.seqSlot >= shape.maxSequences) {
      throw new InvalidArgumentError(`${at}.seqSlot ${e.seqSlot} is outside the block table (${shape.maxSequences} rows)`);
    }
    if (e.queryStart + e.numQueries > e.contextLength) {
      throw new InvalidArgumentError(
        `${at}: queries reach position ${e.queryStart + e.numQueries - 1} but contextLength is ${e.contextLength}; ` +
          'write K/V for every query position before attention',
      );
    }
    const capacity = shape.rowStride * shape.blockSize;
    if (e.contextLength > capacity) {
      throw new InvalidArgumentError(
        `${at}.contextLength ${e.contextLength} exceeds one block-table row (${shape.rowStride} blocks × ${shape.blockSize} tokens)`,
      );
    }
    if (e.qRow + e.numQueries > shape.queryRows) {
      throw new InvalidArgumentError(
        `${at} uses q/out rows up to ${e.qRow + e.numQueries - 1} but q and out hold ${shape.queryRows} rows`,
      );
    }
    rows.push([e.qRow, e.qRow + e.numQueries]);
  });
  rows.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < rows.length; i++) {
    if (rows[i]![0] < rows[i - 1]![1]) {
      throw new InvalidArgumentError(`two entries write the same q/out row ${rows[i]![0]}; give every entry its own rows`);
    }
  }
}
