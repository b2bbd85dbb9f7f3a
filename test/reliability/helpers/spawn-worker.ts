// Starts a TypeScript module of test/reliability/workers in a worker thread, through the shared
// bootstrap (test/table/workers/bootstrap.mjs registers the TypeScript loader in that thread).
import { Worker } from 'node:worker_threads';

export function spawnReliabilityWorker(entry: string, data: unknown): Worker {
  return new Worker(new URL('../../table/workers/bootstrap.mjs', import.meta.url), {
    workerData: { entry: new URL(`../workers/${entry}`, import.meta.url).href, data },
  });
}

/** The worker's first message; rejects if it fails or exits before sending one. */
export function firstMessage<T>(worker: Worker, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`${what} exited with code ${code} before reporting`)));
  });
}
