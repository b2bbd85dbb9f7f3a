// `tune`: runs the attention autotuner (src/tuning/tune-attention.ts) for one model head shape on the
// adapter at hand, printing each candidate as it is checked and timed, then the chosen tuning; --out
// writes that tuning as JSON for `serve --tuning` or PagedKVCacheOptions.attentionTuning. Invariants:
// stdout carries the report (or, with --json, only the result as JSON); flags are parsed strictly; the
// GPU acquired here is released on every path.
import { writeFileSync } from 'node:fs';
import { createGpu, describeGpu, PRECISE_TIMING_DAWN_OPTIONS } from '../gpu/create-gpu';
import { describeTuning } from '../kernels/attention-tuning';
import { tuneAttention } from '../tuning/tune-attention';
import { describeTrial } from '../tuning/tuning-search';
import type { ProgressStream } from './progress-bar';
import { UsageError } from './usage-error';

export interface TuneFlags {
  [flag: string]: string | boolean | undefined;
}

/** The model flags of `tune` with their defaults (the reference shape `info` reports kernels for). */
export const TUNE_SHAPE_FLAGS = [
  { name: 'query-heads', help: 'query heads', fallback: 32 },
  { name: 'kv-heads', help: 'key/value heads', fallback: 8 },
  { name: 'head-dim', help: 'head dimension (multiple of 8)', fallback: 128 },
  { name: 'block-size', help: 'tokens per KV block', fallback: 16 },
] as const;

export async function tune(flags: TuneFlags, io: { stdout: ProgressStream; stderr: ProgressStream }): Promise<number> {
  const [numQueryHeads, numKvHeads, headDim, blockSize] = TUNE_SHAPE_FLAGS.map((f) => positiveInt(f.name, flags[f.name], f.fallback));
  const kvDtype = flags['kv-dtype'] ?? 'f16';
  if (kvDtype !== 'f16' && kvDtype !== 'f32') throw new UsageError(`--kv-dtype must be f16 or f32 (got "${String(kvDtype)}")`);
  const decodeShapes = typeof flags['decode-shapes'] === 'string' ? parseShapes('decode-shapes', flags['decode-shapes']).map(([batch, context]) => ({ batch, context })) : undefined;
  const prefill = typeof flags['prefill-shape'] === 'string' ? flags['prefill-shape'] : undefined;
  const prefillShape =
    prefill === undefined ? undefined : prefill.trim() === 'none' ? null : ((([sequences, tokens]) => ({ sequences, tokens }))(onlyOne(parseShapes('prefill-shape', prefill))));
  const gpu = await createGpu({ forceFallback: !!flags['force-fallback'], subgroupMatrix: true, dawnOptions: PRECISE_TIMING_DAWN_OPTIONS });
  try {
    const log = (line: string): void => {
      if (!flags.json) io.stdout.write(`${line}\n`);
    };
    log(`tuning attention on ${describeGpu(gpu)}`);
    log(`  ${numQueryHeads}/${numKvHeads} heads × ${headDim}, ${kvDtype} KV, block ${blockSize}${gpu.isFallback && decodeShapes === undefined ? ' (software adapter: quick shapes)' : ''}`);
    const result = await tuneAttention(gpu.device, {
      numQueryHeads,
      numKvHeads,
      headDim,
      kvDtype,
      blockSize,
      adapterInfo: gpu.adapter.info,
      decodeShapes,
      prefillShape,
      onTrial: (kind, trial) => log(`  ${describeTrial(kind, trial)}`),
    });
    const json = JSON.stringify(result.tuning, null, 2);
    if (typeof flags.out === 'string') writeFileSync(flags.out, `${json}\n`);
    if (flags.json) {
      io.stdout.write(`${JSON.stringify({ device: describeGpu(gpu), ...result }, null, 2)}\n`);
      return 0;
    }
    log(`\ndecode: ${result.decode.kernel} — ${result.decode.speedup.toFixed(2)}× the defaults`);
    if (result.prefill) log(`prefill: ${result.prefill.kernel} — ${result.prefill.speedup.toFixed(2)}× the defaults`);
    log(`tuning (${result.timing} timing): ${describeTuning(result.tuning)}`);
    log(`split-K sized for ${result.residentWorkgroups} workgroups of 256 invocations at once (probed; the cache probes its own device the same way)`);
    log(typeof flags.out === 'string' ? `written to ${flags.out}; use it with \`serve --tuning ${flags.out}\`` : json);
    return 0;
  } finally {
    gpu.device.destroy();
  }
}

/** `AxB[,AxB…]` as pairs of positive integers. */
function parseShapes(name: string, raw: string): Array<[number, number]> {
  return raw.split(',').map((part) => {
    const match = /^\s*(\d+)\s*[x×]\s*(\d+)\s*$/.exec(part);
    const pair = match ? ([Number(match[1]), Number(match[2])] as [number, number]) : undefined;
    if (!pair || pair[0] < 1 || pair[1] < 1) throw new UsageError(`--${name} takes sizes like 64x2048 (got "${raw}")`);
    return pair;
  });
}

function onlyOne(pairs: Array<[number, number]>): [number, number] {
  if (pairs.length !== 1) throw new UsageError('--prefill-shape takes one size, like 4x2048, or none');
  return pairs[0]!;
}

function positiveInt(name: string, raw: string | boolean | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const text = String(raw).trim();
  if (!/^[+]?\d+$/.test(text) || Number(text) < 1) throw new UsageError(`--${name} must be a positive integer (got "${String(raw)}")`);
  return Number(text);
}
