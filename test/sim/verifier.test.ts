import { describe, expect, it } from 'vitest';
import { VerificationError, Verifier, type OutputLabel } from '../../src/sim/verifier';

const label: OutputLabel = { step: 3, layer: 1, requestId: 7, sequenceId: 9, positions: [5, 6], numQueryHeads: 2, headDim: 2 };

describe('Verifier', () => {
  it('always checks the first minChecks and must-check outputs, then a fraction', () => {
    const v = new Verifier({ fraction: 0.1, minChecks: 3, atol: 1e-3, rtol: 0, seed: 1 });
    expect([v.shouldCheck(), v.shouldCheck(), v.shouldCheck()]).toEqual([true, true, true]);
    let chosen = 0;
    for (let i = 0; i < 10000; i++) if (v.shouldCheck()) chosen++;
    expect(chosen).toBeGreaterThan(800);
    expect(chosen).toBeLessThan(1200);
    expect(v.shouldCheck(true)).toBe(true);
    const none = new Verifier({ fraction: 0, minChecks: 0, atol: 0, rtol: 0, seed: 1 });
    expect(none.shouldCheck()).toBe(false);
  });

  it('accepts values within atol + rtol·|ref| and records the worst error', () => {
    const v = new Verifier({ fraction: 1, minChecks: 0, atol: 1e-3, rtol: 1e-2, seed: 1 });
    v.check(label, Float32Array.of(1.0105, 0, 0, 0), Float32Array.of(1, 0.0005, 0, 0));
    const s = v.summary();
    expect(s.checked).toBe(1);
    expect(s.elements).toBe(4);
    expect(s.maxAbsError).toBeCloseTo(0.0105, 6);
    expect(s.worstToleranceRatio).toBeGreaterThan(0.9);
    expect(s.worstToleranceRatio).toBeLessThanOrEqual(1);
  });

  it('throws a VerificationError naming the position, head and dim of the first bad value', () => {
    const v = new Verifier({ fraction: 1, minChecks: 0, atol: 1e-3, rtol: 0, seed: 1 });
    expect(() => v.check(label, Float32Array.of(0, 0, 0, 0.5), new Float32Array(4))).toThrowError(VerificationError);
    expect(() => v.check(label, Float32Array.of(0, 0, 0, 0.5), new Float32Array(4))).toThrowError(/position 5, head 1, dim 1/);
    expect(() => v.check(label, Float32Array.of(NaN, 0, 0, 0), new Float32Array(4))).toThrowError(VerificationError);
    expect(() => v.check(label, new Float32Array(3), new Float32Array(4))).toThrowError(/3 values/);
    expect(v.summary().mismatches).toBe(4);
  });
});

describe('rowsToCheck', () => {
  it('checks every row of short chunks and a spread including both ends of long ones', async () => {
    const { rowsToCheck } = await import('../../src/sim/step-executor');
    expect(rowsToCheck(1)).toEqual([0]);
    expect(rowsToCheck(5)).toEqual([0, 1, 2, 3, 4]);
    const rows = rowsToCheck(128);
    expect(rows.length).toBe(8);
    expect(rows[0]).toBe(0);
    expect(rows[7]).toBe(127);
    expect(new Set(rows).size).toBe(8);
  });
});
