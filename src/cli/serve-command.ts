// `serve`: runs the serving simulation with a progress line on stderr, then prints the summary table
// (or the SimResult as JSON with --json). Invariants: stdout carries only the final report; the
// progress line is erased before it is printed; the GPU acquired here is released on every path.
import { readFileSync } from 'node:fs';
import { createGpu } from '../gpu/create-gpu';
import { ConfigError } from '../errors';
import { checkAttentionTuning, type AttentionTuning } from '../kernels/attention-tuning';
import { isPresetName, resolveSimOptions } from '../sim/options';
import { runSimulation } from '../sim/run-simulation';
import { ProgressBar, type ProgressStream } from './progress-bar';
import { workloadOverrides } from './serve-flags';
import { formatSummary } from './summary-table';
import { UsageError } from './usage-error';

export interface ServeFlags {
  [flag: string]: string | boolean | undefined;
  preset?: string;
  json?: boolean;
  'no-progress'?: boolean;
  'force-fallback'?: boolean;
  /** A JSON file with the attention tuning (`tune --out`). */
  tuning?: string;
  /** Ask for subgroup matrices (Dawn's allow_unsafe_apis), as `tune` and `bench` do. */
  'subgroup-matrix'?: boolean;
  /** Shaders without WebGPU's bounds checks (createGpu({ boundsChecks: false }); Node only). */
  'no-bounds-checks'?: boolean;
}

export async function serve(flags: ServeFlags, io: { stdout: ProgressStream; stderr: ProgressStream }): Promise<number> {
  const preset = flags.preset ?? 'small';
  if (!isPresetName(preset)) throw new UsageError(`--preset must be small or gpu (got "${preset}")`);
  const options = resolveSimOptions(workloadOverrides(flags), preset);
  const attentionTuning = typeof flags.tuning === 'string' ? readTuning(flags.tuning) : undefined;
  const gpu = await createGpu({
    forceFallback: !!flags['force-fallback'],
    subgroupMatrix: !!flags['subgroup-matrix'],
    boundsChecks: !flags['no-bounds-checks'],
  });
  if (gpu.isFallback && preset === 'gpu') {
    io.stderr.write('warning: --preset gpu on a software adapter (SwiftShader) will take a very long time\n');
  }
  const bar = flags['no-progress'] ? undefined : new ProgressBar(io.stderr);
  bar?.message(`${gpu.isFallback ? 'software adapter: ' : ''}building GPU pipelines…`);
  try {
    const result = await runSimulation(options, { gpu, attentionTuning, onStep: bar ? (p) => bar.update(p) : undefined });
    bar?.clear();
    io.stdout.write(flags.json ? `${JSON.stringify(result, jsonReplacer, 2)}\n` : formatSummary(result));
    return 0;
  } finally {
    bar?.clear();
    gpu.device.destroy();
  }
}

/** The attention tuning in a JSON file (as `tune --out` writes it), validated. */
function readTuning(path: string): AttentionTuning {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`--tuning: cannot read ${path} (${error instanceof Error ? error.message : String(error)})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--tuning: ${path} is not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  try {
    return checkAttentionTuning(value, 'tuning');
  } catch (error) {
    if (error instanceof ConfigError) throw new ConfigError(`--tuning ${path}: ${error.message}`);
    throw error;
  }
}

/** JSON has no Infinity: write it as the string "Infinity". */
export function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) && !Number.isNaN(value) ? String(value) : value;
}
