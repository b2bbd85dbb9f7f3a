// Starts a TypeScript module in a worker thread, through workers/bootstrap.mjs.
import { Worker } from 'node:worker_threads';

/** `entry` is a path relative to test/table/workers/, e.g. 'random-ops-worker.ts'. */
export function spawnTsWorker(entry: string, data: unknown): Worker {
  return new Worker(new URL('./workers/bootstrap.mjs', import.meta.url), {
    workerData: { entry: new URL(`./workers/${entry}`, import.meta.url).href, data },
  });
}
