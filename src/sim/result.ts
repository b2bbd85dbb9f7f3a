// The machine-readable outcome of a simulation run (what `serve --json` prints and the browser demo
// shows). Invariants: a SimResult exists only for a run that finished, verified every sampled output
// within tolerance, freed every sequence and passed the cache's invariant check; all byte figures are
// K+V over all layers; rates are per wall-clock second.
import type { MetricsSummary } from './metrics';
import type { SimOptions } from './options';
import type { SchedulerCounters } from './scheduler';
import type { CacheStatsLike } from './sim-cache';
import type { VerificationStats } from './verifier';

export interface SimEnvironment {
  /** One-line description of the adapter. */
  adapter: string;
  isFallback: boolean;
  backend: string;
  /** 256-invocation workgroups the device runs at once (the cache's probe: it sizes decode split-K). */
  residentWorkgroups?: number;
  /** The attention kernels the cache runs (PagedKVCache.describeKernels). */
  kernels?: { decode: string; prefill: string };
  /** The attention tuning the cache was given (describeTuning), where one was. */
  tuning?: string;
}

export interface SimResult {
  environment: SimEnvironment;
  options: SimOptions;
  requests: {
    total: number;
    completed: number;
    samples: number;
    admissions: number;
    preemptions: number;
    forks: number;
    requestsPerSec: number;
  };
  /** Seconds spent building GPU pipelines before the timed run (not in any rate). */
  warmUpSec: number;
  metrics: MetricsSummary;
  prefix: {
    promptTokens: number;
    cachedPromptTokens: number;
    /** cachedPromptTokens / promptTokens. */
    hitRate: number;
  };
  cache: {
    blocksTotal: number;
    blockSize: number;
    bytesPerBlock: number;
    poolBytes: number;
    /** Evictions and copy-on-write copies during the timed run (the warm-up's are not counted). */
    evictions: number;
    cowCopies: number;
    stats: CacheStatsLike;
  };
  scheduler: SchedulerCounters;
  verification: VerificationStats;
  invariants: { checked: true; sequencesLeft: number; blocksUsedAtEnd: number };
}
