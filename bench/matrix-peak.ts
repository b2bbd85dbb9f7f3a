// Measures the f16 × f16 → f32 rate WGSL subgroup matrices reach on the device (TFLOP/s), with
// shaders/bench-matrix.wgsl: the ceiling the subgroup-matrix prefill is compared against in the same
// run, as the portable prefill is against the f32 FMA rate. Invariants: the matrix size is the one the
// attention kernels would use (subgroupMatrixSize: 16 preferred over 8), at the device's one subgroup
// size; FLOPs = subgroups × ITERATIONS × 4 accumulations × 2n³; runMatrixPeak with store checks the
// results (each accumulator = ITERATIONS × A·B, exact in f32) and is what the tests call.
import code from '../shaders/bench-matrix.wgsl?raw';
import { GPU_WARMUP_MS, timeComputePasses, type GpuTiming } from '../src/gpu/gpu-timing';
import { readBackWords } from '../src/kernels/kv-bindings';
import { subgroupMatrixSize, type AdapterInfoWithSubgroups } from '../src/kernels/paged-attention';

/** Subgroups per workgroup of the microkernel. */
const SUBGROUPS = 4;
/** Independent accumulations per loop step (the shader's c0 … c3). */
const ACCUMULATORS = 4;

export interface MatrixPeakShape {
  /** Square matrix size (8 or 16). */
  n: number;
  subgroupSize: number;
}

export interface MatrixRateResult extends MatrixPeakShape {
  tflops: number;
  timing: GpuTiming;
  subgroups: number;
}

/** The microkernel's shape on `device`, or undefined where it has no f16 subgroup matrices with f32 results at one subgroup size. */
export function matrixPeakShape(device: GPUDevice, info: AdapterInfoWithSubgroups | undefined): MatrixPeakShape | undefined {
  const n = subgroupMatrixSize(device, info);
  if (n === undefined || !info?.subgroupMinSize) return undefined;
  return { n, subgroupSize: info.subgroupMinSize };
}

/** The microkernel's pipeline, uniform and sink for `workgroups` workgroups of `iterations` steps. */
class MatrixPeakKernel {
  readonly params: GPUBuffer;
  readonly sink: GPUBuffer;
  readonly group: GPUBindGroup;
  readonly x: number;
  readonly y: number;
  readonly subgroups: number;

  private constructor(readonly pipeline: GPUComputePipeline, device: GPUDevice, readonly shape: MatrixPeakShape, workgroups: number, store: boolean) {
    const { n } = shape;
    this.x = Math.min(workgroups, device.limits.maxComputeWorkgroupsPerDimension);
    this.y = Math.ceil(workgroups / this.x);
    this.subgroups = this.x * this.y * SUBGROUPS;
    this.params = device.createBuffer({ label: 'bench-matrix-params', size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(this.params, 0, new Uint32Array([store ? 1 : 0, 0, 0, 0]));
    // Without store nothing is written: one subgroup's matrices (the least the binding may hold).
    const sinkBytes = (store ? this.subgroups : 1) * ACCUMULATORS * n * n * 4;
    this.sink = device.createBuffer({ label: 'bench-matrix-sink', size: sinkBytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    this.group = device.createBindGroup({
      layout: this.pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: this.params } },
        { binding: 1, resource: { buffer: this.sink } },
      ],
    });
  }

  /** Builds the kernel; throws, naming the device's message, where its shader, pipeline or bindings are invalid there. */
  static async create(device: GPUDevice, shape: MatrixPeakShape, workgroups: number, iterations: number, store: boolean): Promise<MatrixPeakKernel> {
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ label: 'bench-matrix', code: code.replaceAll('MATRIX_N', String(shape.n)) });
    const pipeline = device.createComputePipeline({
      label: 'bench-matrix',
      layout: 'auto',
      compute: { module, entryPoint: 'main', constants: { ITERATIONS: iterations, SG_SIZE: shape.subgroupSize, SUBGROUPS } },
    });
    const kernel = new MatrixPeakKernel(pipeline, device, shape, workgroups, store);
    const error = await device.popErrorScope();
    if (error) {
      kernel.destroy();
      throw new Error(`the subgroup-matrix microkernel (${shape.n} × ${shape.n}) could not be built: ${error.message}`);
    }
    return kernel;
  }

  record(pass: GPUComputePassEncoder): void {
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, this.group);
    pass.dispatchWorkgroups(this.x, this.y);
  }

  destroy(): void {
    this.params.destroy();
    this.sink.destroy();
  }
}

/**
 * Runs the microkernel once with its results stored and returns them: ACCUMULATORS row-major n × n
 * matrices per subgroup, each ITERATIONS × A·B (matrixPeakOperands).
 */
export async function runMatrixPeak(device: GPUDevice, shape: MatrixPeakShape, workgroups: number, iterations: number): Promise<Float32Array> {
  const kernel = await MatrixPeakKernel.create(device, shape, workgroups, iterations, true);
  try {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    kernel.record(pass);
    pass.end();
    device.queue.submit([encoder.finish()]);
    return new Float32Array((await readBackWords(device, kernel.sink)).buffer);
  } finally {
    kernel.destroy();
  }
}

/** The shader's operands (row-major n × n) and their product A·B in f64, what each accumulator step adds. */
export function matrixPeakOperands(n: number): { left: Float64Array; right: Float64Array; product: Float64Array } {
  const left = Float64Array.from({ length: n * n }, (_, i) => (i % 7) * 0.125);
  const right = Float64Array.from({ length: n * n }, (_, i) => (i % 5) * 0.0625);
  const product = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += left[i * n + k]! * right[k * n + j]!;
      product[i * n + j] = s;
    }
  }
  return { left, right, product };
}

/** Times the microkernel (nothing stored) and returns its rate. */
export async function measureMatrixRate(
  device: GPUDevice,
  shape: MatrixPeakShape,
  options: { workgroups?: number; iterations?: number; warmupMs?: number } = {},
): Promise<MatrixRateResult> {
  const iterations = options.iterations ?? 4096;
  const kernel = await MatrixPeakKernel.create(device, shape, options.workgroups ?? 4096, iterations, false);
  try {
    const timing = await timeComputePasses(device, (pass) => kernel.record(pass), {
      iterations: 5,
      warmup: 1,
      minRegionMs: 50,
      warmupMs: options.warmupMs ?? GPU_WARMUP_MS,
    });
    const flops = kernel.subgroups * iterations * ACCUMULATORS * 2 * shape.n ** 3;
    if (!(timing.seconds > 0)) throw new Error(`the subgroup-matrix microkernel timed ${timing.seconds} s: no usable rate`);
    return { ...shape, tflops: flops / timing.seconds / 1e12, timing, subgroups: kernel.subgroups };
  } finally {
    kernel.destroy();
  }
}
