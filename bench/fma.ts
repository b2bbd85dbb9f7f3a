// Measures the device's f32 FMA rate (TFLOP/s) with shaders/bench-fma.wgsl, the baseline the portable
// prefill kernel is compared against in the same run.
import code from '../shaders/bench-fma.wgsl?raw';
import { GPU_WARMUP_MS, timeComputePasses, type GpuTiming } from '../src/gpu/gpu-timing';

export interface FmaResult {
  tflops: number;
  timing: GpuTiming;
  invocations: number;
}

export async function measureFmaRate(device: GPUDevice, options: { workgroups?: number; iterations?: number } = {}): Promise<FmaResult> {
  const workgroups = options.workgroups ?? 4096;
  const loop = options.iterations ?? 2048;
  const module = device.createShaderModule({ label: 'bench-fma', code });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, constants: { ITERATIONS: loop } } });
  const x = Math.min(workgroups, device.limits.maxComputeWorkgroupsPerDimension);
  const y = Math.ceil(workgroups / x);
  const invocations = x * y * 256;
  const sink = device.createBuffer({ size: invocations * 16, usage: GPUBufferUsage.STORAGE });
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: sink } }] });
  const timing = await timeComputePasses(device, (pass) => {
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y);
  }, { iterations: 5, warmup: 1, minRegionMs: 50, warmupMs: GPU_WARMUP_MS });
  sink.destroy();
  const flops = invocations * loop * 8 * 4 * 2;
  return { tflops: flops / timing.seconds / 1e12, timing, invocations };
}
