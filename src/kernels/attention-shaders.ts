// WGSL sources of the paged-attention kernels.
// Invariants: a tile-engine module (decode without subgroups, and portable prefill) is [enable
// subgroups] + one lanes file (subgroup or workgroup-memory reductions, same function names) + the
// shared types + KV access + the tile engine + its entry file, and its text depends only on `subgroups`
// (the kind and every size are override constants; the kind stays in the name, as a label); the
// streaming decode module is subgroups + lanes + types + KV access + its fixed file + its generated
// entry point, named by shape (decode-stream-source.ts; the variant that takes the new tokens' K/V
// adds f16-bits + paged-attention-decode-write, which stages them beside the read-only pool, and its
// name says so); the subgroup-matrix prefill module is the
// f16/subgroups/subgroup-matrix enables + lanes + types + KV access + its fixed file + its generated
// entry point, named by head dim and subgroup size; the register-blocked prefill module is the
// workgroup-memory lanes + types + KV access + its fixed file + its generated entry point, named by its
// tile shape (portable: it needs no feature); the merge module is the shared types + the merge
// file. Equal names mean equal texts, so each name is a stable pipeline-cache key.
import typesCode from '../../shaders/paged-attention-types.wgsl?raw';
import commonCode from '../../shaders/paged-attention-common.wgsl?raw';
import tileCode from '../../shaders/paged-attention-tile.wgsl?raw';
import decodeStreamCode from '../../shaders/paged-attention-decode-stream.wgsl?raw';
import kvAccessCode from '../../shaders/paged-attention-kv-access.wgsl?raw';
import prefillMmaCode from '../../shaders/paged-attention-prefill-mma.wgsl?raw';
import prefillBlockedCode from '../../shaders/paged-attention-prefill-blocked.wgsl?raw';
import mergeCode from '../../shaders/paged-attention-merge.wgsl?raw';
import decodeWriteCode from '../../shaders/paged-attention-decode-write.wgsl?raw';
import f16BitsCode from '../../shaders/f16-bits.wgsl?raw';
import lanesSubgroupCode from '../../shaders/paged-attention-lanes-subgroup.wgsl?raw';
import lanesSharedCode from '../../shaders/paged-attention-lanes-shared.wgsl?raw';
import type { AttentionKind, BlockedPrefillConfig, MmaPrefillConfig, StreamDecodeConfig } from './attention-config';
import { decodeStreamEntry } from './decode-stream-source';
import { prefillBlockedEntry } from './prefill-blocked-source';
import { prefillMmaEntry } from './prefill-mma-source';

export interface ShaderSource {
  name: string;
  code: string;
  entryPoint: string;
}

export function attentionShader(kind: AttentionKind, subgroups: boolean): ShaderSource {
  const parts = [
    subgroups ? 'enable subgroups;\n' : '',
    subgroups ? lanesSubgroupCode : lanesSharedCode,
    typesCode,
    kvAccessCode,
    commonCode,
    tileCode,
  ];
  return {
    name: `paged-attention-${kind}${subgroups ? '-subgroups' : ''}`,
    code: parts.join('\n'),
    entryPoint: 'tile_main',
  };
}

/**
 * The streaming decode kernel for one shape (with f16 enabled for halfScores); its entry point is generated. With
 * `writesKv` it also stages the new token's K/V for flush-staged-kv (paged-attention-decode-write.wgsl);
 * its pool bindings stay read-only.
 */
export function decodeStreamShader(config: StreamDecodeConfig, f16: boolean, numChunks: number, writesKv = false): ShaderSource {
  const shape =
    `h${config.headsPerWorkgroup}-w${config.words}-u${config.unroll}${config.prefetch ? '-p' : ''}` +
    `${config.queryInSmem ? '-qs' : ''}${config.rescaleThreshold === undefined ? '' : `-r${config.rescaleThreshold}`}` +
    `${config.reduction === 'shared' ? '-sh' : ''}${config.halfScores ? '-hs' : ''}` +
    `-${f16 ? 'f16' : 'f32'}-c${numChunks}${writesKv ? '-stage-kv' : ''}`;
  const writeParts = writesKv ? [f16BitsCode, decodeWriteCode] : [];
  return {
    name: `paged-attention-decode-stream-${shape}`,
    code: [
      ...(config.halfScores ? ['enable f16;\n'] : []),
      ...(config.reduction === 'subgroup' ? ['enable subgroups;\n', lanesSubgroupCode] : [lanesSharedCode]),
      typesCode,
      kvAccessCode,
      ...writeParts,
      decodeStreamCode,
      decodeStreamEntry(config, f16, numChunks, writesKv),
    ].join('\n'),
    entryPoint: 'decode_stream_main',
  };
}

/** Binding of the pool's f16 view in a subgroup-matrix prefill that loads K/V matrices from it (after results). */
export const POOL_HALF_VIEW_BINDING = 9;

/**
 * The KV access code for a layer of one chunk, with an f16 view of that chunk (`kv_half`, for matrix
 * loads): word loads name chunk 0 alone, so the other chunk slots are not part of the pipeline.
 */
function withPoolHalfView(code: string): string {
  const dispatch = /fn load_kv\(chunk: u32, i: u32\) -> vec4<u32> \{\n  switch \(chunk\) \{[^]*?\n  \}\n\}/;
  if (!dispatch.test(code)) throw new Error('paged-attention-kv-access.wgsl has no load_kv switch to replace');
  return (
    code.replace(dispatch, 'fn load_kv(chunk: u32, i: u32) -> vec4<u32> {\n  return kv_chunk0[i];\n}') +
    `\n@group(0) @binding(${POOL_HALF_VIEW_BINDING}) var<storage, read> kv_half: array<f16>;\n`
  );
}

/**
 * The subgroup-matrix kernel (prefill, and decode where asked) for one head dim, matrix size, subgroup size,
 * subgroup count, key tile and K/V source; its entry point is generated. With several subgroups the matrix
 * operands sit at per-subgroup offsets, and with K/V from the pool the loads sit in branches every lane of a
 * subgroup takes alike (decided from the same table window); Tint's subgroup-matrix uniformity diagnostic
 * (workgroup-scoped) would refuse both, so it is turned off for them: every matrix operation is still
 * reached by whole subgroups.
 */
export function prefillMmaShader(config: MmaPrefillConfig, headDim: number): ShaderSource {
  const directives =
    'enable f16;\nenable subgroups;\nenable chromium_experimental_subgroup_matrix;\n' +
    (config.subgroups > 1 || config.directKv ? 'diagnostic(off, chromium.subgroup_matrix_uniformity);\n' : '');
  const kvAccess = config.directKv ? withPoolHalfView(kvAccessCode) : kvAccessCode;
  return {
    name: `paged-attention-prefill-mma-d${headDim}-m${config.matrixSize}-s${config.subgroupSize}-g${config.subgroups}${config.rowTiles > 1 ? `x${config.rowTiles}` : ''}-k${config.keyTile}${config.directKv ? '-dkv' : ''}${config.earlyV ? '-ev' : ''}${config.nextK ? '-nk' : ''}${config.reuseKForV ? '-rv' : ''}`,
    code: [directives, lanesSubgroupCode, typesCode, kvAccess, prefillMmaCode, prefillMmaEntry(headDim, config)].join('\n'),
    entryPoint: 'prefill_mma_main',
  };
}

/** The register-blocked prefill kernel for one tile shape; its entry point is generated. */
export function prefillBlockedShader(config: BlockedPrefillConfig, headDim: number): ShaderSource {
  const shape =
    `d${headDim}-r${config.rows}-k${config.keyTile}-s${config.scoreRows}x${config.scoreKeys}-o${config.outRows}` +
    `-h${config.headsPerWorkgroup}-${config.elemsPerWord === 8 ? 'f16' : 'f32'}${config.stagedF32 ? '-sf32' : ''}-w${config.workgroupSize}`;
  return {
    name: `paged-attention-prefill-blocked-${shape}`,
    code: [lanesSharedCode, typesCode, kvAccessCode, prefillBlockedCode, prefillBlockedEntry(config, headDim)].join('\n'),
    entryPoint: 'prefill_blocked_main',
  };
}

export function mergeShader(): ShaderSource {
  return { name: 'paged-attention-merge', code: `${typesCode}\n${mergeCode}`, entryPoint: 'merge_main' };
}
