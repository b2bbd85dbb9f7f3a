// What a collection before each step does to the host cost of a decode step, measured in one process:
// one decode loop (bench/host-cost.ts) whose steps run in blocks of BLOCK_STEPS, each block with one way
// of collecting before every step — the whole heap, the young generation (the bench's default), nothing
// — the ways taking turns, so a machine whose speed drifts over minutes (a shared VM) weighs on each
// alike. Steps are encoded and not run (as in host-cost-alone.ts), or with --submit submitted and waited
// for, as the bench's own steps are (on a software adapter, whose GPU work runs on the CPU, that takes
// more than 15 minutes at the default shape on the 2-core VM). Prints per way the median of the target's part (prepare + every
// layer's encode + finish) and of prepare and a layer alone, over the blocks' steps (the first two steps of each
// block, which follow a change of way, are not counted).
//   npx tsx bench/host-cost-collections.ts [--layers 32] [--sequences 256] [--context 512] [--rounds 6] [--writes-kv] [--submit]
import { register } from 'node:module';
import { parseArgs } from 'node:util';

register('./raw-import-hooks.mjs', import.meta.url); // shaders are imported as `?raw`, as under Vite

const { collector, DecodeLoop, describeCollection, HOST_SHAPE_ARGS, hostShapeFrom, uploadEncodeOf } = await import('./host-cost');
const { values } = parseArgs({
  options: {
    ...HOST_SHAPE_ARGS,
    rounds: { type: 'string', default: '6' },
    'writes-kv': { type: 'boolean', default: false },
    submit: { type: 'boolean', default: false },
  },
});
const { createGpu, describeGpu } = await import('../src/gpu/create-gpu');
const { median } = await import('../src/gpu/gpu-timing');

const BLOCK_STEPS = 20;
const SETTLE_STEPS = 2;
const JIT_STEPS = 300;
const ways = ['full', 'minor', false] as const;
const encodeOnly = !values.submit;
const rounds = Number(values.rounds);
const decodeWritesKv = values['writes-kv'];
const shape = hostShapeFrom(values);
const collectors = new Map(ways.map((way) => [way, way === false ? () => {} : collector(way)]));
if ([...collectors.values()].some((c) => c === undefined)) throw new Error('this runtime cannot collect its heap on demand (run it on Node)');

const gpu = await createGpu();
const steps = JIT_STEPS + rounds * ways.length * BLOCK_STEPS;
console.log(
  `host cost of a decode step on ${describeGpu(gpu)}: ${shape.sequences} sequences × ${shape.context}, ${shape.layers} layers, ` +
    `${decodeWritesKv ? 'decodeWritesKv (one dispatch per layer)' : 'K/V write + attention (two dispatches)'}; ` +
    `${encodeOnly ? 'encoded, not run' : 'submitted and waited for'}; ${rounds} rounds of ${ways.length} blocks of ${BLOCK_STEPS} steps`,
);
const loop = await DecodeLoop.create(gpu, shape, steps + 1, true, decodeWritesKv);
try {
  for (let step = 0; step < JIT_STEPS; step++) await loop.step(step, encodeOnly);
  const samples = new Map(ways.map((way) => [way, { part: [] as number[], prepare: [] as number[], layer: [] as number[] }]));
  let token = JIT_STEPS;
  for (let round = 0; round < rounds; round++) {
    for (const way of ways) {
      const collect = collectors.get(way)!;
      const into = samples.get(way)!;
      for (let i = 0; i < BLOCK_STEPS; i++) {
        collect();
        const t = await loop.step(token++, encodeOnly);
        if (i < SETTLE_STEPS) continue;
        into.part.push(uploadEncodeOf(t));
        into.prepare.push(t.prepare);
        into.layer.push(...t.layers);
      }
    }
  }
  for (const way of ways) {
    const s = samples.get(way)!;
    console.log(
      `  ${describeCollection(way)}: prepare + every layer's encode + finish ${(median(s.part) * 1e3).toFixed(0)} µs ` +
        `(prepare ${(median(s.prepare) * 1e3).toFixed(0)}, ${(median(s.layer) * 1e3).toFixed(1)} per layer), ${s.part.length} steps`,
    );
  }
} finally {
  loop.destroy();
}
process.exit(0);
