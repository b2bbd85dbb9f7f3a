// Shape of a block table. Invariants checked here, once, so the rest of the module can trust them:
// every field is a positive safe integer; block ids (and the free-list sentinel numBlocks) fit in an
// Int32; a block-table index, a token-slot index and a sequence length fit in an Int32; sequence ids `slot + maxSequences × generation` stay
// below 2^53 for every 31-bit generation.
import { ConfigError } from '../errors';

export interface BlockTableConfig {
  /** KV-cache blocks in the pool. */
  readonly numBlocks: number;
  /** Token slots per block. */
  readonly blockSize: number;
  /** Sequences that may be live at once (rows of the block table). */
  readonly maxSequences: number;
  /** Blocks one sequence may hold (columns of the block table). */
  readonly maxBlocksPerSequence: number;
}

const INT32_MAX = 0x7fffffff;
/** maxSequences × 2^31 must stay a safe integer so every sequence id is exact. */
export const MAX_SEQUENCES = 1 << 22;

export function validateConfig(config: unknown): BlockTableConfig {
  if (typeof config !== 'object' || config === null) {
    throw new ConfigError(`Block table config must be an object, got ${config === null ? 'null' : typeof config}.`);
  }
  const c = config as Record<string, unknown>;
  const numBlocks = positiveInteger(c, 'numBlocks', INT32_MAX - 1);
  const blockSize = positiveInteger(c, 'blockSize', INT32_MAX);
  const maxSequences = positiveInteger(c, 'maxSequences', MAX_SEQUENCES);
  const maxBlocksPerSequence = positiveInteger(c, 'maxBlocksPerSequence', INT32_MAX);
  if (maxSequences * maxBlocksPerSequence > INT32_MAX) {
    throw new ConfigError(
      `maxSequences × maxBlocksPerSequence = ${maxSequences * maxBlocksPerSequence} exceeds ${INT32_MAX}; ` +
        'the block table would not be indexable. Lower one of them.',
    );
  }
  if (maxBlocksPerSequence * blockSize > INT32_MAX) {
    throw new ConfigError(
      `maxBlocksPerSequence × blockSize = ${maxBlocksPerSequence * blockSize} tokens exceeds ${INT32_MAX}; ` +
        'sequence lengths would not fit an Int32. Lower one of them.',
    );
  }
  if (numBlocks * blockSize > INT32_MAX) {
    throw new ConfigError(
      `numBlocks × blockSize = ${numBlocks * blockSize} token slots exceeds ${INT32_MAX}. Lower numBlocks or blockSize.`,
    );
  }
  return Object.freeze({ numBlocks, blockSize, maxSequences, maxBlocksPerSequence });
}

function positiveInteger(c: Record<string, unknown>, key: keyof BlockTableConfig, max: number): number {
  const value = c[key];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new ConfigError(
      `Block table config field ${key} must be an integer in 1..${max}, got ${typeof value === 'number' ? value : typeof value}.`,
    );
  }
  return value;
}
