// --help text for every command, generated from the flag table so it cannot drift from the parser.
import { PRESETS } from '../sim/options';
import { WORKLOAD_FLAGS } from './serve-flags';
import { TUNE_SHAPE_FLAGS } from './tune-command';
import {
  DEFAULT_DECODE_SHAPES,
  DEFAULT_PREFILL_SHAPE,
  QUICK_DECODE_SHAPES,
  QUICK_PREFILL_SHAPE,
  type DecodeShape,
  type PrefillShape,
} from '../tuning/tune-attention';

export const PROGRAM = 'webgpu-paged-attention';

/** The flags every command with a flag list ends with. */
const COMMON_FLAGS: Array<[string, string]> = [
  ['--force-fallback', 'use the software adapter (SwiftShader) even when a GPU exists'],
  ['-h, --help', 'this help'],
];

/** Flag and help columns, the flags padded to the longest. */
function flagLines(lines: ReadonlyArray<[string, string]>): string {
  const width = Math.max(...lines.map(([flag]) => flag.length));
  return lines.map(([flag, help]) => `  ${flag.padEnd(width)}  ${help}`).join('\n');
}

export function mainHelp(): string {
  return `Usage: ${PROGRAM} [command] [flags]

Paged KV-cache + paged-attention runtime for WebGPU: serving simulation, adapter info, benchmarks.

Commands:
  serve   (default) simulate an inference server on the paged KV cache and verify its attention outputs
  info    show the WebGPU adapter, its features, limits, parallelism and kernels
  bench   run the attention benchmark suite
  tune    choose the attention kernels for this GPU and a model shape by timing them (autotuning)

Run \`${PROGRAM} <command> --help\` for the flags of a command.
`;
}

export function serveHelp(): string {
  const small = PRESETS.small as unknown as Record<string, unknown>;
  const gpu = PRESETS.gpu as unknown as Record<string, unknown>;
  const lines: Array<[string, string]> = [['--preset small|gpu', 'workload size: small (default; seconds on a software adapter) or gpu']];
  for (const f of WORKLOAD_FLAGS) {
    const defaults = small[f.key] === gpu[f.key] ? String(small[f.key]) : `${String(small[f.key])}, gpu ${String(gpu[f.key])}`;
    lines.push([`--${f.name} <value>`, `${f.help} [${defaults}]`]);
  }
  lines.push(
    ['--json', 'print the result as JSON on stdout instead of the table'],
    ['--tuning <file>', 'attention kernel tuning (JSON, as `tune --out` writes it) [built-in choices]'],
    ['--subgroup-matrix', "use subgroup matrices where the device has them (Dawn's allow_unsafe_apis; `tune` and `bench` do)"],
    ['--no-bounds-checks', "shaders without WebGPU's bounds checks (Dawn's disable_robustness): faster on NVIDIA, for trusted code only"],
    ['--no-progress', 'no progress line on stderr'],
    ...COMMON_FLAGS,
  );
  return `Usage: ${PROGRAM} serve [flags]

Simulates an inference server on the paged KV cache: requests arrive with a shared system prompt,
few-shot blocks, multi-turn follow-ups and parallel samples; continuous batching runs prefill chunks and
decode steps through every layer (writeKV + attend); the prefix cache, eviction, copy-on-write and
preemption do their work under pool pressure. A sample of attention outputs is checked against a CPU
reference; any mismatch fails the run (exit code 1).

Flags:
${flagLines(lines)}
`;
}

export function infoHelp(): string {
  return `Usage: ${PROGRAM} info [--json] [--force-fallback] [--subgroup-matrix] [--no-bounds-checks]

Shows the WebGPU adapter this runtime would use, the optional features it enables, the device limits,
how many 256-invocation workgroups the device runs at once (measured: it sizes decode split-K), and
the decode and prefill kernels it gets for a reference shape (32/8 heads × 128, f16 KV). With
--subgroup-matrix, the device asks for subgroup matrices as serve --subgroup-matrix, tune and bench do;
with --no-bounds-checks, its shaders run without WebGPU's bounds checks as serve --no-bounds-checks.
`;
}

export function benchHelp(): string {
  return `Usage: ${PROGRAM} bench [--json] [--quick] [--tune | --no-tune] [--force-fallback]

Runs the attention benchmark suite on the WebGPU adapter and prints its table (--json: machine-readable).
--quick: smaller shapes (the default on a software adapter). Unless quick (or --no-tune), the suite also
runs the autotuner (as the tune command) on its own shapes and times the decode table again with the
kernels it chose; --tune runs it on a software adapter too.
`;
}

export function tuneHelp(): string {
  const lines: Array<[string, string]> = [
    ...TUNE_SHAPE_FLAGS.map((f): [string, string] => [`--${f.name} <n>`, `${f.help} [${f.fallback}]`]),
    ['--kv-dtype f16|f32', 'KV storage type [f16]'],
    ['--decode-shapes <BxC,…>', `decode batches to time, batch x context [${decodeShapes(DEFAULT_DECODE_SHAPES)}; software ${decodeShapes(QUICK_DECODE_SHAPES)}]`],
    ['--prefill-shape <SxT|none>', `prefill batch to time, sequences x tokens, or none [${prefillShape(DEFAULT_PREFILL_SHAPE)}; software ${prefillShape(QUICK_PREFILL_SHAPE)}]`],
    ['--out <file>', 'write the chosen tuning as JSON (for `serve --tuning` or attentionTuning)'],
    ['--json', 'print the whole result as JSON on stdout instead of the report'],
    ...COMMON_FLAGS,
  ];
  return `Usage: ${PROGRAM} tune [flags]

Chooses the paged-attention kernels for this GPU and a model's head shape: tries the decode and prefill
kernels' knobs one at a time (lanes, unroll, workgroup size, split-K, tiles, …), checks each candidate
against the CPU reference, times it, and keeps a change only when it is faster by more than 3 % twice.
On a software adapter (SwiftShader) it times smaller batches.

Flags:
${flagLines(lines)}
`;
}

const decodeShapes = (shapes: readonly DecodeShape[]): string => shapes.map((s) => `${s.batch}x${s.context}`).join(',');
const prefillShape = (shape: PrefillShape): string => `${shape.sequences}x${shape.tokens}`;
