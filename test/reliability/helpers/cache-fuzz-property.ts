// The model-based fuzz property of PagedKVCache, shared by test/reliability/cache-fuzz.test.ts (a
// bounded CI run) and bench/fuzz-long.ts (as many runs as asked). Each run draws a tiny pool geometry
// (block size 2–4, 16–32 blocks, 1–2 layers, few sequence slots, short maximum length) and a list of
// commands, runs them against a fresh cache and the model, then frees everything and requires every
// block to be free again (nothing leaked). Head geometry is fixed per device so the attention
// pipelines are compiled once. With `matrix` (a device with subgroup matrices) the caches attend on
// them: each run draws the matrix knobs and block sizes up to 16 (so that blocks holding whole n-key
// matrices, read straight from the pool, occur), and attention is compared at the matrix kernels'
// tolerance (f16 queries and probabilities).
import fc from 'fast-check';
import { PagedKVCache } from '../../../src/cache/paged-kv-cache';
import type { AdapterInfoWithSubgroups, AttentionTuning } from '../../../src/kernels/paged-attention';
import { CacheModel, releaseEverything } from './cache-model';
import {
  type WriteSpec,
  AppendCommand,
  AttendCommand,
  ClearPrefixCommand,
  CreateCommand,
  ForkCommand,
  FreeCommand,
  PressureCommand,
  ReadCommand,
  StaleIdCommand,
  WriteAllCommand,
  WriteCommand,
  type CacheCommand,
  type AttentionTolerance,
  type RealCache,
} from './cache-commands';

export interface HeadShape {
  numKvHeads: number;
  numQueryHeads: number;
  headDim: number;
}

export const FUZZ_HEADS: HeadShape = { numKvHeads: 2, numQueryHeads: 4, headDim: 8 };

const poolArb = fc.record({
  blockSize: fc.integer({ min: 2, max: 4 }),
  numBlocks: fc.integer({ min: 16, max: 32 }),
  numLayers: fc.integer({ min: 1, max: 2 }),
  maxSequences: fc.integer({ min: 4, max: 8 }),
  maxSequenceLength: fc.integer({ min: 12, max: 128 }),
  // The decode dispatch storing a decode batch's K/V itself (encodeAttention with k and v, n = 1).
  decodeWritesKv: fc.boolean(),
});

type PoolSpec = typeof poolArb extends fc.Arbitrary<infer T> ? T : never;

/** The matrix knobs of one run (the kernels fall back to what fits where a shape does not). */
const matrixTuningArb: fc.Arbitrary<AttentionTuning> = fc.record({
  decodeMatrix: fc.boolean(),
  prefillMatrixDirectKv: fc.boolean(),
  prefillMatrixSubgroups: fc.constantFrom(1, 2),
  prefillMatrixRowTiles: fc.constantFrom(1, 2),
  prefillMatrixKeyTile: fc.constantFrom(16, 32),
  prefillMatrixReuseKForV: fc.boolean(),
});

const matrixPoolArb = fc.tuple(poolArb, fc.constantFrom(2, 4, 8, 16), matrixTuningArb).map(([pool, blockSize, tuning]) => ({ ...pool, blockSize, tuning }));

const promptArb = fc.record({
  family: fc.nat(2),
  shared: fc.nat(16),
  tail: fc.nat(6),
  seed: fc.nat(),
  // Mostly the default namespace, so prompts meet their prefixes often enough to hit.
  namespace: fc.integer({ min: 0, max: 4 }).map((x) => Math.max(0, x - 2)),
});

const rare = fc.integer({ min: 0, max: 9 }).map((x) => x === 0);

export function cacheCommandArbs(): Array<fc.Arbitrary<CacheCommand>> {
  const create = fc.tuple(promptArb, rare).map(([spec, oversize]) => new CreateCommand(spec, oversize));
  const write = fc
    .record({
      pick: fc.nat(),
      layer: fc.nat(1),
      extend: fc.integer({ min: 0, max: 3 }).map((x) => x > 0),
      start: fc.nat(),
      n: fc.integer({ min: 1, max: 8 }),
      salt: fc.integer({ min: 0, max: 3 }),
      // Mostly writeKV from arrays; sometimes from GPU buffers, sometimes encoded (encodeWriteKV, or
      // encodeAttention with k and v).
      via: fc
        .integer({ min: 0, max: 11 })
        .map((x): WriteSpec['via'] => (x === 0 ? 'buffer' : x <= 3 ? 'encoded' : x <= 5 ? 'attended' : 'array')),
    })
    .map((spec) => new WriteCommand(spec));
  const attend = fc
    .tuple(fc.nat(1), fc.array(fc.record({ pick: fc.nat(), n: fc.integer({ min: 1, max: 4 }), start: fc.nat() }), { minLength: 1, maxLength: 3 }), fc.nat(), rare)
    .map(([layer, entries, qSeed, invalid]) => new AttendCommand(layer, entries, qSeed, invalid));
  const writeAll = fc.tuple(fc.nat(), fc.boolean()).map(([pick, thenFree]) => new WriteAllCommand(pick, thenFree));
  const append = fc.tuple(fc.nat(), fc.integer({ min: 1, max: 6 }), fc.nat()).map(([pick, n, seed]) => new AppendCommand(pick, n, seed));
  const read = fc.tuple(fc.nat(), fc.nat(1), fc.nat(), fc.nat(), rare).map(([pick, layer, a, b, beyond]) => new ReadCommand(pick, layer, a, b, beyond));
  const weighted = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
  // One weighted choice: fc.commands picks uniformly among its arbitraries.
  return [
    fc.oneof(
      weighted(8, create),
      weighted(4, append),
      weighted(3, fc.nat().map((pick) => new ForkCommand(pick))),
      weighted(10, write),
      weighted(6, writeAll),
      weighted(4, read),
      weighted(6, attend),
      weighted(4, fc.nat().map((pick) => new FreeCommand(pick))),
      weighted(2, fc.tuple(fc.nat(), fc.nat()).map(([pick, op]) => new StaleIdCommand(pick, op))),
      weighted(2, fc.tuple(rare, fc.nat()).map(([overflow, seed]) => new PressureCommand(overflow, seed))),
      weighted(1, fc.constant(new ClearPrefixCommand())),
    ),
  ];
}

export interface CacheFuzzOptions {
  device: GPUDevice;
  maxCommands: number;
  replayPath?: string;
  tally: Record<string, number>;
  heads?: HeadShape;
  /** Attend on subgroup matrices: the adapter's info (`gpu.adapter.info` of a `subgroupMatrix` device) and the tolerance to compare at. */
  matrix?: { adapterInfo: AdapterInfoWithSubgroups; tolerance: AttentionTolerance };
}

export function cacheFuzzProperty(options: CacheFuzzOptions) {
  const heads = options.heads ?? FUZZ_HEADS;
  const { matrix } = options;
  const pools: fc.Arbitrary<PoolSpec & { tuning?: AttentionTuning }> = matrix ? matrixPoolArb : poolArb;
  return fc.asyncProperty(
    pools,
    // Unbiased: bias would make the rare commands (oversize prompts, overflows) the common ones.
    fc.noBias(fc.commands(cacheCommandArbs(), { maxCommands: options.maxCommands, size: 'max', replayPath: options.replayPath })),
    async ({ tuning, ...pool }, commands) => {
      const kernels = matrix && { adapterInfo: matrix.adapterInfo, attentionTuning: tuning };
      const cache = await PagedKVCache.create(options.device, { ...heads, ...pool, ...kernels, kvDtype: 'f16' });
      try {
        const model = new CacheModel({ ...heads, ...pool, maxSequenceLength: cache.maxSequenceLength });
        const real: RealCache = { cache, device: options.device, tally: options.tally, tolerance: matrix?.tolerance };
        if (matrix) {
          // Which kernels the run's caches got (the matrix knobs fall back where a shape does not fit).
          for (const [part, text] of Object.entries(cache.describeKernels())) {
            const kind = text.startsWith('subgroup matrices') ? (text.includes('from the pool') ? 'matrices, K/V from the pool' : 'matrices') : 'portable';
            options.tally[`${part}: ${kind}`] = (options.tally[`${part}: ${kind}`] ?? 0) + 1;
            if (text.includes("V in K's place")) options.tally[`${part}: V in K's place`] = (options.tally[`${part}: V in K's place`] ?? 0) + 1;
          }
        }
        await fc.asyncModelRun(() => ({ model, real }), commands);
        releaseEverything(model, cache);
        options.tally.runs = (options.tally.runs ?? 0) + 1;
      } finally {
        cache.destroy();
      }
    },
  );
}
