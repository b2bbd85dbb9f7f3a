// Decode tuning sweep (not part of `npm run bench`): runs the decode shapes of bench/attention.ts once
// per kernel variant — streaming kernel with several unroll factors and split targets, and the tile
// engine — and prints one line per (variant, shape) with the ratio to the read kernel measured in the
// same run. Used to pick the defaults in attention-config.ts / attention-plan.ts. The default variants
// are the current defaults (`stream`) next to lazy rescaling (`-r8`: the running max moves only when a
// step passes it by more than 8, so most steps skip scaling the accumulators), f16 scores (`-hs`, where
// the device has shader-f16), the portable shared
// reduction (`-sh`) and the tile engine (`tile`) — the two decodes a device without subgroups can
// run — prefetching K/V a step ahead (`-pf`, off by default), and other split lengths and targets around
// the defaults of 16 steps (1024 keys on the H100 shape) and half the probed workgroups (`-k512`,
// `-k2048`, `-t1056`), which decide the single long sequence's split count (1 × 32768: 32 splits × 8 kv
// heads = 256 workgroups by default). Each variant's lines are printed as soon as it is done;
// `--rows target` times only the row the decode target reads per shape.
//   npx tsx bench/decode-sweep.ts [--variants stream-u4,stream-u8,tile] [--rounds 3] [--rows target] [--json out.json] [--quick]
//     [--default-limits] [--dawn enable-dawn-features=…]
import { register } from 'node:module';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

register('./raw-import-hooks.mjs', import.meta.url); // shaders are imported as `?raw`, as under Vite

const { values } = parseArgs({
  options: {
    variants: { type: 'string', default: 'stream,stream-pf,stream-k512,stream-k2048,stream-t1056,stream-hs,stream-r8,stream-sh,tile,stream-u2,stream-l4,mma,mma-s64' },
    json: { type: 'string' },
    quick: { type: 'boolean', default: false },
    /** A device with WebGPU's default limits (16 KiB of workgroup memory), as a page that asks for none gets. */
    'default-limits': { type: 'boolean', default: false },
    /** Run the variant list this many times, alternating, and print each variant's median per shape. */
    rounds: { type: 'string', default: '1' },
    /** 'target': per shape only the row the decode target reads (random order, block 16, read-only), a fifth of the time. */
    rows: { type: 'string', default: 'all' },
    /** Extra Dawn flags, e.g. --dawn enable-dawn-features=disable_workgroup_init (merged with the runtime's; repeatable). */
    dawn: { type: 'string', multiple: true, default: [] },
  },
});
const { createGpu, PRECISE_TIMING_DAWN_OPTIONS } = await import('../src/gpu/create-gpu');
const { runAttentionBench } = await import('./attention');
const { median } = await import('../src/gpu/gpu-timing');
const { decodeTuningOf } = await import('./decode-variants');


const gpu = await createGpu({ dawnOptions: [...PRECISE_TIMING_DAWN_OPTIONS, ...values.dawn], defaultLimits: values['default-limits'], subgroupMatrix: true });
// The subgroup-matrix variants only where the device has them (elsewhere they would time the default kernel again).
const names = values.variants!.split(',').filter((name) => gpu.features.subgroupMatrix || !name.startsWith('mma'));
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer (got ${values.rounds})`);
if (values.rows !== 'all' && values.rows !== 'target') throw new Error(`--rows must be all or target (got ${values.rows})`);
const decodeRows = values.rows;
type DecodeRow = Awaited<ReturnType<typeof runAttentionBench>>['decode'][number];
const all: Record<string, DecodeRow[]> = {};
for (let round = 0; round < rounds; round++) {
  for (const name of names) {
    const r = await runAttentionBench(gpu, { quick: values.quick, tuning: decodeTuningOf(name), print: false, decodeOnly: true, decodeRows });
    (all[name] ??= []).push(...r.decode);
    for (const d of r.decode) {
      console.log(
        `${name.padEnd(18)} ${`${d.batch}×${d.context}`.padEnd(9)} bs ${String(d.blockSize).padStart(2)} ${d.tableOrder.padEnd(8)} ` +
          `splits ${String(d.splits).padStart(3)}  ${d.kvGBps.toFixed(0).padStart(5)} GB/s  ratio ${d.ratioToBaseline.toFixed(3)}${d.storesKv ? '  stores K/V' : ''}`,
      );
    }
  }
}
// Per variant and shape, the median ratio of the read-only rows (both orders, every block size) over
// every round: on a noisy machine compare these, not single rows.
const shapes = [...new Set(Object.values(all).flatMap((rows) => rows.map((d) => `${d.batch}×${d.context}`)))];
console.log(`\nmedian ratio to the read kernel, read-only rows over ${rounds} round(s):`);
console.log(`${'variant'.padEnd(18)} ${shapes.map((s) => s.padStart(10)).join('')}`);
for (const name of Object.keys(all)) {
  const cells = shapes.map((shape) => {
    const ratios = all[name]!.filter((d) => !d.storesKv && `${d.batch}×${d.context}` === shape).map((d) => d.ratioToBaseline);
    return (ratios.length > 0 ? median(ratios).toFixed(3) : '-').padStart(10);
  });
  console.log(`${name.padEnd(18)} ${cells.join('')}`);
}
if (values.json) writeFileSync(values.json, JSON.stringify(all, null, 1));
process.exit(0);
