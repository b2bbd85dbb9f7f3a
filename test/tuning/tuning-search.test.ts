// The autotuner's CPU side: validation of tunings (what a cache option or a tuning file may hold) and
// the coordinate-descent search, driven by deterministic cost functions (no GPU: the GPU half is
// test/tuning/tune-attention.test.ts).
import { describe, expect, it } from 'vitest';
import { checkAttentionTuning, describeTuning, mergeTuning, type AttentionTuning } from '../../src/kernels/attention-tuning';
import { defaultDecodeKnobs, defaultPrefillKnobs } from '../../src/tuning/tuning-knobs';
import { BaseTuningRejected, searchTuning, type Measurement, type SearchHooks, type TuningKnob } from '../../src/tuning/tuning-search';
import { ConfigError } from '../../src/errors';

describe('checkAttentionTuning', () => {
  it('accepts every value the default knobs try, and returns a frozen deep copy', () => {
    const values = [...defaultDecodeKnobs(1056), ...defaultPrefillKnobs(64 * 1024)].flatMap((k) => k.values);
    expect(values.length).toBeGreaterThan(15);
    for (const value of values) expect(checkAttentionTuning(value)).toEqual(value);
    const input = { stream: { unroll: 2 }, blocked: { maxRows: 64 }, decodeWritesKv: true };
    const checked = checkAttentionTuning(input);
    expect(checked).toEqual(input);
    expect(checked).not.toBe(input);
    expect(Object.isFrozen(checked) && Object.isFrozen(checked.stream) && Object.isFrozen(checked.blocked)).toBe(true);
    input.stream.unroll = 8; // the caller's object changing later does not reach the checked copy
    expect(checked.stream?.unroll).toBe(2);
  });

  it.each([
    [{ unrol: 2 }, /attentionTuning\.unrol is not a tuning knob/],
    [{ stream: { unrol: 2 } }, /attentionTuning\.stream\.unrol is not a tuning knob; the knobs of attentionTuning\.stream are: unroll/],
    [{ stream: { unroll: 0 } }, /attentionTuning\.stream\.unroll must be an integer in \[1, 16\] \(got 0\)/],
    [{ stream: { unroll: 2.5 } }, /stream\.unroll must be an integer/],
    [{ stream: { maxLanes: 3 } }, /stream\.maxLanes must be one of 1, 2, 4, 8, 16, 32 \(got 3\)/],
    [{ stream: { workgroupSize: 2048 } }, /stream\.workgroupSize must be one of 64, 128, 256, 512, 1024 \(got 2048\)/],
    [{ stream: { reduction: 'atomic' } }, /stream\.reduction must be one of "subgroup", "shared" \(got "atomic"\)/],
    [{ stream: { rescaleThreshold: -1 } }, /stream\.rescaleThreshold must be a number in \[0, 32\]/],
    [{ stream: { rescaleThreshold: Number.NaN } }, /stream\.rescaleThreshold must be a number/],
    [{ stream: { mergeBytes: 8 } }, /stream\.mergeBytes must be an integer in \[16, 1048576\] \(got 8\)/],
    [{ streamDecode: 'no' }, /attentionTuning\.streamDecode must be true or false \(got "no"\)/],
    [{ decodeMinKeysPerSplit: 0 }, /decodeMinKeysPerSplit must be an integer in \[1, /],
    [{ blocked: { maxKeyTile: 64 } }, /blocked\.maxKeyTile must be one of 8, 16, 32/],
    [{ prefillMatrixSubgroups: 3 }, /attentionTuning\.prefillMatrixSubgroups must be one of 1, 2, 4, 8 \(got 3\)/],
    [{ blocked: [] }, /attentionTuning\.blocked must be an object/],
    [null, /attentionTuning must be an object \(got null\)/],
    ['fast', /attentionTuning must be an object/],
  ])('refuses %j with a ConfigError naming the field', (value, message) => {
    expect(() => checkAttentionTuning(value)).toThrow(ConfigError);
    expect(() => checkAttentionTuning(value)).toThrow(message);
  });

  it('describes and merges tunings field by field', () => {
    expect(describeTuning({})).toBe('defaults');
    expect(describeTuning({ stream: { unroll: 2, prefetch: false }, decodeMinKeysPerSplit: 256 })).toBe('stream.unroll=2, stream.prefetch=false, decodeMinKeysPerSplit=256');
    const merged = mergeTuning({ stream: { unroll: 2 }, prefillBlocked: false }, { stream: { maxLanes: 4 }, blocked: { maxRows: 32 } });
    expect(merged).toEqual({ stream: { unroll: 2, maxLanes: 4 }, prefillBlocked: false, blocked: { maxRows: 32 } });
  });
});

/** A cost model over the knobs below: each adopted value multiplies the time by its factor. */
const FACTORS: Record<string, number> = { 'stream.unroll=2': 0.8, 'stream.unroll=8': 0.9, 'stream.maxLanes=4': 1.2, 'decodeMinKeysPerSplit=256': 0.99 };
const KNOBS: TuningKnob[] = [
  { name: 'unroll', values: [{ stream: { unroll: 2 } }, { stream: { unroll: 8 } }] },
  { name: 'lanes', values: [{ stream: { maxLanes: 4 } }] },
  { name: 'split', values: [{ decodeMinKeysPerSplit: 256 }] },
];

function costOf(tuning: AttentionTuning): number {
  let cost = 10;
  for (const part of describeTuning(tuning).split(', ')) cost *= FACTORS[part] ?? 1;
  return cost;
}

function hooks(overrides: Partial<SearchHooks> = {}): SearchHooks & { measured: string[] } {
  const measured: string[] = [];
  return {
    measured,
    identify: (t) => describeTuning(t),
    measure: async (t) => {
      measured.push(describeTuning(t));
      return { score: costOf(t) };
    },
    ...overrides,
  };
}

describe('searchTuning', () => {
  it('reports the speedup of side-by-side measurements, not of a base score taken under another load', async () => {
    // The host slows down by 1.5× after the first two measurements (10 and 8): the win is confirmed
    // (8 × 1.5 against 10 × 1.5), but its confirmed score is above the base's first one.
    let calls = 0;
    const h = hooks({
      measure: async (t) => ({ score: costOf(t) * (calls++ < 2 ? 1 : 1.5) }),
    });
    const result = await searchTuning({}, KNOBS.slice(0, 1), h, 0.03);
    expect(result.best).toEqual({ stream: { unroll: 2 } });
    expect(result.bestScore).toBeCloseTo(12);
    expect(result.baseScore).toBe(10);
    expect(result.speedup).toBeCloseTo(10 / 8);
  });

  it('keeps each knob value that beats the best so far by more than minGain, judged on top of the earlier winners', async () => {
    const h = hooks();
    const result = await searchTuning({}, KNOBS, h, 0.03);
    expect(result.best).toEqual({ stream: { unroll: 2 } }); // 8 is slower than 2; lanes 4 slower; split 1 % < 3 %
    expect(result.baseScore).toBe(10);
    expect(result.bestScore).toBeCloseTo(8);
    expect(result.speedup).toBeCloseTo(10 / 8);
    expect(result.trials.map((t) => [t.knob, t.outcome])).toEqual([
      ['base', 'base'],
      ['unroll', 'better'],
      ['unroll', 'not better'],
      ['lanes', 'not better'],
      ['split', 'not better'],
    ]);
    // A win is measured again side by side with the best before it counts.
    expect(h.measured.slice(0, 4)).toEqual(['defaults', 'stream.unroll=2', 'defaults', 'stream.unroll=2']);
    expect(result.trials[1]!.detail).toBe('confirmed against the best measured again (1.000e+1)');
    // With no minimum gain the 1 % split win counts too.
    expect((await searchTuning({}, KNOBS, hooks(), 0)).best).toEqual({ stream: { unroll: 2 }, decodeMinKeysPerSplit: 256 });
  });

  it('does not time the same kernels twice, and never picks a rejected or inapplicable candidate', async () => {
    const h = hooks({
      // lanes 4 selects the kernels the base runs; unroll 8 cannot be made here
      identify: (t) => (t.stream?.unroll === 8 ? undefined : describeTuning({ ...t, stream: { ...t.stream, maxLanes: undefined } })),
      measure: async (t) => {
        h.measured.push(describeTuning(t));
        return t.stream?.unroll === 2 ? { rejected: 'row 3 element 5 is NaN where the reference is 0.25' } : { score: costOf(t) };
      },
    });
    const result = await searchTuning({}, KNOBS, h, 0);
    expect(result.best).toEqual({ decodeMinKeysPerSplit: 256 });
    expect(result.trials.map((t) => t.outcome)).toEqual(['base', 'rejected', 'not applicable', 'same kernels', 'better']);
    expect(result.trials[1]!.detail).toMatch(/NaN/);
    expect(h.measured.filter((m) => m === 'defaults').length).toBe(2); // the base, and again to confirm the split win
  });

  it('drops a win that does not hold when measured again', async () => {
    let lucky = true;
    const measure = async (t: AttentionTuning): Promise<Measurement> => {
      if (t.stream?.unroll === 2 && lucky) {
        lucky = false;
        return { score: 5 }; // a noisy first sample
      }
      return { score: t.stream?.unroll === 2 ? 10.5 : 10 };
    };
    const result = await searchTuning({}, KNOBS.slice(0, 1), hooks({ measure }), 0.03);
    expect(result.best).toEqual({});
    expect(result.trials[1]).toMatchObject({ outcome: 'not better', score: 5 });
    expect(result.trials[1]!.detail).toMatch(/not confirmed when measured again \(1\.050e\+1 against the best's 1\.000e\+1\)/);
  });

  it('throws BaseTuningRejected when the base tuning fails its check or does not apply', async () => {
    await expect(searchTuning({}, KNOBS, hooks({ measure: async () => ({ rejected: 'mismatch' }) }), 0.03)).rejects.toThrow(BaseTuningRejected);
    await expect(searchTuning({}, KNOBS, hooks({ identify: () => undefined }), 0.03)).rejects.toThrow(/does not apply/);
  });
});
