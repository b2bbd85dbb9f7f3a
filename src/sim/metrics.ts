// Accumulates per-step measurements of a simulation run and turns them into rates and summaries.
// Invariants: byte figures count K and V over all layers; "paged" memory is blocks referenced by live
// sequences (evictable cached blocks are reported apart, they are reclaimable); "contiguous" memory is
// what reserving a whole buffer per live sequence would take — at the server's maximum sequence length,
// and (kinder to it) at each sequence's own final length; rates divide by wall-clock serving seconds
// (the CPU verification of sampled outputs is timed apart and excluded).
import { summarizeLatencies, type LatencySummary } from './percentiles';

export interface StepSample {
  step: number;
  /** Serving time of the step (verification excluded). */
  wallMs: number;
  verifyMs: number;
  attendMs: number;
  attentionBytes: number;
  attentionCalls: number;
  /** Query rows processed (prefill chunk rows + decode rows). */
  tokens: number;
  generatedTokens: number;
  pagedBytes: number;
  evictableBytes: number;
  contiguousMaxBytes: number;
  contiguousExactBytes: number;
  liveSequences: number;
}

export interface TimelinePoint {
  step: number;
  timeSec: number;
  tokensPerSec: number;
  pagedBytes: number;
  evictableBytes: number;
  contiguousMaxBytes: number;
}

export interface MetricsSummary {
  steps: number;
  elapsedSec: number;
  tokens: number;
  generatedTokens: number;
  tokensPerSec: number;
  generatedTokensPerSec: number;
  attentionCalls: number;
  attentionBytes: number;
  attentionGBps: number;
  attentionSec: number;
  /** CPU seconds spent verifying outputs (excluded from elapsedSec and every rate). */
  verificationSec: number;
  /** Bytes read per second of time spent waiting on attend() alone. */
  attentionGBpsInKernel: number;
  stepLatencyMs: LatencySummary;
  memory: {
    peakPagedBytes: number;
    meanPagedBytes: number;
    peakEvictableBytes: number;
    peakContiguousMaxBytes: number;
    meanContiguousMaxBytes: number;
    peakContiguousExactBytes: number;
    /** peakPagedBytes / peakContiguousMaxBytes (lower is better). */
    pagedToContiguousRatio: number;
  };
}

const RATE_WINDOW_SEC = 1;

export class MetricsRecorder {
  private readonly samples: StepSample[] = [];
  private readonly timelinePoints: TimelinePoint[] = [];
  private elapsedMs = 0;

  record(sample: StepSample): TimelinePoint {
    this.samples.push(sample);
    this.elapsedMs += sample.wallMs;
    const timeSec = this.elapsedMs / 1000;
    let tokens = 0;
    let spanMs = 0;
    for (let i = this.samples.length - 1; i >= 0 && spanMs < RATE_WINDOW_SEC * 1000; i--) {
      tokens += this.samples[i]!.tokens;
      spanMs += this.samples[i]!.wallMs;
    }
    const point: TimelinePoint = {
      step: sample.step,
      timeSec,
      tokensPerSec: spanMs > 0 ? (tokens * 1000) / spanMs : 0,
      pagedBytes: sample.pagedBytes,
      evictableBytes: sample.evictableBytes,
      contiguousMaxBytes: sample.contiguousMaxBytes,
    };
    this.timelinePoints.push(point);
    return point;
  }

  get timeline(): readonly TimelinePoint[] {
    return this.timelinePoints;
  }

  summary(): MetricsSummary {
    const s = this.samples;
    const sum = (f: (x: StepSample) => number): number => s.reduce((a, x) => a + f(x), 0);
    const max = (f: (x: StepSample) => number): number => s.reduce((a, x) => Math.max(a, f(x)), 0);
    const mean = (f: (x: StepSample) => number): number => (s.length ? sum(f) / s.length : 0);
    const elapsedSec = this.elapsedMs / 1000;
    const perSec = (x: number): number => (elapsedSec > 0 ? x / elapsedSec : 0);
    const tokens = sum((x) => x.tokens);
    const generatedTokens = sum((x) => x.generatedTokens);
    const attentionBytes = sum((x) => x.attentionBytes);
    const attentionSec = sum((x) => x.attendMs) / 1000;
    const peakPagedBytes = max((x) => x.pagedBytes);
    const peakContiguousMaxBytes = max((x) => x.contiguousMaxBytes);
    return {
      steps: s.length,
      elapsedSec,
      tokens,
      generatedTokens,
      tokensPerSec: perSec(tokens),
      generatedTokensPerSec: perSec(generatedTokens),
      attentionCalls: sum((x) => x.attentionCalls),
      attentionBytes,
      attentionGBps: perSec(attentionBytes) / 1e9,
      attentionSec,
      verificationSec: sum((x) => x.verifyMs) / 1000,
      attentionGBpsInKernel: attentionSec > 0 ? attentionBytes / attentionSec / 1e9 : 0,
      stepLatencyMs: summarizeLatencies(s.map((x) => x.wallMs)),
      memory: {
        peakPagedBytes,
        meanPagedBytes: mean((x) => x.pagedBytes),
        peakEvictableBytes: max((x) => x.evictableBytes),
        peakContiguousMaxBytes,
        meanContiguousMaxBytes: mean((x) => x.contiguousMaxBytes),
        peakContiguousExactBytes: max((x) => x.contiguousExactBytes),
        pagedToContiguousRatio: peakContiguousMaxBytes > 0 ? peakPagedBytes / peakContiguousMaxBytes : 0,
      },
    };
  }
}
