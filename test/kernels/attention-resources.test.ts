// The attention kernels' bind-group cache: a lookup returns the cached group for the same pipeline,
// buffers and offsets (whatever array object carries them), a different buffer in any binding gets its
// own group, and a full cache drops its oldest group first — over all pipelines and files — while the
// recently used ones stay.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttentionResources } from '../../src/kernels/attention-resources';
import { BIND_GROUP_CACHE_SIZE } from '../../src/kernels/bind-group-cache';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';

failOnUncapturedGpuErrors();

let device: GPUDevice;
const buffers: GPUBuffer[] = [];
const buffer = () => {
  const b = device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE });
  buffers.push(b);
  return b;
};

function pipeline(): GPUComputePipeline {
  const code = `@group(0) @binding(0) var<storage> a: array<u32>;
@group(0) @binding(1) var<storage> b: array<u32>;
@group(0) @binding(2) var<storage, read_write> c: array<u32>;
@compute @workgroup_size(1) fn main() { c[0] = a[0] + b[0]; }`;
  return device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
}

beforeAll(async () => {
  device = (await testGpu()).device;
});
afterAll(() => {
  for (const b of buffers.splice(0)) b.destroy();
});

describe('attention bind-group cache', () => {
  it('returns cached groups by identity and drops the oldest when full', () => {
    const resources = new AttentionResources(device);
    const [p1, p2] = [pipeline(), pipeline()];
    const [a, b, c, d] = [buffer(), buffer(), buffer(), buffer()];
    const g = resources.bindGroup(p1, [{ buffer: a }, { buffer: b }, { buffer: c }]);
    expect(resources.bindGroup(p1, [{ buffer: a }, { buffer: b }, { buffer: c }])).toBe(g); // a new array, same bindings
    expect(resources.bindGroup(p1, [{ buffer: a, offset: 0 }, { buffer: b }, { buffer: c }])).toBe(g); // offset 0 is the default
    expect(resources.bindGroup(p1, [{ buffer: d }, { buffer: b }, { buffer: c }])).not.toBe(g); // binding 0 differs
    expect(resources.bindGroup(p1, [{ buffer: a }, { buffer: d }, { buffer: c }])).not.toBe(g); // binding 1 (the file) differs
    expect(resources.bindGroup(p2, [{ buffer: a }, { buffer: b }, { buffer: c }])).not.toBe(g); // another pipeline
    expect(resources.bindGroupCount).toBe(4);

    // Fill the cache with groups filed under many binding-1 buffers, alternating pipelines.
    const files = Array.from({ length: 64 }, buffer);
    const outs = Array.from({ length: 64 }, buffer);
    let made = 4;
    for (let i = 0; made < BIND_GROUP_CACHE_SIZE; i++, made++) {
      resources.bindGroup(i % 2 ? p1 : p2, [{ buffer: outs[Math.floor(i / 64) % 64]! }, { buffer: files[i % 64]! }, { buffer: c }]);
    }
    expect(resources.bindGroupCount).toBe(BIND_GROUP_CACHE_SIZE);
    expect(resources.bindGroup(p1, [{ buffer: a }, { buffer: b }, { buffer: c }])).toBe(g); // still cached: not evicted yet
    const newest = resources.bindGroup(p2, [{ buffer: a }, { buffer: files[0]! }, { buffer: d }]); // evicts the oldest
    expect(resources.bindGroupCount).toBe(BIND_GROUP_CACHE_SIZE);
    expect(resources.bindGroup(p2, [{ buffer: a }, { buffer: files[0]! }, { buffer: d }])).toBe(newest);
    // g was created first: it is the oldest entry and went first (lookups do not refresh it).
    expect(resources.bindGroup(p1, [{ buffer: a }, { buffer: b }, { buffer: c }])).not.toBe(g);
    expect(resources.bindGroupCount).toBe(BIND_GROUP_CACHE_SIZE);
    resources.destroy();
    expect(resources.bindGroupCount).toBe(0);
  });
});
