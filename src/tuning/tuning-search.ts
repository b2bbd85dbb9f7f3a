// The autotuner's search, apart from the GPU: one pass of coordinate descent over knobs. Invariants:
// the base tuning is measured first and is the answer unless a candidate beats the best so far by more
// than `minGain` (a fraction of its score: timing noise must not move the choice), twice — the first
// time against the best's earlier score, then in a fresh pair of measurements of both; each knob's values
// are tried on top of the best tuning so far, in order, so a later knob is judged together with the
// earlier knobs' winners; a candidate the identity function maps to a kernel already measured reuses
// that score instead of timing it again; a candidate that is rejected (wrong output, refused by the
// device) or not applicable never wins. Scores are costs (lower is better), e.g. seconds.
import { describeTuning, mergeTuning, type AttentionTuning } from '../kernels/attention-tuning';

/** One knob: its name and the values to try, each a patch on top of the best tuning so far. */
export interface TuningKnob {
  name: string;
  values: readonly AttentionTuning[];
}

export type Measurement = { score: number; detail?: string } | { rejected: string };

export interface SearchHooks {
  /**
   * The identity of the kernels `tuning` selects (equal strings: the same kernels, so the same score),
   * or undefined where the tuning does not apply here (the kernel falls back to what another tuning
   * already runs, or needs a feature the device lacks).
   */
  identify(tuning: AttentionTuning): string | undefined;
  /** Measures (and checks) the kernels of `tuning`; lower scores are better. */
  measure(tuning: AttentionTuning): Promise<Measurement>;
  /** Called after each trial (progress output). */
  onTrial?(trial: SearchTrial): void;
}

export type TrialOutcome = 'base' | 'better' | 'not better' | 'same kernels' | 'not applicable' | 'rejected';

export interface SearchTrial {
  knob: string;
  /** The tuning tried (base ∪ best so far ∪ this knob's value). */
  tuning: AttentionTuning;
  label: string;
  outcome: TrialOutcome;
  /** The candidate's score, where measured (or taken from the same kernels measured before). */
  score?: number;
  detail?: string;
}

export interface SearchResult {
  best: AttentionTuning;
  bestScore: number;
  baseScore: number;
  /**
   * How much better the best is than the base: the product of each accepted win's ratio measured side by
   * side (the best before it against it). At least 1, and not baseScore / bestScore: those two may have
   * been measured minutes apart, under a different load.
   */
  speedup: number;
  trials: SearchTrial[];
}

/** Thrown when the base tuning itself cannot be measured (its kernels were rejected or do not apply). */
export class BaseTuningRejected extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

export async function searchTuning(base: AttentionTuning, knobs: readonly TuningKnob[], hooks: SearchHooks, minGain: number): Promise<SearchResult> {
  const scores = new Map<string, number | string>(); // identity → score, or the reason it was rejected
  const trials: SearchTrial[] = [];
  const record = (trial: SearchTrial): void => {
    trials.push(trial);
    hooks.onTrial?.(trial);
  };
  const baseKey = hooks.identify(base);
  if (baseKey === undefined) throw new BaseTuningRejected(`the base tuning (${describeTuning(base)}) does not apply to this device and layout`);
  const first = await hooks.measure(base);
  if ('rejected' in first) throw new BaseTuningRejected(first.rejected);
  scores.set(baseKey, first.score);
  record({ knob: 'base', tuning: base, label: describeTuning(base), outcome: 'base', score: first.score, detail: first.detail });
  let best = base;
  let bestKey = baseKey;
  let bestScore = first.score;
  let speedup = 1;
  for (const knob of knobs) {
    const winner = best; // every value of a knob is tried on top of the same tuning
    for (const value of knob.values) {
      const tuning = mergeTuning(winner, value);
      const label = describeTuning(value);
      const key = hooks.identify(tuning);
      if (key === undefined) {
        record({ knob: knob.name, tuning, label, outcome: 'not applicable' });
        continue;
      }
      const seen = scores.get(key);
      let known: number | string;
      let detail: string | undefined;
      if (seen === undefined) {
        const m = await hooks.measure(tuning);
        known = 'rejected' in m ? m.rejected : m.score;
        detail = 'rejected' in m ? undefined : m.detail;
        scores.set(key, known);
      } else {
        known = seen;
      }
      if (typeof known === 'string') {
        record({ knob: knob.name, tuning, label, outcome: 'rejected', detail: known });
        continue;
      }
      if (seen !== undefined) {
        record({ knob: knob.name, tuning, label, outcome: 'same kernels', score: known });
        continue;
      }
      let better = known < bestScore * (1 - minGain);
      if (better) {
        // Confirm on a second pair of measurements taken now, side by side (the best's score may be old).
        const again = await hooks.measure(best);
        const candidate = await hooks.measure(tuning);
        if ('rejected' in again || 'rejected' in candidate || !(candidate.score < again.score * (1 - minGain))) {
          better = false;
          const scoreOf = (m: Measurement) => ('rejected' in m ? m.rejected : m.score.toExponential(3));
          detail = `${detail ? `${detail}; ` : ''}not confirmed when measured again (${scoreOf(candidate)} against the best's ${scoreOf(again)})`;
        } else {
          known = candidate.score;
          speedup *= again.score / candidate.score;
          detail = `${candidate.detail ? `${candidate.detail}; ` : ''}confirmed against the best measured again (${again.score.toExponential(3)})`;
          scores.set(bestKey, again.score);
          scores.set(key, known);
        }
      }
      record({ knob: knob.name, tuning, label, outcome: better ? 'better' : 'not better', score: known, detail });
      if (better) {
        best = tuning;
        bestKey = key;
        bestScore = known;
      }
    }
  }
  return { best, bestScore, baseScore: first.score, speedup, trials };
}

/** One line per trial for progress output: part, knob, value, outcome, score (ms) and detail. */
export function describeTrial(part: string, t: SearchTrial): string {
  const score = t.score === undefined ? '' : `${(t.score * 1e3).toFixed(3)} ms`;
  return `${part.padEnd(7)} ${t.knob.padEnd(28)} ${(t.knob === 'base' ? '' : t.label).padEnd(34)} ${t.outcome.padEnd(14)} ${score.padStart(11)}${t.detail ? `  (${t.detail})` : ''}`;
}
