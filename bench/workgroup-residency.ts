// What limits how many workgroups a compute unit holds (not part of `npm run bench`): the parallelism
// probe (src/gpu/parallelism-probe.ts) run for workgroups that each hold more workgroup memory, next to
// the workgroup memory of the decode variants named. Where a variant's workgroup memory alone allows
// more resident workgroups than bench/decode-occupancy.ts sees, registers are the limit; where the
// probe already stops at that count for that many bytes, workgroup memory is, and a variant holding
// less (e.g. stream-m8, half the merge round) may fit more.
// Invariants: every count is measured in this run (none is assumed); compute units = the default
// probe's 256-invocation workgroups / 8 unless --sms names them (8 × 256 = 2048 invocations, the most an
// NVIDIA SM holds).
//   npx tsx bench/workgroup-residency.ts [--size 128] [--bytes 256,8192,…] [--variants stream,stream-m8] [--sms 132] [--json out.json]
// (a variant the device cannot run, e.g. stream-w1024 where workgroups hold fewer invocations, is named and skipped)
import { register } from 'node:module';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

register('./raw-import-hooks.mjs', import.meta.url); // shaders are imported as `?raw`, as under Vite

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '128' },
    bytes: { type: 'string', default: '256,4096,8192,12288,16384,18432,20480,24576,32768,49152,65536,102400' },
    variants: { type: 'string', default: 'stream,stream-m8,stream-m4,stream-qr-m4,stream-w512,stream-w1024' },
    sms: { type: 'string' },
    json: { type: 'string' },
  },
});
const { createGpu, PRECISE_TIMING_DAWN_OPTIONS } = await import('../src/gpu/create-gpu');
const { probeParallelism, probeResidency } = await import('../src/gpu/parallelism-probe');
const { PagedAttentionKernel } = await import('../src/kernels/paged-attention');
const { computeKvLayout } = await import('../src/pool/kv-layout');
const { BENCH_HEADS } = await import('./attention');
const { decodeTuningOf } = await import('./decode-variants');
const { ConfigError } = await import('../src/errors');

const gpu = await createGpu({ dawnOptions: PRECISE_TIMING_DAWN_OPTIONS });
const device = gpu.device;
const size = Number(values.size);
const limit = device.limits.maxComputeWorkgroupStorageSize;
const base = await probeParallelism(device);
const sms = Number(values.sms ?? Math.max(1, Math.round(base.residentWorkgroups / 8)));
if (!(sms >= 1)) throw new Error('--sms must be positive');
console.log(
  `${gpu.adapter.info.description}: ${base.residentWorkgroups} workgroups of 256 invocations at once (${base.method} timing), ` +
    `${sms} compute units assumed; workgroup memory limit ${limit} bytes`,
);

const probes: { workgroupSize: number; workgroupBytes: number; resident: number; perUnit: number }[] = [];
for (const bytes of values.bytes!.split(',').map(Number)) {
  if (bytes > limit) {
    console.log(`${String(bytes).padStart(7)} bytes: over the device's limit, not probed`);
    continue;
  }
  const probe = await probeResidency(device, { workgroupSize: size, workgroupBytes: bytes });
  const perUnit = probe.residentWorkgroups / sms;
  probes.push({ workgroupSize: size, workgroupBytes: bytes, resident: probe.residentWorkgroups, perUnit });
  console.log(
    `${String(bytes).padStart(7)} bytes × ${size} invocations: ${String(probe.residentWorkgroups).padStart(6)} at once, ` +
      `${perUnit.toFixed(2)} per compute unit (${((perUnit * bytes) / 1024).toFixed(1)} KiB of workgroup memory per unit)`,
  );
}

// The decode variants' workgroup memory at the bench's head shape (the kernel is created, not run).
const layout = computeKvLayout({ numLayers: 1, numKvHeads: BENCH_HEADS.numKvHeads, headDim: BENCH_HEADS.headDim, blockSize: 16, numBlocks: 64, kvDtype: 'f16' }, 1 << 30);
const variants: { variant: string; workgroupSize: number; workgroupBytes: number; roundGroups: number }[] = [];
for (const name of values.variants!.split(',')) {
  let kernel: InstanceType<typeof PagedAttentionKernel>;
  try {
    kernel = new PagedAttentionKernel(device, layout, {
      numQueryHeads: BENCH_HEADS.numQueryHeads,
      rowStride: 64,
      adapterInfo: gpu.adapter.info,
      subgroups: gpu.features.subgroups,
      tuning: decodeTuningOf(name),
    });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.log(`${name.padEnd(16)} not on this device: ${error.message}`);
    continue;
  }
  const config = kernel.streamDecodeConfig;
  kernel.destroy();
  if (!config) {
    console.log(`${name.padEnd(16)} not a streaming decode here`);
    continue;
  }
  variants.push({ variant: name, workgroupSize: config.workgroupSize, workgroupBytes: config.workgroupBytes, roundGroups: config.roundGroups });
  console.log(
    `${name.padEnd(16)} ${config.workgroupSize} invocations, ${config.workgroupBytes} bytes of workgroup memory ` +
      `(${config.roundGroups} of ${config.keyGroups} key groups per merge round, queries ${config.queryInSmem ? 'in workgroup memory' : 'in registers'})`,
  );
}
if (values.json) writeFileSync(values.json, JSON.stringify({ sms, base: base.residentWorkgroups, probes, variants }, null, 1));
process.exit(0);
