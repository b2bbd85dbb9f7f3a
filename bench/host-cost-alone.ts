// The host work of a decode step alone, on any machine: measureHostCost (bench/host-cost.ts) with the
// measured steps encoded and finished but not submitted, so a software GPU does not share the CPU with
// them. Host cost does not depend on the head shape, so the heads are small (the GPU time it also prints
// is that small shape's, not a model's).
//   npx tsx bench/host-cost-alone.ts [--layers 32] [--sequences 256] [--context 512] [--steps 40] [--no-gc | --full-gc]
// (before each step the young generation is collected; --no-gc: nothing, steps back to back; --full-gc:
// the whole heap, which leaves each step starting cold)
import { register } from 'node:module';
import { parseArgs } from 'node:util';

register('./raw-import-hooks.mjs', import.meta.url); // shaders are imported as `?raw`, as under Vite

const { describeCollection, HOST_SHAPE_ARGS, hostShapeFrom, measureHostCost } = await import('./host-cost');
const { values } = parseArgs({
  options: {
    ...HOST_SHAPE_ARGS,
    steps: { type: 'string', default: '40' },
    'no-gc': { type: 'boolean', default: false },
    'full-gc': { type: 'boolean', default: false },
  },
});
const { createGpu, describeGpu } = await import('../src/gpu/create-gpu');
if (values['no-gc'] && values['full-gc']) throw new Error('--no-gc and --full-gc exclude each other');
const collect = values['no-gc'] ? false : values['full-gc'] ? 'full' : 'minor';
const gpu = await createGpu();
const shape = { ...hostShapeFrom(values), steps: Number(values.steps) };
console.log(
  `host work alone on ${describeGpu(gpu)}: ${shape.sequences} sequences × ${shape.context}, ${shape.layers} layers, ${shape.steps} steps` +
    `, ${describeCollection(collect)}`,
);
for (const decodeWritesKv of [false, true]) {
  const r = await measureHostCost(gpu, { ...shape, encodeOnly: true, decodeWritesKv, collect });
  console.log(
    `  ${decodeWritesKv ? 'decodeWritesKv (one dispatch per layer)' : 'K/V write + attention (two dispatches)'}: ${r.stepMicros.toFixed(0)} µs per step ` +
      `(appends ${r.appendMicros.toFixed(0)}, prepare ${r.prepareMicros.toFixed(0)}, ${r.layerMicros.toFixed(1)} per layer, ` +
      `encoder, finish and markSubmitted ${r.submitMicros.toFixed(0)}); the target's part, prepare + every layer's encode + finish: ` +
      `${r.uploadEncodeMicros.toFixed(0)} µs`,
  );
}
process.exit(0);
