// The GPU copy of the block table against the CPU table: after random creates, appends, forks,
// copy-on-write rewrites, block adoptions and frees, syncing the live rows leaves every used entry on
// the GPU equal to the CPU row (read back from the real buffer), and a row that did not change uploads
// nothing — also between rewrites, when a sync compares only the entries a row gained. Rows staged
// together go up in one write per run of near neighbours, whatever order they were staged in. Rows
// staged with their last entry deferred hold every other used entry on the GPU after each flush, all of
// them after flushAll(); a decode loop's staggered block crossings then write about once per block.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MERGE_GAP_ENTRIES, TableUpload } from '../../src/cache/table-upload';
import { readBackWords } from '../../src/kernels/kv-bindings';
import { BlockTable } from '../../src/table/block-table';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { rng } from '../table/rng';

failOnUncapturedGpuErrors();

const BLOCK = 4, SEQUENCES = 6;

let device: GPUDevice;
beforeAll(async () => {
  device = (await testGpu()).device;
});

describe('block-table upload', () => {
  let upload: TableUpload | undefined;
  afterAll(() => upload?.destroy());

  // Short rows (many per 4 KiB) and long ones; each row's last entry deferred or not.
  it.each([
    { stride: 8, defer: false },
    { stride: 5000, defer: false },
    { stride: 8, defer: true },
    { stride: 5000, defer: true },
  ])('keeps the GPU rows equal to the CPU rows through random operations, uploading only changes (row stride $stride, last entry deferred: $defer)', async ({ stride, defer }) => {
    upload?.destroy();
    const table = BlockTable.create({ numBlocks: 40, blockSize: BLOCK, maxSequences: SEQUENCES, maxBlocksPerSequence: stride });
    upload = new TableUpload(device, SEQUENCES, table.rowStride);
    const rand = rng(11);
    const live: number[] = [];
    const pick = () => live[Math.floor(rand() * live.length)]!;
    const tokens = (n: number) => Array.from({ length: n }, () => (rand() < 0.9 ? 0 : 1)); // mostly equal blocks: adoptions happen
    // Odd operations sync row by row, even ones stage every live row (in live order, not slot order) and flush once.
    let op = 0;
    const sync = () => {
      for (const id of live) {
        const args = [table.blockTableView, table.rowOf(id), Math.ceil(table.length(id) / BLOCK), table.rowRewrites] as const;
        if (defer) upload!.stageRow(...args, true);
        else if (op % 2 === 1) upload!.syncRow(...args);
        else upload!.stageRow(...args);
      }
      upload!.flush();
    };
    const expectRows = async (skipLast: boolean, when: string) => {
      const gpu = new Int32Array((await readBackWords(device, upload!.buffer)).buffer);
      for (const id of live) {
        const row = table.rowOf(id) * table.rowStride;
        const used = Math.ceil(table.length(id) / BLOCK) - (skipLast ? 1 : 0);
        expect(Array.from(gpu.subarray(row, row + used)), `${when}, sequence ${id}`).toEqual(Array.from(table.blockTableView.subarray(row, row + used)));
      }
    };
    let rewrites = 0;
    let adoptions = 0;
    for (; op < 300; op++) {
      const r = rand();
      try {
        if (r < 0.2 && live.length < SEQUENCES) live.push(table.createSequence(tokens(1 + Math.floor(rand() * 9))).id);
        else if (r < 0.45 && live.length > 0) table.appendTokens(pick(), tokens(1 + Math.floor(rand() * 5)));
        else if (r < 0.55 && live.length > 0 && live.length < SEQUENCES) live.push(table.fork(pick()));
        else if (r < 0.7 && live.length > 0) {
          const id = pick();
          const length = table.length(id);
          if (length > 0) table.makeExclusive(id, Math.floor(rand() * length), length);
        } else if (r < 0.8 && live.length > 1) {
          // Adopt: freeze a full block of one sequence, let another with the same tokens there take it.
          const [a, b] = [pick(), pick()];
          const full = Math.min(Math.floor(table.length(a) / BLOCK), Math.floor(table.length(b) / BLOCK));
          const index = Math.floor(rand() * full);
          if (a !== b && full > 0 && !table.isFrozen(table.blockTableView[table.rowOf(b) * table.rowStride + index]!)) {
            const ofA = table.blockTableView[table.rowOf(a) * table.rowStride + index]!;
            const frozen = table.isFrozen(ofA) ? ofA : table.freezeBlock(a, index);
            const same = table.tokensOf(a).subarray(index * BLOCK, (index + 1) * BLOCK).join() === table.tokensOf(b).subarray(index * BLOCK, (index + 1) * BLOCK).join();
            if (same && frozen !== table.blockTableView[table.rowOf(b) * table.rowStride + index]) {
              table.adoptBlock(b, index, frozen);
              adoptions++;
            }
          }
        } else if (live.length > 0) table.free(live.splice(live.indexOf(pick()), 1)[0]!);
      } catch (error) {
        if (!(error instanceof Error && /OUT_OF_BLOCKS|SEQUENCE_TOO_LONG/.test((error as { code?: string }).code ?? ''))) throw error;
      }
      rewrites = table.rowRewrites;
      sync();
      // Deferred: every used entry but the last (the kernels take it from the work list) is on the GPU.
      await expectRows(defer, `op ${op}`);
      const before = upload.uploadedEntries;
      sync();
      expect(upload.uploadedEntries, 'a second sync of unchanged rows uploads nothing').toBe(before);
      if (defer && op % 5 === 0) {
        upload.flushAll();
        expect(upload.pendingRows).toBe(0);
        await expectRows(false, `op ${op}, after flushAll`);
      }
    }
    expect(rewrites).toBeGreaterThan(10);
    expect(adoptions).toBeGreaterThan(0);
    expect(table.stats().cowCopies).toBeGreaterThan(0);
    table.checkInvariants();
  });

  it.each([
    { stride: 8, order: 'slot', writes: 1 },
    { stride: 8, order: 'reversed', writes: 1 },
    { stride: MERGE_GAP_ENTRIES + 1, order: 'slot', writes: SEQUENCES },
    { stride: MERGE_GAP_ENTRIES + 1, order: 'reversed', writes: SEQUENCES },
  ])('merges rows staged together into one write when their gaps are short (stride $stride, $order order)', async ({ stride, order, writes }) => {
    upload?.destroy();
    const table = BlockTable.create({ numBlocks: 40, blockSize: BLOCK, maxSequences: SEQUENCES, maxBlocksPerSequence: stride });
    upload = new TableUpload(device, SEQUENCES, table.rowStride);
    const ids = Array.from({ length: SEQUENCES }, (_, s) => table.createSequence(Array.from({ length: 1 + 2 * s }, () => s)).id);
    const stageAll = () => {
      for (const id of order === 'slot' ? ids : [...ids].reverse()) {
        upload!.stageRow(table.blockTableView, table.rowOf(id), Math.ceil(table.length(id) / BLOCK), table.rowRewrites);
      }
      upload!.flush();
    };
    stageAll();
    // Every sequence crosses into a new block at once (a decode step of a batch that started together).
    for (const id of ids) table.appendTokens(id, Array.from({ length: BLOCK }, () => 9));
    const before = upload.writes;
    stageAll();
    expect(upload.writes - before).toBe(writes);
    const gpu = new Int32Array((await readBackWords(device, upload.buffer)).buffer);
    for (const id of ids) {
      const row = table.rowOf(id) * table.rowStride;
      const used = Math.ceil(table.length(id) / BLOCK);
      expect(Array.from(gpu.subarray(row, row + used)), `sequence ${id}`).toEqual(Array.from(table.blockTableView.subarray(row, row + used)));
    }
    const unchanged = upload.writes;
    stageAll();
    expect(upload.writes, 'nothing staged, nothing written').toBe(unchanged);
  });

  it("a decode loop whose rows cross blocks at staggered steps writes about once per block with each row's last entry deferred", async () => {
    upload?.destroy();
    const rows = 64;
    const table = BlockTable.create({ numBlocks: rows * 12, blockSize: BLOCK, maxSequences: rows, maxBlocksPerSequence: 12 });
    upload = new TableUpload(device, rows, table.rowStride);
    // Row s starts s % BLOCK tokens into a block: every step, a quarter of the rows cross into a new block.
    const ids = Array.from({ length: rows }, (_, s) => table.createSequence(Array.from({ length: 1 + (s % BLOCK) }, () => s)).id);
    const stageAll = () => {
      for (const id of ids) upload!.stageRow(table.blockTableView, table.rowOf(id), Math.ceil(table.length(id) / BLOCK), table.rowRewrites, true);
      upload!.flush();
    };
    stageAll();
    upload.flushAll();
    const steps = 8 * BLOCK;
    const before = upload.writes;
    for (let step = 0; step < steps; step++) {
      for (const id of ids) table.appendTokens(id, [step]);
      stageAll();
      const gpu = new Int32Array((await readBackWords(device, upload.buffer)).buffer);
      for (const id of ids) {
        const row = table.rowOf(id) * table.rowStride;
        const used = Math.ceil(table.length(id) / BLOCK) - 1;
        expect(Array.from(gpu.subarray(row, row + used)), `step ${step}, sequence ${id}`).toEqual(Array.from(table.blockTableView.subarray(row, row + used)));
      }
    }
    // Without deferral every step would write (16 rows crossing, merged into one write); with it a write
    // comes when some row crosses a second time since the last one: at most once per BLOCK steps (+1).
    expect(upload.writes - before).toBeLessThanOrEqual(steps / BLOCK + 1);
    expect(upload.writes - before).toBeGreaterThan(0);
  });
});
