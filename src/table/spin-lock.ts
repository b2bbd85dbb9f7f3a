// A mutex living in a SharedArrayBuffer, shared by every agent (thread) that attached the table.
//
// Lock words (Int32): STATE 0 = free, 1 = held, 2 = held and maybe waiters (Drepper's futex mutex);
// OWNER = agent id of the holder, 0 when free; TIMEOUTS counts waits that gave up (Atomics.add);
// PROBE is always 0 and is used to test whether this thread may block in Atomics.wait.
// Statistics (Float64): written only by the holder, so they are plain (non-atomic) stores ordered by the
// lock itself; stats() reads them without the lock (a snapshot that may be a few updates stale).
//
// Acquisition: one Atomics.compareExchange 0→1 when free. Otherwise a short spin, then sleeping in
// Atomics.wait on STATE with the time left until the deadline; on threads where Atomics.wait is forbidden
// (a browser main thread) it spins with try-lock instead, and lockAsync() waits with Atomics.waitAsync
// (or timers) without blocking. Every wait is bounded: past `timeoutMs` (default 5 s) it throws
// LockTimeoutError naming the holder, so a holder that hung or died is reported, never waited on forever.
//
// Lock order and why it cannot deadlock: there is exactly ONE lock for all block-table state. The
// prefix cache (src/prefix) shares it: its index lives in shared memory changed only inside the table's
// critical section (through the table's hooks or batch()/atomic()), and it takes no lock of its own.
// Critical sections are synchronous (nothing in this module awaits), so the lock is never held across
// an await. With a single lock there is no lock-order cycle
// between agents; the only remaining self-deadlock, an agent locking again while it holds the lock, is
// detected through OWNER and thrown as ReentrantLockError; and every wait has a timeout.
import { ConfigError } from '../errors';
import { AGENT_ID } from './agent-id';
import { LockNotHeldError, LockTimeoutError, ReentrantLockError } from './errors';

const STATE = 0;
const OWNER = 1;
const TIMEOUTS = 2;
const PROBE = 3;

const ACQUISITIONS = 0;
const CONTENDED = 1;
const WAIT_TOTAL_MS = 2;
const WAIT_MAX_MS = 3;
const HOLD_SAMPLES = 4;
const HOLD_TOTAL_MS = 5;
const HOLD_MAX_MS = 6;

export const DEFAULT_LOCK_TIMEOUT_MS = 5000;
const DEFAULT_HOLD_SAMPLE_INTERVAL = 64;
const DEFAULT_SPIN_TRIES = 200;

export interface SpinLockOptions {
  /** Longest wait for the lock before LockTimeoutError (ms, finite). Default 5000. */
  readonly timeoutMs?: number;
  /** 'auto': sleep in Atomics.wait where the thread allows it, else spin. 'spin': always spin. */
  readonly waitStrategy?: 'auto' | 'spin';
  /**
   * Time one hold in every N (a power of two). Reading the clock costs about as much as a whole table
   * operation, so holds are sampled; 1 times every hold. Waits are always timed. Default 64.
   */
  readonly holdSampleInterval?: number;
}

export interface LockStats {
  /** Successful acquisitions. */
  readonly acquisitions: number;
  /** Acquisitions that found the lock held and had to wait. */
  readonly contended: number;
  readonly waitTotalMs: number;
  readonly waitMaxMs: number;
  /** Mean over contended acquisitions. */
  readonly waitMeanMs: number;
  /** Holds that were timed (one in holdSampleInterval). */
  readonly holdSamples: number;
  readonly holdTotalMs: number;
  readonly holdMaxMs: number;
  readonly holdMeanMs: number;
  /** Waits that gave up with LockTimeoutError. */
  readonly timeouts: number;
  /** Agent id of the current holder, 0 when free. */
  readonly heldBy: number;
}

type WaitAsync = (
  array: Int32Array,
  index: number,
  value: number,
  timeoutMs: number,
) => { async: false; value: string } | { async: true; value: Promise<string> };

const waitAsync: WaitAsync | undefined = (Atomics as unknown as { waitAsync?: WaitAsync }).waitAsync;

/** Whether this thread may block in Atomics.wait (false on a browser main thread); probed once. */
let blockingWaitAllowed: boolean | undefined;

function probeBlockingWait(words: Int32Array): boolean {
  if (blockingWaitAllowed === undefined) {
    try {
      Atomics.wait(words, PROBE, 1, 0); // PROBE is 0, so this returns 'not-equal' at once where allowed
      blockingWaitAllowed = true;
    } catch {
      blockingWaitAllowed = false;
    }
  }
  return blockingWaitAllowed;
}

const now = (): number => performance.now();

export class SpinLock {
  /** This agent's id as written to OWNER. */
  readonly agentId: number = AGENT_ID;
  readonly timeoutMs: number;
  private readonly words: Int32Array;
  private readonly statWords: Float64Array;
  private readonly spinOnly: boolean;
  private readonly sampleMask: number;
  private sampleTick = 0;
  private holdStart = -1;

  /** `words` needs ≥ 4 Int32 and `stats` ≥ 7 Float64 elements of shared memory, zeroed before first use. */
  constructor(words: Int32Array, stats: Float64Array, options: SpinLockOptions = {}) {
    const timeoutMs = options.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new ConfigError(`Lock timeoutMs must be a finite number ≥ 0, got ${String(timeoutMs)}.`);
    }
    const interval = options.holdSampleInterval ?? DEFAULT_HOLD_SAMPLE_INTERVAL;
    if (!Number.isInteger(interval) || interval < 1 || interval > 1 << 30 || (interval & (interval - 1)) !== 0) {
      throw new ConfigError(`Lock holdSampleInterval must be a power of two ≥ 1, got ${String(interval)}.`);
    }
    const strategy = options.waitStrategy ?? 'auto';
    if (strategy !== 'auto' && strategy !== 'spin') {
      throw new ConfigError(`Lock waitStrategy must be 'auto' or 'spin', got ${String(strategy)}.`);
    }
    if (!(words.buffer instanceof SharedArrayBuffer) || words.length < 4 || stats.length < 7) {
      throw new ConfigError('SpinLock needs Int32 lock words and Float64 stats in a SharedArrayBuffer.');
    }
    this.words = words;
    this.statWords = stats;
    this.timeoutMs = timeoutMs;
    this.spinOnly = strategy === 'spin';
    this.sampleMask = interval - 1;
  }

  /** Acquires the lock, waiting at most timeoutMs. Throws ReentrantLockError if this agent holds it. */
  lock(): void {
    if (Atomics.compareExchange(this.words, STATE, 0, 1) !== 0) this.lockContended();
    this.acquired();
  }

  /** Acquires the lock if it is free; never waits. */
  tryLock(): boolean {
    if (Atomics.compareExchange(this.words, STATE, 0, 1) !== 0) {
      if (Atomics.load(this.words, OWNER) === this.agentId) throw new ReentrantLockError(this.agentId);
      return false;
    }
    this.acquired();
    return true;
  }

  /**
   * Acquires the lock without blocking the thread (Atomics.waitAsync, else timers). The lock is held
   * from the moment the promise settles until unlock(); other tasks of this agent that run before the
   * caller resumes would find it held (ReentrantLockError), so prefer withLockAsync, which runs its
   * critical section in the same job that acquires the lock.
   */
  lockAsync(): Promise<void> {
    return this.acquireAsyncThen(undefined);
  }

  /**
   * Counts a critical section entered without the lock by an owner no other agent can reach yet (see
   * BlockTable.handle): the acquisition statistics stay comparable; nothing is held.
   */
  countUnsharedAcquisition(): void {
    this.statWords[ACQUISITIONS] += 1;
  }

  /** Releases the lock. Throws LockNotHeldError if this agent does not hold it. */
  unlock(): void {
    const w = this.words;
    if (w[OWNER] !== this.agentId) throw new LockNotHeldError(this.agentId, Atomics.load(w, OWNER));
    if (this.holdStart >= 0) this.recordHold();
    w[OWNER] = 0;
    if (Atomics.exchange(w, STATE, 0) === 2) Atomics.notify(w, STATE, 1);
  }

  /** Runs a synchronous critical section. */
  withLock<T>(criticalSection: () => T): T {
    this.lock();
    try {
      return criticalSection();
    } finally {
      this.unlock();
    }
  }

  /**
   * Waits for the lock without blocking the thread, then runs a synchronous critical section; the
   * section starts in the same job that acquires the lock, so no other task of this agent interleaves.
   */
  withLockAsync<T>(criticalSection: () => T): Promise<T> {
    return this.acquireAsyncThen(criticalSection);
  }

  /** Whether this agent holds the lock. */
  get heldByMe(): boolean {
    return Atomics.load(this.words, STATE) !== 0 && Atomics.load(this.words, OWNER) === this.agentId;
  }

  stats(): LockStats {
    const s = this.statWords;
    const contended = s[CONTENDED];
    const holdSamples = s[HOLD_SAMPLES];
    return {
      acquisitions: s[ACQUISITIONS],
      contended,
      waitTotalMs: s[WAIT_TOTAL_MS],
      waitMaxMs: s[WAIT_MAX_MS],
      waitMeanMs: contended > 0 ? s[WAIT_TOTAL_MS] / contended : 0,
      holdSamples,
      holdTotalMs: s[HOLD_TOTAL_MS],
      holdMaxMs: s[HOLD_MAX_MS],
      holdMeanMs: holdSamples > 0 ? s[HOLD_TOTAL_MS] / holdSamples : 0,
      timeouts: Atomics.load(this.words, TIMEOUTS),
      heldBy: Atomics.load(this.words, OWNER),
    };
  }

  /** Acquires asynchronously, then (in the same job) runs and releases `criticalSection` if given. */
  private async acquireAsyncThen<T>(criticalSection: (() => T) | undefined): Promise<T> {
    if (!this.tryLock()) {
      const w = this.words;
      const start = now();
      const deadline = start + this.timeoutMs;
      while (Atomics.exchange(w, STATE, 2) !== 0) {
        const remaining = deadline - now();
        if (remaining <= 0) this.timedOut();
        if (waitAsync) {
          const result = waitAsync(w, STATE, 2, remaining);
          if (result.async) await result.value;
        } else {
          await new Promise<void>((resolve) => setTimeout(resolve, Math.min(remaining, 1)));
        }
      }
      this.acquired();
      this.recordWait(start);
    }
    if (criticalSection === undefined) return undefined as T;
    try {
      return criticalSection();
    } finally {
      this.unlock();
    }
  }

  private acquired(): void {
    this.words[OWNER] = this.agentId;
    this.statWords[ACQUISITIONS] += 1;
    this.holdStart = (++this.sampleTick & this.sampleMask) === 0 ? now() : -1;
  }

  private lockContended(): void {
    const w = this.words;
    if (Atomics.load(w, OWNER) === this.agentId) throw new ReentrantLockError(this.agentId);
    const start = now();
    // The holder usually leaves within a microsecond: spin briefly before sleeping.
    for (let i = 0; i < DEFAULT_SPIN_TRIES; i++) {
      if (Atomics.load(w, STATE) === 0 && Atomics.compareExchange(w, STATE, 0, 1) === 0) {
        this.recordWait(start);
        return;
      }
    }
    const deadline = start + this.timeoutMs;
    if (!this.spinOnly && probeBlockingWait(w)) {
      while (Atomics.exchange(w, STATE, 2) !== 0) {
        const remaining = deadline - now();
        if (remaining <= 0) this.timedOut();
        Atomics.wait(w, STATE, 2, remaining);
      }
    } else {
      for (let i = 1; Atomics.compareExchange(w, STATE, 0, 1) !== 0; i++) {
        if ((i & 1023) === 0 && now() >= deadline) this.timedOut();
      }
    }
    this.recordWait(start);
  }

  /** Called with the lock held. */
  private recordWait(start: number): void {
    const waited = now() - start;
    const s = this.statWords;
    s[CONTENDED] += 1;
    s[WAIT_TOTAL_MS] += waited;
    if (waited > s[WAIT_MAX_MS]) s[WAIT_MAX_MS] = waited;
  }

  /** Called with the lock held. */
  private recordHold(): void {
    const held = now() - this.holdStart;
    const s = this.statWords;
    s[HOLD_SAMPLES] += 1;
    s[HOLD_TOTAL_MS] += held;
    if (held > s[HOLD_MAX_MS]) s[HOLD_MAX_MS] = held;
    this.holdStart = -1;
  }

  private timedOut(): never {
    Atomics.add(this.words, TIMEOUTS, 1);
    throw new LockTimeoutError(this.timeoutMs, Atomics.load(this.words, OWNER));
  }
}
