// Long model-based fuzzing, outside the test suite: the GPU PagedKVCache fuzz and the CPU block table +
// prefix index fuzz of test/reliability, with as many runs as asked.
//   npx tsx bench/fuzz-long.ts                      (FUZZ_RUNS=1000 GPU runs, 20 × that on the CPU)
//   FUZZ_RUNS=5000 MAX_COMMANDS=80 npx tsx bench/fuzz-long.ts
//   FUZZ_ONLY=gpu|cpu; to replay a printed failure, FUZZ_ONLY=<its kind> with its FC_SEED / FC_PATH /
//   FC_REPLAY_PATH.
// Exits non-zero on the first failure, after printing its seed, path and minimal counterexample.
import { register } from 'node:module';

register('./raw-import-hooks.mjs', import.meta.url); // shaders are imported as `?raw`, as under Vite

const { createGpu, describeGpu } = await import('../src/gpu/create-gpu');
const { cacheFuzzProperty } = await import('../test/reliability/helpers/cache-fuzz-property');
const { tableFuzzProperty } = await import('../test/reliability/helpers/table-fuzz-property');
const { fuzzSettings, runFuzz } = await import('../test/reliability/helpers/fuzz-runner');

const runs = Number(process.env.FUZZ_RUNS ?? 1000);
const maxCommands = Number(process.env.MAX_COMMANDS ?? 60);
const only = process.env.FUZZ_ONLY;

if (only !== 'cpu') {
  const gpu = await createGpu();
  const uncaptured: string[] = [];
  gpu.device.onuncapturederror = (event) => void uncaptured.push(event.error.message);
  console.log(`GPU fuzz on ${describeGpu(gpu)}: ${runs} runs of up to ${maxCommands} commands`);
  const settings = fuzzSettings(runs);
  const tally: Record<string, number> = {};
  const started = performance.now();
  await runFuzz('bench/fuzz-long.ts (gpu)', cacheFuzzProperty({ device: gpu.device, maxCommands, replayPath: settings.replayPath, tally }), settings);
  if (uncaptured.length > 0) throw new Error(`uncaptured WebGPU errors:\n${uncaptured.join('\n')}`);
  console.log(`  ${tally.runs} runs, ${tally.commands} commands in ${((performance.now() - started) / 1000).toFixed(0)} s, seed ${settings.seed}: ${JSON.stringify(tally)}`);
  gpu.device.destroy();
}
if (only !== 'gpu') {
  const settings = { ...fuzzSettings(runs), numRuns: 20 * runs };
  const tally: Record<string, number> = {};
  const started = performance.now();
  console.log(`CPU table + prefix index fuzz: ${settings.numRuns} runs of up to ${maxCommands + 20} commands`);
  await runFuzz('bench/fuzz-long.ts (cpu)', tableFuzzProperty({ maxCommands: maxCommands + 20, replayPath: settings.replayPath, tally }), settings);
  console.log(`  ${tally.runs} runs, ${tally.commands} commands in ${((performance.now() - started) / 1000).toFixed(0)} s, seed ${settings.seed}: ${JSON.stringify(tally)}`);
}
process.exit(0);
