// The command line without a GPU: flag parsing, help, usage errors and error reporting.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NoAdapterError } from '../../src/errors';
import { reportError, runCli } from '../../src/cli/cli';
import { jsonReplacer } from '../../src/cli/serve-command';
import { WORKLOAD_FLAGS, workloadOverrides } from '../../src/cli/serve-flags';
import { VerificationError } from '../../src/sim/verifier';
import { PRESETS } from '../../src/sim/options';

function capture(): { stream: { write(t: string): boolean; isTTY: boolean }; text(): string } {
  let out = '';
  return { stream: { write: (t: string) => ((out += t), true), isTTY: false }, text: () => out };
}

describe('serve flags', () => {
  it('map to simulation options with strict parsing', () => {
    expect(workloadOverrides({ requests: '12', 'block-size': '32', 'prefix-sharing': '0.5', 'kv-dtype': 'f32', 'arrival-rate': 'inf' })).toEqual({
      requests: 12,
      blockSize: 32,
      prefixSharing: 0.5,
      kvDtype: 'f32',
      arrivalRate: Infinity,
    });
    expect(() => workloadOverrides({ requests: '1.5' })).toThrowError(/--requests must be a non-negative integer/);
    expect(() => workloadOverrides({ 'verify-fraction': 'lots' })).toThrowError(/--verify-fraction must be a number/);
    expect(() => workloadOverrides({ 'kv-dtype': 'bf16' })).toThrowError(/f16 or f32/);
  });

  it('cover distinct option fields', () => {
    const keys = WORKLOAD_FLAGS.map((f) => f.key);
    expect(new Set(keys).size).toBe(keys.length);
    for (const key of keys) expect(PRESETS.small).toHaveProperty(key);
  });
});

describe('runCli', () => {
  it('prints help for the program and for each command', async () => {
    for (const argv of [['--help'], ['serve', '--help'], ['info', '-h'], ['bench', '--help'], ['tune', '--help']]) {
      const out = capture();
      const err = capture();
      expect(await runCli(argv, { stdout: out.stream, stderr: err.stream })).toBe(0);
      expect(out.text()).toMatch(/Usage: webgpu-paged-attention/);
    }
    const out = capture();
    await runCli(['serve', '--help'], { stdout: out.stream, stderr: capture().stream });
    expect(out.text()).toMatch(/--blocks <value>/);
    expect(out.text()).toMatch(/--verify-fraction <value>/);
    expect(out.text()).toMatch(/--tuning <file>/);
    expect(out.text()).toMatch(/--subgroup-matrix /);
    const tune = capture();
    await runCli(['tune', '--help'], { stdout: tune.stream, stderr: capture().stream });
    expect(tune.text()).toMatch(/--kv-heads <n> +key\/value heads \[8\]/);
    expect(tune.text()).toMatch(/--out <file>/);
  });

  it('refuses a bad tune shape or a bad --tuning file (exit 2) before touching a GPU', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tuning-'));
    const notJson = join(dir, 'not.json');
    const misspelt = join(dir, 'misspelt.json');
    writeFileSync(notJson, '{ stream: ');
    writeFileSync(misspelt, JSON.stringify({ stream: { unrol: 2 } }));
    const cases: Array<[string[], RegExp]> = [
      [['tune', '--head-dim', 'wide'], /--head-dim must be a positive integer \(got "wide"\)/],
      [['tune', '--kv-heads', '0'], /--kv-heads must be a positive integer/],
      [['tune', '--kv-dtype', 'bf16'], /--kv-dtype must be f16 or f32/],
      [['serve', '--tuning', join(dir, 'missing.json')], /--tuning: cannot read .*missing\.json/],
      [['serve', '--tuning', notJson], /--tuning: .*not\.json is not JSON/],
      [['serve', '--tuning', misspelt], /--tuning .*misspelt\.json: tuning\.stream\.unrol is not a tuning knob; the knobs of tuning\.stream are: unroll,/],
    ];
    for (const [argv, message] of cases) {
      const err = capture();
      expect(await runCli(argv, { stdout: capture().stream, stderr: err.stream }), argv.join(' ')).toBe(2);
      expect(err.text()).toMatch(message);
      expect(err.text()).toMatch(/--help/);
    }
  });

  it('exits 2 with a pointer to --help on usage and configuration mistakes', async () => {
    for (const argv of [['frobnicate'], ['serve', '--no-such-flag'], ['serve', '--requests', 'x'], ['serve', '--preset', 'huge'], ['serve', '--head-dim', '12']]) {
      const err = capture();
      expect(await runCli(argv, { stdout: capture().stream, stderr: err.stream })).toBe(2);
      expect(err.text()).toMatch(/--help/);
    }
  });

  it('reports typed failures with exit code 1 and the install hint for a missing adapter', () => {
    const err = capture();
    expect(reportError(new NoAdapterError('No WebGPU adapter found. install libvulkan1'), 'serve', err.stream)).toBe(1);
    expect(err.text()).toMatch(/install libvulkan1/);
    const err2 = capture();
    const label = { step: 0, layer: 0, requestId: 0, sequenceId: 0, positions: [0], numQueryHeads: 1, headDim: 8 };
    expect(reportError(new VerificationError('bad value', label), 'serve', err2.stream)).toBe(1);
    expect(err2.text()).toMatch(/verification FAILED/);
  });

  it('writes Infinity as a string in JSON', () => {
    expect(JSON.stringify({ a: Infinity, b: 1 }, jsonReplacer)).toBe('{"a":"Infinity","b":1}');
  });
});
