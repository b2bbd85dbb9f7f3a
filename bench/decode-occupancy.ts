// Occupancy probe of the decode kernels (not part of `npm run bench`): times one decode dispatch, unsplit,
// over growing batches of equally long sequences, so the number of workgroups grows while each one's
// work stays the same. The time stays flat while every workgroup is resident at once and steps up when
// a second wave starts: the steps tell how many of a kernel's workgroups an SM holds (its registers and
// workgroup memory decide), which no WebGPU API reports. Each variant is first checked against the CPU
// reference (tuning/kernel-check.ts) and not timed if it fails.
// Invariants: batches are prefixes of one workload (same blocks, same random table order), so rows of a
// variant differ only in workgroup count; workgroups = batch × kv heads × head tiles of the variant.
//   npx tsx bench/decode-occupancy.ts [--variants stream,stream-u2] [--context 2048] [--sms 132] [--json out.json] [--quick]
import { register } from 'node:module';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

register('./raw-import-hooks.mjs', import.meta.url); // shaders are imported as `?raw`, as under Vite

const { values } = parseArgs({
  options: {
    // The default kernel, and with less workgroup memory (smaller merge rounds; queries in registers).
    variants: { type: 'string', default: 'stream,stream-m8,stream-m4,stream-qr-m4' },
    context: { type: 'string' },
    /** Streaming multiprocessors (compute units) to step over; default: the probed resident 256-invocation workgroups / 8. */
    sms: { type: 'string' },
    json: { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
});
const { createGpu, PRECISE_TIMING_DAWN_OPTIONS } = await import('../src/gpu/create-gpu');
const { probeParallelism } = await import('../src/gpu/parallelism-probe');
const { GPU_WARMUP_MS, timeGpu } = await import('../src/gpu/gpu-timing');
const { PagedAttentionKernel } = await import('../src/kernels/paged-attention');
const { createAttentionWorkload, uniformSequences } = await import('../src/tuning/attention-workload');
const { KernelChecker, kernelRejection } = await import('../src/tuning/kernel-check');
const { BENCH_HEADS } = await import('./attention');
const { decodeTuningOf } = await import('./decode-variants');

const gpu = await createGpu({ dawnOptions: PRECISE_TIMING_DAWN_OPTIONS });
const device = gpu.device;
const parallelism = await probeParallelism(device);
const sms = Number(values.sms ?? Math.max(1, Math.round(parallelism.residentWorkgroups / 8)));
const context = Number(values.context ?? (values.quick ? 128 : 2048));
if (!(sms >= 1 && context >= 1)) throw new Error('--sms and --context must be positive');
// Workgroup counts just under and just over 1 … 6 times the SM count (quick: 1 … 2).
const waves = values.quick ? [1, 2] : [1, 2, 3, 4, 5, 6];
const perEntry = BENCH_HEADS.numKvHeads; // × head tiles, which every default variant keeps at 1
const batches = [...new Set(waves.flatMap((m) => [Math.max(1, Math.floor((m * sms) / perEntry) - 1), Math.floor((m * sms) / perEntry) + 2]))];
const names = values.variants!.split(',');
const anyStores = names.some((name) => decodeTuningOf(name).decodeWritesKv === true);
const w = createAttentionWorkload(device, { ...BENCH_HEADS, sequences: uniformSequences(Math.max(...batches), context), order: 'random', storesKv: anyStores });
const checker = new KernelChecker(device, BENCH_HEADS);
const timing = values.quick ? { iterations: 3, warmup: 1 } : { warmupMs: GPU_WARMUP_MS };
console.log(`${gpu.adapter.info.description}: ${sms} SMs assumed, context ${context}, one split per sequence`);
const rows: { variant: string; batch: number; workgroups: number; ms: number }[] = [];
for (const name of names) {
  const tuning = decodeTuningOf(name);
  // A storing variant (-wk) is checked and timed storing each sequence's new K/V, as the cache runs it.
  const storesKv = tuning.decodeWritesKv === true;
  const options = { numQueryHeads: BENCH_HEADS.numQueryHeads, adapterInfo: gpu.adapter.info, subgroups: gpu.features.subgroups, tuning };
  const probe = new PagedAttentionKernel(device, checker.layout, { ...options, rowStride: checker.rowStride });
  const rejected = await kernelRejection(device, checker, probe, storesKv);
  probe.destroy();
  if (rejected !== undefined) {
    console.log(`${name.padEnd(16)} not timed: ${rejected}`);
    continue;
  }
  const kernel = new PagedAttentionKernel(device, w.layout, { ...options, rowStride: w.rowStride });
  const headTiles = BENCH_HEADS.numQueryHeads / BENCH_HEADS.numKvHeads / (kernel.streamDecodeConfig?.headsPerWorkgroup ?? 4);
  let first: number | undefined;
  for (const batch of batches) {
    const all = w.args({ forceSplits: 1, storesKv });
    const args = { ...all, entries: all.entries.slice(0, batch) };
    const { seconds } = await timeGpu(device, (encoder) => kernel.encode(encoder, args), timing);
    const workgroups = batch * perEntry * headTiles;
    first ??= seconds;
    rows.push({ variant: name, batch, workgroups, ms: seconds * 1e3 });
    console.log(
      `${name.padEnd(16)} batch ${String(batch).padStart(4)}  ${String(workgroups).padStart(5)} workgroups (${(workgroups / sms).toFixed(2)} per SM)` +
        `  ${(seconds * 1e3).toFixed(4).padStart(8)} ms  ${(seconds / first).toFixed(2)} × the first`,
    );
  }
  kernel.destroy();
}
checker.destroy();
w.destroy();
if (values.json) writeFileSync(values.json, JSON.stringify(rows, null, 1));
process.exit(0);
