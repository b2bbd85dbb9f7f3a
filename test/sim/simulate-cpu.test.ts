// The whole serving loop on the CPU stand-in cache: scheduling, K/V writes, attention and verification.
import { describe, expect, it } from 'vitest';
import { resolveSimOptions } from '../../src/sim/options';
import { simulate, type StepProgress } from '../../src/sim/simulate';
import { VerificationError } from '../../src/sim/verifier';
import { CpuPagedCache } from './cpu-paged-cache';

const environment = { adapter: 'cpu stand-in', isFallback: true, backend: 'test' };

describe('simulate (CPU stand-in cache)', () => {
  it('runs the default preset to completion with prefix hits, copy-on-write and eviction', async () => {
    const options = resolveSimOptions({ verifyFraction: 0.2, checkInvariantsEvery: 1 });
    const cache = new CpuPagedCache(options, options.numBlocks, options.blockSize);
    const steps: StepProgress[] = [];
    const result = await simulate(cache, options, environment, { onStep: (p) => void steps.push(p) });
    expect(result.requests.completed).toBe(options.requests);
    expect(result.verification.checked).toBeGreaterThanOrEqual(options.minVerifications);
    expect(result.verification.mismatches).toBe(0);
    expect(result.verification.maxAbsError).toBeLessThan(1e-5);
    expect(result.prefix.hitRate).toBeGreaterThan(0.2);
    expect(result.cache.cowCopies).toBeGreaterThan(0);
    expect(result.cache.evictions).toBeGreaterThan(0);
    expect(result.metrics.memory.peakPagedBytes).toBeLessThan(result.metrics.memory.peakContiguousMaxBytes);
    expect(result.metrics.attentionBytes).toBeGreaterThan(0);
    expect(result.invariants.sequencesLeft).toBe(0);
    expect(steps.length).toBe(result.metrics.steps);
    expect(steps[steps.length - 1]!.completedRequests).toBe(options.requests);
    expect(steps[0]!.blockMap().state.length).toBe(options.numBlocks);
  });

  it('preempts under a tight pool and still verifies', async () => {
    const options = resolveSimOptions({ requests: 12, numBlocks: 24, outputLength: 40, arrivalRate: Infinity, maxRunningRequests: 8 });
    const cache = new CpuPagedCache(options, options.numBlocks, options.blockSize);
    const result = await simulate(cache, options, environment);
    expect(result.requests.preemptions).toBeGreaterThan(0);
    expect(result.requests.completed).toBe(12);
  });

  it('fails loudly when an attention output is wrong', async () => {
    const options = resolveSimOptions({ requests: 3 });
    const cache = new CpuPagedCache(options, options.numBlocks, options.blockSize);
    cache.corruptAttention = true;
    await expect(simulate(cache, options, environment)).rejects.toThrowError(VerificationError);
  });

  it('stops when aborted', async () => {
    const options = resolveSimOptions({ requests: 3 });
    const cache = new CpuPagedCache(options, options.numBlocks, options.blockSize);
    const controller = new AbortController();
    controller.abort();
    await expect(simulate(cache, options, environment, { signal: controller.signal })).rejects.toThrow();
  });
});
