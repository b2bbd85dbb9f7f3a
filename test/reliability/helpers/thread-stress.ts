// The multi-thread stress run shared by test/reliability/threads.test.ts (bounded for CI) and
// bench/threads-stress.ts (full size): N worker threads run PrefixOperator workloads on one shared
// table + prefix index, then the main thread checks that nothing leaked and reports throughput and the
// lock's hold and wait statistics.
// Invariants checked: every worker's periodic checkInvariants passed; at the end no sequence, pin or
// used block remains, only evictable cached blocks (free + evictable = total); clear() returns every
// block to the free list; no lock wait timed out.
import { PrefixCache } from '../../../src/prefix/prefix-cache';
import type { LockStats } from '../../../src/table/spin-lock';
import { assert, assertEqual } from './assert';
import { firstMessage, releaseWhenArrived, spawnTsWorker } from '../../helpers/workers';

export interface StressOptions {
  threads: number;
  operations: number;
  checkEvery?: number;
}

export interface StressReport {
  counts: Record<string, number>;
  lock: LockStats;
  seconds: number;
  opsPerSecond: number;
  summary: string;
}

interface WorkerReport {
  counts: Record<string, number>;
  checks: number;
  ms: number;
}

export async function runThreadStress(options: StressOptions): Promise<StressReport> {
  const { threads, operations } = options;
  const checkEvery = options.checkEvery ?? Math.max(1000, Math.floor(operations / 20));
  const cache = PrefixCache.create({ numBlocks: 1024, blockSize: 4, maxSequences: 128, maxBlocksPerSequence: 16 }, { timeoutMs: 60_000 });
  const content = new Float64Array(new SharedArrayBuffer(8 * cache.table.config.numBlocks));
  const barrier = new Int32Array(new SharedArrayBuffer(8));
  const workers = Array.from({ length: threads }, (_, index) =>
    spawnTsWorker(new URL('../../prefix/workers/prefix-ops-worker.ts', import.meta.url), {
      handle: cache.handle, content, index, operations, checkEvery, barrier,
      seedFactor: 7919, maxOwn: 6, clearRate: 0.00002, lockTimeoutMs: 60_000,
    }),
  );
  try {
    const reports = Promise.all(workers.map((w, i) => firstMessage<WorkerReport>(w, `worker ${i}`)));
    reports.catch(() => undefined);
    await releaseWhenArrived(barrier, threads, reports);
    const started = performance.now();
    const results = await reports;
    const seconds = (performance.now() - started) / 1000;

    const counts: Record<string, number> = {};
    for (const r of results) {
      assertEqual(r.checks, Math.floor(operations / checkEvery), 'periodic invariant checks per worker');
      for (const [k, n] of Object.entries(r.counts)) counts[k] = (counts[k] ?? 0) + n;
    }
    // Everything was freed by its owner: only evictable cached blocks remain, then clear() frees them.
    cache.checkInvariants();
    const t = cache.table.stats();
    const p = cache.stats();
    assertEqual([t.sequences, t.blocksUsed, p.protected], [0, 0, 0], 'sequences, used blocks and protected blocks left');
    assertEqual(t.blocksFree + p.evictable, t.blocksTotal, 'free + evictable blocks');
    cache.clear();
    cache.checkInvariants();
    assertEqual(cache.table.stats().blocksFree, t.blocksTotal, 'free blocks after clear()');
    const lock = cache.table.lockStats();
    assert(lock.heldBy === 0, `the lock is still held by agent ${lock.heldBy}`);
    const total = threads * operations;
    const us = (x: number) => `${(x * 1000).toFixed(1)} µs`;
    const summary =
      `threads: ${threads} × ${operations} operations = ${total} in ${seconds.toFixed(1)} s ` +
      `(${Math.round(total / seconds)} ops/s, slowest thread ${(Math.max(...results.map((r) => r.ms)) / 1000).toFixed(1)} s); ` +
      `lock: ${lock.acquisitions} acquisitions, ${lock.contended} contended (${((100 * lock.contended) / lock.acquisitions).toFixed(1)} %), ` +
      `wait (contended) mean ${lock.waitMeanMs.toFixed(3)} ms max ${lock.waitMaxMs.toFixed(1)} ms, ` +
      `hold mean ${us(lock.holdMeanMs)} max ${lock.holdMaxMs.toFixed(2)} ms over ${lock.holdSamples} sampled holds, ` +
      `${lock.timeouts} timeouts; operations ${JSON.stringify(counts)}`;
    return { counts, lock, seconds, opsPerSecond: total / seconds, summary };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
