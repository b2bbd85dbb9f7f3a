// GpuPins bookkeeping on a real device: blocks are retained once per encoder (deduplicated across
// layers), only the new ones of a later pin are retained, and a retain that throws leaves nothing
// marked as pinned, so the next pin of the same blocks retains them. A prepared batch opens a table
// read of its slots instead (no block retained), ended with the same slots when its work completes; a
// read still held by an unsubmitted encoder when a newer one completes becomes retains of what it may
// reach (heldSince).
import { beforeAll, describe, expect, it } from 'vitest';
import { testGpu } from '../helpers/gpu';
import { GpuPins } from '../../src/cache/gpu-pins';
import type { Gpu } from '../../src/gpu/create-gpu';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});

/** Pins whose retain records what it retains, or throws while `failing.on` is set. */
function failablePins(): { pins: GpuPins; retained: number[][]; failing: { on: boolean } } {
  const retained: number[][] = [];
  const failing = { on: false };
  const pins = pinsWith((blocks) => {
    if (failing.on) throw new Error('retain failed');
    retained.push([...blocks]);
  }, []);
  return { pins, retained, failing };
}

function pinsWith(retain: (blocks: Int32Array) => void, released: number[][]): GpuPins {
  return new GpuPins(gpu.device, 16, 4, retain, (blocks) => released.push([...blocks]));
}

/**
 * Pins with table reads that log what they do: ['begin', epoch, slots] and ['end', safe epoch, slots];
 * `held` gives what heldSince answers for an epoch.
 */
function readingPins(held: Record<number, number[]> = {}): { pins: GpuPins; retained: number[][]; released: number[][]; reads: Array<[string, number, number[]]> } {
  const retained: number[][] = [];
  const released: number[][] = [];
  const reads: Array<[string, number, number[]]> = [];
  let epoch = 0;
  const pins = new GpuPins(gpu.device, 16, 4, (blocks) => retained.push([...blocks]), (blocks) => released.push([...blocks]), {
    begin: (slots) => (reads.push(['begin', ++epoch, [...slots]]), epoch),
    end: (safe, slots) => void reads.push(['end', safe, [...slots]]),
    heldSince: (e) => Int32Array.from(held[e] ?? []),
  });
  return { pins, retained, released, reads };
}

async function submit(pins: GpuPins, ...encoders: GPUCommandEncoder[]): Promise<void> {
  const buffers = encoders.map((e) => e.finish());
  gpu.device.queue.submit(buffers);
  await pins.submitted(buffers);
}

describe('GpuPins', () => {
  it('retains each block once per encoder and releases them after the submission completes', async () => {
    const retained: number[][] = [];
    const released: number[][] = [];
    const pins = pinsWith((blocks) => retained.push([...blocks]), released);
    const encoder = gpu.device.createCommandEncoder();
    pins.pin(encoder, [1, 2, 3], [0]);
    pins.pin(encoder, [3, 2, 1], [0]); // a second layer of the same step
    pins.pin(encoder, [2, 4, 5], [1]);
    expect(retained).toEqual([[1, 2, 3], [4, 5]]);
    expect(pins.pendingCount).toBe(5);
    expect(pins.slotPinned(0) && pins.slotPinned(1)).toBe(true);
    const buffer = encoder.finish();
    gpu.device.queue.submit([buffer]);
    await pins.submitted([buffer]);
    expect(released).toEqual([[1, 2, 3, 4, 5]]);
    expect(pins.pendingCount).toBe(0);
    expect(pins.slotPinned(0) || pins.slotPinned(1)).toBe(false);
  });

  it('a retain that throws pins nothing, and the next pin retries the same blocks', () => {
    const { pins, retained, failing } = failablePins();
    const encoder = gpu.device.createCommandEncoder();
    pins.pin(encoder, [7], []);
    failing.on = true;
    expect(() => pins.pin(encoder, [7, 8, 9], [])).toThrow('retain failed');
    expect(pins.pendingCount).toBe(1);
    failing.on = false;
    pins.pin(encoder, [8, 9], []);
    expect(retained).toEqual([[7], [8, 9]]);
    expect(pins.pendingCount).toBe(3);
  });

  it("an encoder's first Int32Array pin is retained in place; later pins still dedupe against it", async () => {
    const retained: Int32Array[] = [];
    const released: number[][] = [];
    const pins = pinsWith((blocks) => retained.push(blocks), released);
    const encoder = gpu.device.createCommandEncoder();
    const batch = Int32Array.of(4, 1, 6);
    pins.pin(encoder, batch, [0]);
    expect(retained[0]).toBe(batch); // no copy
    pins.pin(encoder, Int32Array.of(6, 1, 7), [0]); // a second batch in the same encoder
    pins.pin(encoder, [4, 7], []);
    expect(retained.map((r) => [...r])).toEqual([[4, 1, 6], [7]]);
    expect([...batch]).toEqual([4, 1, 6]); // the caller's array was not written
    expect(pins.pendingCount).toBe(4);
    const buffer = encoder.finish();
    gpu.device.queue.submit([buffer]);
    await pins.submitted([buffer]);
    expect(released).toEqual([[4, 1, 6, 7]]);
    expect(pins.pendingCount).toBe(0);
  });

  it('a first pin holding a block twice retains it twice and releases both; a failed one retries without a trace', async () => {
    const { pins, retained, failing } = failablePins();
    const a = gpu.device.createCommandEncoder();
    pins.pin(a, Int32Array.of(3, 5, 3, 2), []); // block 3 twice (a prefix block shared by two sequences)
    expect(retained).toEqual([[3, 5, 3, 2]]);
    expect(pins.pendingCount).toBe(4);
    pins.pin(a, [2, 3, 6], []); // a later pin dedupes against the in-place batch
    expect(retained).toEqual([[3, 5, 3, 2], [6]]);
    const b = gpu.device.createCommandEncoder();
    failing.on = true;
    expect(() => pins.pin(b, Int32Array.of(8, 9), [])).toThrow('retain failed');
    failing.on = false;
    pins.pin(b, Int32Array.of(9, 8), []);
    expect(retained).toEqual([[3, 5, 3, 2], [6], [9, 8]]);
    expect(pins.pendingCount).toBe(7);
    const buffers = [a.finish(), b.finish()];
    gpu.device.queue.submit(buffers);
    await pins.submitted(buffers);
    expect(pins.pendingCount).toBe(0);
  });

  it('a prepared batch opens one read of its slots, retains nothing, and ends it on completion', async () => {
    const { pins, retained, released, reads } = readingPins();
    const encoder = gpu.device.createCommandEncoder();
    const step = { pinEpoch: 0 };
    pins.pinOnce(encoder, step, 3, [0, 1]);
    pins.pinOnce(encoder, step, 3, [0, 1]); // the next layer: nothing more
    pins.pinOnce(encoder, { pinEpoch: 0 }, 1, [2]); // another batch in the same encoder
    expect(reads).toEqual([['begin', 1, [0, 1]], ['begin', 2, [2]]]);
    expect(retained).toEqual([]);
    expect(pins.pendingCount).toBe(4);
    expect(pins.slotPinned(0) && pins.slotPinned(1) && pins.slotPinned(2)).toBe(true);
    await submit(pins, encoder);
    expect(reads).toEqual([['begin', 1, [0, 1]], ['begin', 2, [2]], ['end', 2, [0, 1]], ['end', 2, [2]]]);
    expect(released).toEqual([[]]);
    expect(pins.pendingCount).toBe(0);
    expect(pins.openReadCount).toBe(0);
    expect([0, 1, 2, 3].some((slot) => pins.slotPinned(slot))).toBe(false);
  });

  it("a held encoder's read becomes retains of its blocks once a newer read completes", async () => {
    const { pins, retained, released, reads } = readingPins({ 1: [3, 5], 2: [5, 9] });
    const abandoned = gpu.device.createCommandEncoder();
    pins.pinOnce(abandoned, { pinEpoch: 0 }, 2, [0]);
    pins.pinOnce(abandoned, { pinEpoch: 0 }, 2, [1]);
    const later = gpu.device.createCommandEncoder();
    pins.pinOnce(later, { pinEpoch: 0 }, 1, [2]);
    expect(reads).toEqual([['begin', 1, [0]], ['begin', 2, [1]], ['begin', 3, [2]]]);
    await submit(pins, later);
    // Reads 1 and 2 were converted (what they may reach retained, each block once) and all three ended.
    expect(retained).toEqual([[3, 5], [9]]);
    expect(reads.slice(3)).toEqual([['end', 3, [2]], ['end', 3, [0]], ['end', 3, [1]]]);
    expect(pins.openReadCount).toBe(0);
    expect(pins.pendingCount).toBe(3); // the abandoned encoder still holds its three blocks
    expect(pins.slotPinned(0) && pins.slotPinned(1)).toBe(true);
    await submit(pins, abandoned);
    expect(released).toEqual([[], [3, 5, 9]]);
    expect(pins.pendingCount).toBe(0);
  });

  it('a newer read held while an older one completes stays open; releaseAll ends every read', async () => {
    const { pins, reads } = readingPins();
    const first = gpu.device.createCommandEncoder();
    pins.pinOnce(first, { pinEpoch: 0 }, 1, [0]);
    const second = gpu.device.createCommandEncoder();
    pins.pinOnce(second, { pinEpoch: 0 }, 1, [1]);
    await submit(pins, first);
    // Read 2 is newer than the completed read 1: it stays open, so only epochs up to 1 are safe.
    expect(reads).toEqual([['begin', 1, [0]], ['begin', 2, [1]], ['end', 1, [0]]]);
    expect(pins.openReadCount).toBe(1);
    pins.releaseAll();
    expect(reads).toEqual([['begin', 1, [0]], ['begin', 2, [1]], ['end', 1, [0]], ['end', Infinity, [1]]]);
    expect(pins.openReadCount).toBe(0);
    expect(pins.pendingCount).toBe(0);
  });
});
