// The serving loop: generate the workload, build the GPU pipelines (untimed warm-up), then step the
// scheduler — plan (block operations), execute (writeKV + attend per layer, sampled verification),
// commit — until every request has reached its target length; collect metrics and report each step to
// an optional observer.
// Invariants: the cache is only driven through SimCache; a run either returns a SimResult (all outputs
// checked so far within tolerance, no live sequence left, cache invariants hold) or throws; it never
// destroys the cache (its creator does).
import { generateWorkload, type SimRequest } from './workload';
import { kvBytesPerToken } from './model-shape';
import { MetricsRecorder, type TimelinePoint } from './metrics';
import type { SimOptions } from './options';
import { PoolTooSmallError, Scheduler, type SchedulerCounters } from './scheduler';
import type { BlockMapLike, CacheStatsLike, SimCache } from './sim-cache';
import { executeStep } from './step-executor';
import { Verifier, type VerificationStats } from './verifier';
import { warmUp } from './warm-up';
import type { SimEnvironment, SimResult } from './result';

export interface StepProgress {
  step: number;
  point: TimelinePoint;
  totalRequests: number;
  completedRequests: number;
  running: number;
  waiting: number;
  counters: Readonly<SchedulerCounters>;
  verification: VerificationStats;
  cacheStats: CacheStatsLike;
  /** The cache's block map now (a fresh copy; call only when it will be drawn). */
  blockMap(): BlockMapLike;
}

export interface SimulationHooks {
  onStep?(progress: StepProgress): void | Promise<void>;
  signal?: AbortSignal;
}

/** Consecutive steps without work after which the run is declared stuck. */
const MAX_IDLE_STEPS = 1000;

export async function simulate(cache: SimCache, options: SimOptions, environment: SimEnvironment, hooks: SimulationHooks = {}): Promise<SimResult> {
  const requests = generateWorkload(options);
  assertEachRequestFits(requests, options);
  const scheduler = new Scheduler(cache, requests, {
    blockSize: options.blockSize,
    maxBatchTokens: options.maxBatchTokens,
    maxRunningRequests: options.maxRunningRequests,
    vocabSize: options.vocabSize,
  });
  const verifier = new Verifier({
    fraction: options.verifyFraction,
    minChecks: options.minVerifications,
    atol: options.atol,
    rtol: options.rtol,
    seed: options.seed,
  });
  const metrics = new MetricsRecorder();
  const tokenBytes = kvBytesPerToken(options);
  const blockBytes = tokenBytes * options.blockSize;
  const warmUpSec = await warmUp(cache, options);
  const baseline = cache.stats();
  let idleSteps = 0;
  while (!scheduler.finished) {
    hooks.signal?.throwIfAborted();
    const t0 = performance.now();
    const plan = scheduler.planStep();
    const exec = await executeStep(cache, plan.step, plan.work, options, verifier);
    scheduler.commitStep(plan);
    const wallMs = performance.now() - t0 - exec.verifyMs;
    idleSteps = plan.work.length === 0 ? idleSteps + 1 : 0;
    if (idleSteps > MAX_IDLE_STEPS) {
      throw new Error(`the simulation made no progress for ${MAX_IDLE_STEPS} steps (${scheduler.waitingCount} waiting, ${scheduler.runningCount} running)`);
    }
    if (options.checkInvariantsEvery > 0 && plan.step % options.checkInvariantsEvery === 0) cache.checkInvariants();
    const stats = cache.stats();
    const live = scheduler.liveSequences();
    const point = metrics.record({
      step: plan.step,
      wallMs,
      verifyMs: exec.verifyMs,
      attendMs: exec.attendMs,
      attentionBytes: exec.attentionBytes,
      attentionCalls: exec.attentionCalls,
      tokens: plan.work.reduce((n, w) => n + (w.end - w.start), 0),
      generatedTokens: plan.work.filter((w) => w.phase === 'decode').length,
      pagedBytes: stats.blocksUsed * blockBytes,
      evictableBytes: stats.blocksEvictable * blockBytes,
      contiguousMaxBytes: live * options.maxTotalLength * tokenBytes,
      contiguousExactBytes: scheduler.liveTargetTokens() * tokenBytes,
      liveSequences: live,
    });
    if (hooks.onStep) {
      await hooks.onStep({
        step: plan.step,
        point,
        totalRequests: requests.length,
        completedRequests: scheduler.counters.completedRequests,
        running: scheduler.runningCount,
        waiting: scheduler.waitingCount,
        counters: scheduler.counters,
        verification: verifier.summary(),
        cacheStats: stats,
        blockMap: () => cache.blockMap(),
      });
    }
  }
  cache.checkInvariants();
  const finalStats = cache.stats();
  if (finalStats.sequences !== 0) {
    throw new Error(`the simulation finished with ${finalStats.sequences} sequence(s) still allocated in the cache`);
  }
  return buildResult(options, environment, requests, scheduler, metrics, verifier, finalStats, baseline, blockBytes, warmUpSec);
}

/** Worst-case blocks one request needs alone: its prompt, then every sample's own tail and output. */
export function blocksNeededAlone(request: SimRequest, blockSize: number): number {
  const promptBlocks = Math.ceil(request.prompt.length / blockSize);
  const total = Math.ceil((request.prompt.length + request.outputLength) / blockSize);
  const sharedFull = Math.floor(request.prompt.length / blockSize);
  return Math.max(promptBlocks, sharedFull + request.samples * (total - sharedFull));
}

function assertEachRequestFits(requests: readonly SimRequest[], options: SimOptions): void {
  let worst: SimRequest | undefined;
  let worstBlocks = 0;
  for (const r of requests) {
    const need = blocksNeededAlone(r, options.blockSize);
    if (need > worstBlocks) [worst, worstBlocks] = [r, need];
  }
  if (worst && worstBlocks > options.numBlocks) {
    throw new PoolTooSmallError(
      `request ${worst.id} needs up to ${worstBlocks} blocks of ${options.blockSize} tokens on its own ` +
        `(${worst.prompt.length} prompt + ${worst.outputLength} output tokens × ${worst.samples} sample(s)) but the pool ` +
        `has ${options.numBlocks}; raise the block count or shorten the workload`,
    );
  }
}

function buildResult(
  options: SimOptions,
  environment: SimEnvironment,
  requests: readonly SimRequest[],
  scheduler: Scheduler,
  metrics: MetricsRecorder,
  verifier: Verifier,
  stats: CacheStatsLike,
  baseline: CacheStatsLike,
  blockBytes: number,
  warmUpSec: number,
): SimResult {
  const summary = metrics.summary();
  const c = scheduler.counters;
  return {
    environment,
    options,
    requests: {
      total: requests.length,
      completed: c.completedRequests,
      samples: c.completedSamples,
      admissions: c.admissions,
      preemptions: c.preemptions,
      forks: c.forks,
      requestsPerSec: summary.elapsedSec > 0 ? c.completedRequests / summary.elapsedSec : 0,
    },
    warmUpSec,
    metrics: summary,
    prefix: {
      promptTokens: c.promptTokens,
      cachedPromptTokens: c.cachedPromptTokens,
      hitRate: c.promptTokens > 0 ? c.cachedPromptTokens / c.promptTokens : 0,
    },
    cache: {
      blocksTotal: stats.blocksTotal,
      blockSize: options.blockSize,
      bytesPerBlock: blockBytes,
      poolBytes: stats.blocksTotal * blockBytes,
      evictions: numberOr(stats.evictions) - numberOr(baseline.evictions),
      cowCopies: numberOr(stats.cowCopies) - numberOr(baseline.cowCopies),
      stats,
    },
    scheduler: { ...c },
    verification: verifier.summary(),
    invariants: { checked: true, sequencesLeft: stats.sequences, blocksUsedAtEnd: stats.blocksUsed },
  };
}

function numberOr(value: unknown): number {
  return typeof value === 'number' ? value : 0;
}
