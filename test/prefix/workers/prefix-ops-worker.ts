// Worker thread for the multi-thread prefix test: attaches the shared table and index, waits at a start
// barrier, runs a random create-with-prefix / write / fork / free workload (checking reused K/V content
// and, periodically, every invariant), frees everything it owns and reports its counts.
import { parentPort, workerData } from 'node:worker_threads';
import { PrefixCache, type PrefixCacheHandle } from '../../../src/prefix/prefix-cache';
import { PrefixOperator } from '../prefix-operator';

interface PrefixWorkerData {
  handle: PrefixCacheHandle;
  content: Float64Array;
  index: number;
  operations: number;
  checkEvery: number;
  /** [ready count, go flag] */
  barrier: Int32Array;
}

const data = (workerData as { data: PrefixWorkerData }).data;
const cache = PrefixCache.attach(data.handle, { timeoutMs: 30_000 });
const operator = new PrefixOperator(cache, { seed: 31 * (data.index + 1), content: data.content, maxOwn: 8, clearRate: 0.0005 });

Atomics.add(data.barrier, 0, 1);
Atomics.notify(data.barrier, 0);
while (Atomics.load(data.barrier, 1) === 0) Atomics.wait(data.barrier, 1, 0, 1000);

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
parentPort?.postMessage({ counts: operator.counts, checks });
