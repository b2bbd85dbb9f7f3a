// Public surface of the block table module.
export { BlockTable } from './block-table';
export type { AppendResult, BlockCopy, BlockTableHandle, BlockTableOptions, BlockTableStats } from './block-table';
export type { BlockTableConfig } from './config';
export type { Evictor, ReleaseHook, ReviveHook } from './hooks';
export { SpinLock, DEFAULT_LOCK_TIMEOUT_MS } from './spin-lock';
export type { LockStats, SpinLockOptions } from './spin-lock';
export {
  InvalidBlockError,
  InvalidTokenError,
  InvariantError,
  LockNotHeldError,
  LockTimeoutError,
  OutOfBlocksError,
  ReentrantLockError,
  SequenceTooLongError,
  TooManySequencesError,
  UnknownSequenceError,
} from './errors';
