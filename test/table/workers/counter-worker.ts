// Worker for the mutual-exclusion test: increments a plain (non-atomic) shared counter under the lock,
// with a read-modify-write spread over several statements so unprotected increments would be lost.
import { workerData, parentPort } from 'node:worker_threads';
import { SpinLock } from '../../../src/table/spin-lock';
import { arriveAndWait } from '../../helpers/workers';

interface CounterWorkerData {
  buffer: SharedArrayBuffer;
  increments: number;
  waitStrategy: 'auto' | 'spin';
}

const { buffer, increments, waitStrategy } = (workerData as { data: CounterWorkerData }).data;
const lock = new SpinLock(new Int32Array(buffer, 0, 16), new Float64Array(buffer, 64, 8), { waitStrategy, timeoutMs: 30_000 });
const counter = new Float64Array(buffer, 128, 2);
const barrier = new Int32Array(buffer, 160, 2); // [ready, go]

arriveAndWait(barrier);

for (let i = 0; i < increments; i++) {
  lock.lock();
  const value = counter[0];
  counter[1] = value; // widen the window between read and write
  counter[0] = counter[1] + 1;
  lock.unlock();
}
parentPort?.postMessage({ agentId: lock.agentId });
