// How a decode step's host cost splits between this library and Dawn, measured in one process: one
// decode loop (bench/host-cost.ts), steps encoded and not run, in blocks of BLOCK_STEPS that take turns
// between encoding into the step's compute pass (what the bench times) and encoding into a stand-in
// pass whose setPipeline / setBindGroup / dispatchWorkgroups do nothing (every check, lookup and
// bookkeeping step of this library still runs; Dawn records nothing). The young generation is collected
// before each step, as the bench does. The difference of the two is what Dawn's recording calls cost
// per layer: the part of the host cost no change to this library's code can remove while a layer
// records the same dispatches. Also counts, in one more step, the pass calls per layer and the
// queue.writeBuffer calls per step (table rows, slot map, work list).
//   npx tsx bench/host-cost-split.ts [--layers 32] [--sequences 256] [--context 512] [--rounds 6] [--writes-kv]
import { register } from 'node:module';
import { parseArgs } from 'node:util';

register('./raw-import-hooks.mjs', import.meta.url); // shaders are imported as `?raw`, as under Vite

const { collector, DecodeLoop, HOST_SHAPE_ARGS, hostShapeFrom, uploadEncodeOf } = await import('./host-cost');
const { values } = parseArgs({
  options: {
    ...HOST_SHAPE_ARGS,
    rounds: { type: 'string', default: '6' },
    'writes-kv': { type: 'boolean', default: false },
  },
});
const { createGpu, describeGpu } = await import('../src/gpu/create-gpu');
const { median } = await import('../src/gpu/gpu-timing');

const BLOCK_STEPS = 20;
const SETTLE_STEPS = 2;
const JIT_STEPS = 300;
const ways = ['recorded', 'skipped'] as const;
const rounds = Number(values.rounds);
const decodeWritesKv = values['writes-kv'];
const shape = hostShapeFrom(values);
const scavenge = collector('minor');
if (scavenge === undefined) throw new Error('this runtime cannot collect its heap on demand (run it on Node)');

const gpu = await createGpu();
const steps = JIT_STEPS + rounds * ways.length * BLOCK_STEPS + 1;
console.log(
  `host cost of a decode step, this library's part and Dawn's, on ${describeGpu(gpu)}: ${shape.sequences} sequences × ` +
    `${shape.context}, ${shape.layers} layers, ${decodeWritesKv ? 'decodeWritesKv (one dispatch per layer)' : 'K/V write + attention (two dispatches)'}; ` +
    `encoded, not run; ${rounds} rounds of ${ways.length} blocks of ${BLOCK_STEPS} steps`,
);
const loop = await DecodeLoop.create(gpu, shape, steps, true, decodeWritesKv);
try {
  for (let step = 0; step < JIT_STEPS; step++) await loop.step(step, true, step % 2 === 1);
  const samples = new Map(ways.map((way) => [way, { part: [] as number[], prepare: [] as number[], layer: [] as number[], heap: [] as number[] }]));
  let token = JIT_STEPS;
  for (let round = 0; round < rounds; round++) {
    for (const way of ways) {
      const into = samples.get(way)!;
      for (let i = 0; i < BLOCK_STEPS; i++) {
        scavenge();
        const t = await loop.step(token++, true, way === 'skipped');
        if (i < SETTLE_STEPS) continue;
        into.part.push(uploadEncodeOf(t));
        into.prepare.push(t.prepare);
        into.layer.push(...t.layers);
        into.heap.push(t.heapBytes);
      }
    }
  }
  const calls = await countCalls(gpu.device, () => loop.step(token++, true));
  const recorded = samples.get('recorded')!;
  const skipped = samples.get('skipped')!;
  for (const way of ways) {
    const s = samples.get(way)!;
    console.log(
      `  ${way === 'recorded' ? "into the step's pass" : 'pass calls skipped'}: prepare + every layer\'s encode + finish ${(median(s.part) * 1e3).toFixed(0)} µs ` +
        `(prepare ${(median(s.prepare) * 1e3).toFixed(0)}, ${(median(s.layer) * 1e3).toFixed(2)} per layer), ` +
        `JS heap ${(median(s.heap) / 1024).toFixed(1)} KiB per step, ${s.part.length} steps`,
    );
  }
  const layerDawn = median(recorded.layer) - median(skipped.layer);
  console.log(
    `  per layer: this library ${(median(skipped.layer) * 1e3).toFixed(2)} µs, Dawn's ${calls.passCallsPerLayer} pass calls ` +
      `${(layerDawn * 1e3).toFixed(2)} µs (${((layerDawn / median(recorded.layer)) * 100).toFixed(0)} % of the layer; ` +
      `${((layerDawn / calls.passCallsPerLayer) * 1e3).toFixed(2)} µs per call); queue.writeBuffer calls per step: ${calls.writesPerStep}`,
  );
} finally {
  loop.destroy();
}
process.exit(0);

/**
 * Pass calls per layer and queue.writeBuffer calls of one step `run` (encoded into the real pass),
 * counted by wrapping the methods on the objects the step uses (the step is not timed).
 */
async function countCalls(device: GPUDevice, run: () => Promise<unknown>): Promise<{ passCallsPerLayer: number; writesPerStep: number }> {
  let passCalls = 0;
  let writes = 0;
  const queue = device.queue;
  const writeBuffer = queue.writeBuffer;
  const beginComputePass = GPUCommandEncoder.prototype.beginComputePass;
  queue.writeBuffer = function (this: GPUQueue, ...args: Parameters<GPUQueue['writeBuffer']>) {
    writes++;
    return writeBuffer.apply(this, args);
  };
  GPUCommandEncoder.prototype.beginComputePass = function (this: GPUCommandEncoder, descriptor?: GPUComputePassDescriptor) {
    const pass = beginComputePass.call(this, descriptor);
    for (const name of ['setPipeline', 'setBindGroup', 'dispatchWorkgroups'] as const) {
      const method = pass[name] as (...a: unknown[]) => void;
      (pass as unknown as Record<string, unknown>)[name] = (...a: unknown[]) => {
        passCalls++;
        method.apply(pass, a);
      };
    }
    return pass;
  };
  try {
    await run();
  } finally {
    queue.writeBuffer = writeBuffer;
    GPUCommandEncoder.prototype.beginComputePass = beginComputePass;
  }
  return { passCallsPerLayer: passCalls / shape.layers, writesPerStep: writes };
}
