// writeElements against writeBuffer's element form: for each element type, views that start inside
// their ArrayBuffer (subarrays), element offsets and counts, and byte offsets in the destination, the
// GPU buffer read back holds exactly the elements named, at the byte offset named, and nothing else
// changes. A version that ignored the view's byteOffset or counted in elements where bytes are meant
// writes other words and fails here.
import { beforeAll, describe, expect, it } from 'vitest';
import { writeElements } from '../../src/gpu/write-elements';
import { readBackWords } from '../../src/kernels/kv-bindings';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';

failOnUncapturedGpuErrors();

const WORDS = 64;
const FILL = 0xa5a5a5a5;

let device: GPUDevice;
beforeAll(async () => {
  device = (await testGpu()).device;
});

/** A buffer of WORDS words, every one FILL. */
function filledBuffer(): GPUBuffer {
  const buffer = device.createBuffer({ size: WORDS * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
  device.queue.writeBuffer(buffer, 0, new Uint32Array(WORDS).fill(FILL));
  return buffer;
}

const kinds = [
  ['Uint32Array', (n: number) => new Uint32Array(n)],
  ['Int32Array', (n: number) => new Int32Array(n)],
  ['Float32Array', (n: number) => new Float32Array(n)],
] as const;

describe('writeElements', () => {
  it.each(kinds)('writes exactly the named %s elements at the named byte offset', async (_, make) => {
    // A view starting 5 elements into its buffer, holding distinct bit patterns.
    const whole = make(40);
    const bits = new Uint32Array(whole.buffer);
    for (let i = 0; i < bits.length; i++) bits[i] = 0x1000 + 17 * i;
    const view = whole.subarray(5, 35);
    const cases = [
      { at: 0, first: 0, count: view.length },
      { at: 16, first: 3, count: 7 },
      { at: 100, first: 29, count: 1 },
      { at: 4, first: 12 }, // count defaults to the rest of the view
    ];
    for (const c of cases) {
      const buffer = filledBuffer();
      try {
        writeElements(device.queue, buffer, c.at, view, c.first, c.count);
        const got = await readBackWords(device, buffer);
        const count = c.count ?? view.length - c.first;
        const expected = new Uint32Array(WORDS).fill(FILL);
        expected.set(bits.subarray(5 + c.first, 5 + c.first + count), c.at / 4);
        expect(Array.from(got), JSON.stringify(c)).toEqual(Array.from(expected));
      } finally {
        buffer.destroy();
      }
    }
  });

  it('writes the whole view when no range is given', async () => {
    const buffer = filledBuffer();
    try {
      const view = Uint32Array.from({ length: 8 }, (_, i) => i + 1);
      writeElements(device.queue, buffer, 8, view);
      const expected = new Uint32Array(WORDS).fill(FILL);
      expected.set(view, 2);
      expect(Array.from(await readBackWords(device, buffer))).toEqual(Array.from(expected));
    } finally {
      buffer.destroy();
    }
  });
});
