// The multi-thread stress run shared by test/reliability/threads.test.ts (bounded for CI) and
// bench/threads-stress.ts (full size): N worker threads run PrefixOperator workloads on one shared
// table + prefix index, then the main thread checks that nothing leaked and reports throughput and the
// lock's hold and wait statistics. Meanwhile the main thread keeps up to three GPU reads open on the
// table, part of the time (begun and ended in random order, as submissions of a decode loop), so the
// workers' frees, copies and adoptions are deferred then and released by the main thread's endRead.
// Invariants checked: every worker's periodic checkInvariants passed (deferred references included);
// some drops were deferred; at the end, every read ended, no sequence, pin, deferred or used block
// remains, only evictable cached blocks (free + evictable = total); clear() returns every block to the
// free list; no lock wait timed out.
import { PrefixCache } from '../../../src/prefix/prefix-cache';
import type { LockStats } from '../../../src/table/spin-lock';
import { assert, assertEqual } from './assert';
import { firstMessage, releaseWhenArrived, spawnTsWorker } from '../../helpers/workers';
import { rng } from '../../table/rng';

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
    const reading = { stop: false, begun: 0, deferredSeen: 0 };
    const open: Array<{ epoch: number; slots: number[] }> = [];
    const endRead = (i: number): void => {
      const [ended] = open.splice(i, 1);
      cache.table.endRead(open.length > 0 ? Math.min(...open.map((r) => r.epoch)) - 1 : ended!.epoch, ended!.slots);
    };
    const reader = (async () => {
      const random = rng(4242);
      while (!reading.stop) {
        if (open.length === 0 ? random() < 0.5 : open.length < 3 && random() < 0.3) {
          // A read of half the slots, picked at random (the rows of a decode batch).
          const slots = Array.from({ length: cache.table.config.maxSequences }, (_, s) => s).filter(() => random() < 0.5);
          open.push({ epoch: cache.table.beginRead(slots), slots });
          reading.begun++;
        } else if (open.length > 0) {
          endRead(Math.floor(random() * open.length));
        }
        reading.deferredSeen = Math.max(reading.deferredSeen, cache.table.stats().blocksDeferred);
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    })();
    const results = await reports.finally(() => (reading.stop = true));
    await reader;
    while (open.length > 0) endRead(open.length - 1);
    const seconds = (performance.now() - started) / 1000;
    assert(reading.begun > 0 && reading.deferredSeen > 0, `GPU reads begun ${reading.begun}, most blocks deferred at once ${reading.deferredSeen}`);
    assertEqual([cache.table.stats().readsOpen, cache.table.stats().blocksDeferred], [0, 0], 'reads open and blocks deferred after the last read ended');

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
      `${lock.timeouts} timeouts; ${reading.begun} GPU reads on the main thread (up to ${reading.deferredSeen} blocks deferred at once); ` +
      `operations ${JSON.stringify(counts)}`;
    return { counts, lock, seconds, opsPerSecond: total / seconds, summary };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
