// Entry point of the test workers: registers the TypeScript loader in this thread (a `--import tsx`
// in Worker execArgv is not applied to worker threads on Node 20), then runs the worker module named
// by workerData.entry.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
