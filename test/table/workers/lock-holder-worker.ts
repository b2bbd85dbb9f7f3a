// Worker that takes the table lock and then hangs or dies while holding it.
import { parentPort, workerData } from 'node:worker_threads';
import { BlockTable, type BlockTableHandle } from '../../../src/table/block-table';

const { handle, mode } = (workerData as { data: { handle: BlockTableHandle; mode: 'hang' | 'die' } }).data;
const table = BlockTable.attach(handle);
table.batch(() => {
  table.createSequence([1, 2, 3]); // half-way through some work
  parentPort?.postMessage({ holding: true, agentId: table.lockStats().heldBy });
  if (mode === 'die') process.exit(7);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // hangs until terminated
});
