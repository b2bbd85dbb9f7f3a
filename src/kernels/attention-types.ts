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
  /**
   * Global id of the block holding position queryStart + numQueries − 1 (the entry's last query
   * position). Given, the kernels take that block from here instead of the block table, whose copy on
   * the GPU need not hold it yet (the cache defers uploading a row's last block: a decode step's new
   * blocks reach the GPU in the entries' work list). Omitted, every block comes from the table.
   */
  lastBlock?: number;
}

export interface AttentionBatchShape {
  blockSize: number;
  rowStride: number;
  /** Rows of the block table (sequence slots). */
  maxSequences: number;
  /** Rows available in q and in out. */
  queryRows: number;
}

function requireInt(entry: number, field: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new InvalidArgumentError(`entries[${entry}].${field} must be an integer ≥ ${min} (got ${value})`);
  }
}

/**
 * Throws InvalidArgumentError for the first entry that breaks the invariants above. Allocation-free
 * unless the q/out rows arrive out of order (then one sorted copy checks them for overlap).
 */
export function validateEntries(entries: readonly AttentionEntry[], shape: AttentionBatchShape): void {
  const capacity = shape.rowStride * shape.blockSize;
  let ordered = true;
  let previousEnd = 0;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    requireInt(i, 'seqSlot', e.seqSlot, 0);
    requireInt(i, 'numQueries', e.numQueries, 1);
    requireInt(i, 'queryStart', e.queryStart, 0);
    requireInt(i, 'contextLength', e.contextLength, 1);
    requireInt(i, 'qRow', e.qRow, 0);
    if (e.lastBlock !== undefined && !(Number.isInteger(e.lastBlock) && e.lastBlock >= 0 && e.lastBlock < 0xffffffff)) {
      throw new InvalidArgumentError(`entries[${i}].lastBlock must be a block id (an integer ≥ 0) or omitted (got ${e.lastBlock})`);
    }
    if (e.seqSlot >= shape.maxSequences) {
      throw new InvalidArgumentError(`entries[${i}].seqSlot ${e.seqSlot} is outside the block table (${shape.maxSequences} rows)`);
    }
    if (e.queryStart + e.numQueries > e.contextLength) {
      throw new InvalidArgumentError(
        `entries[${i}]: queries reach position ${e.queryStart + e.numQueries - 1} but contextLength is ${e.contextLength}; ` +
          'write K/V for every query position before attention',
      );
    }
    if (e.contextLength > capacity) {
      throw new InvalidArgumentError(
        `entries[${i}].contextLength ${e.contextLength} exceeds one block-table row (${shape.rowStride} blocks × ${shape.blockSize} tokens)`,
      );
    }
    if (e.qRow + e.numQueries > shape.queryRows) {
      throw new InvalidArgumentError(
        `entries[${i}] uses q/out rows up to ${e.qRow + e.numQueries - 1} but q and out hold ${shape.queryRows} rows`,
      );
    }
    if (e.qRow < previousEnd) ordered = false;
    previousEnd = e.qRow + e.numQueries;
  }
  if (ordered) return; // rows ascending and disjoint
  const rows = entries.map((e) => [e.qRow, e.qRow + e.numQueries] as const).sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < rows.length; i++) {
    if (rows[i]![0] < rows[i - 1]![1]) {
      throw new InvalidArgumentError(`two entries write the same q/out row ${rows[i]![0]}; give every entry its own rows`);
    }
  }
}
