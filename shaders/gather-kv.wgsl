// gather-kv: reads one sequence's first `length` tokens out of the paged cache as f32
// [token][head][headDim] K and V arrays (the inverse of write-kv). Invariants:
//   - Token t lives in block blockTable[tableOffset + t / BLOCK_SIZE] (a global block id) at row
//     t % BLOCK_SIZE. A block id >= NUM_BLOCKS yields zeros.
//   - One invocation per cache word of one token and head: it reads that word from the K half and the
//     V half and writes 1 (f32: the same bits) or 2 (f16: unpack2x16float) output elements each.
//   - Outputs start at element `outOffset`; the grid is 2D like write-kv's.

// The pool geometry (BLOCK_SIZE … HEAD_DIM) comes from kv-layout.wgsl, prepended by the host.

struct Params {
  length: u32,
  tableOffset: u32,
  outOffset: u32,
  unused: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> blockTable: array<u32>;
@group(0) @binding(2) var<storage, read_write> kOut: array<u32>;
@group(0) @binding(3) var<storage, read_write> vOut: array<u32>;
@group(0) @binding(4) var<storage, read> chunk0: array<u32>;
@group(0) @binding(5) var<storage, read> chunk1: array<u32>;
@group(0) @binding(6) var<storage, read> chunk2: array<u32>;
@group(0) @binding(7) var<storage, read> chunk3: array<u32>;

fn loadWord(chunk: u32, index: u32) -> u32 {
  switch chunk {
    case 0u: { return chunk0[index]; }
    case 1u: { return chunk1[index]; }
    case 2u: { return chunk2[index]; }
    default: { return chunk3[index]; }
  }
}

fn storeElements(isV: bool, element: u32, word: u32) {
  if (F16) {
    let pair = unpack2x16float(word);
    if (isV) {
      vOut[element] = bitcast<u32>(pair.x);
      vOut[element + 1u] = bitcast<u32>(pair.y);
    } else {
      kOut[element] = bitcast<u32>(pair.x);
      kOut[element + 1u] = bitcast<u32>(pair.y);
    }
  } else if (isV) {
    vOut[element] = word;
  } else {
    kOut[element] = word;
  }
}

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) workgroup: vec3<u32>,
  @builtin(num_workgroups) workgroups: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
) {
  let index = (workgroup.y * workgroups.x + workgroup.x) * 64u + local;
  let wordsPerToken = NUM_KV_HEADS * WORDS_PER_ROW;
  let token = index / wordsPerToken;
  if (token >= params.length) { return; }
  let head = (index % wordsPerToken) / WORDS_PER_ROW;
  let word = index % WORDS_PER_ROW;

  let block = blockTable[params.tableOffset + token / BLOCK_SIZE];
  var kWord = 0u;
  var vWord = 0u;
  if (block < NUM_BLOCKS) {
    let chunk = block / BLOCKS_PER_CHUNK;
    let at = (block % BLOCKS_PER_CHUNK) * WORDS_PER_BLOCK + head * WORDS_PER_HEAD_BLOCK
      + (token % BLOCK_SIZE) * WORDS_PER_ROW + word;
    kWord = loadWord(chunk, at);
    vWord = loadWord(chunk, at + WORDS_PER_HALF);
  }
  let element = params.outOffset + token * NUM_KV_HEADS * HEAD_DIM + head * HEAD_DIM + word * (HEAD_DIM / WORDS_PER_ROW);
  storeElements(false, element, kWord);
  storeElements(true, element, vWord);
}
