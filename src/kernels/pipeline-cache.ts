// Compute pipelines built once per device and configuration. Invariants: the cache is keyed by the
// GPUDevice in a WeakMap (a lost or destroyed device takes its pipelines with it) and then by a string
// that names every input of pipeline creation (shader, entry point, override constants), so the same key
// always means the same pipeline and no pipeline is created on a hot path after the first call.

type PipelineMap = Map<string, GPUComputePipeline>;
const pipelines = new WeakMap<GPUDevice, PipelineMap>();
const modules = new WeakMap<GPUDevice, Map<string, GPUShaderModule>>();

export interface PipelineSpec {
  /** A stable name of the shader source (e.g. 'paged-attention-decode'). */
  name: string;
  code: string;
  entryPoint?: string;
  constants?: Record<string, number>;
  /** Explicit layout; 'auto' when omitted. */
  layout?: GPUPipelineLayout | 'auto';
  /** Extra key material when `layout` is explicit (layouts are not comparable by value). */
  layoutKey?: string;
}

function shaderModule(device: GPUDevice, name: string, code: string): GPUShaderModule {
  let byDevice = modules.get(device);
  if (!byDevice) modules.set(device, (byDevice = new Map()));
  let module = byDevice.get(name);
  if (!module) {
    module = device.createShaderModule({ label: name, code });
    byDevice.set(name, module);
  }
  return module;
}

export function pipelineKey(spec: PipelineSpec): string {
  const constants = spec.constants
    ? Object.keys(spec.constants)
        .sort()
        .map((k) => `${k}=${spec.constants![k]}`)
        .join(',')
    : '';
  return `${spec.name}#${spec.entryPoint ?? ''}#${constants}#${spec.layoutKey ?? ''}`;
}

/** Returns the cached pipeline for `spec` on `device`, creating it on first use. */
export function getPipeline(device: GPUDevice, spec: PipelineSpec): GPUComputePipeline {
  let byDevice = pipelines.get(device);
  if (!byDevice) pipelines.set(device, (byDevice = new Map()));
  const key = pipelineKey(spec);
  let pipeline = byDevice.get(key);
  if (!pipeline) {
    pipeline = device.createComputePipeline({
      label: key,
      layout: spec.layout ?? 'auto',
      compute: { module: shaderModule(device, spec.name, spec.code), entryPoint: spec.entryPoint, constants: spec.constants },
    });
    byDevice.set(key, pipeline);
  }
  return pipeline;
}

/** Number of pipelines created so far for `device` (tests use it to prove there is no per-call creation). */
export function pipelineCount(device: GPUDevice): number {
  return pipelines.get(device)?.size ?? 0;
}

/** A 16-byte storage buffer per device, bound to chunk slots a layer does not use. */
const dummies = new WeakMap<GPUDevice, GPUBuffer>();
export function dummyStorageBuffer(device: GPUDevice): GPUBuffer {
  let buffer = dummies.get(device);
  if (!buffer) {
    buffer = device.createBuffer({ label: 'unused-chunk', size: 16, usage: GPUBufferUsage.STORAGE });
    dummies.set(device, buffer);
  }
  return buffer;
}
