import { describe, expect, it } from 'vitest';
import { MetricsRecorder, type StepSample } from '../../src/sim/metrics';
import { percentile, summarizeLatencies } from '../../src/sim/percentiles';

describe('percentiles', () => {
  it('interpolates between closest ranks', () => {
    expect(percentile([1, 2, 3, 4, 5], 50)).toBe(3);
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentile([10], 99)).toBe(10);
    expect(percentile([5, 1, 3], 0)).toBe(1);
    expect(percentile([5, 1, 3], 100)).toBe(5);
    expect(percentile([], 50)).toBeNaN();
    const xs = Array.from({ length: 101 }, (_, i) => 100 - i);
    expect(percentile(xs, 99)).toBeCloseTo(99, 10);
    expect(xs[0]).toBe(100); // input untouched
  });

  it('summarizes latencies', () => {
    const s = summarizeLatencies([4, 1, 3, 2]);
    expect(s).toMatchObject({ count: 4, mean: 2.5, p50: 2.5, max: 4 });
    expect(s.p99).toBeCloseTo(3.97, 10);
    expect(summarizeLatencies([]).count).toBe(0);
  });
});

describe('MetricsRecorder', () => {
  const sample = (step: number, over: Partial<StepSample> = {}): StepSample => ({
    step,
    wallMs: 100,
    verifyMs: 5,
    attendMs: 50,
    attentionBytes: 1e8,
    attentionCalls: 2,
    tokens: 10,
    generatedTokens: 4,
    pagedBytes: 1000,
    evictableBytes: 0,
    contiguousMaxBytes: 4000,
    contiguousExactBytes: 2000,
    liveSequences: 2,
    ...over,
  });

  it('turns step samples into rates and memory figures', () => {
    const m = new MetricsRecorder();
    m.record(sample(0));
    m.record(sample(1, { pagedBytes: 3000, contiguousMaxBytes: 6000 }));
    const s = m.summary();
    expect(s.steps).toBe(2);
    expect(s.elapsedSec).toBeCloseTo(0.2, 10);
    expect(s.tokensPerSec).toBeCloseTo(100, 6);
    expect(s.generatedTokensPerSec).toBeCloseTo(40, 6);
    expect(s.attentionGBps).toBeCloseTo(1, 6);
    expect(s.attentionGBpsInKernel).toBeCloseTo(2, 6);
    expect(s.memory.peakPagedBytes).toBe(3000);
    expect(s.memory.meanPagedBytes).toBe(2000);
    expect(s.memory.peakContiguousMaxBytes).toBe(6000);
    expect(s.memory.pagedToContiguousRatio).toBeCloseTo(0.5, 10);
    expect(s.stepLatencyMs.p50).toBe(100);
    expect(s.verificationSec).toBeCloseTo(0.01, 10);
    expect(m.timeline.map((p) => p.step)).toEqual([0, 1]);
    expect(m.timeline[1]!.tokensPerSec).toBeCloseTo(100, 6);
  });
});
