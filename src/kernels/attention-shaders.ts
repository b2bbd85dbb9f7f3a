// WGSL sources of the paged-attention kernels.
// Invariants: a decode/prefill module is [enable subgroups] + one lanes file (subgroup or workgroup-
// memory reductions, same function names) + the shared types + the shared tile engine + the entry
// file, and the merge module is the shared types + the merge file; the assembled
// text depends only on (kind, subgroups), so each gets a stable pipeline-cache name. Sizes never enter
// the text: they are override constants.
import typesCode from '../../shaders/paged-attention-types.wgsl?raw';
import commonCode from '../../shaders/paged-attention-common.wgsl?raw';
import decodeCode from '../../shaders/paged-attention-decode.wgsl?raw';
import prefillCode from '../../shaders/paged-attention-prefill.wgsl?raw';
import mergeCode from '../../shaders/paged-attention-merge.wgsl?raw';
import lanesSubgroupCode from '../../shaders/paged-attention-lanes-subgroup.wgsl?raw';
import lanesSharedCode from '../../shaders/paged-attention-lanes-shared.wgsl?raw';
import type { AttentionKind } from './attention-config';

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
    commonCode,
    kind === 'decode' ? decodeCode : prefillCode,
  ];
  return {
    name: `paged-attention-${kind}${subgroups ? '-subgroups' : ''}`,
    code: parts.join('\n'),
    entryPoint: kind === 'decode' ? 'decode_main' : 'prefill_main',
  };
}

export function mergeShader(): ShaderSource {
  return { name: 'paged-attention-merge', code: `${typesCode}\n${mergeCode}`, entryPoint: 'merge_main' };
}
