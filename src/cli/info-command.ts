// `info`: what createGpu() finds — adapter, whether it is a software fallback, features and limits, how
// many workgroups the device runs at once (the parallelism probe that sizes decode split-K), and which
// attention kernels it gets for a reference model shape (building them compiles nothing).
import { describeGpu, type Gpu } from '../gpu/create-gpu';
import { describeParallelism, type ParallelismProbe } from '../gpu/parallelism-probe';
import { PagedAttentionKernel } from '../kernels/paged-attention';
import { computeKvLayout } from '../pool/kv-layout';
import { formatBytes, table } from '../sim/format';

/** The reference shape `info` reports kernels for: a Llama-3-8B-like layer. */
const REFERENCE = { numQueryHeads: 32, numKvHeads: 8, headDim: 128, blockSize: 16, kvDtype: 'f16' } as const;
const REFERENCE_LABEL = `${REFERENCE.numQueryHeads}/${REFERENCE.numKvHeads} heads × ${REFERENCE.headDim}, ${REFERENCE.kvDtype}`;

/** The decode and prefill kernels this device runs for the reference shape (as PagedKVCache would pick them). */
export function referenceKernels(gpu: Gpu): { shape: string; decode: string; prefill: string } {
  const { numQueryHeads, numKvHeads, headDim, blockSize, kvDtype } = REFERENCE;
  const layout = computeKvLayout({ numLayers: 1, numKvHeads, headDim, blockSize, numBlocks: 16, kvDtype }, gpu.device.limits.maxStorageBufferBindingSize);
  const kernel = new PagedAttentionKernel(gpu.device, layout, {
    numQueryHeads,
    rowStride: 1,
    subgroups: gpu.features.subgroups,
    adapterInfo: gpu.adapter.info,
  });
  try {
    return { shape: REFERENCE_LABEL, ...kernel.describeKernels() };
  } finally {
    kernel.destroy();
  }
}

export interface Writable {
  write(text: string): unknown;
}

export function infoReport(gpu: Gpu, parallelism: ParallelismProbe): Record<string, unknown> {
  return {
    description: describeGpu(gpu),
    info: gpu.info,
    isFallback: gpu.isFallback,
    dawnFlags: gpu.dawnFlags,
    boundsChecks: gpu.boundsChecks,
    features: gpu.features,
    adapterFeatures: [...gpu.adapter.features].sort(),
    parallelism,
    attentionKernels: referenceKernels(gpu),
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
    ...(gpu.dawnFlags.length > 0 ? [['Dawn flags', gpu.dawnFlags.join(' ')] as [string, string]] : []),
    ['bounds checks', gpu.boundsChecks ? 'yes (every buffer and array access checked, as WebGPU requires)' : 'off (--no-bounds-checks: trusted shaders only)'],
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
  const kernels = referenceKernels(gpu);
  rows.push([`decode (${kernels.shape})`, kernels.decode], [`prefill (${kernels.shape})`, kernels.prefill]);
  out.write(`${table(rows)}\n`);
}
