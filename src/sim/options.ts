// Options of a simulation run, the named presets, and their validation.
// Invariants: resolveSimOptions returns a complete, self-consistent option set or throws ConfigError
// naming the offending field; presets are frozen; 'small' finishes in seconds on a software adapter,
// 'gpu' is sized for a real GPU (about 1 GiB of KV pool).
import { ConfigError } from '../errors';
import type { ModelShape } from './model-shape';
import type { WorkloadOptions } from './workload';

export interface SimOptions extends WorkloadOptions, ModelShape {
  blockSize: number;
  /** KV blocks in the pool (shared by all layers' buffers). */
  numBlocks: number;
  /** Query rows (prefill + decode) per step at most. */
  maxBatchTokens: number;
  maxRunningRequests: number;
  /** Fraction of attention outputs checked against the CPU reference (0..1). */
  verifyFraction: number;
  /** Outputs always checked at the start of a run. */
  minVerifications: number;
  atol: number;
  rtol: number;
  /** Run the cache's invariant check every this-many steps (0: only at the end). */
  checkInvariantsEvery: number;
}

export type PresetName = 'small' | 'gpu';

const SMALL: SimOptions = Object.freeze({
  requests: 24,
  arrivalRate: 3,
  systemPromptLength: 40,
  prefixSharing: 1,
  fewShotGroups: 2,
  fewShotLength: 24,
  fewShotFraction: 0.5,
  followUpFraction: 0.25,
  promptLength: 16,
  outputLength: 16,
  samplesPerRequest: 2,
  parallelSampleFraction: 0.25,
  maxTotalLength: 256,
  vocabSize: 32000,
  seed: 1,
  numLayers: 2,
  numQueryHeads: 4,
  numKvHeads: 2,
  headDim: 32,
  kvDtype: 'f16',
  blockSize: 16,
  numBlocks: 32,
  maxBatchTokens: 128,
  maxRunningRequests: 12,
  verifyFraction: 0.05,
  minVerifications: 8,
  atol: 2e-3,
  rtol: 1e-2,
  checkInvariantsEvery: 0,
});

const GPU: SimOptions = Object.freeze({
  ...SMALL,
  requests: 256,
  arrivalRate: 8,
  systemPromptLength: 256,
  fewShotGroups: 4,
  fewShotLength: 128,
  promptLength: 128,
  outputLength: 128,
  samplesPerRequest: 4,
  maxTotalLength: 2048,
  numLayers: 8,
  numQueryHeads: 32,
  numKvHeads: 8,
  headDim: 128,
  numBlocks: 2048,
  maxBatchTokens: 2048,
  maxRunningRequests: 64,
  verifyFraction: 0.01,
  minVerifications: 16,
});

export const PRESETS: Readonly<Record<PresetName, SimOptions>> = Object.freeze({ small: SMALL, gpu: GPU });

export function isPresetName(name: string): name is PresetName {
  return name === 'small' || name === 'gpu';
}

function int(o: SimOptions, key: keyof SimOptions, min: number): void {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new ConfigError(`simulation option ${key} must be an integer ≥ ${min} (got ${String(v)})`);
  }
}

function fraction(o: SimOptions, key: keyof SimOptions): void {
  const v = o[key];
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) {
    throw new ConfigError(`simulation option ${key} must be a number in [0, 1] (got ${String(v)})`);
  }
}

function positive(o: SimOptions, key: keyof SimOptions): void {
  const v = o[key];
  if (typeof v !== 'number' || !(v > 0)) throw new ConfigError(`simulation option ${key} must be a positive number (got ${String(v)})`);
}

/** The preset with `overrides` applied (undefined values ignored), validated. */
export function resolveSimOptions(overrides: Partial<SimOptions> = {}, preset: PresetName = 'small'): SimOptions {
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  const o: SimOptions = { ...PRESETS[preset], ...defined };
  for (const key of ['requests', 'numLayers', 'numQueryHeads', 'numKvHeads', 'headDim', 'blockSize', 'numBlocks', 'maxBatchTokens', 'maxRunningRequests', 'samplesPerRequest', 'vocabSize'] as const) {
    int(o, key, 1);
  }
  for (const key of ['systemPromptLength', 'fewShotGroups', 'fewShotLength', 'promptLength', 'checkInvariantsEvery', 'seed'] as const) {
    int(o, key, 0);
  }
  int(o, 'outputLength', 1);
  int(o, 'minVerifications', 1);
  int(o, 'maxTotalLength', 2);
  for (const key of ['prefixSharing', 'fewShotFraction', 'followUpFraction', 'parallelSampleFraction', 'verifyFraction'] as const) fraction(o, key);
  positive(o, 'arrivalRate');
  for (const key of ['atol', 'rtol'] as const) {
    if (!(o[key] >= 0)) throw new ConfigError(`simulation option ${key} must be ≥ 0 (got ${String(o[key])})`);
  }
  if (o.kvDtype !== 'f16' && o.kvDtype !== 'f32') throw new ConfigError(`kvDtype must be 'f16' or 'f32' (got ${String(o.kvDtype)})`);
  if (o.headDim % 8 !== 0) throw new ConfigError(`headDim must be a multiple of 8 (got ${o.headDim})`);
  if (o.numQueryHeads % o.numKvHeads !== 0) {
    throw new ConfigError(`numQueryHeads (${o.numQueryHeads}) must be a multiple of numKvHeads (${o.numKvHeads})`);
  }
  if (o.vocabSize > 2 ** 32) throw new ConfigError(`vocabSize must be at most 2^32 (got ${o.vocabSize})`);
  return o;
}
