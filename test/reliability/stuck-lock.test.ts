// A stuck lock seen through the whole cache (test/table/lock-threads.test.ts covers the bare table): a
// worker thread attaches a PagedKVCache's table and hangs holding its lock. Every cache call on the main
// thread — synchronous ones, async ones, and a caller already waiting for blocks — must end with a
// LockTimeoutError naming the holder within about lockTimeoutMs, never hang; the lock statistics stay
// readable; the cache can still be destroyed.
import { describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { LockTimeoutError } from '../../src/table/errors';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { firstMessage, spawnTsWorker } from '../helpers/workers';

failOnUncapturedGpuErrors();

const LOCK_TIMEOUT_MS = 100;
const options = { numLayers: 1, numKvHeads: 1, numQueryHeads: 2, headDim: 8, blockSize: 4, numBlocks: 3, lockTimeoutMs: LOCK_TIMEOUT_MS } as const;

async function timing(call: () => unknown): Promise<{ error: unknown; ms: number }> {
  const started = performance.now();
  try {
    await call();
    return { error: undefined, ms: performance.now() - started };
  } catch (error) {
    return { error, ms: performance.now() - started };
  }
}

describe('a thread that hangs holding the cache’s lock', () => {
  it('turns every call into a prompt LockTimeoutError naming the holder', async () => {
    const { device } = await testGpu();
    const cache = await PagedKVCache.create(device, options);
    const a = cache.createSequence({ tokens: [1, 2, 3, 4, 5, 6, 7, 8] }).id;
    cache.createSequence({ tokens: [5, 5, 5, 5] }); // the pool is full
    const row = new Float32Array(8 * 8).fill(0.5);
    await cache.writeKV(0, a, 0, row, row);
    const waiting = timing(() => cache.appendTokensAsync(a, [9])); // waits for a block
    const worker = spawnTsWorker(new URL('./workers/lock-hang-worker.ts', import.meta.url), { handle: cache.table.handle });
    try {
      const { agentId } = await firstMessage<{ agentId: number }>(worker, 'lock holder');
      const q = new Float32Array(16);
      const calls: Array<[string, () => unknown]> = [
        ['createSequence', () => cache.createSequence({ tokens: [1] })],
        ['appendTokens', () => cache.appendTokens(a, [1])],
        ['appendTokensAsync', () => cache.appendTokensAsync(a, [1])],
        ['createSequenceAsync', () => cache.createSequenceAsync({ tokens: [3] })],
        ['fork', () => cache.fork(a)],
        ['free', () => cache.free(a)],
        ['writeKV', () => cache.writeKV(0, a, 0, row.subarray(0, 8), row.subarray(0, 8))],
        ['readKV', () => cache.readKV(0, a)],
        ['attend', () => cache.attend(0, [{ seqId: a, q }])],
        ['stats', () => cache.stats()],
        ['blockMap', () => cache.blockMap()],
        ['checkInvariants', () => cache.checkInvariants()],
      ];
      for (const [name, call] of calls) {
        const { error, ms } = await timing(call);
        expect(error, name).toBeInstanceOf(LockTimeoutError);
        expect((error as LockTimeoutError).ownerAgentId, name).toBe(agentId);
        expect(ms, name).toBeLessThan(20 * LOCK_TIMEOUT_MS);
      }
      const pending = await waiting; // the caller that was already waiting is woken with the error too
      expect(pending.error).toBeInstanceOf(LockTimeoutError);
      const stats = cache.table.lockStats(); // readable without the lock
      expect(stats.heldBy).toBe(agentId);
      expect(stats.timeouts).toBeGreaterThanOrEqual(calls.length);
      console.log(`stuck lock: ${calls.length + 1} calls each failed with LockTimeoutError after ≈${LOCK_TIMEOUT_MS} ms; lock timeouts counted ${stats.timeouts}`);
    } finally {
      await worker.terminate();
    }
    // The holder died holding the lock: still a timeout, not a hang; destroy() needs no lock.
    expect((await timing(() => cache.createSequence({ tokens: [1] }))).error).toBeInstanceOf(LockTimeoutError);
    cache.destroy();
  });
});
