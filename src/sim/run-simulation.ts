// Runs a simulation on a real WebGPU device: acquires the GPU (unless given one), creates the
// PagedKVCache sized for the options, simulates, and destroys the cache whatever happens.
// Invariants: works the same on Node (Dawn) and in a browser worker (navigator.gpu); the GPU passed in
// is never destroyed here, one acquired here is destroyed at the end.
import { PagedKVCache } from '../cache/paged-kv-cache';
import { createGpu, describeGpu, type CreateGpuOptions, type Gpu } from '../gpu/create-gpu';
import { describeTuning, type AttentionTuning } from '../kernels/attention-tuning';
import { cacheOptionsFor } from './cache-options';
import type { SimOptions } from './options';
import type { SimEnvironment, SimResult } from './result';
import { simulate, type SimulationHooks } from './simulate';

export interface RunSimulationOptions extends SimulationHooks {
  /** Use this GPU instead of acquiring one. */
  gpu?: Gpu;
  gpuOptions?: CreateGpuOptions;
  /** The cache's attention kernel tuning (PagedKVCacheOptions.attentionTuning). */
  attentionTuning?: AttentionTuning;
}

export function environmentOf(
  gpu: Gpu,
  cache?: { residentWorkgroups: number; describeKernels(): { decode: string; prefill: string } },
  tuning?: AttentionTuning,
): SimEnvironment {
  return {
    adapter: describeGpu(gpu),
    isFallback: gpu.isFallback,
    backend: gpu.info.backend,
    residentWorkgroups: cache?.residentWorkgroups,
    kernels: cache?.describeKernels(),
    ...(tuning === undefined ? {} : { tuning: describeTuning(tuning) }),
  };
}

export async function runSimulation(options: SimOptions, run: RunSimulationOptions = {}): Promise<SimResult> {
  const gpu = run.gpu ?? (await createGpu(run.gpuOptions));
  try {
    // The adapter's info carries the subgroup-matrix configurations that device.adapterInfo lacks on Dawn's Node binding.
    const cache = await PagedKVCache.create(gpu.device, { ...cacheOptionsFor(options), attentionTuning: run.attentionTuning, adapterInfo: gpu.adapter.info });
    try {
      return await simulate(cache, options, environmentOf(gpu, cache, run.attentionTuning), run);
    } finally {
      cache.destroy();
    }
  } finally {
    if (!run.gpu) gpu.device.destroy();
  }
}
