// The `serve` command's workload flags: one table drives parsing, validation messages and --help.
// Invariants: every flag maps to exactly one SimOptions field; values are parsed strictly (a malformed
// number is a UsageError naming the flag, never NaN passed on); range checks are left to
// resolveSimOptions so the CLI and the library agree.
import type { SimOptions } from '../sim/options';
import { UsageError } from './usage-error';

type FlagKind = 'int' | 'number' | 'rate' | 'dtype';

export interface WorkloadFlag {
  name: string;
  key: keyof SimOptions;
  kind: FlagKind;
  help: string;
}

export const WORKLOAD_FLAGS: readonly WorkloadFlag[] = [
  { name: 'requests', key: 'requests', kind: 'int', help: 'requests to serve' },
  { name: 'arrival-rate', key: 'arrivalRate', kind: 'rate', help: 'mean arrivals per step (Poisson), or "inf" for all at once' },
  { name: 'system-prompt', key: 'systemPromptLength', kind: 'int', help: 'tokens of the shared system prompt' },
  { name: 'prefix-sharing', key: 'prefixSharing', kind: 'number', help: 'fraction of requests starting with the system prompt (0..1)' },
  { name: 'few-shot-fraction', key: 'fewShotFraction', kind: 'number', help: 'fraction of requests using a shared few-shot block (0..1)' },
  { name: 'follow-up-fraction', key: 'followUpFraction', kind: 'number', help: 'fraction of requests continuing an earlier conversation (0..1)' },
  { name: 'prompt', key: 'promptLength', kind: 'int', help: "mean tokens of each request's own prompt text" },
  { name: 'output', key: 'outputLength', kind: 'int', help: 'mean tokens generated per sample' },
  { name: 'samples', key: 'samplesPerRequest', kind: 'int', help: 'parallel samples (fork) of a sampling request' },
  { name: 'sample-fraction', key: 'parallelSampleFraction', kind: 'number', help: 'fraction of requests that sample in parallel (0..1)' },
  { name: 'max-length', key: 'maxTotalLength', kind: 'int', help: 'longest prompt + output of a request (the server maximum)' },
  { name: 'layers', key: 'numLayers', kind: 'int', help: 'transformer layers' },
  { name: 'query-heads', key: 'numQueryHeads', kind: 'int', help: 'query heads' },
  { name: 'kv-heads', key: 'numKvHeads', kind: 'int', help: 'key/value heads (GQA when fewer than query heads)' },
  { name: 'head-dim', key: 'headDim', kind: 'int', help: 'head dimension (multiple of 8)' },
  { name: 'kv-dtype', key: 'kvDtype', kind: 'dtype', help: 'KV storage type: f16 or f32' },
  { name: 'block-size', key: 'blockSize', kind: 'int', help: 'tokens per KV block' },
  { name: 'blocks', key: 'numBlocks', kind: 'int', help: 'KV blocks in the pool' },
  { name: 'batch-tokens', key: 'maxBatchTokens', kind: 'int', help: 'query rows (prefill + decode) per step' },
  { name: 'max-running', key: 'maxRunningRequests', kind: 'int', help: 'requests admitted at once' },
  { name: 'seed', key: 'seed', kind: 'int', help: 'workload seed' },
  { name: 'verify-fraction', key: 'verifyFraction', kind: 'number', help: 'fraction of attention outputs checked on the CPU (0..1)' },
  { name: 'min-verify', key: 'minVerifications', kind: 'int', help: 'outputs always checked at the start' },
  { name: 'atol', key: 'atol', kind: 'number', help: 'absolute tolerance of the check' },
  { name: 'rtol', key: 'rtol', kind: 'number', help: 'relative tolerance of the check' },
  { name: 'check-invariants-every', key: 'checkInvariantsEvery', kind: 'int', help: "run the cache's invariant check every N steps (0: at the end)" },
];

function parseValue(flag: WorkloadFlag, raw: string): number | string {
  const text = raw.trim();
  switch (flag.kind) {
    case 'dtype':
      if (text !== 'f16' && text !== 'f32') throw new UsageError(`--${flag.name} must be f16 or f32 (got "${raw}")`);
      return text;
    case 'rate':
      if (/^(inf|infinity)$/i.test(text)) return Infinity;
      return parseNumber(flag, text, raw);
    case 'int': {
      if (!/^[+]?\d+$/.test(text)) throw new UsageError(`--${flag.name} must be a non-negative integer (got "${raw}")`);
      return Number(text);
    }
    case 'number':
      return parseNumber(flag, text, raw);
  }
}

function parseNumber(flag: WorkloadFlag, text: string, raw: string): number {
  const value = Number(text);
  if (text === '' || !Number.isFinite(value)) throw new UsageError(`--${flag.name} must be a number (got "${raw}")`);
  return value;
}

/** Option overrides from parsed flag values (flags not given are left out). */
export function workloadOverrides(values: Record<string, string | boolean | undefined>): Partial<SimOptions> {
  const out: Record<string, unknown> = {};
  for (const flag of WORKLOAD_FLAGS) {
    const raw = values[flag.name];
    if (raw === undefined) continue;
    if (typeof raw !== 'string') throw new UsageError(`--${flag.name} needs a value`);
    out[flag.key] = parseValue(flag, raw);
  }
  return out as Partial<SimOptions>;
}
