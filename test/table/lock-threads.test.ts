// The lock across real threads: mutual exclusion under contention, and a holder that hangs or dies is
// reported as LockTimeoutError instead of hanging the other threads.
import type { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { BlockTable } from '../../src/table/block-table';
import { LockTimeoutError } from '../../src/table/errors';
import { SpinLock } from '../../src/table/spin-lock';
import { releaseWhenArrived, spawnTsWorker } from '../helpers/workers';

function outcome<T>(worker: Worker): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

function timeoutOf(call: () => unknown): LockTimeoutError {
  try {
    call();
  } catch (error) {
    expect(error).toBeInstanceOf(LockTimeoutError);
    return error as LockTimeoutError;
  }
  throw new Error('expected LockTimeoutError');
}

describe('lock across threads', () => {
  it.each(['auto', 'spin'] as const)('4 workers + the main thread never lose an increment (%s waiting)', async (waitStrategy) => {
    const buffer = new SharedArrayBuffer(256);
    const lock = new SpinLock(new Int32Array(buffer, 0, 16), new Float64Array(buffer, 64, 8), { timeoutMs: 30_000 });
    const counter = new Float64Array(buffer, 128, 2);
    const increments = waitStrategy === 'spin' ? 10_000 : 40_000;
    const workers = Array.from({ length: 4 }, () => spawnTsWorker(new URL('./workers/counter-worker.ts', import.meta.url), { buffer, increments, waitStrategy }));
    const results = Promise.all(workers.map((w) => outcome<{ agentId: number }>(w)));
    results.catch(() => undefined);
    const barrier = new Int32Array(buffer, 160, 2);
    await releaseWhenArrived(barrier, workers.length, results);
    let finished = false;
    void results.finally(() => {
      finished = true;
    });
    let mainIncrements = 0;
    while (!finished) {
      // the main thread competes both synchronously and through lockAsync
      for (let i = 0; i < 50; i++) {
        lock.withLock(() => {
          counter[0] = counter[0] + 1;
        });
      }
      await lock.withLockAsync(() => {
        counter[0] = counter[0] + 1;
      });
      mainIncrements += 51;
      await new Promise((resolve) => setImmediate(resolve));
    }
    const reports = await results;
    expect(counter[0]).toBe(4 * increments + mainIncrements);
    expect(new Set([...reports.map((r) => r.agentId), lock.agentId]).size).toBe(5); // distinct owners
    const stats = lock.stats();
    expect(stats.acquisitions).toBe(4 * increments + mainIncrements);
    expect(stats.contended).toBeGreaterThan(0);
    expect(stats.timeouts).toBe(0);
    expect(stats.heldBy).toBe(0);
  });

  it('a worker that hangs holding the lock → LockTimeoutError on the other threads', async () => {
    const table = BlockTable.create({ numBlocks: 8, blockSize: 4, maxSequences: 4, maxBlocksPerSequence: 2 });
    const worker = spawnTsWorker(new URL('./workers/lock-holder-worker.ts', import.meta.url), { handle: table.handle, mode: 'hang' });
    try {
      const { agentId } = await outcome<{ agentId: number }>(worker);
      const impatient = BlockTable.attach(table.handle, { timeoutMs: 150 });
      const start = performance.now();
      const error = timeoutOf(() => impatient.createSequence([1]));
      expect(performance.now() - start).toBeLessThan(3000);
      expect(error.ownerAgentId).toBe(agentId);
      expect(error.message).toMatch(/150 ms/);
      timeoutOf(() => BlockTable.attach(table.handle, { timeoutMs: 50, waitStrategy: 'spin' }).stats());
      await expect(impatient.batchAsync(() => impatient.stats())).rejects.toBeInstanceOf(LockTimeoutError);
      const lockStats = impatient.lockStats(); // readable while the lock is stuck
      expect(lockStats.heldBy).toBe(agentId);
      expect(lockStats.timeouts).toBe(3);
    } finally {
      await worker.terminate();
    }
  });

  it('a worker that dies holding the lock → LockTimeoutError, not a hang', async () => {
    const table = BlockTable.create({ numBlocks: 8, blockSize: 4, maxSequences: 4, maxBlocksPerSequence: 2 });
    const worker = spawnTsWorker(new URL('./workers/lock-holder-worker.ts', import.meta.url), { handle: table.handle, mode: 'die' });
    const exitCode = new Promise<number>((resolve) => worker.once('exit', resolve));
    const { agentId } = await outcome<{ agentId: number }>(worker);
    expect(await exitCode).toBe(7);
    const survivor = BlockTable.attach(table.handle, { timeoutMs: 100 });
    const error = timeoutOf(() => survivor.free(0));
    expect(error.ownerAgentId).toBe(agentId);
    await expect(survivor.batchAsync(() => 1)).rejects.toBeInstanceOf(LockTimeoutError);
  });
});
