// GPU timing for benchmarks. Invariants: a measurement records `iterations` repetitions of the same
// passes after `warmup` unmeasured ones, and reports the median per-iteration time; it uses
// timestamp queries around each compute pass when the device has 'timestamp-query' (GPU time only),
// and otherwise wall time from submit to onSubmittedWorkDone (includes submission overhead; noted in
// the result as method 'wall').

export interface GpuTiming {
  /** Median seconds per iteration. */
  seconds: number;
  method: 'timestamp' | 'wall';
  iterations: number;
}

/** `record(pass)` records one iteration's dispatches into an open compute pass. */
export async function timeComputePasses(
  device: GPUDevice,
  record: (pass: GPUComputePassEncoder) => void,
  options: { iterations?: number; warmup?: number } = {},
): Promise<GpuTiming> {
  const iterations = options.iterations ?? 10;
  const warmup = options.warmup ?? 2;
  const useTimestamps = device.features.has('timestamp-query');
  for (let i = 0; i < warmup; i++) {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    record(pass);
    pass.end();
    device.queue.submit([encoder.finish()]);
  }
  await device.queue.onSubmittedWorkDone();
  const samples: number[] = [];
  if (useTimestamps) {
    const querySet = device.createQuerySet({ type: 'timestamp', count: 2 * iterations });
    const resolve = device.createBuffer({ size: 16 * iterations, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const read = device.createBuffer({ size: 16 * iterations, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = device.createCommandEncoder();
    for (let i = 0; i < iterations; i++) {
      const pass = encoder.beginComputePass({
        timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
      });
      record(pass);
      pass.end();
    }
    encoder.resolveQuerySet(querySet, 0, 2 * iterations, resolve, 0);
    encoder.copyBufferToBuffer(resolve, 0, read, 0, 16 * iterations);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const stamps = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    for (let i = 0; i < iterations; i++) samples.push(Number(stamps[2 * i + 1]! - stamps[2 * i]!) / 1e9);
    querySet.destroy();
    resolve.destroy();
    read.destroy();
    // Some drivers report zeros when timestamps are quantized away; fall back to wall time then.
    if (samples.every((s) => s > 0)) return { seconds: median(samples), method: 'timestamp', iterations };
    samples.length = 0;
  }
  for (let i = 0; i < iterations; i++) {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    record(pass);
    pass.end();
    const start = performance.now();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    samples.push((performance.now() - start) / 1e3);
  }
  return { seconds: median(samples), method: 'wall', iterations };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
