// Model-based fuzzing of PagedKVCache on the GPU: random create / append / fork / write / read /
// attend / free / stale-id / allocation-pressure / clearPrefixCache sequences against a reference
// model; after every command the cache's invariants and block accounting hold, K/V read back equal
// the model's values rounded to f16, attention equals a CPU reference over the model's K/V, and a
// failing case is shrunk to a minimal command list and printed with its seed and path
// (replay: FC_SEED=… FC_PATH=… FC_REPLAY_PATH=… npx vitest run test/reliability/cache-fuzz.test.ts).
// Bounded for CI (FUZZ_RUNS overrides); bench/fuzz-long.ts runs it for longer.
import { describe, expect, it } from 'vitest';
import { cacheFuzzProperty } from './helpers/cache-fuzz-property';
import { fuzzSettings, runFuzz } from './helpers/fuzz-runner';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';

failOnUncapturedGpuErrors();

const CI_RUNS = 250;
const MAX_COMMANDS = 60;

describe('PagedKVCache against its model', () => {
  it('keeps its contents, accounting and isolation under random command sequences', async () => {
    const { device } = await testGpu();
    const settings = fuzzSettings(CI_RUNS);
    const tally: Record<string, number> = {};
    const started = performance.now();
    const outcome = await runFuzz(
      'test/reliability/cache-fuzz.test.ts',
      cacheFuzzProperty({ device, maxCommands: MAX_COMMANDS, replayPath: settings.replayPath, tally }),
      settings,
    );
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(`cache fuzz: ${outcome.runs} runs, ${tally.commands ?? 0} commands in ${seconds} s (seed ${outcome.seed}); outcomes ${JSON.stringify(tally)}`);
    // The workload reached the interesting paths, not just the easy ones.
    for (const key of ['writes', 'reads', 'attends', 'forks', 'frees', 'prefixHits', 'refusedReads', 'refusedAttends', 'clears']) {
      expect(tally[key] ?? 0, key).toBeGreaterThan(0);
    }
  });
});
