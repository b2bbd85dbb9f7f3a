// Callers waiting for free blocks. Invariants: a waiter retries its whole operation (a synchronous
// critical section) on every wake-up, so no decision is made on a stale "is there room?" answer; a
// waiter is settled exactly once — by success, by a non-OutOfBlocks error, by its timeout (TimeoutError)
// or by its AbortSignal (AbortError) — and removed from the set when settled. Releases made by other
// threads are noticed by polling every `pollMs` while anyone waits.
import { AbortError, TimeoutError } from '../errors';
import { OutOfBlocksError } from '../table/errors';

export interface WaitOptions {
  /** Give up after this many milliseconds with TimeoutError (default: wait forever). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface Waiter {
  attempt(): boolean;
  fail(error: Error): void;
}

export class BlockWaiters {
  private readonly waiters = new Set<Waiter>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly pollMs: number;

  constructor(pollMs = 5) {
    this.pollMs = pollMs;
  }

  get size(): number {
    return this.waiters.size;
  }

  /** Runs `operation` now; if it throws OutOfBlocksError, runs it again whenever blocks may have freed. */
  run<T>(operation: () => T, options: WaitOptions = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let timeout: ReturnType<typeof setTimeout> | undefined;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        this.waiters.delete(waiter);
        if (timeout !== undefined) clearTimeout(timeout);
        options.signal?.removeEventListener('abort', onAbort);
        this.updateTimer();
        fn();
      };
      const onAbort = (): void => finish(() => reject(new AbortError('waiting for free KV blocks was aborted')));
      const waiter: Waiter = {
        fail: (error) => finish(() => reject(error)),
        attempt: () => {
          try {
            const value = operation();
            finish(() => resolve(value));
            return true;
          } catch (error) {
            if (error instanceof OutOfBlocksError) return false;
            finish(() => reject(error));
            return true;
          }
        },
      };
      if (options.signal?.aborted) return onAbort();
      if (waiter.attempt()) return;
      this.waiters.add(waiter);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      if (options.timeoutMs !== undefined) {
        timeout = setTimeout(
          () => finish(() => reject(new TimeoutError(`no KV blocks became free within ${options.timeoutMs} ms; free sequences or enlarge the pool`))),
          options.timeoutMs,
        );
      }
      this.updateTimer();
    });
  }

  /** Lets waiters retry, oldest first (FIFO fairness), after blocks were released. */
  notify(): void {
    for (const waiter of [...this.waiters]) waiter.attempt();
  }

  /** Rejects every waiter (the cache was destroyed or its device lost). */
  rejectAll(makeError: () => Error): void {
    for (const waiter of [...this.waiters]) waiter.fail(makeError());
  }

  private updateTimer(): void {
    if (this.waiters.size > 0 && this.timer === undefined) {
      this.timer = setInterval(() => this.notify(), this.pollMs);
      (this.timer as { unref?: () => void }).unref?.();
    } else if (this.waiters.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
