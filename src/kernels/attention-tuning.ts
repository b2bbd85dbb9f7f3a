// The knobs of the paged-attention kernels (which decode and prefill kernel runs, and their shapes), and
// their validation for callers that pass them in (PagedKVCache's attentionTuning, a tuning file).
// Invariants: every field is optional and an absent one means the built-in default; checkAttentionTuning
// accepts exactly the fields below with values the kernel generators support, returns a frozen copy
// (so a tuning shared between caches cannot change under them) and otherwise throws a ConfigError that
// names the field, so a misspelt knob in a JSON file is an error rather than a silent default.
import { ConfigError } from '../errors';
import { BLOCKED_SCORE_KEYS, BLOCKED_WORKGROUP_SIZES, MAX_RESCALE_THRESHOLD, MMA_KEY_TILES, MMA_ROW_TILES, MMA_SUBGROUP_COUNTS, STREAM_WORKGROUP_SIZES, type BlockedPrefillTuning, type StreamDecodeTuning } from './attention-config';

export interface AttentionTuning {
  /** false: decode with the tile engine even where the streaming kernel applies. */
  streamDecode?: boolean;
  /** Streaming decode kernel knobs (unroll, prefetch, lanes, heads, workgroup size). */
  stream?: StreamDecodeTuning;
  /** Workgroups the decode split heuristic aims for. */
  decodeTargetWorkgroups?: number;
  /** Shortest decode split (keys). */
  decodeMinKeysPerSplit?: number;
  /** false: prefill without subgroup matrices even where they are available. */
  prefillMatrix?: boolean;
  /** false: prefill (where subgroup matrices are not used) on the tile engine instead of the register-blocked kernel. */
  prefillBlocked?: boolean;
  /** Register-blocked prefill knobs (f32 staging, tile limits, workgroup memory). */
  blocked?: BlockedPrefillTuning;
  /** Rescale threshold of the subgroup-matrix prefill (default 8; 0 rescales whenever a row max grows). */
  prefillRescaleThreshold?: number;
  /** Subgroups per subgroup-matrix prefill workgroup, each owning 16 query rows, sharing each step's staged K/V (default MMA_DEFAULT_SUBGROUPS, 2). */
  prefillMatrixSubgroups?: (typeof MMA_SUBGROUP_COUNTS)[number];
  /**
   * Tiles of query rows (one matrix tall each) per subgroup of the subgroup-matrix prefill (default 1): with 2,
   * each K and V matrix a subgroup loads feeds two multiplications, for twice its Q, S and O registers.
   */
  prefillMatrixRowTiles?: (typeof MMA_ROW_TILES)[number];
  /** Keys per step of the subgroup-matrix prefill (default 16): more MMAs between its barriers, more workgroup memory. */
  prefillMatrixKeyTile?: (typeof MMA_KEY_TILES)[number];
  /** true: the subgroup-matrix prefill loads K/V matrices of fully attended steps from the pool, unstaged (one chunk, blocks a multiple of the matrix size; default true, MMA_DEFAULT_DIRECT_KV). */
  prefillMatrixDirectKv?: boolean;
  /**
   * true: the subgroup-matrix prefill loads the V matrices of a step read from the pool before the step's
   * softmax rather than at P·V (default false; MmaPrefillConfig.earlyV).
   */
  prefillMatrixEarlyV?: boolean;
  /**
   * true: the subgroup-matrix prefill loads the next pool-read step's K matrices right after a step's
   * scores rather than at the next step (default false; MmaPrefillConfig.nextK).
   */
  prefillMatrixNextK?: boolean;
  /**
   * true: the subgroup-matrix prefill stages a step's V into its K's place after the scores, halving the
   * staging area's workgroup memory (default false; MmaPrefillConfig.reuseKForV).
   */
  prefillMatrixReuseKForV?: boolean;
  /** true: decode on subgroup matrices where the device has them (the prefill kernel's code, K/V from the pool where the layout allows). */
  decodeMatrix?: boolean;
  /** Keys per step of the subgroup-matrix decode (default 16). */
  decodeMatrixKeyTile?: (typeof MMA_KEY_TILES)[number];
  /** false: never store K/V from the decode kernel (writesKvFor answers false; callers write K/V first). */
  decodeWritesKv?: boolean;
}

/**
 * What a software adapter (SwiftShader, the CPU fallback where there is no GPU) runs under the caller's
 * tuning: decode workgroups of 64 invocations instead of 128. tuneAttention chose it on SwiftShader in
 * every run, and `bench/decode-sweep.ts --quick` measured 1.3–1.7× the read-bandwidth ratio of the
 * default on each quick decode shape, and 1.06–1.9× again once workgroup memory was zeroed by a loop
 * there (bench/RESULTS.md). A GPU keeps the built-in choices.
 */
export const SOFTWARE_ADAPTER_TUNING: AttentionTuning = Object.freeze({ stream: Object.freeze({ workgroupSize: 64 as const }) });

type Check = (value: unknown, name: string) => void;

const bool: Check = (value, name) => {
  if (typeof value !== 'boolean') fail(name, value, 'true or false');
};

function int(min: number, max: number): Check {
  return (value, name) => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) fail(name, value, `an integer in [${min}, ${max}]`);
  };
}

function number(min: number, max: number): Check {
  return (value, name) => {
    if (typeof value !== 'number' || !(value >= min && value <= max)) fail(name, value, `a number in [${min}, ${max}]`);
  };
}

function oneOf(values: readonly (string | number)[]): Check {
  return (value, name) => {
    if (!values.includes(value as string | number)) fail(name, value, `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`);
  };
}

const STREAM_FIELDS: Record<keyof StreamDecodeTuning, Check> = {
  unroll: int(1, 16),
  prefetch: bool,
  maxLanes: oneOf([1, 2, 4, 8, 16, 32]),
  maxHeads: int(1, 8),
  workgroupSize: oneOf(STREAM_WORKGROUP_SIZES),
  queryInSmem: bool,
  rescaleThreshold: number(0, MAX_RESCALE_THRESHOLD),
  reduction: oneOf(['subgroup', 'shared']),
  halfScores: bool,
  mergeBytes: int(16, 1 << 20),
};

const BLOCKED_FIELDS: Record<keyof BlockedPrefillTuning, Check> = {
  stagedF32: bool,
  maxRows: oneOf([8, 16, 32, 64, 128]),
  maxKeyTile: oneOf([8, 16, 32]),
  workgroupBytes: int(1024, 1 << 20),
  workgroupSize: oneOf(BLOCKED_WORKGROUP_SIZES),
  maxScoreKeys: oneOf(BLOCKED_SCORE_KEYS),
};

const FIELDS: Record<keyof AttentionTuning, Check> = {
  streamDecode: bool,
  stream: (value, name) => checkObject(value, name, STREAM_FIELDS),
  decodeTargetWorkgroups: int(1, 1 << 20),
  decodeMinKeysPerSplit: int(1, 1 << 24),
  prefillMatrix: bool,
  prefillBlocked: bool,
  blocked: (value, name) => checkObject(value, name, BLOCKED_FIELDS),
  prefillRescaleThreshold: number(0, MAX_RESCALE_THRESHOLD),
  prefillMatrixSubgroups: oneOf(MMA_SUBGROUP_COUNTS),
  prefillMatrixRowTiles: oneOf(MMA_ROW_TILES),
  prefillMatrixKeyTile: oneOf(MMA_KEY_TILES),
  prefillMatrixDirectKv: bool,
  prefillMatrixEarlyV: bool,
  prefillMatrixNextK: bool,
  prefillMatrixReuseKForV: bool,
  decodeWritesKv: bool,
  decodeMatrix: bool,
  decodeMatrixKeyTile: oneOf(MMA_KEY_TILES),
};

/**
 * Validates a tuning (a plain object, e.g. parsed from JSON) and returns a frozen deep copy. `name` is
 * how the caller calls it in error messages. Throws ConfigError naming the first bad or unknown field.
 */
export function checkAttentionTuning(value: unknown, name = 'attentionTuning'): AttentionTuning {
  checkObject(value, name, FIELDS);
  return deepFreeze(structuredClone(value) as AttentionTuning);
}

/** The tuning in one line of `field=value` pairs (nested fields dotted), or 'defaults' when it sets nothing. */
export function describeTuning(tuning: AttentionTuning): string {
  const parts: string[] = [];
  const walk = (o: object, prefix: string): void => {
    for (const [key, value] of Object.entries(o)) {
      if (value === undefined) continue;
      if (typeof value === 'object' && value !== null) walk(value, `${prefix}${key}.`);
      else parts.push(`${prefix}${key}=${String(value)}`);
    }
  };
  walk(tuning, '');
  return parts.length > 0 ? parts.join(', ') : 'defaults';
}

/** `base` with `patch` applied (nested stream/blocked objects merged field by field). */
export function mergeTuning(base: AttentionTuning, patch: AttentionTuning): AttentionTuning {
  const merged: AttentionTuning = { ...base, ...patch };
  if (base.stream || patch.stream) merged.stream = { ...base.stream, ...patch.stream };
  if (base.blocked || patch.blocked) merged.blocked = { ...base.blocked, ...patch.blocked };
  return merged;
}

function checkObject(value: unknown, name: string, fields: Record<string, Check>): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(name, value, 'an object');
  for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
    const check = fields[key];
    if (check === undefined) {
      throw new ConfigError(`${name}.${key} is not a tuning knob; the knobs of ${name} are: ${Object.keys(fields).join(', ')}`);
    }
    if (field !== undefined) check(field, `${name}.${key}`);
  }
}

function fail(name: string, value: unknown, expected: string): never {
  throw new ConfigError(`${name} must be ${expected} (got ${typeof value === 'string' ? JSON.stringify(value) : String(value)})`);
}

function deepFreeze<T extends object>(o: T): T {
  for (const value of Object.values(o)) if (typeof value === 'object' && value !== null) deepFreeze(value as object);
  return Object.freeze(o);
}
