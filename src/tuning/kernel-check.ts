// Checks a paged-attention kernel against the CPU reference before the autotuner (or the bench,
// kernelRejection) may time it: a mixed
// batch of decodes (one block, a partial second, long enough to split) and causal prefills of the
// model's own head shape, block table in random order, run with the kernel's own split choice and with
// split-K forced to 3. Invariants: the reference (f64, pagedAttentionRef over the words the GPU holds)
// is computed once per checker; a row passes when |gpu − ref| ≤ atol + rtol·|ref| — the kernel tests'
// tolerances: 2e-5 + 1e-4 (f32 arithmetic over the same stored values), and for prefill rows on
// subgroup matrices (and decode rows there, tuning.decodeMatrix), which round queries and probabilities to f16, 5e-3 + 1e-2; for decode rows of a
// kernel computing scores in f16 (stream.halfScores), 3e-3 + 1e-2; NaN never passes.
// A decode that stores its own K/V (PagedAttentionArgs.write) is checked on the same contexts as
// decodes, over a pool refilled before each run: its output against the reference over the pool with
// the new rows written, and every pool word against write-kv's CPU reference, exactly.
import type { PagedAttentionKernel } from '../kernels/paged-attention';
import { pagedAttentionRef } from '../kernels/attention.ref';
import { readBackWords } from '../kernels/kv-bindings';
import { writeKvRef } from '../kernels/write-kv.ref';
import type { AttentionEntry } from '../kernels/attention-types';
import { createAttentionWorkload, type AttentionWorkload, type WorkloadHeads } from './attention-workload';

export const STRICT_TOLERANCE = { atol: 2e-5, rtol: 1e-4 } as const;
export const MATRIX_TOLERANCE = { atol: 5e-3, rtol: 1e-2 } as const;
export const HALF_SCORE_TOLERANCE = { atol: 3e-3, rtol: 1e-2 } as const;

/** The checked batch: decodes at 1, 17, 300 and 1500 keys; prefills of 40 new tokens after 60, and of a whole 33-token prompt. */
export const CHECK_SEQUENCES = [
  { contextLength: 1, numQueries: 1 },
  { contextLength: 17, numQueries: 1 },
  { contextLength: 300, numQueries: 1 },
  { contextLength: 1500, numQueries: 1 },
  { contextLength: 100, numQueries: 40 },
  { contextLength: 33, numQueries: 33 },
] as const;

/** The batch a decode storing its K/V is checked on: a decode at every context of CHECK_SEQUENCES (so the same pool layout). */
export const CHECK_STORING_SEQUENCES = CHECK_SEQUENCES.map((s) => ({ contextLength: s.contextLength, numQueries: 1 }));

/** The storing check's batch, the reference over it, and what the pool must hold after it. */
interface StoringCheck {
  readonly workload: AttentionWorkload;
  readonly reference: Float32Array;
  /** The pattern with the batch's new rows written. */
  readonly storedWords: Uint32Array[];
}

export class KernelChecker {
  private readonly workload: AttentionWorkload;
  private readonly reference: Float32Array;
  /** Made at the first storing check (a pool and two references no other check needs). */
  private storingCheck: StoringCheck | undefined;

  constructor(
    private readonly device: GPUDevice,
    private readonly heads: WorkloadHeads,
  ) {
    this.workload = createAttentionWorkload(device, { ...heads, sequences: CHECK_SEQUENCES, order: 'random', seed: 11 });
    this.reference = this.referenceOf(this.workload, this.workload.chunkWords());
  }

  private referenceOf(w: AttentionWorkload, chunkWords: Uint32Array[]): Float32Array {
    const scale = 1 / Math.sqrt(this.heads.headDim);
    return pagedAttentionRef({ layout: w.layout, chunkWords, blockTable: w.blockTable, rowStride: w.rowStride, numQueryHeads: w.numQueryHeads, q: w.q, entries: w.entries, scale });
  }

  private get storing(): StoringCheck {
    if (this.storingCheck === undefined) {
      const workload = createAttentionWorkload(this.device, { ...this.heads, sequences: CHECK_STORING_SEQUENCES, order: 'random', seed: 13, storesKv: true });
      const { k, v, slots } = workload.newKv!;
      const storedWords = workload.chunkWords();
      writeKvRef(workload.layout, storedWords, k, v, slots);
      this.storingCheck = { workload, reference: this.referenceOf(workload, storedWords), storedWords };
    }
    return this.storingCheck;
  }

  /** Layout and row stride a kernel under check must be made for. */
  get layout() {
    return this.workload.layout;
  }

  get rowStride(): number {
    return this.workload.rowStride;
  }

  /** The batch of the storing check (made for the same layout and row stride). */
  get storingEntries(): readonly AttentionEntry[] {
    return this.storing.workload.entries;
  }

  /**
   * undefined when the kernel matches the reference in both runs, else what went wrong first. With
   * `storesKv`, a kernel that can store K/V from its decode (writesKvFor(storingEntries)) is checked as
   * such; one that cannot gets the plain check.
   */
  async check(kernel: PagedAttentionKernel, options: { storesKv?: boolean } = {}): Promise<string | undefined> {
    const storing = options.storesKv && kernel.writesKvFor(this.storingEntries) ? this.storing : undefined;
    const w = storing?.workload ?? this.workload;
    const reference = storing?.reference ?? this.reference;
    const what = storing ? 'decode storing its K/V' : 'decode';
    const rowFloats = w.numQueryHeads * w.layout.headDim;
    for (const forceSplits of [undefined, 3]) {
      const encoder = this.device.createCommandEncoder({ label: 'kernel-check' });
      if (storing) w.refill(encoder);
      encoder.clearBuffer(w.out);
      kernel.encode(encoder, w.args({ forceSplits, storesKv: storing !== undefined }));
      if (storing) w.flushStaged(encoder);
      this.device.queue.submit([encoder.finish()]);
      const runs = `${forceSplits ? `, split-K forced to ${forceSplits}` : ''}`;
      const out = new Float32Array((await readBackWords(this.device, w.out, reference.byteLength)).buffer);
      for (const e of w.entries) {
        const tol =
          e.numQueries > 1
            ? kernel.prefillMmaConfig ? MATRIX_TOLERANCE : STRICT_TOLERANCE
            : kernel.decodeMmaConfig ? MATRIX_TOLERANCE : kernel.streamDecodeConfig?.halfScores ? HALF_SCORE_TOLERANCE : STRICT_TOLERANCE;
        for (let i = e.qRow * rowFloats; i < (e.qRow + e.numQueries) * rowFloats; i++) {
          const expected = reference[i]!;
          const error = Math.abs(out[i]! - expected);
          if (!(error <= tol.atol + tol.rtol * Math.abs(expected))) {
            const row = Math.floor(i / rowFloats);
            return `${e.numQueries > 1 ? 'prefill' : what} of ${e.contextLength} keys${runs}: row ${row} element ${i % rowFloats} is ${out[i]} where the reference is ${expected}`;
          }
        }
      }
      if (storing) {
        for (let c = 0; c < w.chunks.length; c++) {
          const words = await readBackWords(this.device, w.chunks[c]!);
          const expected = storing.storedWords[c]!;
          const i = words.findIndex((word, j) => word !== expected[j]);
          if (i >= 0) return `${what}${runs}: pool word ${i} of chunk ${c} is ${hex(words[i]!)} where write-kv's reference is ${hex(expected[i]!)}`;
        }
      }
    }
    return undefined;
  }

  destroy(): void {
    this.workload.destroy();
    this.storingCheck?.workload.destroy();
  }
}

const hex = (word: number) => `0x${word.toString(16).padStart(8, '0')}`;

/**
 * Why `kernel` (made for checker.layout and checker.rowStride) may not be used: it disagrees with the CPU
 * reference (as a decode storing the new K/V when `storesKv` and the kernel can), throws, or the device
 * refuses its pipelines (a validation error while it runs); undefined when it passes. What the bench
 * asks before timing a kernel.
 */
export async function kernelRejection(device: GPUDevice, checker: KernelChecker, kernel: PagedAttentionKernel, storesKv = false): Promise<string | undefined> {
  device.pushErrorScope('validation');
  let reason: string | undefined;
  try {
    reason = await checker.check(kernel, { storesKv });
  } catch (error) {
    reason = `refused: ${error instanceof Error ? error.message : String(error)}`;
  }
  const gpuError = await device.popErrorScope();
  return gpuError ? `the device refused it: ${gpuError.message}` : reason;
}
