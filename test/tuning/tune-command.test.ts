// `webgpu-paged-attention tune` end to end on the test adapter, with a tiny head shape and batch so a
// software adapter finishes quickly: the report names every knob it tried, --out writes a tuning that
// checkAttentionTuning accepts, and `serve --tuning` runs a verified simulation with it.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/cli';
import { checkAttentionTuning, describeTuning } from '../../src/kernels/attention-tuning';
import { defaultDecodeKnobs } from '../../src/tuning/tuning-knobs';

function capture(): { stream: { write(t: string): boolean; isTTY: boolean }; text(): string } {
  let out = '';
  return { stream: { write: (t: string) => ((out += t), true), isTTY: false }, text: () => out };
}

describe('tune command', () => {
  it('reports each candidate, writes the chosen tuning, and serve runs with it', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'tune-')), 'tuning.json');
    const report = capture();
    const args = ['tune', '--kv-heads', '1', '--query-heads', '2', '--head-dim', '8', '--decode-shapes', '2x64', '--prefill-shape', 'none', '--out', out];
    expect(await runCli(args, { stdout: report.stream, stderr: capture().stream })).toBe(0);
    const text = report.text();
    expect(text).toMatch(/2\/1 heads × 8, f16 KV, block 16\n/);
    for (const knob of defaultDecodeKnobs(1).map((k) => k.name)) expect(text).toContain(` ${knob} `);
    expect(text).not.toMatch(/ prefill /); // --prefill-shape none
    expect(text).not.toMatch(/rejected/);
    const tuning = checkAttentionTuning(JSON.parse(readFileSync(out, 'utf8')));
    expect(text).toMatch(/split-K sized for \d+ workgroups of 256 invocations at once/);
    expect(text).toMatch(new RegExp(`tuning \\((timestamp|wall) timing\\): ${describeTuning(tuning).replace(/[.]/g, '\\.')}\n`));

    const served = capture();
    // With subgroup matrices asked for, as `tune` asks: the kernels tuned are the kernels served.
    const serveArgs = ['serve', '--tuning', out, '--subgroup-matrix', '--requests', '4', '--query-heads', '2', '--kv-heads', '1', '--head-dim', '8', '--no-progress'];
    expect(await runCli(serveArgs, { stdout: served.stream, stderr: capture().stream })).toBe(0);
    expect(served.text()).toMatch(/Serving simulation — passed/);
    expect(served.text()).toContain(`kernel tuning       ${describeTuning(tuning)}`);
  }, 120_000);
});
