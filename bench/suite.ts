// The benchmark suite behind `npm run bench` / `webgpu-paged-attention bench`. Invariants: every GPU
// figure is printed next to a baseline measured in the same run on the same device (the device's own
// read bandwidth for decode, its own f32 FMA rate for prefill and, where it has subgroup matrices, their
// rate in a microkernel for the matrix prefill), so figures from different machines are
// comparable as ratios; nothing here is asserted — tests never depend on timings. The run ends with
// each performance target, what the run measured for it and whether that meets it (bench/targets.ts).
import { createGpu, describeGpu, PRECISE_TIMING_DAWN_OPTIONS, type Gpu } from '../src/gpu/create-gpu';
import { BENCH_HEADS, DECODE_SHAPES, PREFILL, QUICK_DECODE_SHAPES, QUICK_PREFILL, runAttentionBench } from './attention';
import { describeTuning } from '../src/kernels/attention-tuning';
import { tuneAttention } from '../src/tuning/tune-attention';
import { describeTrial } from '../src/tuning/tuning-search';
import { measureFmaRate } from './fma';
import { matrixPeakShape, measureMatrixRate, type MatrixRateResult } from './matrix-peak';
import { describeCollection, measureHostCost } from './host-cost';
import { runPrefixBench } from './prefix.bench';
import { runTableBench } from './table.bench';
import { checkTargets, targetLines } from './targets';

export interface SuiteOptions {
  json: boolean;
  /** Smaller shapes and fewer repetitions (the default on a software adapter). */
  quick: boolean;
  /** Run the autotuner on the bench's shapes and time the decode table again with its choice (default: unless quick). */
  tune?: boolean;
}

export async function runBenchSuite(gpu: Gpu, options: SuiteOptions): Promise<void> {
  const quick = options.quick || gpu.isFallback;
  const log = (line: string): void => {
    if (!options.json) console.log(line);
  };
  log(`device: ${describeGpu(gpu)}${quick ? ' (quick shapes)' : ''}`);
  const fma = await measureFmaRate(gpu.device, quick ? { workgroups: 64, iterations: 256 } : {});
  log(`f32 FMA rate: ${fma.tflops.toFixed(3)} TFLOP/s (${fma.timing.method} timing)`);
  const matrixShape = matrixPeakShape(gpu.device, gpu.adapter.info);
  let matrix: MatrixRateResult | undefined;
  if (matrixShape) {
    try {
      matrix = await measureMatrixRate(gpu.device, matrixShape, quick ? { workgroups: 16, iterations: 64 } : {});
      log(`f16 subgroup-matrix rate (${matrix.n} × ${matrix.n} matrices, WGSL microkernel): ${matrix.tflops.toPrecision(3)} TFLOP/s (${matrix.timing.method} timing)`);
    } catch (error) {
      log(`f16 subgroup-matrix rate: not measured (${error instanceof Error ? error.message : String(error)})`);
    }
  }
  const attention = await runAttentionBench(gpu, { quick, print: !options.json });
  const prefillVsFma = attention.prefill.map((p) => ({ ...p, ratioToFma: p.tflops / fma.tflops }));
  for (const p of prefillVsFma) {
    log(`  prefill ${p.sequences} × ${p.tokens}, ${p.path}${p.tile ? ` (tile ${p.tile})` : ''}: ${(100 * p.ratioToFma).toFixed(1)} % of the device's f32 FMA rate`);
  }
  const table = runTableBench({ windows: quick ? 3 : 7, windowMs: quick ? 100 : 250 });
  log('\nbookkeeping (CPU, uncontended), M ops/s:');
  for (const r of table) log(`  ${r.name.padEnd(64)} best ${r.bestMops.toFixed(2).padStart(7)}  median ${r.medianMops.toFixed(2).padStart(7)}`);
  const prefix = runPrefixBench({ windows: quick ? 3 : 7, windowMs: quick ? 100 : 250 });
  log('\nprefix cache (CPU):');
  for (const r of prefix) {
    log(`  ${r.name.padEnd(64)} median ${r.medianUsPerOp.toFixed(2).padStart(8)} µs/op  ${(r.medianOpsPerSec / 1e3).toFixed(1).padStart(8)} k ops/s`);
  }
  // Quick: the real batch (host cost depends on sequences and blocks) with a tiny head shape and 2 layers.
  const hostShape = quick ? { steps: 5, layers: 2, numKvHeads: 1, numQueryHeads: 4, headDim: 16 } : {};
  const host = await measureHostCost(gpu, hostShape);
  log(
    `\nhost cost of a ${host.sequences}-sequence decode step (context ${host.context}, ${host.layers} layers, ` +
      `${host.numQueryHeads}/${host.numKvHeads} heads × ${host.headDim}): ${host.stepMicros.toFixed(0)} µs per step ` +
      `(appends ${host.appendMicros.toFixed(0)}, prepare ${host.prepareMicros.toFixed(0)}, K/V write + attention ` +
      `${host.layerMicros.toFixed(1)} per layer into one compute pass for the step, encoder + submit ${host.submitMicros.toFixed(0)}), ` +
      `${host.tableEntriesPerStep.toFixed(1)} of the batch's ${host.tableEntriesPerBatch} table entries uploaded per step ` +
      `in ${host.tableWritesPerStep.toFixed(2)} writes, ` +
      `${describeCollection(host.collected)}, ` +
      `${host.gpuObjectsPerStep.total} GPU objects created by a further step` +
      (host.heapBytesPerStep === undefined ? '' : `, ${(host.heapBytesPerStep / 1024).toFixed(0)} KiB of JS heap allocated per step`),
  );
  log(
    `  GPU time of that step ${(host.gpuMicros / 1e3).toFixed(3)} ms (${host.gpuTiming} timing): ` +
      `host cost = ${(100 * host.hostToGpu).toFixed(1)} % of it; table upload + dispatch encoding ` +
      `(prepare + the layers' encodes + finish) ${host.uploadEncodeMicros.toFixed(0)} µs = ${(100 * host.uploadEncodeToGpu).toFixed(1)} % of it`,
  );
  // On a real GPU, the same step with a compute pass per layer (what a caller gets without `pass`).
  const hostPassPerLayer = quick ? undefined : await measureHostCost(gpu, { stepPass: false });
  if (hostPassPerLayer) {
    log(
      `  with a compute pass per layer instead: ${hostPassPerLayer.stepMicros.toFixed(0)} µs per step ` +
        `(${hostPassPerLayer.layerMicros.toFixed(1)} per layer), ${(100 * hostPassPerLayer.hostToGpu).toFixed(1)} % of its GPU time`,
    );
  }
  // The same step with decodeWritesKv: the decode dispatch stages K/V, one dispatch per layer, a flush after each group of layers.
  const hostDecodeWrites = await measureHostCost(gpu, { ...hostShape, decodeWritesKv: true });
  log(
    `  with decodeWritesKv (the decode stages K/V: one dispatch per layer, a flush per group of up to 16 layers): ${hostDecodeWrites.stepMicros.toFixed(0)} µs per step ` +
      `(${hostDecodeWrites.layerMicros.toFixed(1)} per layer), GPU time ${(hostDecodeWrites.gpuMicros / 1e3).toFixed(3)} ms ` +
      `(${(hostDecodeWrites.gpuMicros / host.gpuMicros).toFixed(3)} × the two-dispatch step's): host cost = ` +
      `${(100 * hostDecodeWrites.hostToGpu).toFixed(1)} % of it; table upload + dispatch encoding ` +
      `${hostDecodeWrites.uploadEncodeMicros.toFixed(0)} µs = ${(100 * hostDecodeWrites.uploadEncodeToGpu).toFixed(1)} % of it`,
  );
  // The host work alone (encoded, not run): what a GPU machine's host would pay, measured on any machine.
  const hostAlone = await measureHostCost(gpu, { ...hostShape, encodeOnly: true });
  const hostAloneWrites = await measureHostCost(gpu, { ...hostShape, encodeOnly: true, decodeWritesKv: true });
  log(
    `  the host work alone (steps encoded, not run): ${hostAlone.stepMicros.toFixed(0)} µs per step (prepare ` +
      `${hostAlone.prepareMicros.toFixed(0)}, ${hostAlone.layerMicros.toFixed(1)} per layer); with decodeWritesKv ` +
      `${hostAloneWrites.stepMicros.toFixed(0)} µs (${hostAloneWrites.layerMicros.toFixed(1)} per layer)`,
  );
  // On a GPU: the decode target's rows again on a device whose shaders run without bounds checks.
  const unchecked = quick || !gpu.boundsChecks ? undefined : await runUncheckedDecode(gpu, log);
  // Last before the verdicts: a run cut short by a time limit keeps every figure above.
  const tuned = (options.tune ?? !quick) ? await runTuned(gpu, quick, attention.parallelism.residentWorkgroups, log) : undefined;
  const targets = checkTargets({
    attention,
    fmaTflops: fma.tflops,
    matrixTflops: matrix?.tflops,
    table,
    prefix,
    host,
    hostDecodeWrites,
    tunedDecode: tuned && (tuned.decode ?? attention.decode),
    uncheckedDecode: unchecked,
  });
  log(`\n${targetLines(targets, quick).join('\n')}`);
  const results = { device: gpu.info, isFallback: gpu.isFallback, quick, fma, matrix, attention, prefillVsFma, tuned, table, prefix, host, hostPassPerLayer, hostDecodeWrites, hostAlone, hostAloneWrites, unchecked, targets };
  if (options.json) console.log(JSON.stringify(results, null, 2));
}

/**
 * The decode target's rows (random order, block 16) on a second device of the same kind created with
 * boundsChecks: false, i.e. what createGpu({ boundsChecks: false }) gives a trusting caller; each row's
 * baseline is that device's own read kernel.
 */
async function runUncheckedDecode(gpu: Gpu, log: (line: string) => void) {
  const unchecked = await createGpu({ boundsChecks: false, subgroupMatrix: true, dawnOptions: PRECISE_TIMING_DAWN_OPTIONS });
  try {
    if (unchecked.adapter.info.device !== gpu.adapter.info.device || unchecked.isFallback !== gpu.isFallback) {
      log(`\ndecode without bounds checks: not measured (a second device came from another adapter: ${describeGpu(unchecked)})`);
      return undefined;
    }
    const { decode } = await runAttentionBench(unchecked, { quick: false, decodeOnly: true, decodeRows: 'target', print: false });
    log('\ndecode without bounds checks (createGpu({ boundsChecks: false }): no WebGPU bounds checks in the shaders):');
    for (const d of decode) {
      log(`  decode ${`${d.batch} × ${d.context}`.padEnd(12)} block ${String(d.blockSize).padStart(2)} ${d.tableOrder.padEnd(8)} splits ${String(d.splits).padStart(3)}  ${d.ms.toFixed(3)} ms  ratio ${d.ratioToBaseline.toFixed(2)}`);
    }
    return decode;
  } finally {
    unchecked.device.destroy();
  }
}

/**
 * Runs the autotuner on the bench's head shape and batches, then the decode table again with the tuning
 * it chose (the same rows as the default table; `decode` is undefined when it kept the defaults).
 */
async function runTuned(gpu: Gpu, quick: boolean, residentWorkgroups: number, log: (line: string) => void) {
  log('\nautotuning the kernels for these shapes (each candidate checked against the CPU reference, then timed):');
  const result = await tuneAttention(gpu.device, {
    ...BENCH_HEADS,
    adapterInfo: gpu.adapter.info,
    residentWorkgroups,
    decodeShapes: quick ? QUICK_DECODE_SHAPES : DECODE_SHAPES,
    prefillShape: quick ? QUICK_PREFILL : PREFILL,
    onTrial: (kind, trial) => log(`  ${describeTrial(kind, trial)}`),
  });
  const changed = Object.keys(result.tuning).length > 0;
  log(`autotuned (${result.timing} timing): ${describeTuning(result.tuning)}`);
  log(`  decode ${result.decode.kernel}: ${result.decode.speedup.toFixed(2)} × the defaults`);
  if (result.prefill) log(`  prefill ${result.prefill.kernel}: ${result.prefill.speedup.toFixed(2)} × the defaults`);
  const decode = changed ? (await runAttentionBench(gpu, { quick, tuning: result.tuning, decodeOnly: true, print: false })).decode : undefined;
  for (const d of decode ?? []) {
    log(`  tuned decode ${`${d.batch} × ${d.context}`.padEnd(12)} block ${String(d.blockSize).padStart(2)} ${d.tableOrder.padEnd(8)}${d.storesKv ? ' stores K/V' : '           '}  ratio ${d.ratioToBaseline.toFixed(2)}`);
  }
  return { result, decode };
}
