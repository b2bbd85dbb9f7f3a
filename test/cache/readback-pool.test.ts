// The readback pool on a real device, through a device wrapper that counts live buffers: reads return
// what the GPU wrote; an idle buffer is reused only by a read it fits, the smallest that fits first; a
// full pool keeps its largest buffers and destroys the rest, so the live readback bytes stay within
// `keep` × the largest read however reads of mixed sizes follow each other; a read that fails destroys
// its buffer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReadbackPool } from '../../src/cache/readback-pool';
import { InstrumentedDevice } from '../reliability/helpers/instrumented-device';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';

failOnUncapturedGpuErrors();

let instrumented: InstrumentedDevice;
let device: GPUDevice;
let source: GPUBuffer;
beforeAll(async () => {
  instrumented = new InstrumentedDevice((await testGpu()).device);
  device = instrumented.device;
  source = instrumented.real.createBuffer({ size: 4096, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  instrumented.real.queue.writeBuffer(source, 0, Uint32Array.from({ length: 1024 }, (_, i) => i * 7 + 1));
});
afterAll(() => source.destroy());

/** Live readback buffers' sizes, smallest first. */
const liveReadbacks = (): number[] =>
  [...instrumented.live.values()].filter((r) => r.label === 'readback').map((r) => r.size).sort((a, b) => a - b);

/** Acquires a buffer for `bytes`, copies the source's first `bytes` into it and reads them back. */
async function readThrough(pool: ReadbackPool, bytes: number): Promise<{ buffer: GPUBuffer; words: Uint32Array }> {
  const buffer = pool.acquire(bytes);
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(source, 0, buffer, 0, bytes);
  device.queue.submit([encoder.finish()]);
  const words = await pool.read(buffer, (data) => new Uint32Array(data, 0, bytes / 4).slice());
  return { buffer, words };
}

describe('ReadbackPool', () => {
  it('reads back what the GPU copied, and reuses the smallest idle buffer that fits', async () => {
    const pool = new ReadbackPool(device, 4);
    try {
      // Three reads in flight at once, so each gets a buffer of its own.
      const sizes = [64, 1024, 256];
      const buffers = new Map(sizes.map((bytes) => [bytes, pool.acquire(bytes)] as const));
      const encoder = device.createCommandEncoder();
      for (const [bytes, b] of buffers) encoder.copyBufferToBuffer(source, 0, b, 0, bytes);
      device.queue.submit([encoder.finish()]);
      const read = await Promise.all([...buffers].map(([bytes, b]) => pool.read(b, (data) => new Uint32Array(data, 0, bytes / 4).slice())));
      read.forEach((words, i) => expect(Array.from(words)).toEqual(Array.from({ length: sizes[i]! / 4 }, (_, j) => j * 7 + 1)));
      expect(pool.idleSizes()).toEqual([64, 256, 1024]);
      const taken = [pool.acquire(100), pool.acquire(64)];
      expect(taken).toEqual([buffers.get(256), buffers.get(64)]); // not the 1024-byte buffer for 100 bytes
      const fresh = pool.acquire(2048); // nothing idle fits
      expect([...buffers.values()]).not.toContain(fresh);
      expect(fresh.size).toBe(2048);
      for (const b of [...taken, fresh]) b.destroy();
    } finally {
      pool.destroy();
    }
  });

  it('keeps the largest buffers when full: live readback bytes stay within keep × the largest read', async () => {
    const before = liveReadbacks().length;
    const keep = 2;
    const pool = new ReadbackPool(device, keep);
    try {
      // Reads held at once (four buffers out), then returned: the pool keeps the two largest.
      const held = [64, 512, 128, 256].map((bytes) => pool.acquire(bytes));
      const encoder = device.createCommandEncoder();
      for (const b of held) encoder.copyBufferToBuffer(source, 0, b, 0, b.size);
      device.queue.submit([encoder.finish()]);
      await Promise.all(held.map((b) => pool.read(b, () => undefined)));
      expect(pool.idleSizes()).toEqual([256, 512]);
      expect(liveReadbacks().length - before).toBe(keep);
      // Mixed sizes afterwards never grow it past keep × the largest read.
      let largest = 512;
      for (const bytes of [16, 1024, 32, 768, 2048, 64, 1024, 16, 2048, 512]) {
        await readThrough(pool, bytes);
        largest = Math.max(largest, bytes);
        const idle = pool.idleSizes();
        expect(idle.length).toBeLessThanOrEqual(keep);
        expect(idle.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(keep * largest);
        expect(liveReadbacks().length - before).toBe(idle.length);
      }
      expect(pool.idleSizes()).toEqual([1024, 2048]);
    } finally {
      pool.destroy();
    }
    expect(liveReadbacks().length).toBe(before);
  });

  it('destroys a buffer whose read fails instead of returning it to the pool', async () => {
    const before = liveReadbacks().length;
    const pool = new ReadbackPool(device, 4);
    try {
      const { buffer } = await readThrough(pool, 64);
      expect(pool.acquire(64)).toBe(buffer);
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(source, 0, buffer, 0, 64);
      device.queue.submit([encoder.finish()]);
      await expect(pool.read(buffer, () => { throw new Error('copy failed'); })).rejects.toThrow('copy failed');
      expect(pool.idleSizes()).toEqual([]);
      expect(liveReadbacks().length).toBe(before);
    } finally {
      pool.destroy();
    }
  });
});
