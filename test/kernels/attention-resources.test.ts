// The attention kernels' bind-group cache: a lookup returns the cached group for the same pipeline,
// buffers and offsets (whatever array object carries them), a different buffer in any binding gets its
// own group, and a full cache drops its oldest group first — over all pipelines and files — while the
// recently used ones stay. The upload slots: the same work list and parameters find the slot holding
// them, whatever array carries them; a new list takes the least recently used slot, whose record of
// what it holds is rewritten in place (a shorter list never passes for the longer one it replaced).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttentionResources, PARAM_BLOCKS, PARAMS_WORDS, UPLOAD_SLOTS } from '../../src/kernels/attention-resources';
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

describe('attention upload slots', () => {
  it('finds the slot holding a list, fills the least recently used one otherwise, and never mistakes a prefix for the list', () => {
    const resources = new AttentionResources(device);
    const list = (n: number, seed: number) => new Uint32Array(Array.from({ length: n }, (_, i) => seed * 1000 + i));
    const params = (seed: number) => new Uint32Array(PARAM_BLOCKS * PARAMS_WORDS).fill(seed);
    // A 24-word list whose last 12 words equal the parameter words: its first 12 words followed by the
    // parameters read, word for word, like the list followed by the parameters (only the length differs).
    const long = new Uint32Array([...list(12, 1), ...new Array<number>(12).fill(1)]);
    const prefix = long.slice(0, 12);
    const first = resources.upload(long, 24, params(1));
    expect(resources.upload(long.slice(), 24, params(1))).toBe(first); // equal contents, another array
    const otherParams = resources.upload(long, 24, params(2));
    expect(otherParams).not.toBe(first);
    // Fill every slot, then one more: it takes the least recently used slot, which is first's, and
    // rewrites that slot's array in place (the old list's last words stay behind past the new contents).
    const others = Array.from({ length: UPLOAD_SLOTS - 2 }, (_, i) => resources.upload(list(8, 10 + i), 8, params(1)));
    expect(new Set([first, otherParams, ...others]).size).toBe(UPLOAD_SLOTS);
    const prefixSlot = resources.upload(prefix, 12, params(1));
    expect(prefixSlot).toBe(first);
    expect(Array.from(prefixSlot.contents.subarray(0, prefixSlot.contentWords))).toEqual([...prefix, ...params(1)]);
    // The long list is gone from every slot; the slot holding its first 12 words is not it.
    expect(resources.upload(long, 24, params(1))).not.toBe(prefixSlot);
    expect(resources.upload(prefix, 12, params(1))).toBe(prefixSlot);
    // A version names a list: the same version with the same parameters finds its slot without comparing items.
    const versioned = resources.upload(list(8, 50), 8, params(3), 7);
    expect(resources.upload(list(8, 50), 8, params(3), 7)).toBe(versioned);
    resources.destroy();
  });
});
