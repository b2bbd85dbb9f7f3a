// Worker that attaches a cache's block table, takes its lock and hangs inside the critical section
// (until terminated), after telling the main thread its agent id.
import { parentPort, workerData } from 'node:worker_threads';
import { BlockTable, type BlockTableHandle } from '../../../src/table/block-table';

const { handle } = (workerData as { data: { handle: BlockTableHandle } }).data;
const table = BlockTable.attach(handle);
table.batch(() => {
  parentPort?.postMessage({ agentId: table.lockStats().heldBy });
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
});
