import { describe, expect, it } from 'vitest';
import { PRESETS } from '../../src/sim/options';
import { generateTokens, sampleSeed } from '../../src/sim/tokens';
import { generateWorkload } from '../../src/sim/workload';

const base = PRESETS.small;

describe('generateWorkload', () => {
  it('is a pure function of its options', () => {
    expect(generateWorkload(base)).toEqual(generateWorkload(base));
    expect(generateWorkload({ ...base, seed: 2 })).not.toEqual(generateWorkload(base));
  });

  it('sorts by arrival and keeps every request within bounds', () => {
    const reqs = generateWorkload({ ...base, requests: 200 });
    expect(reqs.length).toBe(200);
    expect(new Set(reqs.map((r) => r.id)).size).toBe(200);
    for (let i = 1; i < reqs.length; i++) expect(reqs[i]!.arrivalStep).toBeGreaterThanOrEqual(reqs[i - 1]!.arrivalStep);
    for (const r of reqs) {
      expect(r.prompt.length).toBeGreaterThan(0);
      expect(r.prompt.length + r.outputLength).toBeLessThanOrEqual(base.maxTotalLength);
      expect(r.samples === 1 || r.samples === base.samplesPerRequest).toBe(true);
      expect(r.prompt.every((t) => Number.isInteger(t) && t >= 0 && t < base.vocabSize)).toBe(true);
    }
  });

  it('shares the system prompt, few-shot blocks and earlier conversations', () => {
    const reqs = generateWorkload({ ...base, requests: 100 });
    const sharing = reqs.filter((r) => r.sharesSystemPrompt);
    expect(sharing.length).toBeGreaterThan(10);
    const system = sharing[0]!.prompt.slice(0, base.systemPromptLength);
    for (const r of sharing) expect(r.prompt.slice(0, base.systemPromptLength)).toEqual(system);
    expect(reqs.some((r) => r.kind === 'few-shot')).toBe(true);
    const byId = new Map(reqs.map((r) => [r.id, r]));
    const followUps = reqs.filter((r) => r.kind === 'follow-up');
    expect(followUps.length).toBeGreaterThan(5);
    for (const f of followUps) {
      const parent = byId.get(f.parentId)!;
      const reply = generateTokens(parent.prompt[parent.prompt.length - 1]!, sampleSeed(parent.seed, 0), parent.outputLength, base.vocabSize);
      expect(f.prompt.slice(0, parent.prompt.length + reply.length)).toEqual([...parent.prompt, ...reply]);
      expect(f.arrivalStep).toBeGreaterThan(parent.arrivalStep + parent.outputLength);
    }
    expect(reqs.some((r) => r.samples > 1)).toBe(true);
  });

  it('turns sharing off when asked', () => {
    const reqs = generateWorkload({ ...base, requests: 50, prefixSharing: 0, fewShotFraction: 0, followUpFraction: 0 });
    expect(reqs.every((r) => !r.sharesSystemPrompt && r.kind === 'fresh')).toBe(true);
  });

  it('puts every request at step 0 for an infinite arrival rate', () => {
    const reqs = generateWorkload({ ...base, arrivalRate: Infinity, followUpFraction: 0 });
    expect(reqs.every((r) => r.arrivalStep === 0)).toBe(true);
  });
});
