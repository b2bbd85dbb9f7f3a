// Model-based fuzzing of the shared block table and the prefix index on the CPU (thousands of runs in
// seconds): create / append / fork / write / free / pin / unpin / GPU reads begun and ended out of
// order / allocation pressure / clear / stale ids against the same model as the GPU fuzz, with simulated
// K/V memory. After every command the raw shared arrays are recounted (refCounts, retains, deferred
// drops, free list, states), every invariant holds, every written position of every live sequence holds
// exactly its own content (a reused, copied or recycled block never shows another sequence's K/V), and
// every open read still finds the blocks and content it read. Replay a failure with the printed FC_SEED
// / FC_PATH / FC_REPLAY_PATH; FUZZ_RUNS overrides the run count, bench/fuzz-long.ts runs longer.
import { describe, expect, it } from 'vitest';
import { fuzzSettings, runFuzz } from './helpers/fuzz-runner';
import { tableFuzzProperty } from './helpers/table-fuzz-property';

const CI_RUNS = 1000;
const MAX_COMMANDS = 80;

describe('block table + prefix index against the model', () => {
  it('keeps references, content and isolation under random command sequences', async () => {
    const settings = fuzzSettings(CI_RUNS);
    const tally: Record<string, number> = {};
    const started = performance.now();
    const property = tableFuzzProperty({ maxCommands: MAX_COMMANDS, replayPath: settings.replayPath, tally });
    const outcome = await runFuzz('test/reliability/table-fuzz.test.ts', property, settings);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(`table fuzz: ${outcome.runs} runs, ${tally.commands ?? 0} commands in ${seconds} s (seed ${outcome.seed}); outcomes ${JSON.stringify(tally)}`);
    for (const key of ['creates', 'prefixHits', 'appends', 'forks', 'writes', 'saltedWrites', 'frees', 'pins', 'evictions', 'clears', 'outOfBlocks', 'staleIds', 'reads', 'deferredReleases']) {
      expect(tally[key] ?? 0, key).toBeGreaterThan(0);
    }
  });
});
