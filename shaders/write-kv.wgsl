// write-kv: stores the K and V rows of `numTokens` tokens into the paged cache (vLLM's
// reshape_and_cache). Invariants:
//   - One invocation per cache word of one token and head: it writes that word in the K half and in
//     the V half of the token's slot. slot = block * BLOCK_SIZE + offsetInBlock with a global block id;
//     slot 0xffffffff (padding) and blocks >= NUM_BLOCKS are skipped.
//   - Inputs are f32 [token][head][headDim] at `kOffset` / `vOffset` elements with `tokenStride`
//     elements between tokens. f32 caches copy the bits; f16 caches pack two elements per word (low
//     half = even element) converted by f16Bits (f16-bits.wgsl), bit-identical to the CPU's
//     f32ToF16Bits on every device (SwiftShader's pack2x16float, for one, drops the sticky bit when
//     rounding to f16 subnormals).
//   - Chunk c holds blocks [c*BLOCKS_PER_CHUNK, (c+1)*BLOCKS_PER_CHUNK); a block is [K | V], each
//     [NUM_KV_HEADS][BLOCK_SIZE][WORDS_PER_ROW] words.
//   - The grid is 2D (x * y workgroups); invocation index = (wg.y * num_workgroups.x + wg.x) * 64 + local.

// The pool geometry (BLOCK_SIZE … HEAD_DIM) comes from kv-layout.wgsl and f16Bits from f16-bits.wgsl,
// both prepended by the host.

const PADDING_SLOT: u32 = 0xffffffffu;

struct Params {
  numTokens: u32,
  kOffset: u32,
  vOffset: u32,
  tokenStride: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> slots: array<u32>;
@group(0) @binding(2) var<storage, read> kIn: array<u32>;
@group(0) @binding(3) var<storage, read> vIn: array<u32>;
@group(0) @binding(4) var<storage, read_write> chunk0: array<u32>;
@group(0) @binding(5) var<storage, read_write> chunk1: array<u32>;
@group(0) @binding(6) var<storage, read_write> chunk2: array<u32>;
@group(0) @binding(7) var<storage, read_write> chunk3: array<u32>;

fn storeWord(chunk: u32, index: u32, word: u32) {
  switch chunk {
    case 0u: { chunk0[index] = word; }
    case 1u: { chunk1[index] = word; }
    case 2u: { chunk2[index] = word; }
    default: { chunk3[index] = word; }
  }
}

fn inputWord(isV: bool, element: u32) -> u32 {
  if (isV) { return vIn[element]; }
  return kIn[element];
}

// The cache word holding input elements [element, element + HEAD_DIM / WORDS_PER_ROW).
fn cacheWord(isV: bool, element: u32) -> u32 {
  if (F16) {
    return f16Bits(inputWord(isV, element)) | (f16Bits(inputWord(isV, element + 1u)) << 16u);
  }
  return inputWord(isV, element);
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
  if (token >= params.numTokens) { return; }
  let head = (index % wordsPerToken) / WORDS_PER_ROW;
  let word = index % WORDS_PER_ROW;

  let slot = slots[token];
  if (slot == PADDING_SLOT) { return; }
  let block = slot / BLOCK_SIZE;
  if (block >= NUM_BLOCKS) { return; }
  let chunk = block / BLOCKS_PER_CHUNK;
  let kWord = (block % BLOCKS_PER_CHUNK) * WORDS_PER_BLOCK + head * WORDS_PER_HEAD_BLOCK
    + (slot % BLOCK_SIZE) * WORDS_PER_ROW + word;

  let element = token * params.tokenStride + head * HEAD_DIM + word * (HEAD_DIM / WORDS_PER_ROW);
  storeWord(chunk, kWord, cacheWord(false, params.kOffset + element));
  storeWord(chunk, kWord + WORDS_PER_HALF, cacheWord(true, params.vOffset + element));
}
