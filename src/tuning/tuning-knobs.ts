// The knobs the autotuner tries by default, in the order it tries them (tuning-search.ts: each on top
// of the winners before it). Invariants: every value is a valid AttentionTuning patch
// (checkAttentionTuning accepts it) and every kernel it selects is one the correctness tests cover
// (test/kernels/attention-stream, -blocked, -mma, -paged); the base tuning (the built-in defaults) is
// not among the values. Decode knobs move the decode kernel and split-K only; prefill knobs move the
// prefill kernel only, so the two searches are independent.
import type { TuningKnob } from './tuning-search';

/** Decode knobs; the split targets are relative to the device's resident workgroups. */
export function defaultDecodeKnobs(residentWorkgroups: number): TuningKnob[] {
  return [
    { name: 'decode kernel', values: [{ streamDecode: false }] },
    { name: 'lane reduction', values: [{ stream: { reduction: 'shared' } }] },
    { name: 'lanes per key row', values: [{ stream: { maxLanes: 4 } }, { stream: { maxLanes: 16 } }] },
    { name: 'unroll', values: [{ stream: { unroll: 2 } }, { stream: { unroll: 8 } }] },
    { name: 'heads per workgroup', values: [{ stream: { maxHeads: 2 } }] },
    { name: 'queries in workgroup memory', values: [{ stream: { queryInSmem: false } }] },
    { name: 'workgroup size', values: [{ stream: { workgroupSize: 64 } }, { stream: { workgroupSize: 256 } }] },
    { name: 'lazy rescale', values: [{ stream: { rescaleThreshold: 8 } }] },
    { name: 'prefetch', values: [{ stream: { prefetch: false } }] },
    {
      name: 'split length',
      values: [{ decodeMinKeysPerSplit: 256 }, { decodeMinKeysPerSplit: 1024 }, { decodeMinKeysPerSplit: 2048 }],
    },
    {
      name: 'split target',
      values: [{ decodeTargetWorkgroups: Math.max(1, Math.round(residentWorkgroups / 2)) }, { decodeTargetWorkgroups: 2 * residentWorkgroups }],
    },
  ];
}

/** Prefill knobs; `deviceWorkgroupBytes` is the device's workgroup-memory limit. */
export function defaultPrefillKnobs(deviceWorkgroupBytes: number): TuningKnob[] {
  const knobs: TuningKnob[] = [
    { name: 'subgroup matrices', values: [{ prefillMatrix: false }] },
    { name: 'matrix rescale threshold', values: [{ prefillRescaleThreshold: 0 }, { prefillRescaleThreshold: 16 }] },
    { name: 'register-blocked', values: [{ prefillBlocked: false }] },
    { name: 'f32 tiles', values: [{ blocked: { stagedF32: true } }] },
    { name: 'tile rows', values: [{ blocked: { maxRows: 64 } }, { blocked: { maxRows: 32 } }] },
    { name: 'key tile', values: [{ blocked: { maxKeyTile: 16 } }] },
  ];
  if (deviceWorkgroupBytes > 32 * 1024) knobs.push({ name: 'workgroup memory', values: [{ blocked: { workgroupBytes: deviceWorkgroupBytes } }] });
  return knobs;
}
