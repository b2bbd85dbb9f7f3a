// The performance targets, checked against one bench run: each target names what it asks, what this
// run measured and whether that meets it. Pure (no GPU, no timing): it only reads the suite's results.
// Invariants: every figure compared is a ratio or a CPU rate from the same run (decode against the
// run's read kernel, prefill against its FMA rate or in TFLOP/s, host cost against the step's GPU
// time, GPU objects and table entries counted over a step); a target the run could not measure (no
// subgroup matrices, no decode rows) is `met: undefined`, never counted as met; quick shapes are not
// the targets' shapes, so their verdicts are marked indicative.
import type { AttentionBenchResult, DecodeBenchResult, PrefillBenchResult } from './attention';
import type { HostCostResult } from './host-cost';
import type { PrefixBenchResult } from './prefix.bench';
import type { RateResult } from './table.bench';

export const TARGETS = {
  decodeRatio: 0.88,
  orderSpread: 0.03,
  blockSizeSpread: 0.05,
  matrixPrefillTflops: 200,
  portablePrefillOfFma: 0.4,
  bookkeepingMops: 10,
  prefixMatchMicros: 20,
  hostShareOfGpu: 0.05,
} as const;

/** Table-bench rows the bookkeeping target reads (see table.bench.ts). */
export const APPEND_ROW = 'appendTokens, 16 tokens = one new block per call';
export const FREE_ROW = 'free of 64-block sequences: blocks released per second';
/** The prefill paths on subgroup matrices are this name, with ', N subgroups' where there are several. */
export const MATRIX_PATH = 'subgroup-matrix';
/** Prefix-bench row of the match + allocate target (see prefix.bench.ts). */
export const PREFIX_ROW = 'match + allocate: 4096-token prompt, 3072 cached (bs 16)';

export interface TargetCheck {
  target: string;
  measured: string;
  /** undefined: this run could not measure it. */
  met: boolean | undefined;
}

export interface TargetInputs {
  attention: AttentionBenchResult;
  /** The device's f32 FMA rate measured in the same run. */
  fmaTflops: number;
  /** The f16 subgroup-matrix rate of the microkernel (bench/matrix-peak.ts) in the same run, where the device has them. */
  matrixTflops?: number;
  table: readonly RateResult[];
  prefix: readonly PrefixBenchResult[];
  host: HostCostResult;
  /** The same step with decodeWritesKv, when measured. */
  hostDecodeWrites?: HostCostResult;
  /** The decode rows with the kernels the autotuner chose for the bench's shapes, when it ran. */
  tunedDecode?: readonly DecodeBenchResult[];
  /** The decode target's rows on a device without bounds checks (createGpu({ boundsChecks: false })), when measured. */
  uncheckedDecode?: readonly DecodeBenchResult[];
}

const shapeOf = (d: DecodeBenchResult) => `${d.batch} × ${d.context}`;
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

/** The largest |a / b − 1| over the pairs, with the pair's label; undefined when there are none. */
function worstSpread(pairs: { label: string; a: number; b: number }[]): { label: string; spread: number } | undefined {
  let worst: { label: string; spread: number } | undefined;
  for (const { label, a, b } of pairs) {
    const spread = Math.abs(a / b - 1);
    if (worst === undefined || spread > worst.spread) worst = { label, spread };
  }
  return worst;
}

function decodeChecks(decode: readonly DecodeBenchResult[]): TargetCheck[] {
  // The read-only decode rows (the default path); rows that also store K/V are a separate comparison.
  const rows = decode.filter((d) => !d.storesKv);
  const find = (shape: string, blockSize: number, order: DecodeBenchResult['tableOrder']) =>
    rows.find((d) => shapeOf(d) === shape && d.blockSize === blockSize && d.tableOrder === order);
  const shapes = [...new Set(rows.map(shapeOf))];
  const random16 = shapes.map((s) => find(s, 16, 'random')).filter((d) => d !== undefined);
  const slowest = random16.reduce<DecodeBenchResult | undefined>((w, d) => (w === undefined || d.ratioToBaseline < w.ratioToBaseline ? d : w), undefined);
  const order = worstSpread(
    random16.flatMap((d) => {
      const identity = find(shapeOf(d), 16, 'identity');
      return identity ? [{ label: shapeOf(d), a: d.kvGBps, b: identity.kvGBps }] : [];
    }),
  );
  const blocks = worstSpread(
    rows
      .filter((d) => d.tableOrder === 'random' && d.blockSize !== 16)
      .flatMap((d) => {
        const base = find(shapeOf(d), 16, 'random');
        return base ? [{ label: `${shapeOf(d)}, block ${d.blockSize}`, a: d.kvGBps, b: base.kvGBps }] : [];
      }),
  );
  return [
    {
      target: `decode ≥ ${TARGETS.decodeRatio} of the read kernel's bandwidth on every shape (random order, block 16)`,
      measured: slowest
        ? `lowest ${slowest.ratioToBaseline.toFixed(2)} (${shapeOf(slowest)}); ` + random16.map((d) => `${shapeOf(d)} ${d.ratioToBaseline.toFixed(2)}`).join(', ')
        : 'no decode rows',
      met: slowest ? random16.every((d) => d.ratioToBaseline >= TARGETS.decodeRatio) : undefined,
    },
    {
      target: `random table order within ${pct(TARGETS.orderSpread)} of identity order`,
      measured: order ? `largest difference ${pct(order.spread)} (${order.label})` : 'no identity/random pairs',
      met: order ? order.spread <= TARGETS.orderSpread : undefined,
    },
    {
      target: `block sizes 8 and 32 within ${pct(TARGETS.blockSizeSpread)} of 16`,
      measured: blocks ? `largest difference ${pct(blocks.spread)} (${blocks.label})` : 'no other block sizes',
      met: blocks ? blocks.spread <= TARGETS.blockSizeSpread : undefined,
    },
  ];
}

function prefillChecks(prefill: readonly PrefillBenchResult[], fmaTflops: number, matrixTflops: number | undefined): TargetCheck[] {
  const fastest = (rows: PrefillBenchResult[]) => rows.reduce<PrefillBenchResult | undefined>((b, p) => (b === undefined || p.tflops > b.tflops ? p : b), undefined);
  const matrix = fastest(prefill.filter((p) => p.path.startsWith(MATRIX_PATH)));
  const best = fastest(prefill.filter((p) => !p.path.startsWith(MATRIX_PATH)));
  return [
    {
      target: `prefill on subgroup matrices ≥ ${TARGETS.matrixPrefillTflops} TFLOP/s`,
      measured: matrix
        ? `best ${matrix.tflops.toFixed(1)} TFLOP/s (${matrix.path})` +
          (matrixTflops ? `, ${pct(matrix.tflops / matrixTflops)} of the ${matrixTflops.toPrecision(3)} TFLOP/s the subgroup-matrix microkernel reaches` : '')
        : 'not run (the device has no f16 subgroup matrices, or they are not enabled)',
      met: matrix ? matrix.tflops >= TARGETS.matrixPrefillTflops : undefined,
    },
    {
      target: `portable prefill ≥ ${pct(TARGETS.portablePrefillOfFma)} of the device's f32 FMA rate`,
      measured: best
        ? `best ${pct(best.tflops / fmaTflops)} (${best.path}${best.tile ? `, tile ${best.tile}` : ''}; ${best.tflops.toPrecision(3)} of ${fmaTflops.toPrecision(3)} TFLOP/s)`
        : 'no portable prefill rows',
      met: best ? best.tflops / fmaTflops >= TARGETS.portablePrefillOfFma : undefined,
    },
  ];
}

function bookkeepingChecks(table: readonly RateResult[], prefix: readonly PrefixBenchResult[]): TargetCheck[] {
  const append = table.find((r) => r.name === APPEND_ROW);
  const free = table.find((r) => r.name === FREE_ROW);
  const match = prefix.find((r) => r.name === PREFIX_ROW);
  const rates = [append, free].filter((r) => r !== undefined);
  return [
    {
      target: `append and free of single blocks ≥ ${TARGETS.bookkeepingMops} M operations/s`,
      measured:
        append && free
          ? `append ${append.medianMops.toFixed(2)}, free ${free.medianMops.toFixed(2)} M blocks/s (medians)`
          : 'append/free rows missing',
      met: rates.length === 2 ? rates.every((r) => r.medianMops >= TARGETS.bookkeepingMops) : undefined,
    },
    {
      target: `prefix match + allocate, 4096-token prompt with 3072 cached ≤ ${TARGETS.prefixMatchMicros} µs`,
      measured: match ? `${match.medianUsPerOp.toFixed(1)} µs (median)` : 'prefix row missing',
      met: match ? match.medianUsPerOp <= TARGETS.prefixMatchMicros : undefined,
    },
  ];
}

/** Uploads count as incremental while a step sends on average at most this fraction (1/n) of its batch's rows. */
const INCREMENTAL_SHARE = 8;

function hostChecks(host: HostCostResult, decodeWrites: HostCostResult | undefined): TargetCheck[] {
  const forms = [{ name: 'write-kv + decode', r: host }, ...(decodeWrites ? [{ name: 'decodeWritesKv', r: decodeWrites }] : [])];
  const created = forms.map(({ r }) => r.gpuObjectsPerStep.total);
  // Incremental: what changed, with the short gaps merged between changed entries; a decode step's new
  // blocks go up together about once per block of steps (TableUpload), so on average a small fraction
  // of the batch's rows per step, never the rows whole.
  const incremental = forms.every(({ r }) => r.tableEntriesPerStep <= r.tableEntriesPerBatch / INCREMENTAL_SHARE);
  return [
    {
      target: `host cost of a ${host.sequences}-sequence decode step (table upload + dispatch encoding) ≤ ${pct(TARGETS.hostShareOfGpu)} of its GPU time`,
      measured: forms
        .map(({ name, r }) => `${name}: ${r.uploadEncodeMicros.toFixed(0)} µs of ${(r.gpuMicros / 1e3).toFixed(2)} ms = ${pct(r.uploadEncodeToGpu)}`)
        .join('; '),
      met: host.uploadEncodeToGpu <= TARGETS.hostShareOfGpu,
    },
    {
      target: 'no allocation per step on the hot path: no GPU object created, block-table uploads incremental',
      measured:
        forms
          .map(({ name, r }) => {
            const methods = Object.entries(r.gpuObjectsPerStep.byMethod).map(([m, n]) => `${m} × ${n}`).join(', ');
            return `${name}: ${r.gpuObjectsPerStep.total} GPU objects in a step${methods ? ` (${methods})` : ''}`;
          })
          .join('; ') +
        `; ${host.tableEntriesPerStep.toFixed(1)} of ${host.tableEntriesPerBatch} table entries uploaded per step (at most 1/${INCREMENTAL_SHARE}) ` +
        `in ${host.tableWritesPerStep.toFixed(2)} writes`,
      met: created.every((n) => n === 0) && incremental,
    },
  ];
}

/** Every target, in the issue's order, checked against one suite run. */
export function checkTargets(inputs: TargetInputs): TargetCheck[] {
  const [ratio, ...spreads] = decodeChecks(inputs.attention.decode);
  const tuned = inputs.tunedDecode && decodeChecks(inputs.tunedDecode)[0]!;
  const unchecked = inputs.uncheckedDecode && decodeChecks(inputs.uncheckedDecode)[0]!;
  return [
    ratio!,
    ...(tuned ? [{ ...tuned, target: `${tuned.target}, with the kernels the autotuner chose (tuneAttention)` }] : []),
    ...(unchecked ? [{ ...unchecked, target: `${unchecked.target}, without bounds checks (createGpu({ boundsChecks: false }))` }] : []),
    ...spreads,
    ...prefillChecks(inputs.attention.prefill, inputs.fmaTflops, inputs.matrixTflops),
    ...bookkeepingChecks(inputs.table, inputs.prefix),
    ...hostChecks(inputs.host, inputs.hostDecodeWrites),
  ];
}

/** The checks as lines; `quick` marks the verdicts as indicative (the quick shapes are not the targets'). */
export function targetLines(checks: readonly TargetCheck[], quick: boolean): string[] {
  const verdict = (met: boolean | undefined) => (met === undefined ? 'not measured' : met ? 'met' : 'not met');
  return [
    `targets${quick ? ' (quick shapes, not the targets\' own: indicative only)' : ''}:`,
    ...checks.map((c) => `  [${verdict(c.met).padEnd(12)}] ${c.target}\n${' '.repeat(17)}${c.measured}`),
  ];
}
