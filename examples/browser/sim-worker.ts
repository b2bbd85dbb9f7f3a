// Dedicated module worker running the serving simulation on navigator.gpu, so the page stays
// responsive (the block table's lock may also block with Atomics.wait, which only workers may do).
// Invariants: one simulation at a time; each 'start' is answered by progress messages then exactly one
// 'done' or 'error'; block maps are posted at most every BLOCK_MAP_INTERVAL_MS, and always for the
// final step.
import { createGpu, describeGpu, type Gpu } from '../../src/gpu/create-gpu';
import { resolveSimOptions } from '../../src/sim/options';
import { runSimulation } from '../../src/sim/run-simulation';
import type { StepProgress } from '../../src/sim/simulate';
import type { PageToWorker, ProgressMessage, WorkerToPage } from './protocol';

const BLOCK_MAP_INTERVAL_MS = 60;

const post = (message: WorkerToPage, transfer: Transferable[] = []): void => {
  (self as unknown as Worker).postMessage(message, transfer);
};

let busy = false;

self.addEventListener('message', (event: MessageEvent<PageToWorker>) => {
  if (event.data?.type !== 'start') return;
  if (busy) {
    post({ type: 'error', name: 'Busy', message: 'a simulation is already running' });
    return;
  }
  busy = true;
  void run(event.data.options).finally(() => {
    busy = false;
  });
});

async function run(overrides: PageToWorker['options']): Promise<void> {
  let gpu: Gpu | undefined;
  try {
    const options = resolveSimOptions(overrides, 'small');
    gpu = await createGpu();
    post({ type: 'adapter', description: describeGpu(gpu), isFallback: gpu.isFallback });
    let lastMapAt = -Infinity;
    const onStep = (p: StepProgress): void => {
      const now = performance.now();
      const final = p.completedRequests === p.totalRequests;
      const message: ProgressMessage = {
        type: 'progress',
        point: p.point,
        completedRequests: p.completedRequests,
        totalRequests: p.totalRequests,
        running: p.running,
        waiting: p.waiting,
        verified: p.verification.checked,
        blocks: { used: p.cacheStats.blocksUsed, evictable: p.cacheStats.blocksEvictable, free: p.cacheStats.blocksFree, total: p.cacheStats.blocksTotal },
      };
      const transfer: Transferable[] = [];
      if (final || now - lastMapAt >= BLOCK_MAP_INTERVAL_MS) {
        lastMapAt = now;
        const map = p.blockMap();
        message.blockMap = { state: map.state.slice(), refCount: map.refCount.slice(), owner: map.owner.slice() };
        transfer.push(message.blockMap.state.buffer, message.blockMap.refCount.buffer, message.blockMap.owner.buffer);
      }
      post(message, transfer);
    };
    const result = await runSimulation(options, { gpu, onStep });
    post({ type: 'done', result });
  } catch (error) {
    const e = error as { name?: string; message?: string; code?: unknown };
    post({
      type: 'error',
      name: e?.name ?? 'Error',
      message: e?.message ?? String(error),
      code: typeof e?.code === 'string' ? e.code : undefined,
    });
  } finally {
    gpu?.device.destroy();
  }
}
