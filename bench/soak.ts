// Soak test (not part of CI): a random concurrent workload on one PagedKVCache for N minutes, sampling
// the JS heap and the GPU memory (live GPU buffers and bytes through a counting device wrapper, plus the
// cache's own pool) at every interval and checking invariants after every step; it reports whether
// memory stayed flat after warm-up and exits non-zero if not (or on any failure).
//   NODE_OPTIONS=--expose-gc npx tsx bench/soak.ts [--minutes 10] [--sample-seconds 60] [--tasks 4] [--seed n]
import { register } from 'node:module';
import { parseArgs } from 'node:util';

register('./raw-import-hooks.mjs', import.meta.url); // shaders are imported as `?raw`, as under Vite

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    'sample-seconds': { type: 'string', default: '60' },
    tasks: { type: 'string', default: '4' },
    seed: { type: 'string', default: String(Date.now() % 2 ** 31) },
  },
});
const { runSoak } = await import('./soak-run');
const flat = await runSoak({
  minutes: Number(values.minutes),
  sampleSeconds: Number(values['sample-seconds']),
  tasks: Number(values.tasks),
  seed: Number(values.seed),
});
process.exit(flat ? 0 : 1);
