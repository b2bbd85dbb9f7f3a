// GPU timing for benchmarks and the parallelism probe. Invariants: a sample is one command buffer
// holding `repeats` back-to-back copies of the measured work, bracketed by two empty compute passes
// that write timestamps (GPU time of the whole region, however many passes the work records); the
// reported time is the median (or fastest) sample divided by `repeats`. `repeats` is chosen from a
// first measurement so that a region lasts at least `minRegionMs`, which keeps Dawn's timestamp
// quantization (about 0.1 ms unless the device disables it) and launch gaps out of the figure. With
// warmupMs, whole regions of the same work (about that much GPU time, sized from the first
// measurement) run just before the samples and are not counted. Without
// 'timestamp-query' the region is timed on the wall clock, submit to onSubmittedWorkDone (method 'wall').

export interface GpuTiming {
  /** Seconds per repetition of the work: the median sample (or the fastest, with statistic 'min'). */
  seconds: number;
  method: 'timestamp' | 'wall';
  /** Samples taken. */
  iterations: number;
  /** Repetitions of the work per sample. */
  repeats: number;
}

export interface TimingOptions {
  iterations?: number;
  warmup?: number;
  /** Shortest region (ms) a sample should cover; repeats grow to reach it (default 20). */
  minRegionMs?: number;
  /** At most this many repetitions per sample (default 1000). */
  maxRepeats?: number;
  /** Which sample to report: the median (default), or the fastest (noise on a busy host only adds time). */
  statistic?: 'median' | 'min';
  /**
   * Keep the GPU busy with the work for at least this long (ms of GPU time) right before the samples
   * (default 0). A GPU that idled while the host prepared the work (seconds of uploads or CPU checks)
   * runs its first tens of milliseconds at lower clocks; on the H100 that halved a read kernel's figure.
   */
  warmupMs?: number;
}

/**
 * GPU time (ms) the benchmarks and the autotuner keep a GPU busy before sampling (TimingOptions.warmupMs):
 * on the H100, regions timed right after seconds of host-side preparation ran at up to half speed.
 */
export const GPU_WARMUP_MS = 200;

type Encode = (encoder: GPUCommandEncoder) => void;

/** Seconds of one repetition of `encode` (which records passes into the encoder it is given): the median sample, or the fastest. */
export async function timeGpu(device: GPUDevice, encode: Encode, options: TimingOptions = {}): Promise<GpuTiming> {
  const iterations = options.iterations ?? 7;
  const warmup = options.warmup ?? 2;
  const minRegion = (options.minRegionMs ?? 20) / 1e3;
  const maxRepeats = options.maxRepeats ?? 1000;
  const stamps = device.features.has('timestamp-query') ? new RegionStamps(device, iterations) : undefined;
  const measure = async (repeats: number, samples: number): Promise<number[]> => {
    const encoder = device.createCommandEncoder();
    const times: number[] = [];
    if (stamps) {
      for (let s = 0; s < samples; s++) {
        stamps.mark(encoder, 2 * s);
        for (let r = 0; r < repeats; r++) encode(encoder);
        stamps.mark(encoder, 2 * s + 1);
      }
      return (await stamps.read(encoder, samples)).map((t) => t / repeats);
    }
    for (let s = 0; s < samples; s++) {
      const start = performance.now();
      const e = s === 0 ? encoder : device.createCommandEncoder();
      for (let r = 0; r < repeats; r++) encode(e);
      device.queue.submit([e.finish()]);
      await device.queue.onSubmittedWorkDone();
      times.push((performance.now() - start) / 1e3 / repeats);
    }
    return times;
  };
  for (let i = 0; i < warmup; i++) await measure(1, 1);
  const first = median(await measure(1, 1));
  // Quantized timestamps can read 0 for a short region: grow from the largest plausible repeat count.
  const repeats = first > 0 ? Math.min(maxRepeats, Math.max(1, Math.ceil(minRegion / first))) : maxRepeats;
  const warmRegions = first > 0 ? Math.ceil((options.warmupMs ?? 0) / 1e3 / (first * repeats)) : 0;
  // Whole regions, one command buffer each, so the busy period ends right before the first sample.
  for (let i = 0; i < warmRegions; i++) await measure(repeats, 1);
  const samples = await measure(repeats, iterations);
  stamps?.destroy();
  return { seconds: options.statistic === 'min' ? Math.min(...samples) : median(samples), method: stamps ? 'timestamp' : 'wall', iterations, repeats };
}

/** Timestamp pairs written by empty marker passes, resolved and read back per measurement. */
class RegionStamps {
  private readonly querySet: GPUQuerySet;
  private readonly resolve: GPUBuffer;
  private readonly readback: GPUBuffer;

  constructor(
    private readonly device: GPUDevice,
    samples: number,
  ) {
    this.querySet = device.createQuerySet({ type: 'timestamp', count: 2 * samples });
    this.resolve = device.createBuffer({ size: 16 * samples, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    this.readback = device.createBuffer({ size: 16 * samples, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  mark(encoder: GPUCommandEncoder, index: number): void {
    encoder.beginComputePass({ timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: index } }).end();
  }

  /** Submits `encoder` and returns the seconds between each pair of marks. */
  async read(encoder: GPUCommandEncoder, samples: number): Promise<number[]> {
    encoder.resolveQuerySet(this.querySet, 0, 2 * samples, this.resolve, 0);
    encoder.copyBufferToBuffer(this.resolve, 0, this.readback, 0, 16 * samples);
    this.device.queue.submit([encoder.finish()]);
    await this.readback.mapAsync(GPUMapMode.READ, 0, 16 * samples);
    const t = new BigUint64Array(this.readback.getMappedRange(0, 16 * samples).slice(0));
    this.readback.unmap();
    return Array.from({ length: samples }, (_, s) => Number(t[2 * s + 1]! - t[2 * s]!) / 1e9);
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolve.destroy();
    this.readback.destroy();
  }
}

/** Times `record` (dispatches into one compute pass) with timeGpu. */
export function timeComputePasses(
  device: GPUDevice,
  record: (pass: GPUComputePassEncoder) => void,
  options: TimingOptions = {},
): Promise<GpuTiming> {
  return timeGpu(
    device,
    (encoder) => {
      const pass = encoder.beginComputePass();
      record(pass);
      pass.end();
    },
    options,
  );
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
