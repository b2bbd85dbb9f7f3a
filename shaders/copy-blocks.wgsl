// copy-blocks: copies whole KV blocks (K and V, all heads) for copy-on-write. Invariants:
//   - pairs[2i] is the source and pairs[2i + 1] the destination global block id of pair i; a pair
//     naming a block >= NUM_BLOCKS, or the same block twice, is skipped.
//   - Destinations are distinct and never a source of the same dispatch (no read/write races).
//   - One invocation per vec4<u32> of one pair's block: a block is 2 * NUM_KV_HEADS * BLOCK_SIZE rows
//     of WORDS_PER_ROW words and WORDS_PER_ROW is a multiple of 4 (headDim % 8 == 0), so a block is
//     whole vec4s. Source and destination may be in different chunks; all four slots are bound
//     read_write. The grid is 2D like write-kv's.

// The pool geometry (BLOCK_SIZE … HEAD_DIM) comes from kv-layout.wgsl, prepended by the host.

override VEC4S_PER_BLOCK: u32 = WORDS_PER_BLOCK / 4u;

struct Params {
  numPairs: u32,
  pairsOffset: u32,
  unused0: u32,
  unused1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> pairs: array<u32>;
@group(0) @binding(2) var<storage, read_write> chunk0: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> chunk1: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> chunk2: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> chunk3: array<vec4<u32>>;

fn loadVec4(chunk: u32, index: u32) -> vec4<u32> {
  switch chunk {
    case 0u: { return chunk0[index]; }
    case 1u: { return chunk1[index]; }
    case 2u: { return chunk2[index]; }
    default: { return chunk3[index]; }
  }
}

fn storeVec4(chunk: u32, index: u32, value: vec4<u32>) {
  switch chunk {
    case 0u: { chunk0[index] = value; }
    case 1u: { chunk1[index] = value; }
    case 2u: { chunk2[index] = value; }
    default: { chunk3[index] = value; }
  }
}

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) workgroup: vec3<u32>,
  @builtin(num_workgroups) workgroups: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
) {
  let index = (workgroup.y * workgroups.x + workgroup.x) * 64u + local;
  let pair = index / VEC4S_PER_BLOCK;
  if (pair >= params.numPairs) { return; }
  let part = index % VEC4S_PER_BLOCK;
  let src = pairs[params.pairsOffset + 2u * pair];
  let dst = pairs[params.pairsOffset + 2u * pair + 1u];
  if (src >= NUM_BLOCKS || dst >= NUM_BLOCKS || src == dst) { return; }
  let value = loadVec4(src / BLOCKS_PER_CHUNK, (src % BLOCKS_PER_CHUNK) * VEC4S_PER_BLOCK + part);
  storeVec4(dst / BLOCKS_PER_CHUNK, (dst % BLOCKS_PER_CHUNK) * VEC4S_PER_BLOCK + part, value);
}
