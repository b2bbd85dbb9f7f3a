// The bench's target checks (bench/targets.ts) on made-up results: each verdict flips exactly at its
// threshold, rows that are not the target's (decodes that store K/V) are ignored, a target the run
// could not measure is never reported as met, and the row names it looks up are the ones the table
// and prefix benches really print.
import { describe, expect, it } from 'vitest';
import { APPEND_ROW, checkTargets, FREE_ROW, MATRIX_PATH, PREFIX_ROW, targetLines, TARGETS, type TargetInputs } from '../../bench/targets';
import type { DecodeBenchResult, PrefillBenchResult } from '../../bench/attention';
import type { HostCostResult } from '../../bench/host-cost';
import { runTableBench } from '../../bench/table.bench';
import { runPrefixBench } from '../../bench/prefix.bench';

const SHAPES = [
  { batch: 64, context: 2048 },
  { batch: 1, context: 32768 },
];

/** Decode rows of every shape: block 16 in both orders, 8 and 32 random; all at `ratio`, 1000 GB/s. */
function decodeRows(ratio: number): DecodeBenchResult[] {
  const rows: DecodeBenchResult[] = [];
  for (const { batch, context } of SHAPES) {
    for (const [blockSize, tableOrder] of [[16, 'identity'], [16, 'random'], [8, 'random'], [32, 'random']] as const) {
      rows.push({ batch, context, blockSize, tableOrder, storesKv: false, splits: 1, ms: 1, kvBytes: 1e9, kvGBps: 1000, baselineGBps: 1000 / ratio, ratioToBaseline: ratio });
    }
  }
  return rows;
}

const host = (share: number, objects: Record<string, number> = {}, tableEntriesPerStep = 16): HostCostResult =>
  ({
    sequences: 256,
    gpuMicros: 8000,
    uploadEncodeMicros: 8000 * share,
    uploadEncodeToGpu: share,
    tableEntriesPerStep,
    tableWritesPerStep: 0.06,
    tableEntriesPerBatch: 8448,
    gpuObjectsPerStep: { total: Object.values(objects).reduce((a, b) => a + b, 0), byMethod: objects },
  }) as HostCostResult;

function inputs(overrides: Partial<TargetInputs> & { decode?: DecodeBenchResult[]; prefill?: PrefillBenchResult[] } = {}): TargetInputs {
  const { decode, prefill, ...rest } = overrides;
  return {
    attention: {
      device: 'test',
      timing: 'timestamp',
      parallelism: { residentWorkgroups: 1056, method: 'default' },
      subgroups: true,
      numQueryHeads: 32,
      numKvHeads: 8,
      headDim: 128,
      kvDtype: 'f16',
      blockSize: 16,
      decode: decode ?? decodeRows(0.9),
      prefill: prefill ?? [
        { path: 'scalar', sequences: 8, tokens: 2048, ms: 10, tflops: 20 },
        { path: 'register-blocked', tile: '32 × 32', sequences: 8, tokens: 2048, ms: 5, tflops: 30 },
        { path: MATRIX_PATH, sequences: 8, tokens: 2048, ms: 1, tflops: 210 },
      ],
    },
    fmaTflops: 60,
    table: [
      { name: APPEND_ROW, bestMops: 13, medianMops: 12 },
      { name: FREE_ROW, bestMops: 40, medianMops: 35 },
    ],
    prefix: [{ name: PREFIX_ROW, bestUsPerOp: 15, medianUsPerOp: 17, bestOpsPerSec: 1, medianOpsPerSec: 1, notes: {} }],
    host: host(0.04),
    ...rest,
  } as TargetInputs;
}

const verdicts = (i: TargetInputs) => checkTargets(i).map((c) => c.met);

describe('bench target checks', () => {
  it('all met on results that meet every target, in the issue order', () => {
    const checks = checkTargets(inputs());
    expect(checks.map((c) => c.met)).toEqual([true, true, true, true, true, true, true, true, true]);
    expect(checks[0]!.measured).toContain('64 × 2048 0.90');
    expect(checks[4]!.measured).toContain('register-blocked'); // the best portable path: 30 / 60 TFLOP/s
  });

  it('decode: one shape below the ratio fails it; a decode that stores K/V is not the target row', () => {
    const rows = decodeRows(0.9);
    const low = rows.find((d) => d.batch === 1 && d.blockSize === 16 && d.tableOrder === 'random')!;
    low.ratioToBaseline = TARGETS.decodeRatio - 0.005;
    expect(verdicts(inputs({ decode: rows }))[0]).toBe(false);
    expect(checkTargets(inputs({ decode: rows }))[0]!.measured).toMatch(/^lowest 0\.88 \(1 × 32768\)/);
    const withStores = [...decodeRows(0.9), { ...decodeRows(0.1)[1]!, storesKv: true }];
    expect(verdicts(inputs({ decode: withStores })).slice(0, 3)).toEqual([true, true, true]);
  });

  it('with autotuned decode rows, adds their ratio check right after the default one', () => {
    const checks = checkTargets(inputs({ decode: decodeRows(0.8), tunedDecode: decodeRows(0.9) }));
    expect(checks).toHaveLength(10);
    expect(checks.slice(0, 2).map((c) => c.met)).toEqual([false, true]);
    expect(checks[1]!.target).toMatch(/on every shape .*, with the kernels the autotuner chose \(tuneAttention\)$/);
    expect(checks[1]!.measured).toContain('64 × 2048 0.90');
    expect(checks[2]!.target).toMatch(/^random table order/); // the spreads stay the default kernels'
  });

  it('order and block-size spreads flip at 3 % and 5 %', () => {
    const spread = (blockSize: number, gbps: number) => {
      const rows = decodeRows(0.9);
      rows.find((d) => d.batch === 64 && d.blockSize === blockSize && d.tableOrder === 'random')!.kvGBps = gbps;
      return verdicts(inputs({ decode: rows }));
    };
    // Random order against identity (block 16) — the block-size comparison is against random 16 too.
    expect(spread(16, 971).slice(1, 3)).toEqual([true, true]);
    expect(spread(16, 969).slice(1, 3)).toEqual([false, true]);
    expect(spread(8, 951)[2]).toBe(true);
    expect(spread(32, 949)[2]).toBe(false);
  });

  it('prefill: thresholds of 200 TFLOP/s and 40 % of FMA; no subgroup-matrix row is not measured', () => {
    const prefill = (matrix: number | undefined, portable: number): PrefillBenchResult[] => [
      { path: 'register-blocked', sequences: 8, tokens: 2048, ms: 1, tflops: portable },
      ...(matrix === undefined ? [] : [{ path: MATRIX_PATH, sequences: 8, tokens: 2048, ms: 1, tflops: matrix }]),
    ];
    expect(verdicts(inputs({ prefill: prefill(199, 24) })).slice(3, 5)).toEqual([false, true]);
    expect(verdicts(inputs({ prefill: prefill(undefined, 23.9) })).slice(3, 5)).toEqual([undefined, false]);
    expect(checkTargets(inputs({ prefill: prefill(undefined, 24) }))[3]!.measured).toMatch(/^not run/);
    // The fastest subgroup-matrix row counts (here the one with 4 subgroups); it never counts as portable.
    const rows = [
      ...prefill(150, 10),
      { path: `${MATRIX_PATH}, 4 subgroups`, sequences: 8, tokens: 2048, ms: 1, tflops: 201 },
      { path: `${MATRIX_PATH}, 8 subgroups`, sequences: 8, tokens: 2048, ms: 1, tflops: 180 },
    ];
    const checks = checkTargets(inputs({ prefill: rows }));
    expect(checks.slice(3, 5).map((c) => c.met)).toEqual([true, false]);
    expect(checks[3]!.measured).toBe('best 201.0 TFLOP/s (subgroup-matrix, 4 subgroups)');
    expect(checks[4]!.measured).toMatch(/^best 16\.7 % \(register-blocked;/);
  });

  it('bookkeeping and host cost flip at their thresholds; missing rows are not measured', () => {
    const table = (append: number) => [
      { name: APPEND_ROW, bestMops: append, medianMops: append },
      { name: FREE_ROW, bestMops: 30, medianMops: 30 },
    ];
    expect(verdicts(inputs({ table: table(9.99) }))[5]).toBe(false);
    expect(verdicts(inputs({ table: table(10) }))[5]).toBe(true);
    expect(verdicts(inputs({ table: [] }))[5]).toBeUndefined();
    const prefix = (us: number) => [{ name: PREFIX_ROW, bestUsPerOp: us, medianUsPerOp: us, bestOpsPerSec: 1, medianOpsPerSec: 1, notes: {} }];
    expect(verdicts(inputs({ prefix: prefix(20.1) }))[6]).toBe(false);
    expect(verdicts(inputs({ prefix: [] }))[6]).toBeUndefined();
    expect(verdicts(inputs({ host: host(0.051) }))[7]).toBe(false);
    expect(verdicts(inputs({ host: host(0.05), hostDecodeWrites: host(0.01) }))[7]).toBe(true);
  });

  it("hot path: one GPU object in a step, or more than an eighth of the batch's table entries per step, fails it", () => {
    expect(verdicts(inputs())[8]).toBe(true);
    expect(verdicts(inputs({ host: host(0.04, { createBindGroup: 1 }) }))[8]).toBe(false);
    expect(verdicts(inputs({ hostDecodeWrites: host(0.04, { createBuffer: 2 }) }))[8]).toBe(false);
    expect(checkTargets(inputs({ hostDecodeWrites: host(0.04, { createBuffer: 2 }) }))[8]!.measured).toContain('createBuffer × 2');
    expect(verdicts(inputs({ host: host(0.04, {}, 8448 / 8) }))[8]).toBe(true);
    expect(verdicts(inputs({ host: host(0.04, {}, 8448 / 8 + 1) }))[8]).toBe(false);
  });

  it('states the matrix prefill as a share of the subgroup-matrix microkernel where it was measured', () => {
    const matrixCheck = (i: TargetInputs) => checkTargets(i).find((c) => c.target.startsWith('prefill on subgroup matrices'))!;
    expect(matrixCheck(inputs({ matrixTflops: 420 })).measured).toBe('best 210.0 TFLOP/s (' + MATRIX_PATH + '), 50.0 % of the 420 TFLOP/s the subgroup-matrix microkernel reaches');
    expect(matrixCheck(inputs({ matrixTflops: 420 })).met).toBe(true); // the target is absolute
    expect(matrixCheck(inputs()).measured).toBe('best 210.0 TFLOP/s (' + MATRIX_PATH + ')');
  });

  it('prints a verdict per target, marked indicative on quick shapes', () => {
    const lines = targetLines(checkTargets(inputs({ prefill: [] })), true).join('\n');
    expect(lines).toMatch(/^targets \(quick shapes/);
    expect(lines).toContain('[met         ] decode ≥ 0.88');
    expect(lines).toContain('[not measured] prefill on subgroup matrices');
  });

  it('looks up rows the table and prefix benches really print', () => {
    const names = runTableBench({ windows: 1, windowMs: 5 }).map((r) => r.name);
    expect(names).toContain(APPEND_ROW);
    expect(names).toContain(FREE_ROW);
    expect(runPrefixBench({ windows: 1, windowMs: 5 }).map((r) => r.name)).toContain(PREFIX_ROW);
  });
});
