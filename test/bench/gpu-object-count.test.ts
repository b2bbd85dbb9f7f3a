// The bench's GPU-object counter: counts what the work creates on the device (not encoders), and
// leaves the device's methods as they were afterwards, also when the work throws.
import { beforeAll, describe, expect, it } from 'vitest';
import { countGpuObjects } from '../../bench/gpu-object-count';
import { testGpu } from '../helpers/gpu';
import type { Gpu } from '../../src/gpu/create-gpu';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});

const ownCreateMethods = (device: GPUDevice) => Object.getOwnPropertyNames(device).filter((name) => name.startsWith('create'));

describe('countGpuObjects', () => {
  it('counts buffers and bind groups made during the work, not command encoders', async () => {
    const { device } = gpu;
    const layout = device.createBindGroupLayout({ entries: [{ binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } }] });
    const { result, created } = await countGpuObjects(device, async () => {
      const buffer = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
      device.createBindGroup({ layout, entries: [{ binding: 0, resource: { buffer } }] });
      device.createCommandEncoder().finish();
      buffer.destroy();
      return 7;
    });
    expect(result).toBe(7);
    expect(created).toEqual({ total: 2, byMethod: { createBuffer: 1, createBindGroup: 1 } });
    expect(ownCreateMethods(device)).toEqual([]);
  });

  it('puts back create methods the device held as own properties', async () => {
    const own = () => 'own buffer';
    const device = { createBuffer: own } as unknown as GPUDevice;
    const { created } = await countGpuObjects(device, async () => device.createBuffer({ size: 4, usage: 0 }));
    expect(created.byMethod).toEqual({ createBuffer: 1 });
    expect((device as unknown as { createBuffer: unknown }).createBuffer).toBe(own);
  });

  it('restores the device when the work throws', async () => {
    await expect(
      countGpuObjects(gpu.device, async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(ownCreateMethods(gpu.device)).toEqual([]);
  });
});
