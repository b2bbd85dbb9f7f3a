// Sixteen worker threads hammer one shared block table + prefix index (PrefixCache.attach): prompts with
// shared prefixes in several namespaces, K/V registration, appends with copy-on-write, forks, pins,
// frees and occasional clears — every reused block's K/V content is checked against the prompt it was
// computed for, and every invariant periodically under the lock. Afterwards nothing has leaked (only
// evictable cached blocks remain; clear() frees every block), no lock wait timed out, and the lock's
// hold and wait times are printed. THREAD_OPS overrides the operations per thread (bench/threads-stress.ts
// runs other sizes outside the test suite).
import { describe, expect, it } from 'vitest';
import { runThreadStress } from './helpers/thread-stress';

const THREADS = 16;
const CI_OPERATIONS = 100_000;

describe('16 threads on one shared table', () => {
  it(`${THREADS} workers × random prefix-cache operations keep every invariant and lose no block`, async () => {
    const report = await runThreadStress({ threads: THREADS, operations: Number(process.env.THREAD_OPS ?? CI_OPERATIONS) });
    console.log(report.summary);
    expect(report.lock.timeouts).toBe(0);
    expect(report.lock.contended).toBeGreaterThan(0);
    for (const kind of ['hit', 'miss', 'write', 'rewrite', 'append', 'fork', 'pin', 'unpin', 'free']) expect(report.counts[kind] ?? 0, kind).toBeGreaterThan(0);
  });
});
