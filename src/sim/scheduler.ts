// Continuous-batching scheduler over a SequenceStore (the KV cache's block operations).
// Each step: (1) arrivals join the waiting queue; (2) every decoding sample appends its next token
// (oldest request first); when the pool runs dry the newest running request is preempted — its sequences
// freed, its progress dropped, itself put back at the head of the queue — and the append is retried;
// (3) requests still prefilling get prompt chunks within the step's token budget; (4) waiting requests
// are admitted in order while the budget, the running limit and the free+evictable blocks allow
// (keeping what the running samples need at their next append); a request that cannot be admitted
// holds the queue.
// Invariants: a step's work only names live sequences and positions whose earlier K/V are computed or
// cached; the oldest running request is never preempted while a newer one runs, so the run progresses;
// a request that cannot fit even alone throws PoolTooSmallError instead of looping.
import { nextToken } from './tokens';
import { newRequestState, resetRequest, targetLength, type RequestState, type SampleState } from './request-state';
import { availableBlocks, isOutOfBlocks, type SequenceStore } from './sim-cache';
import type { SimRequest } from './workload';

export interface SchedulerOptions {
  blockSize: number;
  /** Tokens (decode rows + prefill chunk rows) processed per step at most; decodes always run. */
  maxBatchTokens: number;
  /** Requests admitted at once at most. */
  maxRunningRequests: number;
  vocabSize: number;
}

export interface WorkItem {
  requestId: number;
  sampleIndex: number;
  sequenceId: number;
  /** The sequence's tokens; positions [start, end) are this step's queries and new K/V. */
  tokens: readonly number[];
  start: number;
  end: number;
  phase: 'prefill' | 'decode';
  mustCheck: boolean;
}

export interface StepPlan {
  step: number;
  work: WorkItem[];
  admitted: number[];
  preempted: number[];
}

export interface SchedulerCounters {
  admissions: number;
  preemptions: number;
  completedRequests: number;
  completedSamples: number;
  forks: number;
  /** Prompt tokens presented at admission (re-admissions count again). */
  promptTokens: number;
  /** Of those, tokens the prefix cache already held. */
  cachedPromptTokens: number;
  prefillTokens: number;
  decodeTokens: number;
}

export class PoolTooSmallError extends Error {
  readonly code = 'SIM_POOL_TOO_SMALL';
  constructor(message: string) {
    super(message);
    this.name = 'PoolTooSmallError';
  }
}

export class Scheduler {
  private readonly store: SequenceStore;
  private readonly options: SchedulerOptions;
  private readonly states: RequestState[];
  private readonly byId = new Map<number, RequestState>();
  private nextArrival = 0;
  private waiting: RequestState[] = [];
  private running: RequestState[] = [];
  private stepIndex = 0;
  private admitCounter = 0;
  private remaining: number;
  readonly counters: SchedulerCounters = {
    admissions: 0,
    preemptions: 0,
    completedRequests: 0,
    completedSamples: 0,
    forks: 0,
    promptTokens: 0,
    cachedPromptTokens: 0,
    prefillTokens: 0,
    decodeTokens: 0,
  };

  constructor(store: SequenceStore, requests: readonly SimRequest[], options: SchedulerOptions) {
    this.store = store;
    this.options = options;
    this.states = [...requests].sort((a, b) => a.arrivalStep - b.arrivalStep || a.id - b.id).map(newRequestState);
    for (const s of this.states) this.byId.set(s.request.id, s);
    this.remaining = this.states.length;
  }

  get finished(): boolean {
    return this.remaining === 0;
  }

  get step(): number {
    return this.stepIndex;
  }

  get waitingCount(): number {
    return this.waiting.length;
  }

  get runningCount(): number {
    return this.running.length;
  }

  /** Live cache sequences held by running requests. */
  liveSequences(): number {
    let n = 0;
    for (const r of this.running) for (const s of r.samples) if (s.seqId >= 0) n++;
    return n;
  }

  /** Σ over live sequences of their final length (what exact-size contiguous buffers would hold). */
  liveTargetTokens(): number {
    let n = 0;
    for (const r of this.running) for (const s of r.samples) if (s.seqId >= 0) n += targetLength(r.request);
    return n;
  }

  requestState(id: number): RequestState | undefined {
    return this.byId.get(id);
  }

  /** Decides this step's work and performs its block operations (appends, admissions, preemptions). */
  planStep(): StepPlan {
    this.admitArrivals();
    if (this.running.length === 0 && this.waiting.length === 0 && this.nextArrival < this.states.length) {
      this.stepIndex = Math.max(this.stepIndex, this.states[this.nextArrival]!.request.arrivalStep);
      this.admitArrivals();
    }
    const plan: StepPlan = { step: this.stepIndex, work: [], admitted: [], preempted: [] };
    this.planDecodes(plan);
    let budget = this.options.maxBatchTokens - plan.work.length;
    for (const r of this.running) {
      if (budget <= 0) break;
      if (r.phase === 'prefill') budget -= this.planPrefillChunk(plan, r, budget);
    }
    this.admitWaiting(plan, budget);
    return plan;
  }

  /** Records that the plan's work was computed: advances prefill, forks samples, frees finished ones. */
  commitStep(plan: StepPlan): void {
    for (const item of plan.work) {
      const r = this.byId.get(item.requestId)!;
      if (item.phase === 'prefill') {
        this.counters.prefillTokens += item.end - item.start;
        r.prefillPos = item.end;
        if (r.prefillPos === r.request.prompt.length) this.startDecoding(r);
      } else {
        this.counters.decodeTokens++;
        const sample = r.samples[item.sampleIndex]!;
        sample.generated++;
        if (sample.generated === r.request.outputLength) this.finishSample(r, sample);
      }
    }
    this.stepIndex++;
  }

  private admitArrivals(): void {
    while (this.nextArrival < this.states.length && this.states[this.nextArrival]!.request.arrivalStep <= this.stepIndex) {
      const s = this.states[this.nextArrival++]!;
      s.phase = 'waiting';
      this.waiting.push(s);
    }
  }

  private planDecodes(plan: StepPlan): void {
    for (const r of [...this.running]) {
      if (r.phase !== 'decode' || !this.running.includes(r)) continue;
      for (const sample of r.samples) {
        if (sample.done) continue;
        const last = sample.tokens[sample.tokens.length - 1]!;
        const token = nextToken(last, sample.seed, this.options.vocabSize);
        const position = this.appendWithPreemption(plan, r, sample, token);
        if (position < 0) break; // r itself was preempted
        if (position !== sample.tokens.length) {
          throw new Error(`cache placed the token of sequence ${sample.seqId} at position ${position}; expected ${sample.tokens.length}`);
        }
        sample.tokens.push(token);
        plan.work.push({
          requestId: r.request.id,
          sampleIndex: sample.index,
          sequenceId: sample.seqId,
          tokens: sample.tokens,
          start: position,
          end: position + 1,
          phase: 'decode',
          mustCheck: sample.checkNext,
        });
        sample.checkNext = false;
      }
    }
  }

  /** Appends one token, preempting newer requests while the pool is dry; -1 if `r` itself was preempted. */
  private appendWithPreemption(plan: StepPlan, r: RequestState, sample: SampleState, token: number): number {
    for (;;) {
      try {
        return this.store.appendTokens(sample.seqId, [token]);
      } catch (error) {
        if (!isOutOfBlocks(error)) throw error;
        const victim = this.newestRunning();
        if (victim === r && this.running.length === 1) {
          throw new PoolTooSmallError(
            `request ${r.request.id} (${r.request.prompt.length} prompt + ${r.request.outputLength} output tokens × ` +
              `${r.request.samples} sample(s)) does not fit in the KV pool even alone; raise the pool's block count`,
          );
        }
        this.preempt(plan, victim);
        if (victim === r) return -1;
      }
    }
  }

  private newestRunning(): RequestState {
    let newest = this.running[0]!;
    for (const r of this.running) if (r.admitOrder > newest.admitOrder) newest = r;
    return newest;
  }

  private preempt(plan: StepPlan, r: RequestState): void {
    for (const s of r.samples) if (s.seqId >= 0) this.store.free(s.seqId);
    this.running = this.running.filter((x) => x !== r);
    plan.work = plan.work.filter((w) => w.requestId !== r.request.id);
    resetRequest(r);
    r.preemptions++;
    this.waiting.unshift(r);
    plan.preempted.push(r.request.id);
    this.counters.preemptions++;
  }

  private planPrefillChunk(plan: StepPlan, r: RequestState, budget: number): number {
    const sample = r.samples[0]!;
    const end = Math.min(r.request.prompt.length, r.prefillPos + budget);
    if (end <= r.prefillPos) return 0;
    plan.work.push({
      requestId: r.request.id,
      sampleIndex: 0,
      sequenceId: sample.seqId,
      tokens: sample.tokens,
      start: r.prefillPos,
      end,
      phase: 'prefill',
      mustCheck: sample.checkNext,
    });
    sample.checkNext = false;
    return end - r.prefillPos;
  }

  /** Blocks the running samples need at their next append: a new block when the last one is full,
   *  and possibly a copy-on-write of a forked tail. Admission keeps this much free (like vLLM's
   *  watermark, it does not reserve for later growth: that is what preemption is for). */
  private nextStepBlockNeed(): number {
    const bs = this.options.blockSize;
    let n = 0;
    for (const r of this.running) {
      if (r.phase !== 'decode') continue;
      for (const s of r.samples) if (s.seqId >= 0 && (s.tokens.length % bs === 0 || s.checkNext)) n++;
    }
    return n;
  }

  private admitWaiting(plan: StepPlan, budget: number): void {
    const bs = this.options.blockSize;
    while (budget > 0 && this.waiting.length > 0 && this.running.length < this.options.maxRunningRequests) {
      const r = this.waiting[0]!;
      const prompt = r.request.prompt;
      const need = Math.ceil(prompt.length / bs);
      if (this.running.length > 0 && need + this.nextStepBlockNeed() > availableBlocks(this.store)) return;
      let created;
      try {
        created = this.store.createSequence({ tokens: [...prompt] });
      } catch (error) {
        if (!isOutOfBlocks(error)) throw error;
        if (this.running.length === 0) {
          throw new PoolTooSmallError(
            `request ${r.request.id} has a ${prompt.length}-token prompt (${need} blocks of ${bs}); the KV pool cannot hold it ` +
              `even with nothing else running; raise the pool's block count`,
          );
        }
        return;
      }
      this.waiting.shift();
      r.phase = 'prefill';
      r.admitOrder = this.admitCounter++;
      r.prefillPos = created.cachedTokens;
      const sample = r.samples[0]!;
      sample.seqId = created.id;
      sample.tokens = [...prompt];
      sample.checkNext = created.cachedTokens > 0 || r.preemptions > 0;
      this.running.push(r);
      plan.admitted.push(r.request.id);
      this.counters.admissions++;
      this.counters.promptTokens += prompt.length;
      this.counters.cachedPromptTokens += created.cachedTokens;
      budget -= this.planPrefillChunk(plan, r, budget);
    }
  }

  private startDecoding(r: RequestState): void {
    r.phase = 'decode';
    const first = r.samples[0]!;
    for (const sample of r.samples.slice(1)) {
      sample.seqId = this.store.fork(first.seqId);
      sample.tokens = [...first.tokens];
      sample.checkNext = true;
      this.counters.forks++;
    }
  }

  private finishSample(r: RequestState, sample: SampleState): void {
    this.store.free(sample.seqId);
    sample.seqId = -1;
    sample.done = true;
    this.counters.completedSamples++;
    if (r.samples.every((s) => s.done)) {
      r.phase = 'done';
      this.running = this.running.filter((x) => x !== r);
      this.remaining--;
      this.counters.completedRequests++;
    }
  }
}
