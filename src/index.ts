// Public entry point of webgpu-paged-attention.
export { PagedKVCache } from './cache/paged-kv-cache';
export type {
  AttendEntry,
  AttendOptions,
  BlockMap,
  CacheStats,
  CreateSequenceOptions,
  EncodeAttentionArgs,
  EncodedAttentionEntry,
  EncodeWriteKVArgs,
  PrepareAttentionOptions,
  SequenceInfo,
  CreateSequenceWaitOptions,
} from './cache/cache-types';
export type { PagedKVCacheOptions } from './cache/config';
export type { WaitOptions } from './cache/block-waiters';
export { createGpu, describeGpu } from './gpu/create-gpu';
export type { CreateGpuOptions, Gpu, GpuFeatures, GpuInfo } from './gpu/create-gpu';
export { probeParallelism, probeResidency, DEFAULT_RESIDENT_WORKGROUPS } from './gpu/parallelism-probe';
export type { ParallelismProbe, ProbeSample, ProbeShape } from './gpu/parallelism-probe';
export * from './errors';
export * from './table';
export * from './prefix';
export { computeKvLayout, MAX_KV_CHUNKS } from './pool/kv-layout';
export type { KvDtype, KvLayout } from './pool/kv-layout';
export { pagedAttentionRef, attentionRef } from './kernels/attention.ref';
export { PagedAttentionKernel } from './kernels/paged-attention';
export type { AdapterInfoWithSubgroups, AttentionTuning, DecodeKvWrite, PagedAttentionArgs, PagedAttentionOptions } from './kernels/paged-attention';
export { checkAttentionTuning, describeTuning, SOFTWARE_ADAPTER_TUNING } from './kernels/attention-tuning';
export {
  tuneAttention,
  DEFAULT_DECODE_SHAPES,
  DEFAULT_PREFILL_SHAPE,
  QUICK_DECODE_SHAPES,
  QUICK_PREFILL_SHAPE,
} from './tuning/tune-attention';
export type { AttentionTuningResult, DecodeShape, PrefillShape, TuneAttentionOptions, TuningPart } from './tuning/tune-attention';
export type { SearchTrial, TrialOutcome, TuningKnob } from './tuning/tuning-search';
export { describeTrial } from './tuning/tuning-search';
export { defaultDecodeKnobs, defaultPrefillKnobs } from './tuning/tuning-knobs';
export type { AttentionEntry } from './kernels/attention-types';
export { WriteKvKernel } from './kernels/write-kv';
export { FlushStagedKvKernel, stagedKvRowBytes, type FlushStagedKvArgs } from './kernels/flush-staged-kv';
export { CopyBlocksKernel } from './kernels/copy-blocks';
export { GatherKvKernel } from './kernels/gather-kv';
export { f32ToF16Bits, f16BitsToF32, roundToF16 } from './kernels/f16';
