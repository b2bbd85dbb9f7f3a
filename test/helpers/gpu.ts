// Test helper: one GPU device per test file (SwiftShader where there is no GPU), and a check that no
// uncaptured WebGPU error happened during a test. With TEST_NO_BOUNDS_CHECKS=1 in the environment the
// device runs its shaders without WebGPU's bounds checks (createGpu({ boundsChecks: false })), to run
// the kernel tests as such a device runs them.
import { afterEach } from 'vitest';
import { createGpu, type Gpu } from '../../src/gpu/create-gpu';

let shared: Promise<Gpu> | undefined;
const uncaptured: string[] = [];

export function testGpu(): Promise<Gpu> {
  shared ??= createGpu({ boundsChecks: process.env.TEST_NO_BOUNDS_CHECKS !== '1' }).then((gpu) => {
    // Dawn's Node binding supports the handler property (addEventListener aborts the process).
    gpu.device.onuncapturederror = (event) => {
      uncaptured.push(event.error.message);
    };
    return gpu;
  });
  return shared;
}

/** The test device, which must have the 'subgroups' feature (streaming-decode tests). */
export async function subgroupTestGpu(): Promise<Gpu> {
  const gpu = await testGpu();
  if (!gpu.features.subgroups) throw new Error('this adapter has no subgroups feature');
  return gpu;
}

/** Call once at the top of a GPU test file: fails any test after which WebGPU reported an error. */
export function failOnUncapturedGpuErrors(): void {
  afterEach(() => {
    if (uncaptured.length > 0) {
      const messages = uncaptured.splice(0).join('\n');
      throw new Error(`uncaptured WebGPU error(s):\n${messages}`);
    }
  });
}

/** Takes the uncaptured WebGPU errors reported so far (for a test that expects some, before failOnUncapturedGpuErrors' check). */
export function takeUncapturedGpuErrors(): string[] {
  return uncaptured.splice(0);
}

/** True where the suite runs on a real GPU (GPU-scale test shapes are enabled there). */
export async function onRealGpu(): Promise<boolean> {
  return !(await testGpu()).isFallback;
}
