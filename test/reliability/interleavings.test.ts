// Async interleaving exploration: several tasks run random scripts concurrently against one cache with
// a tiny pool (so they wait for blocks and for each other's prefixes), under fast-check's seeded
// scheduler: every task step and every promise the GPU returns (mapAsync, onSubmittedWorkDone,
// popErrorScope — through a device wrapper) is released in an order the scheduler picks, so each run
// explores a different interleaving of steps and GPU completions. Invariants and block accounting are
// checked after every step, every task checks the K/V it reads or attends against its own model, and
// at the end every block is free again. A failing schedule is printed with its seed and path and is
// replayed by FC_SEED / FC_PATH (npx vitest run test/reliability/interleavings.test.ts).
// When every unfinished task is stuck waiting on the others (possible by design: a task holding blocks
// waits for more), the lowest-numbered waiting task is aborted (AbortSignal) and backs off — a
// deterministic choice, so the schedule stays reproducible.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { OutOfBlocksError } from '../../src/table/errors';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { assertEqual } from './helpers/assert';
import { fuzzSettings, runFuzz } from './helpers/fuzz-runner';
import { InstrumentedDevice } from './helpers/instrumented-device';
import { checkAccounting, OPERATIONS, Task, type Step } from './helpers/interleaving-tasks';

failOnUncapturedGpuErrors();

const CI_SCHEDULES = 300;
const TASKS = 4;
const heads = { numKvHeads: 1, numQueryHeads: 2, headDim: 8 } as const;
const shape = { ...heads, numLayers: 2, blockSize: 2 };

let gpu: InstrumentedDevice;
beforeAll(async () => {
  gpu = new InstrumentedDevice((await testGpu()).device);
});

const stepArb = fc.record({ kind: fc.constantFrom(...OPERATIONS), a: fc.nat(), b: fc.nat() });
const scriptsArb = fc.array(fc.array(stepArb, { minLength: 3, maxLength: 9 }), { minLength: TASKS, maxLength: TASKS });

async function runSchedule(s: fc.Scheduler, scripts: Step[][], counts: Record<string, number>): Promise<void> {
  const cache = await PagedKVCache.create(gpu.device, { ...shape, numBlocks: 10, maxSequences: 8, maxSequenceLength: 12 });
  gpu.wrapPromise = (promise, what) => s.schedule(promise, what);
  try {
    const env = { cache, device: gpu.device, shape, yieldTo: (label: string) => s.schedule(Promise.resolve(), label), counts };
    const tasks = scripts.map((steps, i) => new Task(i, steps, env));
    let failure: unknown;
    const running = tasks.map((t) => t.run().catch((error: unknown) => (failure ??= error)));
    let idleTurns = 0;
    while (tasks.some((t) => !t.done) && failure === undefined) {
      if (s.count() > 0) {
        await s.waitNext(1);
        idleTurns = 0;
      } else if (++idleTurns < 20) {
        await new Promise((resolve) => setImmediate(resolve));
      } else {
        // Nothing scheduled and nobody can move: every unfinished task waits on the others.
        const stuck = tasks.find((t) => !t.done && t.waiting)?.waiting;
        if (stuck === undefined) throw new Error('no task can progress and none is waiting');
        stuck.controller.abort();
        counts.deadlocksBroken = (counts.deadlocksBroken ?? 0) + 1;
        idleTurns = 0;
      }
    }
    // On a failure the other tasks stay parked in the scheduler; they are dropped with the cache.
    if (failure !== undefined) throw failure;
    await Promise.all(running);
    checkAccounting(cache);
    const stats = cache.stats();
    assertEqual([stats.sequences, stats.blocksUsed, stats.pinnedBlocks, stats.waiters], [0, 0, 0, 0], 'after every task finished: sequences, used blocks, pins, waiters');
    cache.clearPrefixCache();
    assertEqual(cache.stats().blocksFree, stats.blocksTotal, 'free blocks at the end');
    counts.schedules = (counts.schedules ?? 0) + 1;
  } finally {
    gpu.wrapPromise = (promise) => promise;
    cache.destroy();
  }
}

describe('interleavings of concurrent operations', () => {
  it(`${TASKS} tasks under seeded schedules keep invariants, contents and isolation`, async () => {
    const settings = fuzzSettings(CI_SCHEDULES);
    const counts: Record<string, number> = {};
    const started = performance.now();
    const property = fc.asyncProperty(fc.scheduler(), fc.noBias(scriptsArb), (s, scripts) => runSchedule(s, scripts, counts));
    const outcome = await runFuzz('test/reliability/interleavings.test.ts', property, settings);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(`interleavings: ${counts.schedules} schedules explored in ${seconds} s (seed ${outcome.seed}); steps ${JSON.stringify(counts)}`);
    expect(counts.schedules).toBe(outcome.runs);
    for (const key of ['create', 'append', 'attendsAcrossFree', 'readsAcrossFree', 'encodedAcrossFree', 'prefixHits', 'deadlocksBroken']) expect(counts[key] ?? 0, key).toBeGreaterThan(0);
  });
});

describe('encodeAttention pins with two encoders in flight', () => {
  // Found by the exploration above: pins used to belong to whichever submission came next, not to the
  // encoder holding the work. Task A encoded over sequence `a` and freed it; task B encoded and submitted
  // first — B's submission took A's pins and released them when B completed, before A's work was even
  // submitted; `a`'s blocks were reused and rewritten by sequence `c`, and A's attention read c's K/V.
  it('an encoder submitted after another’s submission still reads its own blocks', async () => {
    const { device } = await testGpu();
    const cache = await PagedKVCache.create(device, { ...shape, numLayers: 1, numBlocks: 4, maxSequenceLength: 8 });
    const QR = heads.numQueryHeads * heads.headDim;
    const buffers: GPUBuffer[] = [];
    const storage = (bytes: number, usage: number) => {
      const b = device.createBuffer({ size: bytes, usage });
      buffers.push(b);
      return b;
    };
    try {
      const write = async (id: number, value: number) => {
        const rows = new Float32Array(4 * heads.numKvHeads * heads.headDim).fill(value);
        await cache.writeKV(0, id, 0, rows, rows);
      };
      const a = cache.createSequence({ tokens: [1, 2, 3, 4] }).id;
      const b = cache.createSequence({ tokens: [5, 6, 7, 8] }).id; // the pool is full
      await write(a, 1);
      await write(b, 2);
      const q = storage(QR * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
      device.queue.writeBuffer(q, 0, new Float32Array(QR).fill(1));
      const outA = storage(QR * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
      const outB = storage(QR * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
      const encoderA = device.createCommandEncoder();
      cache.encodeAttention(encoderA, { layer: 0, entries: [{ seqId: a }], q, out: outA });
      cache.free(a); // a's blocks are pinned: they must not be reused before A's work has run
      const encoderB = device.createCommandEncoder();
      cache.encodeAttention(encoderB, { layer: 0, entries: [{ seqId: b }], q, out: outB });
      await cache.submit([encoderB.finish()]);
      expect(cache.stats().pinnedBlocks).toBe(2); // A's pins survive B's submission
      expect(() => cache.createSequence({ tokens: [9, 9, 9, 9] })).toThrow(OutOfBlocksError);
      const readback = storage(QR * 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
      encoderA.copyBufferToBuffer(outA, 0, readback, 0, QR * 4);
      await cache.submit([encoderA.finish()]);
      const c = cache.createSequence({ tokens: [9, 9, 9, 9] }).id; // now a's blocks are free again
      await write(c, 7);
      await readback.mapAsync(GPUMapMode.READ);
      const values = new Float32Array(readback.getMappedRange().slice(0));
      readback.unmap();
      expect(Array.from(new Set(Array.from(values)))).toEqual([1]); // V of `a` was all ones
      expect(cache.stats().pinnedBlocks).toBe(0);
    } finally {
      for (const buffer of buffers) buffer.destroy();
      cache.destroy();
    }
  });

  // Encoded attention reads the shared GPU table at execution time through the sequence's slot, so a
  // free between encodeAttention and the submission's completion is deferred: the id is invalid at
  // once, but the slot (and its row) is not reused until the work has run.
  it('a sequence freed between encodeAttention and submit is still read through its own row', async () => {
    const { device } = await testGpu();
    const cache = await PagedKVCache.create(device, { ...shape, numLayers: 1, numBlocks: 8, maxSequenceLength: 8 });
    const QR = heads.numQueryHeads * heads.headDim;
    const q = device.createBuffer({ size: QR * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const out = device.createBuffer({ size: QR * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const readback = device.createBuffer({ size: QR * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      const rows = (value: number) => new Float32Array(4 * heads.numKvHeads * heads.headDim).fill(value);
      const a = cache.createSequence({ tokens: [1, 2, 3, 4] }).id;
      await cache.writeKV(0, a, 0, rows(1), rows(1));
      device.queue.writeBuffer(q, 0, new Float32Array(QR).fill(1));
      const encoder = device.createCommandEncoder();
      cache.encodeAttention(encoder, { layer: 0, entries: [{ seqId: a }], q, out });
      cache.free(a); // its blocks and its slot stay pinned until the work completes
      expect(() => cache.length(a)).toThrow(/was freed/);
      const c = cache.createSequence({ tokens: [9, 9, 9, 9] }).id; // must not take a's slot
      await cache.writeKV(0, c, 0, rows(7), rows(7));
      await cache.readKV(0, c); // uploads c's row into that slot of the GPU table
      encoder.copyBufferToBuffer(out, 0, readback, 0, QR * 4);
      await cache.submit([encoder.finish()]);
      await readback.mapAsync(GPUMapMode.READ);
      const values = new Float32Array(readback.getMappedRange().slice(0));
      readback.unmap();
      expect(Array.from(new Set(Array.from(values)))).toEqual([1]);
    } finally {
      for (const buffer of [q, out, readback]) buffer.destroy();
      cache.destroy();
    }
  });
});
