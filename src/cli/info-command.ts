// `info`: what createGpu() finds — adapter, whether it is a software fallback, features and limits, and
// how many workgroups the device runs at once (the parallelism probe that sizes decode split-K).
import { describeGpu, type Gpu } from '../gpu/create-gpu';
import { describeParallelism, type ParallelismProbe } from '../gpu/parallelism-probe';
import { formatBytes, table } from '../sim/format';

export interface Writable {
  write(text: string): unknown;
}

export function infoReport(gpu: Gpu, parallelism: ParallelismProbe): Record<string, unknown> {
  return {
    description: describeGpu(gpu),
    info: gpu.info,
    isFallback: gpu.isFallback,
    features: gpu.features,
    adapterFeatures: [...gpu.adapter.features].sort(),
    parallelism,
  };
}

export function printInfo(gpu: Gpu, parallelism: ParallelismProbe, json: boolean, out: Writable): void {
  if (json) {
    out.write(`${JSON.stringify(infoReport(gpu, parallelism), null, 2)}\n`);
    return;
  }
  const i = gpu.info;
  const l = i.limits;
  const rows: Array<[string, string]> = [
    ['adapter', describeGpu(gpu)],
    ['backend', i.backend],
    ['software fallback', gpu.isFallback ? 'yes (correct but slow: a CPU implementation of Vulkan)' : 'no'],
    ['subgroup sizes', i.subgroupMaxSize ? `${i.subgroupMinSize}..${i.subgroupMaxSize}` : 'unknown'],
    ['features used', Object.entries(gpu.features).map(([k, v]) => `${k} ${v ? 'yes' : 'no'}`).join(' · ')],
    ['adapter features', [...gpu.adapter.features].sort().join(', ')],
    ['max storage binding', formatBytes(l.maxStorageBufferBindingSize)],
    ['max buffer', formatBytes(l.maxBufferSize)],
    ['workgroup storage', formatBytes(l.maxComputeWorkgroupStorageSize)],
    ['invocations/workgroup', String(l.maxComputeInvocationsPerWorkgroup)],
    ['storage buffers/stage', String(l.maxStorageBuffersPerShaderStage)],
    ['workgroups/dimension', String(l.maxComputeWorkgroupsPerDimension)],
    ['workgroups at once', describeParallelism(parallelism)],
  ];
  out.write(`${table(rows)}\n`);
}
