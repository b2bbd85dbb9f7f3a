// The human-readable summary of a finished simulation (`serve` without --json). Invariant: every figure
// comes from the SimResult as is; nothing is recomputed here except ratios for display.
import type { SimResult } from '../sim/result';
import { formatBytes, formatBytesPerSec, formatCount, formatMs, formatPercent, formatSci, table } from '../sim/format';

export function formatSummary(r: SimResult): string {
  const o = r.options;
  const m = r.metrics;
  const mem = m.memory;
  const v = r.verification;
  const s = r.scheduler;
  const saving = mem.peakPagedBytes > 0 ? mem.peakContiguousMaxBytes / mem.peakPagedBytes : NaN;
  const rows: Array<[string, string]> = [
    ['adapter', `${r.environment.adapter}${r.environment.isFallback ? '  (software: expect low numbers)' : ''}`],
    ...(r.environment.residentWorkgroups === undefined
      ? []
      : [['parallelism', `${workgroups(r.environment.residentWorkgroups)} of 256 invocations at once (sizes decode split-K)`] as [string, string]]),
    ...(r.environment.kernels === undefined
      ? []
      : ([
          ['decode kernel', r.environment.kernels.decode],
          ['prefill kernel', r.environment.kernels.prefill],
        ] as Array<[string, string]>)),
    ...(r.environment.tuning === undefined ? [] : [['kernel tuning', r.environment.tuning] as [string, string]]),
    ['model', `${o.numLayers} layers · ${o.numQueryHeads} query / ${o.numKvHeads} kv heads · head dim ${o.headDim} · ${o.kvDtype} KV`],
    ['KV pool', `${r.cache.blocksTotal} blocks × ${o.blockSize} tokens = ${formatBytes(r.cache.poolBytes)} (${formatBytes(r.cache.bytesPerBlock)}/block)`],
    ['requests', `${r.requests.completed}/${r.requests.total} done (${r.requests.samples} sequences incl. parallel samples) in ${m.elapsedSec.toFixed(2)} s → ${formatCount(r.requests.requestsPerSec)} req/s`],
    ['warm-up', `${r.warmUpSec.toFixed(2)} s building GPU pipelines (not in the rates)`],
    ['tokens', `${formatCount(m.tokens)} processed (prefill ${formatCount(s.prefillTokens)} + decode ${formatCount(s.decodeTokens)}) → ${formatCount(m.tokensPerSec)} tok/s · generated ${formatCount(m.generatedTokensPerSec)} tok/s`],
    ['steps', `${m.steps} · latency p50 ${formatMs(m.stepLatencyMs.p50)} · p99 ${formatMs(m.stepLatencyMs.p99)} · max ${formatMs(m.stepLatencyMs.max)}`],
    ['attention reads', `${formatBytes(m.attentionBytes)} in ${m.attentionCalls} calls → ${formatBytesPerSec(m.attentionGBps * 1e9)} over the run · ${formatBytesPerSec(m.attentionGBpsInKernel * 1e9)} inside attend()`],
    ['KV memory (peak)', `${formatBytes(mem.peakPagedBytes)} paged vs ${formatBytes(mem.peakContiguousMaxBytes)} contiguous at max length (${Number.isFinite(saving) ? saving.toFixed(1) : '–'}× less) · ${formatBytes(mem.peakContiguousExactBytes)} at exact lengths`],
    ['cached (evictable)', `peak ${formatBytes(mem.peakEvictableBytes)}`],
    ['prefix cache', `${formatPercent(r.prefix.hitRate)} of prompt tokens hit (${formatCount(r.prefix.cachedPromptTokens)} / ${formatCount(r.prefix.promptTokens)})`],
    ['evictions', String(r.cache.evictions)],
    ['copy-on-write', `${r.cache.cowCopies} block copies (${s.forks} forks)`],
    ['preemptions', String(r.requests.preemptions)],
    ['verification', `${v.checked} outputs checked, ${v.mismatches} mismatches, max |err| ${formatSci(v.maxAbsError)} (${formatPercent(v.worstToleranceRatio)} of tolerance atol ${v.atol} + rtol ${v.rtol}·|ref|)`],
    ['', `(verification took ${m.verificationSec.toFixed(2)} s of CPU, outside the timed run)`],
    ['invariants', `ok · ${r.invariants.sequencesLeft} sequences left · ${r.invariants.blocksUsedAtEnd} blocks in use at the end`],
  ];
  return `Serving simulation — passed\n${table(rows)}\n`;
}

function workgroups(n: number): string {
  return `${n} workgroup${n === 1 ? '' : 's'}`;
}
