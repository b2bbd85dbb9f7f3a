// Decode kernel variants named on the command line of the decode benches (decode-sweep.ts,
// decode-occupancy.ts). Invariant: a name maps to exactly one AttentionTuning, and an unknown name or
// knob throws rather than timing the defaults under a wrong label.
import type { StreamDecodeTuning, StreamWorkgroupSize } from '../src/kernels/attention-config';
import type { AttentionTuning } from '../src/kernels/paged-attention';

/**
 * `tile`, or `stream` followed by knobs: -u<unroll> -t<target workgroups> -l<max lanes> -h<max heads>
 * -w<workgroup size> -k<min keys per split> -r<lazy rescale threshold> -m<KiB of workgroup memory per
 * merge round> -np / -pf (no prefetch / prefetch) -qs / -qr (queries in workgroup memory / in registers)
 * -sh (lanes add up their scores through workgroup memory, not subgroup shuffles: the portable form)
 * -hs (q·k in f16 arithmetic, where the device has shader-f16) -wk (the decode stores the new K/V:
 * decodeWritesKv, timed storing where the bench can), e.g. stream-u4-l8-w256; or `mma` (on
 * subgroup matrices, where the device has them) followed by -s<keys per step> -t<target workgroups>
 * -k<min keys per split>, e.g. mma-s64.
 */
export function decodeTuningOf(name: string): AttentionTuning {
  if (name === 'tile') return { streamDecode: false };
  if (name.startsWith('mma')) {
    const tuning: AttentionTuning = { decodeMatrix: true };
    for (const knob of name.split('-').slice(1)) {
      const n = Number(knob.slice(1));
      if (knob[0] === 's') tuning.decodeMatrixKeyTile = n as 16 | 32 | 64;
      else if (knob[0] === 't') tuning.decodeTargetWorkgroups = n;
      else if (knob[0] === 'k') tuning.decodeMinKeysPerSplit = n;
      else throw new Error(`unknown knob ${knob} in ${name}`);
    }
    return tuning;
  }
  if (!name.startsWith('stream')) throw new Error(`unknown variant ${name}`);
  const stream: StreamDecodeTuning = {};
  const tuning: AttentionTuning = { stream };
  for (const knob of name.split('-').slice(1)) {
    const n = Number(knob.slice(1));
    if (knob === 'np') stream.prefetch = false;
    else if (knob === 'pf') stream.prefetch = true;
    else if (knob === 'sh') stream.reduction = 'shared';
    else if (knob === 'qs') stream.queryInSmem = true;
    else if (knob === 'qr') stream.queryInSmem = false;
    else if (knob === 'hs') stream.halfScores = true;
    else if (knob === 'wk') tuning.decodeWritesKv = true;
    else if (knob[0] === 'k') tuning.decodeMinKeysPerSplit = n;
    else if (knob[0] === 'r') stream.rescaleThreshold = n;
    else if (knob[0] === 'm') stream.mergeBytes = n * 1024;
    else if (knob[0] === 'u') stream.unroll = n;
    else if (knob[0] === 't') tuning.decodeTargetWorkgroups = n;
    else if (knob[0] === 'l') stream.maxLanes = n;
    else if (knob[0] === 'h') stream.maxHeads = n;
    else if (knob[0] === 'w') stream.workgroupSize = n as StreamWorkgroupSize;
    else throw new Error(`unknown knob ${knob} in ${name}`);
  }
  return tuning;
}
