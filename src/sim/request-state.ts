// Lifecycle state of one simulated request and its parallel samples.
// Invariants: phase moves pending → waiting → prefill → decode → done, or back to waiting on preemption
// (which discards every sample's progress: the request is recomputed from its prompt); a sample with
// seqId ≥ 0 owns that live cache sequence and `tokens` is exactly that sequence's token list; only
// sample 0 exists before the prompt is fully prefilled, the others are forked from it afterwards.
import type { SimRequest } from './workload';
import { sampleSeed } from './tokens';

export type RequestPhase = 'pending' | 'waiting' | 'prefill' | 'decode' | 'done';

export interface SampleState {
  readonly index: number;
  readonly seed: number;
  /** Live cache sequence id, or -1. */
  seqId: number;
  tokens: number[];
  /** Output tokens appended so far. */
  generated: number;
  done: boolean;
  /** The next output of this sample is checked against the CPU reference regardless of sampling. */
  checkNext: boolean;
}

export interface RequestState {
  readonly request: SimRequest;
  phase: RequestPhase;
  samples: SampleState[];
  /** Next prompt position whose K/V must be computed (prefill phase). */
  prefillPos: number;
  /** Admission counter value when last admitted (preemption picks the largest). */
  admitOrder: number;
  preemptions: number;
}

export function newRequestState(request: SimRequest): RequestState {
  return {
    request,
    phase: 'pending',
    samples: Array.from({ length: request.samples }, (_, index) => newSample(request, index)),
    prefillPos: 0,
    admitOrder: -1,
    preemptions: 0,
  };
}

function newSample(request: SimRequest, index: number): SampleState {
  return { index, seed: sampleSeed(request.seed, index), seqId: -1, tokens: [], generated: 0, done: false, checkNext: false };
}

/** Drops all progress (the caller has freed the sequences): the request starts again from its prompt. */
export function resetRequest(state: RequestState): void {
  state.samples = state.samples.map((s) => newSample(state.request, s.index));
  state.prefillPos = 0;
  state.phase = 'waiting';
}

/** Target length of every sample's sequence. */
export function targetLength(request: SimRequest): number {
  return request.prompt.length + request.outputLength;
}
