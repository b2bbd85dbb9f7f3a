// The knobs the autotuner tries by default, in the order it tries them (tuning-search.ts: each on top
// of the winners before it): a kernel's own knobs before the switch to the next simpler kernel, so that
// a kernel is weighed as tuned. Invariants: every value is a valid AttentionTuning patch
// (checkAttentionTuning accepts it) and every kernel it selects is one the correctness tests cover
// (test/kernels/attention-stream, -blocked, -mma, -paged); the base tuning (the built-in defaults) is
// not among the values. Decode knobs move the decode kernel, split-K and whether the decode stores its
// K/V only; prefill knobs move the prefill kernel only, so the two searches are independent.
import type { TuningKnob } from './tuning-search';

/** Decode knobs; the split targets are relative to the device's resident workgroups (the default aims at half of them). */
export function defaultDecodeKnobs(residentWorkgroups: number): TuningKnob[] {
  return [
    { name: 'lane reduction', values: [{ stream: { reduction: 'shared' } }] },
    // Smaller merge rounds: less workgroup memory per workgroup, where that limits how many fit a compute unit.
    { name: 'merge round memory', values: [{ stream: { mergeBytes: 8 * 1024 } }, { stream: { mergeBytes: 4 * 1024 } }] },
    { name: 'lanes per key row', values: [{ stream: { maxLanes: 4 } }, { stream: { maxLanes: 16 } }] },
    { name: 'unroll', values: [{ stream: { unroll: 2 } }, { stream: { unroll: 8 } }] },
    { name: 'heads per workgroup', values: [{ stream: { maxHeads: 2 } }] },
    { name: 'queries in workgroup memory', values: [{ stream: { queryInSmem: false } }] },
    // 512 caps registers per invocation on NVIDIA (65536 / 512); refused where the device runs fewer invocations.
    { name: 'workgroup size', values: [{ stream: { workgroupSize: 64 } }, { stream: { workgroupSize: 256 } }, { stream: { workgroupSize: 512 } }] },
    { name: 'lazy rescale', values: [{ stream: { rescaleThreshold: 8 } }] },
    { name: 'prefetch', values: [{ stream: { prefetch: true } }] },
    // Where the device has shader-f16 (elsewhere the same kernels): fewer instructions per K word.
    { name: 'f16 scores', values: [{ stream: { halfScores: true } }] },
    // One dispatch per layer instead of write-kv + decode (the streaming kernel with subgroup reduction).
    { name: 'decode stores its K/V', values: [{ decodeWritesKv: true }] },
    // Where the device has subgroup matrices (elsewhere the same kernels): Q·Kᵀ and P·V of a GQA group on them.
    { name: 'decode on subgroup matrices', values: [{ decodeMatrix: true }, { decodeMatrix: true, decodeMatrixKeyTile: 64 }] },
    // The tile engine against the streaming kernel as tuned so far; the split knobs then tune the winner.
    { name: 'decode kernel', values: [{ streamDecode: false }] },
    {
      name: 'split length',
      values: [{ decodeMinKeysPerSplit: 256 }, { decodeMinKeysPerSplit: 512 }, { decodeMinKeysPerSplit: 2048 }],
    },
    {
      name: 'split target',
      values: [{ decodeTargetWorkgroups: Math.max(1, Math.round(residentWorkgroups / 4)) }, { decodeTargetWorkgroups: residentWorkgroups }],
    },
  ];
}

/** Prefill knobs; `deviceWorkgroupBytes` is the device's workgroup-memory limit. */
export function defaultPrefillKnobs(deviceWorkgroupBytes: number): TuningKnob[] {
  // The subgroup-matrix kernel (where the device has it: its subgroups per workgroup, row tiles per subgroup, keys per step,
  // whether K/V come straight from the pool, whether their V is loaded before the softmax and the next step's K early, whether a staged step's V goes into K's place, then its rescale threshold) is tuned, then weighed against the
  // register-blocked one, whose knobs then apply if it won; the tile engine comes last, against the
  // register-blocked kernel as tuned.
  return [
    { name: 'matrix subgroups per workgroup', values: [{ prefillMatrixSubgroups: 1 }, { prefillMatrixSubgroups: 4 }, { prefillMatrixSubgroups: 8 }] },
    { name: 'matrix row tiles per subgroup', values: [{ prefillMatrixRowTiles: 2 }] },
    { name: 'matrix keys per step', values: [{ prefillMatrixKeyTile: 32 }, { prefillMatrixKeyTile: 64 }] },
    { name: 'matrix K/V from the pool', values: [{ prefillMatrixDirectKv: false }] },
    { name: 'matrix V before the softmax', values: [{ prefillMatrixEarlyV: true }] },
    { name: 'matrix next K early', values: [{ prefillMatrixNextK: true }] },
    { name: "matrix V staged in K's place", values: [{ prefillMatrixReuseKForV: true }] },
    { name: 'matrix rescale threshold', values: [{ prefillRescaleThreshold: 0 }, { prefillRescaleThreshold: 16 }] },
    { name: 'subgroup matrices', values: [{ prefillMatrix: false }] },
    { name: 'f32 tiles', values: [{ blocked: { stagedF32: true } }] },
    { name: 'tile rows', values: [{ blocked: { maxRows: 64 } }, { blocked: { maxRows: 32 } }, { blocked: { maxRows: 16 } }] },
    { name: 'key tile', values: [{ blocked: { maxKeyTile: 16 } }, { blocked: { maxKeyTile: 8 } }] },
    ...(deviceWorkgroupBytes > 32 * 1024 ? [{ name: 'workgroup memory', values: [{ blocked: { workgroupBytes: 32 * 1024 } }] }] : []),
    // The tile shared by more invocations (more warps where workgroup memory holds one tile per compute unit);
    // refused where the device runs fewer invocations.
    { name: 'invocations per tile', values: [{ blocked: { workgroupSize: 256 } }, { blocked: { workgroupSize: 512 } }] },
    { name: 'keys per score block', values: [{ blocked: { maxScoreKeys: 2 } }, { blocked: { maxScoreKeys: 1 } }] },
    { name: 'register-blocked', values: [{ prefillBlocked: false }] },
  ];
}
