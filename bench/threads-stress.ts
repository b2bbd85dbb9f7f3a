// The multi-thread stress of test/reliability/threads.test.ts at any size:
//   npx tsx bench/threads-stress.ts [--threads 16] [--ops 100000]
// Prints throughput and the lock's hold and wait statistics; exits non-zero if anything leaked or an
// invariant broke.
import { parseArgs } from 'node:util';
import { runThreadStress } from '../test/reliability/helpers/thread-stress';

const { values } = parseArgs({ options: { threads: { type: 'string', default: '16' }, ops: { type: 'string', default: '100000' } } });
const report = await runThreadStress({ threads: Number(values.threads), operations: Number(values.ops) });
console.log(report.summary);
