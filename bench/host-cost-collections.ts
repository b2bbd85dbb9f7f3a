// What a collection before each step does to the host cost of a decode step, measured in one process:
// one decode loop (bench/host-cost.ts) whose steps run in blocks of BLOCK_STEPS, each block with one way
// of collecting before every step — the whole heap, the young generation (the bench's default), nothing
// — the ways taking turns, so a machine whose speed drifts over minutes (a shared VM) weighs on each
// alike. With --forms the ways are instead the two step forms, each its own decode loop with the young
// generation collected: K/V write + attention (two dispatches per layer) and decodeWritesKv (one
// dispatch per layer, the staged K/V flushed after each flush group's last layer). Steps are encoded and not run (as in
// host-cost-alone.ts), or with --submit submitted and waited for, as the bench's own steps are (on a
// software adapter, whose GPU work runs on the CPU, that takes more than 15 minutes at the default shape
// on the 2-core VM). Prints per way the median of the target's part (prepare + every layer's encode +
// finish) and of prepare, a layer and the finish alone, over the blocks' steps (the first two steps of
// each block, which follow a change of way, are not counted).
//   npx tsx bench/host-cost-collections.ts [--layers 32] [--sequences 256] [--context 512] [--rounds 6] [--writes-kv | --forms] [--submit]
import { register } from 'node:module';
import { parseArgs } from 'node:util';

register('./raw-import-hooks.mjs', import.meta.url); // shaders are imported as `?raw`, as under Vite

const { collector, DecodeLoop, describeCollection, HOST_SHAPE_ARGS, hostShapeFrom, uploadEncodeOf } = await import('./host-cost');
const { values } = parseArgs({
  options: {
    ...HOST_SHAPE_ARGS,
    rounds: { type: 'string', default: '6' },
    'writes-kv': { type: 'boolean', default: false },
    forms: { type: 'boolean', default: false },
    submit: { type: 'boolean', default: false },
  },
});
const { createGpu, describeGpu } = await import('../src/gpu/create-gpu');
const { median } = await import('../src/gpu/gpu-timing');
type DecodeLoopType = Awaited<ReturnType<typeof DecodeLoop.create>>;

const BLOCK_STEPS = 20;
const SETTLE_STEPS = 2;
const JIT_STEPS = 300;
const COLLECTIONS = ['full', 'minor', false] as const;
const FORM_NAMES = { false: 'K/V write + attention (two dispatches)', true: 'decodeWritesKv (one dispatch per layer, a flush per flush group of layers)' };
if (values.forms && values['writes-kv']) throw new Error('--forms compares both step forms: leave out --writes-kv');
const encodeOnly = !values.submit;
const rounds = Number(values.rounds);
const shape = hostShapeFrom(values);
const collect = (kind: 'full' | 'minor' | false): (() => void) => {
  const run = kind === false ? () => {} : collector(kind);
  if (run === undefined) throw new Error('this runtime cannot collect its heap on demand (run it on Node)');
  return run;
};

const gpu = await createGpu();
const wayCount = values.forms ? 2 : COLLECTIONS.length;
const steps = JIT_STEPS + rounds * wayCount * BLOCK_STEPS;
console.log(
  `host cost of a decode step on ${describeGpu(gpu)}: ${shape.sequences} sequences × ${shape.context}, ${shape.layers} layers, ` +
    `${values.forms ? 'both step forms, the young generation collected' : FORM_NAMES[String(values['writes-kv']) as 'true' | 'false']}; ` +
    `${encodeOnly ? 'encoded, not run' : 'submitted and waited for'}; ${rounds} rounds of ${wayCount} blocks of ${BLOCK_STEPS} steps`,
);
const loops: DecodeLoopType[] = [];
try {
  const ways: { label: string; loop: DecodeLoopType; collect: () => void }[] = [];
  if (values.forms) {
    for (const writesKv of [false, true]) {
      const loop = await DecodeLoop.create(gpu, shape, steps + 1, true, writesKv);
      loops.push(loop);
      ways.push({ label: FORM_NAMES[String(writesKv) as 'true' | 'false'], loop, collect: collect('minor') });
    }
  } else {
    const loop = await DecodeLoop.create(gpu, shape, steps + 1, true, values['writes-kv']);
    loops.push(loop);
    for (const kind of COLLECTIONS) ways.push({ label: describeCollection(kind), loop, collect: collect(kind) });
  }
  for (const loop of loops) for (let step = 0; step < JIT_STEPS / loops.length; step++) await loop.step(step, encodeOnly);
  const samples = ways.map(() => ({ part: [] as number[], prepare: [] as number[], layer: [] as number[], finish: [] as number[] }));
  let token = JIT_STEPS;
  for (let round = 0; round < rounds; round++) {
    for (let w = 0; w < ways.length; w++) {
      const { loop, collect: before } = ways[w]!;
      const into = samples[w]!;
      for (let i = 0; i < BLOCK_STEPS; i++) {
        before();
        const t = await loop.step(token++, encodeOnly);
        if (i < SETTLE_STEPS) continue;
        into.part.push(uploadEncodeOf(t));
        into.prepare.push(t.prepare);
        into.layer.push(...t.layers);
        into.finish.push(t.finish);
      }
    }
  }
  ways.forEach((way, w) => {
    const s = samples[w]!;
    console.log(
      `  ${way.label}: prepare + every layer's encode + finish ${(median(s.part) * 1e3).toFixed(0)} µs ` +
        `(prepare ${(median(s.prepare) * 1e3).toFixed(0)}, ${(median(s.layer) * 1e3).toFixed(1)} per layer, finish ${(median(s.finish) * 1e3).toFixed(0)}), ${s.part.length} steps`,
    );
  });
} finally {
  for (const loop of loops) loop.destroy();
}
process.exit(0);
