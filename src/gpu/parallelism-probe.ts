// Measures how many 256-invocation workgroups the device runs at once (its streaming multiprocessors or
// compute units × the workgroups each holds), which WebGPU does not report; split-K sizes decode work
// from it. Invariants:
//   - The probe kernel (shaders/parallelism-probe.wgsl) makes a workgroup's time a latency chain that
//     holds its invocations without loading the device, so W workgroups take one workgroup's time while
//     they fit at once and about twice that once W passes what fits.
//   - findResidentWorkgroups answers the largest count timed that took under SLOW_FACTOR × one
//     workgroup's time, searched by doubling and then bisecting to within 1/32 (never above the
//     first slow count, never below 1).
//   - probeParallelism measures once per device (memoized in a WeakMap) and never throws: when the device
//     cannot run the probe it answers DEFAULT_RESIDENT_WORKGROUPS with method 'default' and the reason.
//   - probeResidency measures the same for other workgroup shapes (invocations, workgroup memory held)
//     every time it is called, and throws when the device cannot run that shape.
import probeCode from '../../shaders/parallelism-probe.wgsl?raw';
import { timeGpu } from './gpu-timing';

/** Invocations per probe workgroup (the streaming decode kernel's workgroup size). */
export const PROBE_WORKGROUP_SIZE = 256;
/** What an NVIDIA H100 SXM holds: 132 SMs × 8 workgroups of 256 invocations (2048 per SM). */
export const DEFAULT_RESIDENT_WORKGROUPS = 8 * 132;
/** A count is "slow" (a second wave ran) when it took this many times one workgroup's time. */
export const SLOW_FACTOR = 1.5;
/** Workgroup memory of the default probe: its ring of 64 words. */
const MIN_PROBE_BYTES = 256;
/** The probe stops searching above this many workgroups. */
export const MAX_PROBED_WORKGROUPS = 1 << 16;
/**
 * Shortest time of one workgroup's chain, so that launch overhead (and, timed on the wall clock, the
 * wait for the queue) stays a small part of it.
 */
const MIN_CHAIN_SECONDS = { timestamp: 200e-6, wall: 1e-3 };
const FIRST_STEPS = 512;
const MAX_STEPS = 1 << 22;
/** The chain grows at most this much per calibration round (a quantized first time can read near 0). */
const MAX_STEP_GROWTH = 16;

/** A probe workgroup's shape: invocations, and bytes of workgroup memory each holds. */
export interface ProbeShape {
  /** A multiple of 32, at least 64 (default PROBE_WORKGROUP_SIZE). */
  workgroupSize?: number;
  /** A multiple of 4, at least 256 (default 256, the chain's ring). */
  workgroupBytes?: number;
}

export interface ProbeSample {
  workgroups: number;
  seconds: number;
}

export interface ParallelismProbe {
  /** Workgroups of PROBE_WORKGROUP_SIZE invocations that ran at once. */
  residentWorkgroups: number;
  /** How the times were taken, or 'default' when the probe could not run. */
  method: 'timestamp' | 'wall' | 'default';
  /** The counts timed, in order, with the seconds each took (the first is one workgroup). */
  samples: ProbeSample[];
  /** Why the default was used (method 'default'). */
  reason?: string;
}

/**
 * The largest workgroup count that runs in one wave, given `time(w)` = seconds for w workgroups of the
 * probe (searched up to maxWorkgroups).
 */
export async function findResidentWorkgroups(
  time: (workgroups: number) => Promise<number>,
  maxWorkgroups: number,
): Promise<{ residentWorkgroups: number; samples: ProbeSample[] }> {
  const samples: ProbeSample[] = [];
  const timed = async (workgroups: number): Promise<number> => {
    const seconds = await time(workgroups);
    samples.push({ workgroups, seconds });
    return seconds;
  };
  const one = await timed(1);
  const fits = async (workgroups: number): Promise<boolean> => (await timed(workgroups)) < SLOW_FACTOR * one;
  let fast = 1;
  let slow: number | undefined;
  for (let w = 2; slow === undefined && fast < maxWorkgroups; w = Math.min(2 * w, maxWorkgroups)) {
    if (await fits(w)) fast = w;
    else slow = w;
  }
  if (slow === undefined) return { residentWorkgroups: fast, samples };
  while (slow - fast > Math.max(1, fast / 32)) {
    const mid = Math.floor((fast + slow) / 2);
    if (await fits(mid)) fast = mid;
    else slow = mid;
  }
  return { residentWorkgroups: fast, samples };
}

/** One line for the probe: the count, and how it was found. */
export function describeParallelism(p: ParallelismProbe): string {
  if (p.method === 'default') return `${p.residentWorkgroups} (default: the probe could not run: ${p.reason ?? 'unknown'})`;
  return `${p.residentWorkgroups} of 256 invocations (probed, ${p.method} timing, ${p.samples.length} counts timed)`;
}

const probes = new WeakMap<GPUDevice, Promise<ParallelismProbe>>();

/** Measures (once per device) how many 256-invocation workgroups `device` runs at once. */
export function probeParallelism(device: GPUDevice): Promise<ParallelismProbe> {
  let probe = probes.get(device);
  if (!probe) {
    probe = runProbe(device).catch((error: unknown) => ({
      residentWorkgroups: DEFAULT_RESIDENT_WORKGROUPS,
      method: 'default' as const,
      samples: [],
      reason: error instanceof Error ? error.message : String(error),
    }));
    probes.set(device, probe);
  }
  return probe;
}

/**
 * How many workgroups of `shape` the device runs at once, measured now (not memoized): with
 * workgroupBytes it shows how much workgroup memory a compute unit gives its workgroups, which WebGPU
 * does not report either. Throws where the device cannot run the shape.
 */
export function probeResidency(device: GPUDevice, shape: ProbeShape): Promise<ParallelismProbe> {
  return runProbe(device, shape);
}

async function runProbe(device: GPUDevice, shape: ProbeShape = {}): Promise<ParallelismProbe> {
  const kernel = await ProbeKernel.create(device, shape);
  try {
    // Lengthen the chain until one workgroup's time dwarfs a dispatch's fixed cost.
    let steps = FIRST_STEPS;
    let one = await kernel.time(1, steps);
    const minChain = MIN_CHAIN_SECONDS[kernel.method];
    while (one < minChain && steps < MAX_STEPS) {
      const growth = Math.min(MAX_STEP_GROWTH, Math.max(2, Math.ceil((1.5 * minChain) / Math.max(one, 1e-9))));
      steps = Math.min(MAX_STEPS, steps * growth);
      one = await kernel.time(1, steps);
    }
    const maxWorkgroups = Math.min(MAX_PROBED_WORKGROUPS, device.limits.maxComputeWorkgroupsPerDimension);
    const found = await findResidentWorkgroups((workgroups) => kernel.time(workgroups, steps), maxWorkgroups);
    return { ...found, method: kernel.method };
  } finally {
    kernel.destroy();
  }
}

/** The probe kernel on one device: times a dispatch of W workgroups whose chains are `steps` long. */
export class ProbeKernel {
  method: 'timestamp' | 'wall' = 'wall';
  private steps = -1;

  private constructor(
    private readonly device: GPUDevice,
    private readonly params: GPUBuffer,
    private readonly sink: GPUBuffer,
    private readonly pipeline: GPUComputePipeline,
    private readonly group: GPUBindGroup,
  ) {}

  static async create(device: GPUDevice, shape: ProbeShape = {}): Promise<ProbeKernel> {
    const { limits } = device;
    const size = shape.workgroupSize ?? PROBE_WORKGROUP_SIZE;
    const bytes = shape.workgroupBytes ?? MIN_PROBE_BYTES;
    if (!Number.isInteger(size) || size < 64 || size % 32 !== 0) throw new Error(`probe workgroups are a multiple of 32 invocations, at least 64 (got ${size})`);
    if (!Number.isInteger(bytes) || bytes < MIN_PROBE_BYTES || bytes % 4 !== 0) {
      throw new Error(`probe workgroup memory is a multiple of 4 bytes, at least ${MIN_PROBE_BYTES} (got ${bytes})`);
    }
    if (limits.maxComputeInvocationsPerWorkgroup < size || limits.maxComputeWorkgroupSizeX < size) {
      throw new Error(`the device runs fewer than ${size} invocations per workgroup`);
    }
    if (limits.maxComputeWorkgroupStorageSize < bytes) {
      throw new Error(`the device gives a workgroup at most ${limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory (asked ${bytes})`);
    }
    device.pushErrorScope('validation');
    device.pushErrorScope('out-of-memory');
    const params = device.createBuffer({ label: 'parallelism-probe-params', size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    const sink = device.createBuffer({ label: 'parallelism-probe-sink', size: 16, usage: GPUBufferUsage.STORAGE });
    const pipeline = device.createComputePipeline({
      label: 'parallelism-probe',
      layout: 'auto',
      compute: {
        module: device.createShaderModule({ label: 'parallelism-probe', code: probeCode }),
        entryPoint: 'probe_main',
        constants: { WG_SIZE: size, RING_WORDS: bytes / 4 },
      },
    });
    const group = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: params } },
        { binding: 1, resource: { buffer: sink } },
      ],
    });
    const failure = (await Promise.all([device.popErrorScope(), device.popErrorScope()])).find((e) => e !== null);
    const kernel = new ProbeKernel(device, params, sink, pipeline, group);
    if (failure) {
      kernel.destroy();
      throw new Error(`the probe kernel could not be set up: ${failure.message}`);
    }
    return kernel;
  }

  /** Seconds one dispatch of `workgroups` workgroups takes (the fastest of five timed regions). */
  async time(workgroups: number, steps: number): Promise<number> {
    if (steps !== this.steps) {
      this.device.queue.writeBuffer(this.params, 0, new Uint32Array([steps, 0xffffffff, 0, 0]));
      this.steps = steps;
    }
    const timing = await timeGpu(
      this.device,
      (encoder) => {
        const pass = encoder.beginComputePass({ label: 'parallelism-probe' });
        pass.setPipeline(this.pipeline);
        pass.setBindGroup(0, this.group);
        pass.dispatchWorkgroups(workgroups);
        pass.end();
      },
      { iterations: 5, warmup: 1, minRegionMs: 2, maxRepeats: 64, statistic: 'min' },
    );
    this.method = timing.method;
    return timing.seconds;
  }

  destroy(): void {
    this.params.destroy();
    this.sink.destroy();
  }
}
