// SpinLock behaviour on one thread. Another holder is simulated by writing the lock words directly
// (STATE = 0, OWNER = 1); real cross-thread behaviour is in lock-threads.test.ts.
import { describe, expect, it } from 'vitest';
import { LockNotHeldError, LockTimeoutError, ReentrantLockError } from '../../src/table/errors';
import { SpinLock, type SpinLockOptions } from '../../src/table/spin-lock';

const STATE = 0;
const OWNER = 1;
const FOREIGN_AGENT = 0x1234567;

function makeLock(options: SpinLockOptions = {}): { lock: SpinLock; words: Int32Array } {
  const buffer = new SharedArrayBuffer(256);
  const words = new Int32Array(buffer, 0, 16);
  return { lock: new SpinLock(words, new Float64Array(buffer, 64, 8), options), words };
}

function holdAsForeignAgent(words: Int32Array): void {
  Atomics.store(words, STATE, 1);
  Atomics.store(words, OWNER, FOREIGN_AGENT);
}

function releaseAsForeignAgent(words: Int32Array): void {
  Atomics.store(words, OWNER, 0);
  if (Atomics.exchange(words, STATE, 0) === 2) Atomics.notify(words, STATE, 1);
}

describe('SpinLock', () => {
  it('lock/unlock set and clear the state and owner words', () => {
    const { lock, words } = makeLock();
    expect(lock.agentId).toBeGreaterThan(0);
    lock.lock();
    expect(words[STATE]).toBe(1);
    expect(words[OWNER]).toBe(lock.agentId);
    expect(lock.heldByMe).toBe(true);
    lock.unlock();
    expect(words[STATE]).toBe(0);
    expect(words[OWNER]).toBe(0);
    expect(lock.heldByMe).toBe(false);
    expect(lock.withLock(() => 42)).toBe(42);
    expect(words[STATE]).toBe(0);
  });

  it('detects re-entrance instead of deadlocking', async () => {
    const { lock, words } = makeLock({ timeoutMs: 10_000 });
    lock.lock();
    expect(() => lock.lock()).toThrow(ReentrantLockError);
    expect(() => lock.tryLock()).toThrow(ReentrantLockError);
    await expect(lock.lockAsync()).rejects.toBeInstanceOf(ReentrantLockError);
    expect(() => lock.withLock(() => lock.withLock(() => 1))).toThrow(ReentrantLockError);
    expect(words[OWNER]).toBe(lock.agentId); // still held by the outer lock()
    lock.unlock();
    expect(words[STATE]).toBe(0);
  });

  it('unlock by a thread that does not hold the lock → LockNotHeldError', () => {
    const { lock, words } = makeLock();
    expect(() => lock.unlock()).toThrow(LockNotHeldError);
    holdAsForeignAgent(words);
    expect(() => lock.unlock()).toThrow(LockNotHeldError);
    expect(words[STATE]).toBe(1); // untouched
  });

  it('tryLock fails while another agent holds the lock', () => {
    const { lock, words } = makeLock();
    holdAsForeignAgent(words);
    expect(lock.tryLock()).toBe(false);
    releaseAsForeignAgent(words);
    expect(lock.tryLock()).toBe(true);
    lock.unlock();
  });

  it.each(['auto', 'spin'] as const)('a lock held too long → LockTimeoutError (%s waiting)', (waitStrategy) => {
    const { lock, words } = makeLock({ timeoutMs: 50, waitStrategy });
    holdAsForeignAgent(words);
    const start = performance.now();
    let error: unknown;
    try {
      lock.lock();
    } catch (e) {
      error = e;
    }
    const waited = performance.now() - start;
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect((error as LockTimeoutError).ownerAgentId).toBe(FOREIGN_AGENT);
    expect((error as LockTimeoutError).timeoutMs).toBe(50);
    expect((error as LockTimeoutError).code).toBe('LOCK_TIMEOUT');
    expect(waited).toBeGreaterThanOrEqual(45);
    expect(waited).toBeLessThan(2000);
    expect(lock.stats()).toMatchObject({ timeouts: 1, heldBy: FOREIGN_AGENT, acquisitions: 0 });
    // once released, the lock works again
    releaseAsForeignAgent(words);
    lock.lock();
    lock.unlock();
  });

  it('lockAsync waits without blocking and wakes when the holder releases', async () => {
    const { lock, words } = makeLock({ timeoutMs: 5000 });
    holdAsForeignAgent(words);
    let acquired = false;
    const pending = lock.lockAsync().then(() => {
      acquired = true;
    });
    // the event loop keeps running while lockAsync waits
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(acquired).toBe(false);
    releaseAsForeignAgent(words);
    await pending;
    expect(acquired).toBe(true);
    expect(words[OWNER]).toBe(lock.agentId);
    lock.unlock();
    expect(lock.stats().contended).toBe(1);
    expect(lock.stats().waitTotalMs).toBeGreaterThan(20);
  });

  it('lockAsync times out with LockTimeoutError', async () => {
    const { lock, words } = makeLock({ timeoutMs: 40 });
    holdAsForeignAgent(words);
    await expect(lock.withLockAsync(() => 1)).rejects.toBeInstanceOf(LockTimeoutError);
    expect(lock.stats().timeouts).toBe(1);
  });

  it('records acquisitions and hold times (every hold when holdSampleInterval is 1)', () => {
    const { lock } = makeLock({ holdSampleInterval: 1 });
    for (let i = 0; i < 10; i++) {
      lock.withLock(() => {
        const until = performance.now() + 0.2;
        while (performance.now() < until);
      });
    }
    const s = lock.stats();
    expect(s.acquisitions).toBe(10);
    expect(s.holdSamples).toBe(10);
    expect(s.holdTotalMs).toBeGreaterThanOrEqual(2);
    expect(s.holdMaxMs).toBeGreaterThanOrEqual(0.2);
    expect(s.holdMeanMs).toBeCloseTo(s.holdTotalMs / 10, 10);
    expect(s.contended).toBe(0);
    const sampled = makeLock({ holdSampleInterval: 4 }).lock;
    for (let i = 0; i < 12; i++) sampled.withLock(() => undefined);
    expect(sampled.stats()).toMatchObject({ acquisitions: 12, holdSamples: 3 });
  });
});
