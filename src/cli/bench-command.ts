// `bench`: hands the GPU to the benchmark suite (bench/suite.ts), which prints its own table or JSON.
// Invariant: loaded lazily so `serve` and `info` never load benchmark code.
import type { Gpu } from '../gpu/create-gpu';

export async function runBench(gpu: Gpu, options: { json: boolean; quick: boolean; tune?: boolean }): Promise<void> {
  const { runBenchSuite } = await import('../../bench/suite');
  await runBenchSuite(gpu, options);
}
