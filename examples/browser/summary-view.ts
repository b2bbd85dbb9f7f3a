// The summary figures of a finished run, rendered as a definition list. Invariants: each figure is one
// element with data-testid="summary-<id>" whose text is the formatted value and whose data-value is the
// raw number from the SimResult (so tests compare numbers, not formatting).
import { formatBytes, formatBytesPerSec, formatCount, formatMs, formatPercent, formatSci } from '../../src/sim/format';
import type { SimResult } from '../../src/sim/result';

interface Figure {
  id: string;
  label: string;
  value(r: SimResult): number;
  format(v: number, r: SimResult): string;
}

export const FIGURES: readonly Figure[] = [
  { id: 'requests', label: 'Requests completed', value: (r) => r.requests.completed, format: (v, r) => `${v} / ${r.requests.total}` },
  { id: 'requests-per-sec', label: 'Requests / s', value: (r) => r.requests.requestsPerSec, format: formatCount },
  { id: 'tokens-per-sec', label: 'Tokens / s (prefill + decode)', value: (r) => r.metrics.tokensPerSec, format: formatCount },
  { id: 'generated-per-sec', label: 'Generated tokens / s', value: (r) => r.metrics.generatedTokensPerSec, format: formatCount },
  { id: 'attention-gbps', label: 'Attention reads', value: (r) => r.metrics.attentionGBps, format: (v) => formatBytesPerSec(v * 1e9) },
  { id: 'kv-peak', label: 'Peak KV in use (paged)', value: (r) => r.metrics.memory.peakPagedBytes, format: formatBytes },
  { id: 'contiguous-peak', label: 'Contiguous at max length', value: (r) => r.metrics.memory.peakContiguousMaxBytes, format: formatBytes },
  { id: 'prefix-hit-rate', label: 'Prefix hit rate (tokens)', value: (r) => r.prefix.hitRate, format: formatPercent },
  { id: 'evictions', label: 'Evictions', value: (r) => r.cache.evictions, format: String },
  { id: 'cow', label: 'Copy-on-write copies', value: (r) => r.cache.cowCopies, format: String },
  { id: 'preemptions', label: 'Preemptions', value: (r) => r.requests.preemptions, format: String },
  { id: 'step-p50', label: 'Step latency p50', value: (r) => r.metrics.stepLatencyMs.p50, format: formatMs },
  { id: 'step-p99', label: 'Step latency p99', value: (r) => r.metrics.stepLatencyMs.p99, format: formatMs },
  { id: 'verified', label: 'Outputs verified on CPU', value: (r) => r.verification.checked, format: String },
  { id: 'mismatches', label: 'Mismatches', value: (r) => r.verification.mismatches, format: String },
  { id: 'max-error', label: 'Max |error|', value: (r) => r.verification.maxAbsError, format: formatSci },
];

export function renderSummary(container: HTMLElement, result: SimResult): void {
  container.replaceChildren();
  for (const f of FIGURES) {
    const v = f.value(result);
    const dt = document.createElement('dt');
    dt.textContent = f.label;
    const dd = document.createElement('dd');
    dd.dataset.testid = `summary-${f.id}`;
    dd.dataset.value = String(v);
    dd.textContent = f.format(v, result);
    container.append(dt, dd);
  }
}
