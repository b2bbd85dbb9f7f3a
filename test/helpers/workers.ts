// Worker-thread helpers of the multi-thread tests. Invariants: a TypeScript entry runs in its thread
// through test/table/workers/bootstrap.mjs (which registers the TypeScript loader there); a start
// barrier is an Int32Array [ready count, go flag] in shared memory — each worker counts itself in and
// sleeps until the host raises the flag, so every workload starts at the same moment.
import { Worker } from 'node:worker_threads';

const BOOTSTRAP = new URL('../table/workers/bootstrap.mjs', import.meta.url);

/** Starts the TypeScript module `entry` in a worker thread with `data` as its workerData.data. */
export function spawnTsWorker(entry: URL, data: unknown): Worker {
  return new Worker(BOOTSTRAP, { workerData: { entry: entry.href, data } });
}

/** The worker's first message; rejects if it fails or exits before sending one. */
export function firstMessage<T>(worker: Worker, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`${what} exited with code ${code} before reporting`)));
  });
}

/** Worker side: counts this worker in, then waits for the go flag. */
export function arriveAndWait(barrier: Int32Array): void {
  Atomics.add(barrier, 0, 1);
  Atomics.notify(barrier, 0);
  while (Atomics.load(barrier, 1) === 0) Atomics.wait(barrier, 1, 0, 1000);
}

/**
 * Host side: waits until `count` workers have arrived, then raises the go flag. Rejects as soon as
 * `failure` does (a worker that dies before arriving would otherwise be waited for forever).
 */
export async function releaseWhenArrived(barrier: Int32Array, count: number, failure: Promise<unknown>): Promise<void> {
  while (Atomics.load(barrier, 0) < count) {
    await Promise.race([failure, new Promise((resolve) => setTimeout(resolve, 5))]);
  }
  Atomics.store(barrier, 1, 1);
  Atomics.notify(barrier, 1);
}
