// The soak workload behind bench/soak.ts: concurrent request loops run random scripts (the interleaving
// tests' Task: create with prefix reuse and waits, prefill, decode appends, reads and attention checked
// against a model, forks, frees — also while attention, readKV or encoded work is in flight) on one cache
// for a given time, checking invariants after every step. Every sample records the JS heap (after a GC
// when --expose-gc is given), the GPU buffers alive and their bytes (through a counting device wrapper),
// the cache's own pool bytes and block usage. The run is "flat" when none of them grew: the lowest value
// of the last third of the samples does not exceed the highest of the first third (heap: plus 5 % and
// 0.5 MB; GPU bytes: plus 5 % and 64 KiB), and destroy() leaves no buffer behind.
import { PagedKVCache } from '../src/cache/paged-kv-cache';
import { createGpu, describeGpu } from '../src/gpu/create-gpu';
import { InstrumentedDevice } from '../test/reliability/helpers/instrumented-device';
import { checkAccounting, OPERATIONS, Task, type Step, type TaskEnv } from '../test/reliability/helpers/interleaving-tasks';
import { mix32 } from '../test/reliability/helpers/kv-content';

export interface SoakOptions {
  minutes: number;
  sampleSeconds: number;
  tasks: number;
  seed: number;
}

interface Sample {
  minute: number;
  heapMB: number;
  liveBuffers: number;
  liveMB: number;
  poolMB: number;
  sequences: number;
  blocksUsed: number;
  steps: number;
}

const heads = { numKvHeads: 2, numQueryHeads: 4, headDim: 16 } as const;
const shape = { ...heads, numLayers: 2, blockSize: 4 };

export async function runSoak(options: SoakOptions): Promise<boolean> {
  const gpu = await createGpu();
  const uncaptured: string[] = [];
  gpu.device.onuncapturederror = (event) => void uncaptured.push(event.error.message);
  const device = new InstrumentedDevice(gpu.device);
  const cache = await PagedKVCache.create(device.device, { ...shape, numBlocks: 20, maxSequences: 32, maxSequenceLength: 24 });
  console.log(`soak: ${options.minutes} min on ${describeGpu(gpu)}, ${options.tasks} concurrent request loops, seed ${options.seed}`);

  let state = options.seed >>> 0;
  const random = (): number => (state = mix32(state, 0x9e37)) / 2 ** 32;
  const yieldTo = (): Promise<void> => {
    const r = random();
    if (r < 0.4) return Promise.resolve();
    if (r < 0.8) return new Promise((resolve) => setImmediate(resolve));
    return new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 2)));
  };
  const counts: Record<string, number> = {};
  const env: TaskEnv = { cache, device: device.device, shape, yieldTo, counts };
  const script = (): Step[] =>
    Array.from({ length: 4 + Math.floor(random() * 10) }, () => ({
      kind: OPERATIONS[Math.floor(random() * OPERATIONS.length)]!,
      a: Math.floor(random() * 2 ** 31),
      b: Math.floor(random() * 2 ** 31),
    }));

  const deadline = performance.now() + options.minutes * 60_000;
  const running: Array<Task | undefined> = [];
  let steps = 0;
  const loops = Array.from({ length: options.tasks }, async (_, i) => {
    while (performance.now() < deadline) {
      const task = new Task(i, script(), env);
      running[i] = task;
      await task.run();
      steps += task.steps.length;
      checkAccounting(cache);
    }
    running[i] = undefined;
  });
  // A loop holding blocks may wait for blocks another loop holds, and vice versa: when every running
  // loop has been waiting for two checks in a row, the lowest-numbered one is aborted and backs off.
  let stuckChecks = 0;
  const watchdog = setInterval(() => {
    const active = running.filter((t): t is Task => t !== undefined && !t.done);
    stuckChecks = active.length > 0 && active.every((t) => t.waiting) ? stuckChecks + 1 : 0;
    if (stuckChecks >= 2) {
      active[0]!.waiting!.controller.abort();
      counts.deadlocksBroken = (counts.deadlocksBroken ?? 0) + 1;
      stuckChecks = 0;
    }
  }, 50);

  const samples: Sample[] = [];
  const started = performance.now();
  const sample = (): void => {
    (globalThis as { gc?: () => void }).gc?.();
    const s = cache.stats();
    const live = device.liveValid();
    samples.push({
      minute: (performance.now() - started) / 60_000,
      heapMB: process.memoryUsage().heapUsed / 2 ** 20,
      liveBuffers: live.length,
      liveMB: device.liveBytes / 2 ** 20,
      poolMB: s.bytes / 2 ** 20,
      sequences: s.sequences,
      blocksUsed: s.blocksUsed,
      steps,
    });
    const x = samples[samples.length - 1]!;
    console.log(
      `  t=${x.minute.toFixed(1)} min  heap ${x.heapMB.toFixed(1)} MB  GPU buffers ${x.liveBuffers} (${x.liveMB.toFixed(2)} MB)  ` +
        `pool ${x.poolMB.toFixed(2)} MB  sequences ${x.sequences}  used blocks ${x.blocksUsed}  steps ${x.steps}`,
    );
  };
  const sampler = setInterval(sample, options.sampleSeconds * 1000);
  let failure: unknown;
  try {
    await Promise.all(loops);
  } catch (error) {
    failure = error;
  } finally {
    clearInterval(sampler);
    clearInterval(watchdog);
  }
  if (failure !== undefined) throw failure;
  sample();

  checkAccounting(cache);
  const end = cache.stats();
  if (end.sequences !== 0 || end.blocksUsed !== 0 || end.pinnedBlocks !== 0) throw new Error(`left behind: ${JSON.stringify(end)}`);
  cache.clearPrefixCache();
  if (cache.stats().blocksFree !== end.blocksTotal) throw new Error('blocks missing after clearing the prefix cache');
  cache.destroy();
  const leaked = device.liveValid().filter((r) => !/^unused-/.test(r.label));
  if (uncaptured.length > 0) throw new Error(`uncaptured WebGPU errors:\n${uncaptured.slice(0, 5).join('\n')}`);

  // Growth, not noise: flat unless even the lowest value of the last third of the samples exceeds the
  // highest of the first third (buffers in flight at a sampling instant come and go). GPU bytes get a
  // slack as the heap does: staging and readback buffers grow to the largest request seen so far (a
  // bounded high-water mark: the readback pool keeps at most four), which a late large request can
  // raise by a few KiB; a leak over minutes of such a workload (hundreds of thousands of requests)
  // would grow by far more, and would show in the buffer count as well.
  const third = Math.max(1, Math.floor(samples.length / 3));
  const early = samples.slice(0, third);
  const late = samples.slice(-third);
  const grew = (pick: (x: Sample) => number, slack: (x: number) => number) => Math.min(...late.map(pick)) > slack(Math.max(...early.map(pick)));
  const heapGrew = grew((x) => x.heapMB, (x) => x * 1.05 + 0.5);
  const buffersGrew = grew((x) => x.liveBuffers, (x) => x);
  const bytesGrew = grew((x) => x.liveMB, (x) => x * 1.05 + 1 / 16);
  const flat = !heapGrew && !buffersGrew && !bytesGrew && leaked.length === 0;
  const range = (pick: (x: Sample) => number, digits: number) => `${Math.min(...samples.map(pick)).toFixed(digits)}–${Math.max(...samples.map(pick)).toFixed(digits)}`;
  console.log(
    `soak done: ${steps} steps, ${JSON.stringify(counts)}\n` +
      `  over ${samples.length} samples: heap ${range((x) => x.heapMB, 1)} MB, GPU buffers ${range((x) => x.liveBuffers, 0)}, ` +
      `GPU ${range((x) => x.liveMB, 2)} MB, pool ${range((x) => x.poolMB, 2)} MB; buffers left after destroy(): ${leaked.length}` +
      `${leaked.length ? ` (${leaked.map((r) => r.label).join(', ')})` : ''}\n` +
      `  verdict: ${flat ? 'FLAT' : `GROWING (${[heapGrew && 'heap', buffersGrew && 'GPU buffers', bytesGrew && 'GPU bytes'].filter(Boolean).join(', ')})`}` +
      `${(globalThis as { gc?: unknown }).gc ? '' : ' (heap sampled without --expose-gc: noisy)'}`,
  );
  gpu.device.destroy();
  return flat;
}
