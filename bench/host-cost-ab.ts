// The host work of a decode step, this checkout against another one, in one process: two decode loops
// of the bench's shape (bench/host-cost.ts; 256 × 512, 32 layers, tiny heads), one built from this
// checkout's sources and one from `--base` (another checkout of the repository, e.g. a worktree of an
// earlier commit, with node_modules reachable from it), take turns in blocks of BLOCK_STEPS steps, so
// a machine whose speed drifts over minutes (a shared VM) weighs on both alike. Each checkout's code is
// first warmed by JIT_WARMUP_STEPS steps of a tiny batch, as measureHostCost does (code that runs a
// few times a step, such as a flush group's, is otherwise timed before the JIT optimises it). Steps are
// encoded and not run, the young generation collected before each (as the bench does; run with --expose-gc). The
// first two steps of each block, which follow a change of loop, are not counted. Prints, per checkout,
// the medians of prepare and of the target's part (prepare + every layer's encode + finish), and the
// block-table writes per step.
//   git worktree add /tmp/base <commit> && ln -s "$PWD/node_modules" /tmp/base/node_modules
//   node --expose-gc --import tsx bench/host-cost-ab.ts --base /tmp/base [--rounds 6] [--two-dispatch] [--base-first]
import { register } from 'node:module';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

register('./raw-import-hooks.mjs', import.meta.url); // shaders are imported as `?raw`, as under Vite

const { values } = parseArgs({
  options: {
    base: { type: 'string' },
    rounds: { type: 'string', default: '6' },
    'two-dispatch': { type: 'boolean', default: false },
    'base-first': { type: 'boolean', default: false },
  },
});
if (values.base === undefined) throw new Error('--base <path of another checkout> is required');
const gc = (globalThis as { gc?: (options: { type: 'minor' }) => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

type HostCostModule = typeof import('./host-cost');
const here: HostCostModule = await import('./host-cost');
const base: HostCostModule = await import(pathToFileURL(resolve(values.base, 'bench/host-cost.ts')).href);
const { createGpu, describeGpu } = await import('../src/gpu/create-gpu');
const { median } = await import('../src/gpu/gpu-timing');

const BLOCK_STEPS = 16;
const SETTLE_STEPS = 2;
const rounds = Number(values.rounds);
const decodeWritesKv = !values['two-dispatch'];
const gpu = await createGpu();
const shape = here.hostShapeFrom({ layers: '32', sequences: '256', context: '512' });
const steps = rounds * (BLOCK_STEPS + SETTLE_STEPS);
for (const module of [here, base]) {
  // Through each checkout's own DecodeLoop (an older checkout has no warm-up helper to call).
  const warm = await module.DecodeLoop.create(gpu, { ...shape, sequences: 4, context: 16 }, here.JIT_WARMUP_STEPS, true, decodeWritesKv);
  for (let step = 0; step < here.JIT_WARMUP_STEPS; step++) await warm.step(step, true);
  warm.destroy();
}
const loops = {
  'this checkout': await here.DecodeLoop.create(gpu, shape, steps, true, decodeWritesKv),
  [`--base ${values.base}`]: await base.DecodeLoop.create(gpu, shape, steps, true, decodeWritesKv),
};
const order = Object.keys(loops);
if (values['base-first']) order.reverse();
const samples = new Map(order.map((name) => [name, { prepare: [] as number[], part: [] as number[], tableWrites: 0, steps: 0 }]));
console.log(
  `host work, this checkout against ${values.base}, on ${describeGpu(gpu)}: ${shape.sequences} sequences × ${shape.context}, ` +
    `${shape.layers} layers, ${decodeWritesKv ? 'decodeWritesKv (one dispatch per layer)' : 'K/V write + attention (two dispatches)'}, ` +
    `${rounds} rounds of ${BLOCK_STEPS} counted steps each`,
);
for (let round = 0; round < rounds; round++) {
  for (const name of order) {
    const s = samples.get(name)!;
    for (let i = 0; i < BLOCK_STEPS + SETTLE_STEPS; i++) {
      gc({ type: 'minor' });
      const t = await loops[name]!.step(round * (BLOCK_STEPS + SETTLE_STEPS) + i, true);
      if (i < SETTLE_STEPS) continue;
      s.prepare.push(t.prepare * 1000);
      s.part.push((t.prepare + t.layers.reduce((a, b) => a + b, 0) + t.finish) * 1000);
      s.tableWrites += (t as { tableWrites?: number }).tableWrites ?? Number.NaN; // an older checkout does not count them
      s.steps++;
    }
  }
}
for (const [name, s] of samples) {
  console.log(
    `  ${name}: prepare ${median(s.prepare).toFixed(0)} µs, prepare + layers + finish ${median(s.part).toFixed(0)} µs, ` +
      (Number.isNaN(s.tableWrites) ? 'block-table writes not counted there' : `${(s.tableWrites / s.steps).toFixed(2)} block-table writes per step`),
  );
}
process.exit(0);
