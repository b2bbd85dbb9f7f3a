// Typed errors of the block table and its lock. Every one extends PagedAttentionError and carries a stable
// `code`. Invariant: a table operation that throws any of these (except InvariantError, which reports
// state that was already corrupt) has changed nothing — it checks everything before it mutates.
import { PagedAttentionError } from '../errors';

/** The pool cannot supply the blocks an operation needs (copy-on-write copies included). */
export class OutOfBlocksError extends PagedAttentionError {
  /** Blocks the operation needed. */
  readonly requested: number;
  /** Blocks that could have been supplied: free ones plus evictable cached ones. */
  readonly available: number;
  constructor(requested: number, available: number, total: number) {
    super(
      'OUT_OF_BLOCKS',
      `Out of KV-cache blocks: the operation needs ${requested} block(s) but only ${available} of ${total} ` +
        'are free or evictable. Free finished sequences (free(id)), release pinned blocks (releaseBlocks), ' +
        'or raise numBlocks (the KV-cache memory budget).',
    );
    this.requested = requested;
    this.available = available;
  }
}

/** The sequence id was never issued, or the sequence has been freed (stale id). */
export class UnknownSequenceError extends PagedAttentionError {
  readonly sequenceId: unknown;
  constructor(sequenceId: unknown, reason: string) {
    super('UNKNOWN_SEQUENCE', `Unknown sequence id ${String(sequenceId)}: ${reason}.`);
    this.sequenceId = sequenceId;
  }
}

/** A token is not an integer in 0..2^32-1. */
export class InvalidTokenError extends PagedAttentionError {
  /** Index of the first offending token, or -1 when the token container itself is malformed. */
  readonly index: number;
  readonly value: unknown;
  constructor(index: number, value: unknown) {
    super(
      'INVALID_TOKEN',
      index < 0
        ? `Tokens must be an array-like of integers in 0..4294967295, got ${describe(value)}.`
        : `Token at index ${index} is ${describe(value)}; tokens must be integers in 0..4294967295.`,
    );
    this.index = index;
    this.value = value;
  }
}

/** The sequence would need more blocks than one block-table row holds. */
export class SequenceTooLongError extends PagedAttentionError {
  readonly requestedLength: number;
  readonly maxLength: number;
  constructor(requestedLength: number, maxLength: number) {
    super(
      'SEQUENCE_TOO_LONG',
      `A sequence of ${requestedLength} tokens exceeds the maximum of ${maxLength} ` +
        '(maxBlocksPerSequence × blockSize). Raise maxBlocksPerSequence or split the request.',
    );
    this.requestedLength = requestedLength;
    this.maxLength = maxLength;
  }
}

/** Every sequence slot is in use. */
export class TooManySequencesError extends PagedAttentionError {
  readonly maxSequences: number;
  constructor(maxSequences: number) {
    super(
      'TOO_MANY_SEQUENCES',
      `All ${maxSequences} sequence slots are in use. Free finished sequences or raise maxSequences.`,
    );
    this.maxSequences = maxSequences;
  }
}

/** A block id is out of range or names a block that is not in use. */
export class InvalidBlockError extends PagedAttentionError {
  readonly blockId: unknown;
  constructor(blockId: unknown, reason: string) {
    super('INVALID_BLOCK', `Block ${String(blockId)} ${reason}.`);
    this.blockId = blockId;
  }
}

/** The table's bookkeeping is inconsistent (or a caller tried to release a reference it does not hold). */
export class InvariantError extends PagedAttentionError {
  constructor(message: string) {
    super('INVARIANT', `Block table invariant violated: ${message}`);
  }
}

/** The lock could not be acquired in time: another thread holds it for too long, hung, or died holding it. */
export class LockTimeoutError extends PagedAttentionError {
  readonly timeoutMs: number;
  /** Agent id of the holder when the wait gave up (0 when unknown). */
  readonly ownerAgentId: number;
  constructor(timeoutMs: number, ownerAgentId: number) {
    super(
      'LOCK_TIMEOUT',
      `Could not acquire the block-table lock within ${timeoutMs} ms; it is held by agent ${ownerAgentId}. ` +
        'A thread holding it has hung or died while inside a table operation; the shared table cannot be ' +
        'trusted any more — terminate the workers and create a new table.',
    );
    this.timeoutMs = timeoutMs;
    this.ownerAgentId = ownerAgentId;
  }
}

/** The calling thread already holds the lock (a nested table call from a hook or inside batch()). */
export class ReentrantLockError extends PagedAttentionError {
  constructor(agentId: number) {
    super(
      'LOCK_REENTRANT',
      `Agent ${agentId} tried to acquire the block-table lock it already holds. Table hooks (evictor, ` +
        'onRelease) must not call back into the table, and table calls inside batch() run without relocking.',
    );
  }
}

/** unlock() was called by a thread that does not hold the lock. */
export class LockNotHeldError extends PagedAttentionError {
  constructor(agentId: number, ownerAgentId: number) {
    super(
      'LOCK_NOT_HELD',
      `Agent ${agentId} released the block-table lock, but it is held by agent ${ownerAgentId}.`,
    );
  }
}

function describe(value: unknown): string {
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null) return 'null';
  return typeof value;
}
