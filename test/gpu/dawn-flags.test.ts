// The flags handed to Dawn's Node binding: Dawn keeps only the last of a repeated flag, so the runtime's
// toggles and the caller's must arrive merged into one enable and one disable list, the caller deciding
// where both name a toggle. Whatever the toggles, workgroup memory reads as zeros until written (on a
// software adapter Dawn zero-fills it with a loop in the shader instead of null initializers).
import { describe, expect, it } from 'vitest';
import { dawnFlags } from '../../src/gpu/dawn-flags';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';

describe('dawnFlags', () => {
  const runtime = { enable: ['vulkan_enable_f16_on_nvidia', 'allow_unsafe_apis'], disable: ['use_vulkan_zero_initialize_workgroup_memory_extension'] };

  it("gives the runtime's toggles as one flag per list", () => {
    expect(dawnFlags(runtime)).toEqual([
      'enable-dawn-features=vulkan_enable_f16_on_nvidia,allow_unsafe_apis',
      'disable-dawn-features=use_vulkan_zero_initialize_workgroup_memory_extension',
    ]);
    expect(dawnFlags({ enable: ['a'], disable: [] })).toEqual(['enable-dawn-features=a']);
    expect(dawnFlags({ enable: [], disable: [] })).toEqual([]);
  });

  it("merges the caller's toggle lists into the runtime's instead of replacing them", () => {
    expect(dawnFlags(runtime, ['disable-dawn-features=timestamp_quantization', 'enable-dawn-features=dump_shaders,use_dxc'])).toEqual([
      'enable-dawn-features=vulkan_enable_f16_on_nvidia,allow_unsafe_apis,dump_shaders,use_dxc',
      'disable-dawn-features=use_vulkan_zero_initialize_workgroup_memory_extension,timestamp_quantization',
    ]);
  });

  it('lets the caller turn a toggle the runtime sets the other way', () => {
    const flags = dawnFlags(runtime, [
      'enable-dawn-features=use_vulkan_zero_initialize_workgroup_memory_extension',
      'disable-dawn-features=allow_unsafe_apis',
    ]);
    expect(flags).toEqual([
      'enable-dawn-features=vulkan_enable_f16_on_nvidia,use_vulkan_zero_initialize_workgroup_memory_extension',
      'disable-dawn-features=allow_unsafe_apis',
    ]);
  });

  it('names each toggle once and passes other flags through in order', () => {
    expect(dawnFlags({ enable: ['a'], disable: [] }, ['backend=null', 'enable-dawn-features=a,b,,b', 'verbose=1'])).toEqual([
      'enable-dawn-features=a,b',
      'backend=null',
      'verbose=1',
    ]);
  });
});

failOnUncapturedGpuErrors();

describe('workgroup memory on the test device', () => {
  const WORDS = 4096;
  const WORKGROUPS = 64;
  // Each workgroup counts the nonzero words it finds before writing any, then fills them with ones: a
  // later workgroup given the same memory unzeroed would count them.
  const code = `
var<workgroup> scratch: array<u32, ${WORDS}>;
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  var nonzero = 0u;
  for (var i = lid; i < ${WORDS}u; i += 64u) { nonzero += select(0u, 1u, scratch[i] != 0u); }
  out[wid.x * 64u + lid] = nonzero;
  workgroupBarrier();
  for (var i = lid; i < ${WORDS}u; i += 64u) { scratch[i] = 0xffffffffu; }
}`;

  it('comes from a Dawn instance that zero-fills it with a loop when the adapter is a software one', async () => {
    const gpu = await testGpu();
    const disabled = gpu.dawnFlags.filter((f) => f.startsWith('disable-dawn-features=')).flatMap((f) => f.split('=')[1]!.split(','));
    expect(disabled.includes('use_vulkan_zero_initialize_workgroup_memory_extension')).toBe(gpu.isFallback);
    expect(gpu.dawnFlags.some((f) => f.startsWith('enable-dawn-features=') && f.includes('vulkan_enable_f16_on_nvidia'))).toBe(true);
  });

  it('reads as zeros before the shader writes it, in every workgroup of a dispatch', async () => {
    const { device } = await testGpu();
    const bytes = WORKGROUPS * 64 * 4;
    const out = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const staging = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }] }));
    pass.dispatchWorkgroups(WORKGROUPS);
    pass.end();
    encoder.copyBufferToBuffer(out, 0, staging, 0, bytes);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const nonzero = new Uint32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    out.destroy();
    staging.destroy();
    expect(nonzero.reduce((a, b) => a + b, 0)).toBe(0);
  });
});
