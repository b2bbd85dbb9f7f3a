import { describe, expect, it } from 'vitest';
import type { ModelShape } from '../../src/sim/model-shape';
import { PRESETS } from '../../src/sim/options';
import { PoolTooSmallError, Scheduler, type StepPlan } from '../../src/sim/scheduler';
import { generateTokens, sampleSeed } from '../../src/sim/tokens';
import { generateWorkload, type SimRequest } from '../../src/sim/workload';
import { CpuPagedCache } from './cpu-paged-cache';

const shape: ModelShape = { numLayers: 1, numQueryHeads: 2, numKvHeads: 1, headDim: 8, kvDtype: 'f32' };

function request(id: number, promptLength: number, outputLength: number, samples = 1, arrivalStep = 0): SimRequest {
  const prompt = Array.from({ length: promptLength }, (_, i) => (id * 1000 + i) % 32000);
  return { id, arrivalStep, prompt, outputLength, samples, seed: 100 + id, kind: 'fresh', sharesSystemPrompt: false, parentId: -1 };
}

/** Runs the scheduler with block operations only (no K/V compute); returns every plan. */
function drive(scheduler: Scheduler, store: CpuPagedCache, maxSteps = 10_000): StepPlan[] {
  const plans: StepPlan[] = [];
  while (!scheduler.finished) {
    const plan = scheduler.planStep();
    for (const w of plan.work) {
      const n = w.end - w.start;
      // Mark positions written so the store's prefix cache can publish them.
      void store.writeKV(0, w.sequenceId, w.start, new Float32Array(n * 8), new Float32Array(n * 8));
    }
    scheduler.commitStep(plan);
    store.checkInvariants();
    plans.push(plan);
    if (plans.length > maxSteps) throw new Error('scheduler did not finish');
  }
  return plans;
}

const opts = { blockSize: 4, maxBatchTokens: 16, maxRunningRequests: 4, vocabSize: 32000 };

describe('Scheduler', () => {
  it('prefills in chunks within the token budget, then decodes to the target length', () => {
    const store = new CpuPagedCache(shape, 64, 4);
    const s = new Scheduler(store, [request(0, 20, 3), request(1, 5, 2)], { ...opts, maxBatchTokens: 8 });
    const plans = drive(s, store);
    for (const p of plans) expect(p.work.reduce((n, w) => n + w.end - w.start, 0)).toBeLessThanOrEqual(8);
    const r0 = plans.flatMap((p) => p.work).filter((w) => w.requestId === 0);
    const prefill = r0.filter((w) => w.phase === 'prefill');
    expect(prefill[0]!.start).toBe(0);
    for (let i = 1; i < prefill.length; i++) expect(prefill[i]!.start).toBe(prefill[i - 1]!.end);
    expect(prefill[prefill.length - 1]!.end).toBe(20);
    expect(r0.filter((w) => w.phase === 'decode').map((w) => w.start)).toEqual([20, 21, 22]);
    expect(s.counters.completedRequests).toBe(2);
    expect(s.counters.decodeTokens).toBe(5);
    expect(store.stats().sequences).toBe(0);
  });

  it('generates the deterministic tokens of every sample and forks after the prompt', () => {
    const store = new CpuPagedCache(shape, 64, 4);
    const req = request(0, 6, 5, 3);
    const s = new Scheduler(store, [req], opts);
    const plans = drive(s, store);
    expect(s.counters.forks).toBe(2);
    const decodes = plans.flatMap((p) => p.work).filter((w) => w.phase === 'decode');
    for (let i = 0; i < 3; i++) {
      const mine = decodes.filter((w) => w.sampleIndex === i);
      const expected = generateTokens(req.prompt[5]!, sampleSeed(req.seed, i), 5, 32000);
      expect(mine.map((w) => w.tokens[w.start])).toEqual(expected);
      expect(mine[0]!.mustCheck).toBe(i > 0);
    }
    expect(store.stats().cowCopies).toBeGreaterThan(0);
  });

  it('reuses cached prefixes: a repeated prompt starts prefill after the cached blocks', () => {
    const store = new CpuPagedCache(shape, 64, 4);
    const a = request(0, 10, 2);
    const b = { ...request(1, 10, 2, 1, 5), prompt: [...a.prompt] };
    const s = new Scheduler(store, [a, b], opts);
    const plans = drive(s, store);
    const first = plans.flatMap((p) => p.work).find((w) => w.requestId === 1)!;
    expect(first.start).toBe(8);
    expect(first.mustCheck).toBe(true);
    expect(s.counters.cachedPromptTokens).toBe(8);
  });

  it('preempts the newest request when the pool runs dry, and still finishes everything', () => {
    const store = new CpuPagedCache(shape, 12, 4);
    const reqs = [request(0, 8, 12), request(1, 8, 12), request(2, 8, 12)];
    const s = new Scheduler(store, reqs, { ...opts, maxRunningRequests: 3 });
    const plans = drive(s, store);
    expect(s.counters.preemptions).toBeGreaterThan(0);
    expect(s.counters.completedRequests).toBe(3);
    const preempted = plans.flatMap((p) => p.preempted);
    expect(preempted).not.toContain(0);
    expect(store.stats().sequences).toBe(0);
  });

  it('waits instead of admitting when blocks are short', () => {
    const store = new CpuPagedCache(shape, 8, 4);
    const s = new Scheduler(store, [request(0, 16, 4), request(1, 16, 4)], opts);
    const first = s.planStep();
    expect(first.admitted).toEqual([0]);
    expect(s.waitingCount).toBe(1);
    s.commitStep(first);
    drive(s, store);
    expect(s.counters.completedRequests).toBe(2);
  });

  it('throws PoolTooSmallError for a request that cannot fit alone', () => {
    const store = new CpuPagedCache(shape, 4, 4);
    expect(() => drive(new Scheduler(store, [request(0, 20, 1)], opts), store)).toThrowError(PoolTooSmallError);
    const store2 = new CpuPagedCache(shape, 4, 4);
    expect(() => drive(new Scheduler(store2, [request(0, 12, 8)], opts), store2)).toThrowError(PoolTooSmallError);
  });

  it('skips idle time until the next arrival', () => {
    const store = new CpuPagedCache(shape, 64, 4);
    const s = new Scheduler(store, [request(0, 4, 1, 1, 50)], opts);
    expect(s.planStep().step).toBe(50);
  });

  it('finishes the default workload under pool pressure', () => {
    const o = PRESETS.small;
    const store = new CpuPagedCache(shape, o.numBlocks, o.blockSize);
    const s = new Scheduler(store, generateWorkload(o), { blockSize: o.blockSize, maxBatchTokens: o.maxBatchTokens, maxRunningRequests: o.maxRunningRequests, vocabSize: o.vocabSize });
    drive(s, store);
    expect(s.counters.completedRequests).toBe(o.requests);
    expect(s.counters.cachedPromptTokens).toBeGreaterThan(0);
  });
});
