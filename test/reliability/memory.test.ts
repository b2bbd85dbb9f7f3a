// No memory grows with the number of calls: a steady stream of writeKV / readKV / attend / append /
// fork / free on one cache retains no JS heap once collected (found by the soak run: every guarded GPU
// promise used to leave a reaction on the never-settling device-loss promise, about a kilobyte per
// readKV), and allocates no GPU buffer that outlives the call (counted through a device wrapper).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { DeviceGuard } from '../../src/gpu/device-guard';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';
import { InstrumentedDevice } from './helpers/instrumented-device';
import { queryRows } from './helpers/kv-content';

failOnUncapturedGpuErrors();

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** JS heap retained per call of `body`, measured over `calls` calls after a warm-up, with forced GCs. */
async function retainedPerCall(calls: number, body: (i: number) => Promise<unknown> | unknown, warmUp = 200): Promise<number> {
  for (let i = 0; i < warmUp; i++) await body(i);
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < calls; i++) await body(i);
  gc();
  gc();
  return (process.memoryUsage().heapUsed - before) / calls;
}

describe('memory per call', () => {
  it('a settled guarded promise leaves nothing behind on the device-loss promise', async () => {
    const device = { lost: new Promise<never>(() => undefined) } as unknown as GPUDevice;
    const guard = new DeviceGuard(device);
    const perCall = await retainedPerCall(20_000, () => guard.guard(Promise.resolve(1)));
    expect(perCall).toBeLessThan(16);
  });

  it('steady-state cache calls retain no JS heap and leave no GPU buffer behind', async () => {
    const gpu = new InstrumentedDevice((await testGpu()).device);
    const cache = await PagedKVCache.create(gpu.device, { numLayers: 1, numKvHeads: 1, numQueryHeads: 2, headDim: 8, blockSize: 4, numBlocks: 16 });
    const rows = new Float32Array(6 * 8).fill(0.25);
    const q = queryRows(1, 1, 16);
    const id = cache.createSequence({ tokens: [1, 2, 3, 4, 5, 6] }).id;
    await cache.writeKV(0, id, 0, rows, rows);
    // Sequence churn (create, fork, copy-on-write append, free) and the guarded GPU calls.
    const churn = async (i: number) => {
      const s = cache.createSequence({ tokens: [1, 2, 3, 4, 5, i % 7] }).id;
      const child = cache.fork(s);
      cache.appendTokens(child, [9]);
      cache.free(child);
      cache.free(s);
    };
    const gpuCalls = async () => {
      await cache.writeKV(0, id, 0, rows, rows);
      for (let k = 0; k < 3; k++) await cache.readKV(0, id);
      await cache.attend(0, [{ seqId: id, q }]);
    };
    for (let i = 0; i < 10; i++) await gpuCalls(); // scratch and the readback pool reach their steady size
    const buffersBefore = gpu.live.size;
    const createdBefore = gpu.created;
    // Bounds far above the collector's noise (a few hundred bytes) and far below the leak this caught:
    // ≈ 1.2 KB per readKV and 0.5 KB per writeKV.
    const churnPerStep = await retainedPerCall(3000, churn, 500);
    const gpuPerStep = await retainedPerCall(1000, gpuCalls, 300);
    console.log(`memory: JS heap retained per step: ${churnPerStep.toFixed(0)} B (5 sequence calls), ${gpuPerStep.toFixed(0)} B (5 GPU calls); GPU buffers alive ${buffersBefore} → ${gpu.live.size}`);
    expect(churnPerStep).toBeLessThan(400);
    expect(gpuPerStep).toBeLessThan(1500);
    expect(gpu.live.size).toBeLessThanOrEqual(buffersBefore);
    // Not even short-lived ones: a buffer per call also left a cached bind group per call behind
    // (readKV's gather outputs did, about 1.1 KB per step until the cache's 4096 entries filled).
    expect(gpu.created - createdBefore).toBe(0);
    cache.destroy();
  });
});
