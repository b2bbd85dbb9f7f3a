// --help text for every command, generated from the flag table so it cannot drift from the parser.
import { PRESETS } from '../sim/options';
import { WORKLOAD_FLAGS } from './serve-flags';

export const PROGRAM = 'webgpu-paged-attention';

export function mainHelp(): string {
  return `Usage: ${PROGRAM} [command] [flags]

Paged KV-cache + paged-attention runtime for WebGPU: serving simulation, adapter info, benchmarks.

Commands:
  serve   (default) simulate an inference server on the paged KV cache and verify its attention outputs
  info    show the WebGPU adapter, its features, limits, parallelism and kernels
  bench   run the attention benchmark suite

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
    ['--no-progress', 'no progress line on stderr'],
    ['--force-fallback', 'use the software adapter (SwiftShader) even when a GPU exists'],
    ['-h, --help', 'this help'],
  );
  const width = Math.max(...lines.map(([flag]) => flag.length));
  return `Usage: ${PROGRAM} serve [flags]

Simulates an inference server on the paged KV cache: requests arrive with a shared system prompt,
few-shot blocks, multi-turn follow-ups and parallel samples; continuous batching runs prefill chunks and
decode steps through every layer (writeKV + attend); the prefix cache, eviction, copy-on-write and
preemption do their work under pool pressure. A sample of attention outputs is checked against a CPU
reference; any mismatch fails the run (exit code 1).

Flags:
${lines.map(([flag, help]) => `  ${flag.padEnd(width)}  ${help}`).join('\n')}
`;
}

export function infoHelp(): string {
  return `Usage: ${PROGRAM} info [--json] [--force-fallback]

Shows the WebGPU adapter this runtime would use, the optional features it enables, the device limits,
how many 256-invocation workgroups the device runs at once (measured: it sizes decode split-K), and
the decode and prefill kernels it gets for a reference shape (32/8 heads × 128, f16 KV).
`;
}

export function benchHelp(): string {
  return `Usage: ${PROGRAM} bench [--json] [--quick] [--force-fallback]

Runs the attention benchmark suite on the WebGPU adapter and prints its table (--json: machine-readable).
`;
}
