// Checks a sample of GPU attention outputs against the CPU reference. Invariants: the choice of what to
// check is deterministic (first `minChecks` outputs, every output flagged as must-check, and a hashed
// `fraction` of the rest); an element passes when |got − ref| ≤ atol + rtol·|ref| (NaN never passes);
// the first failure throws VerificationError and nothing is ever silently skipped.
import { hash2, unitFromHash } from './hash';

export interface VerificationPolicy {
  /** Fraction of attention outputs (one per sequence per layer per step) to check, 0..1. */
  fraction: number;
  /** The first this-many outputs of a run are always checked. */
  minChecks: number;
  atol: number;
  rtol: number;
  seed: number;
}

export interface VerificationStats {
  /** Attention outputs compared with the CPU reference. */
  checked: number;
  /** Elements compared. */
  elements: number;
  maxAbsError: number;
  /** Largest |got − ref| / (atol + rtol·|ref|); ≤ 1 means within tolerance. */
  worstToleranceRatio: number;
  mismatches: number;
  atol: number;
  rtol: number;
}

/** Where a checked output came from, for the failure message. */
export interface OutputLabel {
  step: number;
  layer: number;
  requestId: number;
  sequenceId: number;
  /** Position of each query row compared (row r of the arrays is at positions[r]). */
  positions: readonly number[];
  numQueryHeads: number;
  headDim: number;
}

export class VerificationError extends Error {
  readonly code = 'SIM_VERIFICATION';
  readonly label: OutputLabel;
  constructor(message: string, label: OutputLabel) {
    super(message);
    this.name = 'VerificationError';
    this.label = label;
  }
}

export class Verifier {
  private readonly policy: VerificationPolicy;
  private considered = 0;
  private readonly stats: VerificationStats;

  constructor(policy: VerificationPolicy) {
    this.policy = policy;
    this.stats = { checked: 0, elements: 0, maxAbsError: 0, worstToleranceRatio: 0, mismatches: 0, atol: policy.atol, rtol: policy.rtol };
  }

  /** Decides whether the next attention output is checked. Call once per output, in order. */
  shouldCheck(mustCheck = false): boolean {
    const index = this.considered++;
    if (mustCheck || index < this.policy.minChecks) return true;
    return unitFromHash(hash2(this.policy.seed ^ 0x7e1f, index)) < this.policy.fraction;
  }

  /** Compares one output with its reference; throws VerificationError on the first bad element. */
  check(label: OutputLabel, got: Float32Array, expected: Float32Array): void {
    if (got.length !== expected.length) {
      this.stats.mismatches++;
      throw new VerificationError(
        `attention output for request ${label.requestId} (sequence ${label.sequenceId}) at layer ${label.layer}, step ${label.step} ` +
          `has ${got.length} values; the reference has ${expected.length}`,
        label,
      );
    }
    const { atol, rtol } = this.policy;
    for (let i = 0; i < got.length; i++) {
      const ref = expected[i]!;
      const err = Math.abs(got[i]! - ref);
      const bound = atol + rtol * Math.abs(ref);
      if (!(err <= bound)) {
        this.stats.mismatches++;
        const row = Math.floor(i / (label.numQueryHeads * label.headDim));
        const head = Math.floor(i / label.headDim) % label.numQueryHeads;
        throw new VerificationError(
          `attention output mismatch: request ${label.requestId} (sequence ${label.sequenceId}), layer ${label.layer}, ` +
            `step ${label.step}, position ${label.positions[row] ?? `row ${row}`}, head ${head}, dim ${i % label.headDim}: ` +
            `GPU ${got[i]} vs CPU reference ${ref} (|error| ${err.toExponential(3)} > ${bound.toExponential(3)} = ` +
            `atol ${atol} + rtol ${rtol}·|ref|)`,
          label,
        );
      }
      if (err > this.stats.maxAbsError) this.stats.maxAbsError = err;
      const ratio = err / bound;
      if (ratio > this.stats.worstToleranceRatio) this.stats.worstToleranceRatio = ratio;
    }
    this.stats.checked++;
    this.stats.elements += got.length;
  }

  summary(): VerificationStats {
    return { ...this.stats };
  }
}
