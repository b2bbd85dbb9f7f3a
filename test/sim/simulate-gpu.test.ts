// A tiny serving simulation on the real WebGPU cache (SwiftShader where there is no GPU).
import { describe, expect, it } from 'vitest';
import { PagedKVCache } from '../../src/cache/paged-kv-cache';
import { cacheOptionsFor } from '../../src/sim/cache-options';
import { resolveSimOptions } from '../../src/sim/options';
import { environmentOf } from '../../src/sim/run-simulation';
import { simulate } from '../../src/sim/simulate';
import { formatSummary } from '../../src/cli/summary-table';
import { failOnUncapturedGpuErrors, testGpu } from '../helpers/gpu';

failOnUncapturedGpuErrors();

describe('simulate on the GPU', () => {
  it('verifies attention outputs and ends with every sequence freed and invariants holding', async () => {
    const gpu = await testGpu();
    const options = resolveSimOptions({ requests: 6, outputLength: 6, numBlocks: 24, verifyFraction: 0.25, checkInvariantsEvery: 5 });
    const cache = await PagedKVCache.create(gpu.device, cacheOptionsFor(options));
    try {
      const result = await simulate(cache, options, environmentOf(gpu, cache));
      expect(result.requests.completed).toBe(6);
      expect(result.verification.checked).toBeGreaterThanOrEqual(options.minVerifications);
      expect(result.verification.mismatches).toBe(0);
      expect(result.requests.forks).toBeGreaterThan(0);
      expect(result.metrics.attentionBytes).toBeGreaterThan(0);
      expect(cache.stats().sequences).toBe(0);
      expect(cache.stats().blocksUsed).toBe(0);
      cache.checkInvariants();
      // The summary names how many workgroups the cache's split-K was sized for.
      expect(result.environment.residentWorkgroups).toBe(cache.residentWorkgroups);
      const n = cache.residentWorkgroups;
      expect(formatSummary(result)).toMatch(new RegExp(`parallelism +${n} workgroup${n === 1 ? '' : 's'} of 256 invocations at once`));
      // … and the kernels it ran.
      expect(result.environment.kernels).toEqual(cache.describeKernels());
      expect(formatSummary(result)).toMatch(/decode kernel +(streaming \(|tile engine: )/);
      expect(formatSummary(result)).toMatch(/prefill kernel +(subgroup matrices|register-blocked|tile engine): /);
    } finally {
      cache.destroy();
    }
  });
});
