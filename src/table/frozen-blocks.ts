// Checks for the operations that share frozen blocks (blocks a prefix index registered). They run under
// the table lock and only read, so an operation can validate everything before it mutates. Invariants
// they enforce: only a full block (filled = blockSize) that is frozen and not free can be shared; a block
// adopted in place of a sequence's own block holds exactly its token ids. Prefix blocks given to
// createSequence are not re-compared token by token here: the prefix index found each of them by an
// exact compare of its parent and every token, in the same critical section (a second compare would
// double the cost of the lookup).
import { InvalidArgumentError } from '../errors';
import { InvalidBlockError } from './errors';
import { BlockState, type TableViews } from './layout';

/** True when `b` holds exactly tokens[from .. from + blockSize). */
export function blockHoldsTokens(v: TableViews, blockSize: number, b: number, tokens: ArrayLike<number>, from: number): boolean {
  const stored = v.tokens;
  const base = b * blockSize;
  if (tokens instanceof Uint32Array) {
    for (let j = 0; j < blockSize; j++) if (stored[base + j] !== tokens[from + j]) return false;
  } else {
    for (let j = 0; j < blockSize; j++) if (stored[base + j] !== tokens[from + j]) return false;
  }
  return true;
}

/** A frozen, full block that is not free (cached or in use); else InvalidBlockError. */
export function checkShareable(v: TableViews, blockSize: number, b: number): void {
  if (v.frozen[b] !== 1) throw new InvalidBlockError(b, 'is not frozen; only blocks registered in a prefix index can be shared');
  if (v.state[b] === BlockState.FREE) throw new InvalidBlockError(b, 'is free but frozen (corrupt table)');
  if (v.filled[b] !== blockSize) throw new InvalidBlockError(b, `holds ${v.filled[b]} of ${blockSize} tokens; only full blocks can be shared`);
}

/**
 * Checks that the first `k` blocks of a prompt of `n` tokens may be the frozen blocks `prefix`: k whole
 * blocks fit in the prompt and each is shareable (the caller matched their tokens exactly).
 */
export function checkPrefixBlocks(v: TableViews, blockSize: number, prefix: ArrayLike<number>, k: number, n: number): void {
  if (k * blockSize > n) {
    throw new InvalidArgumentError(`${k} prefix block(s) hold ${k * blockSize} tokens, more than the prompt's ${n}`);
  }
  const { frozen, state, filled } = v;
  for (let i = 0; i < k; i++) {
    const b = prefix[i];
    if (frozen[b] !== 1 || state[b] === BlockState.FREE || filled[b] !== blockSize) checkShareable(v, blockSize, b); // throws
  }
}

/** The column of a full block of a sequence of `length` tokens; else InvalidArgumentError. */
export function checkFullBlockIndex(index: unknown, length: number, blockSize: number): number {
  const full = Math.floor(length / blockSize);
  if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= full) {
    throw new InvalidArgumentError(
      `block index ${String(index)} is not a full block of a ${length}-token sequence (full blocks are 0..${full - 1})`,
    );
  }
  return index;
}
