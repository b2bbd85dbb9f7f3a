// Checks a paged-attention kernel against the CPU reference before the autotuner may time it: a mixed
// batch of decodes (one block, a partial second, long enough to split) and causal prefills of the
// model's own head shape, block table in random order, run with the kernel's own split choice and with
// split-K forced to 3. Invariants: the reference (f64, pagedAttentionRef over the words the GPU holds)
// is computed once per checker; a row passes when |gpu − ref| ≤ atol + rtol·|ref| — the kernel tests'
// tolerances: 2e-5 + 1e-4 (f32 arithmetic over the same stored values), and for prefill rows on
// subgroup matrices, which round queries and probabilities to f16, 5e-3 + 1e-2; NaN never passes.
import type { PagedAttentionKernel } from '../kernels/paged-attention';
import { pagedAttentionRef } from '../kernels/attention.ref';
import { readBackWords } from '../kernels/kv-bindings';
import { createAttentionWorkload, type AttentionWorkload, type WorkloadHeads } from './attention-workload';

export const STRICT_TOLERANCE = { atol: 2e-5, rtol: 1e-4 } as const;
export const MATRIX_TOLERANCE = { atol: 5e-3, rtol: 1e-2 } as const;

/** The checked batch: decodes at 1, 17, 300 and 1500 keys; prefills of 40 new tokens after 60, and of a whole 33-token prompt. */
export const CHECK_SEQUENCES = [
  { contextLength: 1, numQueries: 1 },
  { contextLength: 17, numQueries: 1 },
  { contextLength: 300, numQueries: 1 },
  { contextLength: 1500, numQueries: 1 },
  { contextLength: 100, numQueries: 40 },
  { contextLength: 33, numQueries: 33 },
] as const;

export class KernelChecker {
  private readonly workload: AttentionWorkload;
  private readonly reference: Float32Array;

  constructor(
    private readonly device: GPUDevice,
    heads: WorkloadHeads,
  ) {
    this.workload = createAttentionWorkload(device, { ...heads, sequences: CHECK_SEQUENCES, order: 'random', seed: 11 });
    const w = this.workload;
    this.reference = pagedAttentionRef({
      layout: w.layout,
      chunkWords: w.chunkWords(),
      blockTable: w.blockTable,
      rowStride: w.rowStride,
      numQueryHeads: w.numQueryHeads,
      q: w.q,
      entries: w.entries,
      scale: 1 / Math.sqrt(heads.headDim),
    });
  }

  /** Layout and row stride a kernel under check must be made for. */
  get layout() {
    return this.workload.layout;
  }

  get rowStride(): number {
    return this.workload.rowStride;
  }

  /** undefined when the kernel matches the reference in both runs, else what went wrong first. */
  async check(kernel: PagedAttentionKernel): Promise<string | undefined> {
    const w = this.workload;
    const rowFloats = w.numQueryHeads * w.layout.headDim;
    for (const forceSplits of [undefined, 3]) {
      const encoder = this.device.createCommandEncoder({ label: 'kernel-check' });
      encoder.clearBuffer(w.out);
      kernel.encode(encoder, w.args({ forceSplits }));
      this.device.queue.submit([encoder.finish()]);
      const out = new Float32Array((await readBackWords(this.device, w.out, this.reference.byteLength)).buffer);
      for (const e of w.entries) {
        const tol = e.numQueries > 1 && kernel.prefillMmaConfig ? MATRIX_TOLERANCE : STRICT_TOLERANCE;
        for (let i = e.qRow * rowFloats; i < (e.qRow + e.numQueries) * rowFloats; i++) {
          const expected = this.reference[i]!;
          const error = Math.abs(out[i]! - expected);
          if (!(error <= tol.atol + tol.rtol * Math.abs(expected))) {
            const row = Math.floor(i / rowFloats);
            return (
              `${e.numQueries > 1 ? 'prefill' : 'decode'} of ${e.contextLength} keys${forceSplits ? `, split-K forced to ${forceSplits}` : ''}: ` +
              `row ${row} element ${i % rowFloats} is ${out[i]} where the reference is ${expected}`
            );
          }
        }
      }
    }
    return undefined;
  }

  destroy(): void {
    this.workload.destroy();
  }
}
