// Runs a fast-check property with settings from the environment and reports failures so they can be
// replayed exactly:
//   FUZZ_RUNS=n        number of runs (default: the caller's CI budget)
//   FC_SEED=s          seed of the run to reproduce (printed on every run)
//   FC_PATH=p          path of the shrunk counterexample (printed on failure; replays only that case)
//   FC_REPLAY_PATH=r   commands replay path (printed on failure; needed to replay a shrunk command list)
// Invariant: a failure message always contains the seed, the path, the minimal counterexample and a
// ready-to-paste command line that replays it.
import fc from 'fast-check';

export interface FuzzSettings {
  numRuns: number;
  seed: number;
  path: string | undefined;
  replayPath: string | undefined;
}

export function fuzzSettings(defaultRuns: number, env: Record<string, string | undefined> = process.env): FuzzSettings {
  const numRuns = env.FUZZ_RUNS ? Number(env.FUZZ_RUNS) : defaultRuns;
  if (!Number.isInteger(numRuns) || numRuns < 1) throw new Error(`FUZZ_RUNS must be a positive integer (got ${env.FUZZ_RUNS})`);
  const seed = env.FC_SEED ? Number(env.FC_SEED) : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
  if (!Number.isInteger(seed)) throw new Error(`FC_SEED must be an integer (got ${env.FC_SEED})`);
  return { numRuns, seed, path: env.FC_PATH || undefined, replayPath: env.FC_REPLAY_PATH || undefined };
}

export interface FuzzOutcome {
  runs: number;
  seed: number;
}

/** fc.check with the settings; throws a replayable report on failure. `what` names the test file. */
export async function runFuzz<T>(
  what: string,
  property: fc.IAsyncProperty<T> | fc.IProperty<T>,
  settings: FuzzSettings,
  extra: Partial<fc.Parameters<T>> = {},
): Promise<FuzzOutcome> {
  const details = await fc.check(property as fc.IAsyncProperty<T>, {
    numRuns: settings.numRuns,
    seed: settings.seed,
    path: settings.path,
    endOnFailure: settings.path !== undefined,
    ...extra,
  });
  if (details.failed) {
    const values = details.counterexample as unknown[] | null;
    const counterexample = values ? values.map((v) => fc.stringify(v)).join('\n') : '(none)';
    const replayPath = /replayPath="([^"]*)"/.exec(counterexample)?.[1];
    const env = [`FC_SEED=${details.seed}`, `FC_PATH=${details.counterexamplePath ?? ''}`];
    if (replayPath) env.push(`FC_REPLAY_PATH='${replayPath}'`);
    const message = [
      `${what}: property failed after ${details.numRuns} run(s) and ${details.numShrinks} shrink(s)`,
      `seed ${details.seed}, path ${details.counterexamplePath}`,
      `minimal counterexample:\n${counterexample}`,
      `replay: ${env.join(' ')} npx vitest run ${what}`,
      `error: ${details.errorInstance instanceof Error ? (details.errorInstance.stack ?? details.errorInstance.message) : String(details.errorInstance)}`,
    ].join('\n');
    console.error(message);
    throw new Error(message);
  }
  return { runs: details.numRuns, seed: details.seed };
}
