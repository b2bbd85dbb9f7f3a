// Worker thread of the 16-thread stress test: attaches the shared table + prefix index, waits at a start
// barrier, runs a random create-with-prefix / write / append / fork / pin / free / clear workload
// (PrefixOperator: reused K/V content is checked on every hit), checks every invariant periodically
// under the table lock, frees what it owns and reports its counts and timing.
import { parentPort, workerData } from 'node:worker_threads';
import { PrefixCache, type PrefixCacheHandle } from '../../../src/prefix/prefix-cache';
import { PrefixOperator } from '../../prefix/prefix-operator';

interface StressWorkerData {
  handle: PrefixCacheHandle;
  content: Float64Array;
  index: number;
  operations: number;
  checkEvery: number;
  /** [ready count, go flag] */
  barrier: Int32Array;
}

const data = (workerData as { data: StressWorkerData }).data;
const cache = PrefixCache.attach(data.handle, { timeoutMs: 60_000 });
const operator = new PrefixOperator(cache, { seed: 7919 * (data.index + 1), content: data.content, maxOwn: 6, clearRate: 0.00002 });

Atomics.add(data.barrier, 0, 1);
Atomics.notify(data.barrier, 0);
while (Atomics.load(data.barrier, 1) === 0) Atomics.wait(data.barrier, 1, 0, 1000);

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
