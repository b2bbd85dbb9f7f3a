// Worker thread for the multi-thread test: attaches the shared table, waits at a start barrier, runs a
// random workload, checks invariants periodically (under the table lock), and reports what it owns.
import { parentPort, workerData } from 'node:worker_threads';
import { BlockTable, type BlockTableHandle } from '../../../src/table/block-table';
import { RandomOperator } from '../random-operator';
import { arriveAndWait } from '../../helpers/workers';

interface RandomOpsWorkerData {
  handle: BlockTableHandle;
  index: number;
  operations: number;
  checkEvery: number;
  base: Array<{ id: number; tokens: number[] }>;
  board: Int32Array;
  boardSlots: number;
  maxOwn: number;
  /** [ready count, go flag] */
  barrier: Int32Array;
}

const data = (workerData as { data: RandomOpsWorkerData }).data;
const table = BlockTable.attach(data.handle, { timeoutMs: 30_000 });
const operator = new RandomOperator(table, {
  seed: 7919 * (data.index + 1),
  baseSequences: data.base,
  board: data.board,
  boardOffset: data.index * data.boardSlots,
  boardSlots: data.boardSlots,
  maxOwn: data.maxOwn,
});

arriveAndWait(data.barrier);

let checks = 0;
for (let i = 1; i <= data.operations; i++) {
  operator.step();
  if (i % data.checkEvery === 0) {
    table.checkInvariants();
    checks++;
  }
}
table.checkInvariants();
operator.verifyAll();
parentPort?.postMessage({
  counts: operator.counts,
  checks,
  own: [...operator.own.entries()],
  retained: operator.retained,
});
