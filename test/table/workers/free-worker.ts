// Worker for the GPU-read test: attaches the shared table and frees the given sequence, then reports
// what its free() released.
import { parentPort, workerData } from 'node:worker_threads';
import { BlockTable, type BlockTableHandle } from '../../../src/table/block-table';

const { handle, id } = (workerData as { data: { handle: BlockTableHandle; id: number } }).data;
const table = BlockTable.attach(handle, { timeoutMs: 30_000 });
parentPort?.postMessage({ released: table.free(id) });
