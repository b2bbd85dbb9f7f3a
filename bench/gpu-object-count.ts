// Counts the GPU objects a piece of host work creates on a device (buffers, bind groups, layouts,
// pipelines, shader modules, query sets, textures, samplers): the "no allocation per step" check of the
// host-cost bench. Invariants: the device's create methods are wrapped only while `work` runs (own
// properties shadowing the prototype's, put back as they were afterwards even when `work` throws);
// command encoders and passes are not counted (a step records into new ones by design).
const COUNTED = [
  'createBuffer',
  'createBindGroup',
  'createBindGroupLayout',
  'createPipelineLayout',
  'createComputePipeline',
  'createComputePipelineAsync',
  'createShaderModule',
  'createQuerySet',
  'createTexture',
  'createSampler',
] as const;

export interface GpuObjectCount {
  total: number;
  /** Calls per create method, only those called at least once. */
  byMethod: Record<string, number>;
}

export async function countGpuObjects<T>(device: GPUDevice, work: () => Promise<T>): Promise<{ result: T; created: GpuObjectCount }> {
  const created: GpuObjectCount = { total: 0, byMethod: {} };
  const target = device as unknown as Record<string, unknown>;
  /** Methods the device held as own properties before (put back as they were, not deleted). */
  const ownBefore = new Map<string, unknown>();
  for (const name of COUNTED) {
    const original = target[name];
    if (typeof original !== 'function') continue;
    if (Object.prototype.hasOwnProperty.call(target, name)) ownBefore.set(name, original);
    target[name] = (...args: unknown[]): unknown => {
      created.total++;
      created.byMethod[name] = (created.byMethod[name] ?? 0) + 1;
      return (original as (...a: unknown[]) => unknown).apply(device, args);
    };
  }
  try {
    return { result: await work(), created };
  } finally {
    for (const name of COUNTED) {
      if (ownBefore.has(name)) target[name] = ownBefore.get(name);
      else delete target[name];
    }
  }
}
