// Prefix-cache bookkeeping throughput on one thread (uncontended lock), no GPU: a BlockTable with its
// prefix index, driven directly. Each figure is the best and the median of several short windows (the
// machine may be shared). Run alone: npx tsx bench/prefix.bench.ts — or through runPrefixBench.
//   - match + allocate: createSequence of a 4096-token prompt whose first 3072 tokens are cached
//     (block size 16: 192 blocks matched and referenced, 64 allocated, 1024 tokens stored);
//   - churn under eviction pressure: create (with prefix reuse) + register every block + free, cycling
//     through a working set of prompts several times larger than the pool, so most requests evict.
import { PrefixCache } from '../src/prefix/prefix-cache';

export interface PrefixBenchOptions {
  windows?: number;
  windowMs?: number;
  print?: boolean;
}

export interface PrefixBenchResult {
  name: string;
  /** Microseconds per op: best window and median window. */
  bestUsPerOp: number;
  medianUsPerOp: number;
  /** Ops per second: best window and median window. */
  bestOpsPerSec: number;
  medianOpsPerSec: number;
  /** Scenario-specific figures (hit rate, evictions per op). */
  notes: Record<string, number>;
}

const BLOCK_SIZE = 16;

export function runPrefixBench(options: PrefixBenchOptions = {}): PrefixBenchResult[] {
  const windows = options.windows ?? 7;
  const windowMs = options.windowMs ?? 250;
  const results = [matchAndAllocate(windows, windowMs), churnUnderPressure(windows, windowMs)];
  if (options.print) {
    for (const r of results) {
      const notes = Object.entries(r.notes).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(3)}`).join(', ');
      console.log(
        `${r.name.padEnd(72)} median ${r.medianUsPerOp.toFixed(2).padStart(7)} µs/op ${fmtRate(r.medianOpsPerSec)}  ` +
          `(best ${r.bestUsPerOp.toFixed(2)} µs/op ${fmtRate(r.bestOpsPerSec)})${notes ? `  [${notes}]` : ''}`,
      );
    }
  }
  return results;
}

/** createSequence of a 4096-token prompt with a 3072-token cached prefix; frees are not timed. */
function matchAndAllocate(windows: number, windowMs: number): PrefixBenchResult {
  const promptLength = 4096;
  const cachedLength = 3072;
  const batch = 16;
  const cache = PrefixCache.create({
    numBlocks: cachedLength / BLOCK_SIZE + (batch + 1) * (promptLength / BLOCK_SIZE),
    blockSize: BLOCK_SIZE,
    maxSequences: batch + 1,
    maxBlocksPerSequence: promptLength / BLOCK_SIZE,
  });
  const shared = Uint32Array.from({ length: promptLength }, (_, i) => (i * 2654435761) >>> 8);
  const seed = cache.createSequence(shared);
  cache.registerWritten(seed.id, cachedLength); // 192 blocks registered, as if their K/V were written
  cache.free(seed.id); // they stay cached (evictable); the rest go back to the free list
  const prompt = shared.slice();
  for (let i = cachedLength; i < promptLength; i++) prompt[i] = 7 + i; // differs from the cached tail
  const ids = new Array<number>(batch);
  let timedMs = 0;
  let ops = 0;
  const round = (): void => {
    const t = performance.now();
    for (let j = 0; j < batch; j++) ids[j] = cache.createSequence(prompt).id;
    timedMs += performance.now() - t;
    ops += batch;
    for (let j = 0; j < batch; j++) cache.free(ids[j]!);
  };
  const check = cache.createSequence(prompt);
  if (check.cachedTokens !== cachedLength) throw new Error(`expected ${cachedLength} cached tokens, got ${check.cachedTokens}`);
  cache.free(check.id);
  const result = timeWindows('match + allocate: 4096-token prompt, 3072 cached (bs 16)', windows, windowMs, round, () => {
    const r = { ms: timedMs, ops };
    timedMs = 0;
    ops = 0;
    return r;
  });
  cache.checkInvariants();
  result.notes = { hitRate: cache.stats().hitRate };
  return result;
}

/**
 * Requests cycle through 64 prompts of 512 tokens (a shared 128-token system prompt + 384 own tokens):
 * 1544 distinct blocks against a 512-block pool. Each op is one request: create (reusing what is
 * cached), register all its full blocks (as if prefill wrote them), free.
 */
function churnUnderPressure(windows: number, windowMs: number): PrefixBenchResult {
  const prompts = 64;
  const promptLength = 512;
  const system = 128;
  const cache = PrefixCache.create({ numBlocks: 512, blockSize: BLOCK_SIZE, maxSequences: 8, maxBlocksPerSequence: promptLength / BLOCK_SIZE });
  const workload = Array.from({ length: prompts }, (_, p) =>
    Uint32Array.from({ length: promptLength }, (_, i) => (i < system ? 5 + i : 100_000 * (p + 1) + i)),
  );
  let state = 12345;
  const next = (): number => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state;
  };
  let timedMs = 0;
  let ops = 0;
  const round = (): void => {
    const t = performance.now();
    for (let j = 0; j < 64; j++) {
      const prompt = workload[next() % prompts]!;
      const { id } = cache.createSequence(prompt);
      cache.registerWritten(id, promptLength);
      cache.free(id);
    }
    timedMs += performance.now() - t;
    ops += 64;
  };
  const before = cache.stats();
  const result = timeWindows('churn under eviction pressure: create + register + free (512 tok)', windows, windowMs, round, () => {
    const r = { ms: timedMs, ops };
    timedMs = 0;
    ops = 0;
    return r;
  });
  cache.checkInvariants();
  const after = cache.stats();
  const requests = after.hits + after.misses - before.hits - before.misses;
  result.notes = {
    hitRate: (after.hitTokens - before.hitTokens) / (after.queryTokens - before.queryTokens),
    evictionsPerRequest: (after.evictions - before.evictions) / requests,
  };
  return result;
}

/** Warms up, then runs `round` repeatedly in `windows` windows of `windowMs`; `take` returns timed ms and ops. */
function timeWindows(
  name: string,
  windows: number,
  windowMs: number,
  round: () => void,
  take: () => { ms: number; ops: number },
): PrefixBenchResult {
  const warmUntil = performance.now() + Math.max(100, windowMs);
  while (performance.now() < warmUntil) round();
  take();
  const usPerOp: number[] = [];
  for (let w = 0; w < windows; w++) {
    const end = performance.now() + windowMs;
    while (performance.now() < end) round();
    const { ms, ops } = take();
    usPerOp.push((ms * 1000) / ops);
  }
  usPerOp.sort((a, b) => a - b);
  const best = usPerOp[0]!;
  const median = usPerOp[Math.floor(usPerOp.length / 2)]!;
  return { name, bestUsPerOp: best, medianUsPerOp: median, bestOpsPerSec: 1e6 / best, medianOpsPerSec: 1e6 / median, notes: {} };
}

function fmtRate(opsPerSec: number): string {
  return `${(opsPerSec / 1000).toFixed(1).padStart(8)} k ops/s`;
}

if (import.meta.url === `file://${process.argv[1]}`) runPrefixBench({ print: true });
