// Worker thread of the multi-thread prefix tests (test/prefix/threads.test.ts and the 16-thread stress
// of test/reliability): attaches the shared table and index, waits at a start barrier, runs a random
// create-with-prefix / write / append / fork / pin / free / clear workload (PrefixOperator: reused K/V
// content is checked on every hit), checks every invariant periodically, frees everything it owns and
// reports its counts and the workload's wall time.
import { parentPort, workerData } from 'node:worker_threads';
import { PrefixCache, type PrefixCacheHandle } from '../../../src/prefix/prefix-cache';
import { PrefixOperator } from '../prefix-operator';
import { arriveAndWait } from '../../helpers/workers';

interface PrefixWorkerData {
  handle: PrefixCacheHandle;
  content: Float64Array;
  index: number;
  operations: number;
  checkEvery: number;
  /** [ready count, go flag] */
  barrier: Int32Array;
  /** Workload knobs (defaults: the prefix test's). */
  seedFactor?: number;
  maxOwn?: number;
  clearRate?: number;
  lockTimeoutMs?: number;
}

const data = (workerData as { data: PrefixWorkerData }).data;
const cache = PrefixCache.attach(data.handle, { timeoutMs: data.lockTimeoutMs ?? 30_000 });
const operator = new PrefixOperator(cache, {
  seed: (data.seedFactor ?? 31) * (data.index + 1),
  content: data.content,
  maxOwn: data.maxOwn ?? 8,
  clearRate: data.clearRate ?? 0.0005,
});

arriveAndWait(data.barrier);
const started = performance.now();
let checks = 0;
for (let i = 1; i <= data.operations; i++) {
  operator.step();
  if (i % data.checkEvery === 0) {
    cache.checkInvariants();
    operator.verifyAll();
    checks++;
  }
}
operator.verifyAll();
operator.freeAll();
parentPort?.postMessage({ counts: operator.counts, checks, ms: performance.now() - started });
