// Prefill tuning sweep (not part of `npm run bench`): times the bench's causal prefill (8 × 2048, or
// 2 × 128 with --quick) once per kernel variant and prints each variant's TFLOP/s and its share of the
// device's f32 FMA rate measured in the same run. Used to pick the register-blocked kernel's defaults
// (attention-config.ts). A variant whose tile comes out the same as an earlier one's is not re-timed.
//   npx tsx bench/prefill-sweep.ts [--variants blocked,blocked-f32-m48,tile,mma] [--quick] [--json out.json]
//     [--dawn enable-dawn-features=…]
import { register } from 'node:module';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

register('./raw-import-hooks.mjs', import.meta.url); // shaders are imported as `?raw`, as under Vite

const { values } = parseArgs({
  options: {
    variants: { type: 'string', default: 'tile,blocked,blocked-m48,blocked-f32,blocked-f32-m48,blocked-f32-r64-m48,blocked-r16,blocked-k16,blocked-f32-k8-m48,blocked-w256,blocked-f32-w256,blocked-w512,blocked-f32-w512,blocked-s2,blocked-s1,mma,mma-s2,mma-s4,mma-s8,mma-s4-k32,mma-s2-k64,mma-s1-k64,mma-d,mma-s4-k32-d,mma-s1-k64-d,mma-s2-r2-k32,mma-s2-r2-k32-d,mma-r2-k64,mma-s4-r2,mma-s2-d-kv1,mma-s4-d-kv1' },
    json: { type: 'string' },
    quick: { type: 'boolean', default: false },
    /** Extra Dawn flags, e.g. --dawn enable-dawn-features=disable_workgroup_init (merged with the runtime's; repeatable). */
    dawn: { type: 'string', multiple: true, default: [] },
  },
});
type AttentionTuning = import('../src/kernels/paged-attention').AttentionTuning;
type BlockedPrefillTuning = import('../src/kernels/attention-config').BlockedPrefillTuning;
const { createGpu, PRECISE_TIMING_DAWN_OPTIONS } = await import('../src/gpu/create-gpu');
const { runAttentionBench } = await import('./attention');
const { measureFmaRate } = await import('./fma');

/**
 * `tile` (tile engine), `mma` (subgroup matrices, where the device has them; `mma-s4-k32`: 4 subgroups per
 * workgroup, 32 keys per step; `-r2`: 2 row tiles per subgroup, e.g. mma-s2-r2-k32; `-d`: K/V matrices of fully
 * attended steps from the pool; `-v`: their V matrices loaded before the softmax; `-n`: the next step's K right after a step's scores; `-kv1`: a staged step's V into K's place after its scores, e.g.
 * mma-s2-d-v-n), or `blocked` followed by
 * knobs: -f32 (K/V widened to f32 as staged) -r<max rows> -k<max key tile> -m<workgroup KiB, capped by the
 * device> -w<invocations per workgroup: 256 or 512> -s<at most this many keys per score block: 2 or 1>, e.g.
 * blocked-f32-r64-m48, blocked-f32-w256 or blocked-s1.
 */
function tuningOf(name: string): AttentionTuning {
  if (name === 'tile') return { prefillMatrix: false, prefillBlocked: false };
  const mma = /^mma(?:-s(\d+))?(?:-r(\d+))?(?:-k(\d+))?(-d)?(-v)?(-n)?(-kv1)?$/.exec(name);
  if (mma) {
    return {
      prefillMatrix: true,
      ...(mma[1] ? { prefillMatrixSubgroups: Number(mma[1]) as AttentionTuning['prefillMatrixSubgroups'] } : {}),
      ...(mma[2] ? { prefillMatrixRowTiles: Number(mma[2]) as AttentionTuning['prefillMatrixRowTiles'] } : {}),
      ...(mma[3] ? { prefillMatrixKeyTile: Number(mma[3]) as AttentionTuning['prefillMatrixKeyTile'] } : {}),
      ...(mma[4] ? { prefillMatrixDirectKv: true } : {}),
      ...(mma[5] ? { prefillMatrixEarlyV: true } : {}),
      ...(mma[6] ? { prefillMatrixNextK: true } : {}),
      ...(mma[7] ? { prefillMatrixReuseKForV: true } : {}),
    };
  }
  if (!name.startsWith('blocked')) throw new Error(`unknown variant ${name}`);
  const blocked: BlockedPrefillTuning = {};
  for (const knob of name.split('-').slice(1)) {
    const n = Number(knob.slice(1));
    if (knob === 'f32') blocked.stagedF32 = true;
    else if (knob[0] === 'r') blocked.maxRows = n;
    else if (knob[0] === 'k') blocked.maxKeyTile = n;
    else if (knob[0] === 'm') blocked.workgroupBytes = n * 1024;
    else if (knob[0] === 'w') blocked.workgroupSize = n as BlockedPrefillTuning['workgroupSize']; // the kernel's tuning check refuses other sizes
    else if (knob[0] === 's') blocked.maxScoreKeys = n as BlockedPrefillTuning['maxScoreKeys']; // likewise
    else throw new Error(`unknown knob ${knob} in ${name}`);
  }
  return { prefillMatrix: false, prefillBlocked: true, blocked };
}

const gpu = await createGpu({ dawnOptions: [...PRECISE_TIMING_DAWN_OPTIONS, ...values.dawn], subgroupMatrix: true });
const fma = await measureFmaRate(gpu.device);
console.log(`f32 FMA rate ${fma.tflops.toFixed(2)} TFLOP/s`);
const names = values.variants!.split(',');
const result = await runAttentionBench(gpu, {
  quick: values.quick,
  prefillOnly: true,
  print: false,
  prefillPaths: names.map((path) => ({ path, tuning: tuningOf(path) })),
});
// Columns as wide as their longest entry, so every row lines up whatever the variants' names and tiles.
const nameWidth = Math.max(...names.map((name) => name.length));
const tileWidth = Math.max(0, ...result.prefill.map((r) => (r.tile ?? '').length));
for (const name of names) {
  const p = result.prefill.find((r) => r.path === name);
  if (p === undefined) {
    console.log(`${name.padEnd(nameWidth)} not timed: same tile as an earlier variant, or no such kernel on this device`);
    continue;
  }
  console.log(
    `${name.padEnd(nameWidth)} ${(p.tile ?? '').padEnd(tileWidth)} ${p.ms.toFixed(3).padStart(9)} ms  ${p.tflops.toPrecision(3).padStart(8)} TFLOP/s  ` +
      `${((100 * p.tflops) / fma.tflops).toFixed(1).padStart(5)} % of FMA`,
  );
}
if (values.json) writeFileSync(values.json, JSON.stringify({ fmaTflops: fma.tflops, prefill: result.prefill }, null, 1));
process.exit(0);
