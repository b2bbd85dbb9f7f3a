// The model-based fuzz property of the shared block table + prefix index on the CPU, shared by
// test/reliability/table-fuzz.test.ts (CI) and bench/fuzz-long.ts: each run draws a pool geometry
// (block size 1–4, 4–32 blocks, 1–3 layers, 2–8 sequence slots) and a command list, runs it against a
// fresh CpuKvSim and the model (checking everything after every command), then frees everything and
// requires every block to be free again.
import fc from 'fast-check';
import { CacheModel } from './cache-model';
import { CpuKvSim } from './cpu-kv-sim';
import {
  releaseSim,
  SimAppend,
  SimBeginRead,
  SimClear,
  SimCreate,
  SimEndRead,
  SimFork,
  SimFree,
  SimPin,
  SimPressure,
  SimRefusedRead,
  SimStale,
  SimUnpin,
  SimWrite,
  type SimCommand,
} from './table-commands';

const rare = fc.integer({ min: 0, max: 9 }).map((x) => x === 0);
const promptArb = fc.record({
  family: fc.nat(2),
  shared: fc.nat(16),
  tail: fc.nat(6),
  seed: fc.nat(),
  namespace: fc.integer({ min: 0, max: 4 }).map((x) => Math.max(0, x - 2)),
});

export function tableCommandArbs(): Array<fc.Arbitrary<SimCommand>> {
  const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
  return [
    fc.oneof(
      w(8, fc.tuple(promptArb, rare).map(([spec, oversize]) => new SimCreate(spec, oversize))),
      w(4, fc.tuple(fc.nat(), fc.integer({ min: 1, max: 6 }), fc.nat()).map(([p, n, seed]) => new SimAppend(p, n, seed))),
      w(3, fc.nat().map((p) => new SimFork(p))),
      w(10, fc.tuple(fc.nat(), fc.nat(1), fc.boolean(), fc.nat(), fc.integer({ min: 1, max: 8 }), fc.nat(3)).map(([p, l, e, s, n, salt]) => new SimWrite(p, l, e, s, n, salt, false))),
      w(6, fc.tuple(fc.nat(), fc.boolean()).map(([p, thenFree]) => new SimWrite(p, -1, true, 0, 0, 0, thenFree))),
      w(2, fc.tuple(fc.nat(), fc.nat(1)).map(([p, l]) => new SimRefusedRead(p, l))),
      w(4, fc.nat().map((p) => new SimFree(p))),
      w(2, fc.tuple(fc.nat(), fc.nat()).map(([p, op]) => new SimStale(p, op))),
      w(2, fc.tuple(fc.nat(), fc.nat()).map(([p, i]) => new SimPin(p, i))),
      w(2, fc.nat().map((i) => new SimUnpin(i))),
      w(2, fc.nat().map((pick) => new SimBeginRead(pick))),
      w(2, fc.nat().map((i) => new SimEndRead(i))),
      w(2, fc.tuple(rare, fc.nat()).map(([overflow, seed]) => new SimPressure(overflow, seed))),
      w(1, fc.constant(new SimClear())),
    ),
  ];
}

const poolArb = fc.record({
  blockSize: fc.integer({ min: 1, max: 4 }),
  numBlocks: fc.integer({ min: 4, max: 32 }),
  numLayers: fc.integer({ min: 1, max: 3 }),
  maxSequences: fc.integer({ min: 2, max: 8 }),
  maxBlocksPerSequence: fc.integer({ min: 2, max: 24 }),
});

export function tableFuzzProperty(options: { maxCommands: number; replayPath?: string; tally: Record<string, number> }) {
  return fc.property(
    poolArb,
    fc.noBias(fc.commands(tableCommandArbs(), { maxCommands: options.maxCommands, size: 'max', replayPath: options.replayPath })),
    (pool, commands) => {
      const { numLayers, ...config } = pool;
      const sim = new CpuKvSim(config, numLayers);
      const shape = { ...pool, numKvHeads: 1, numQueryHeads: 1, headDim: 8, maxSequenceLength: pool.maxBlocksPerSequence * pool.blockSize };
      const model = { cache: new CacheModel(shape), pins: [] as number[], reads: [] };
      const real = { sim, tally: options.tally };
      fc.modelRun(() => ({ model, real }), commands);
      releaseSim(model, real);
      options.tally.runs = (options.tally.runs ?? 0) + 1;
    },
  );
}
