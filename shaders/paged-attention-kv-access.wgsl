// Access to the paged KV pool shared by every paged-attention kernel module (tile engine and streaming
// decode): the tile-independent overrides, the bindings, word loads from the ≤ 4 KV chunks, f16/f32
// unpacking, the block-table window and the workgroup → task mapping.
// Invariants: the including module declares `smem` (array<vec4<u32>>), the SMEM_TABLE region
// (TABLE_WINDOW / 4 vec4s) and `tid` (from a lanes file); bindings match attention-resources.ts and
// paged-attention.ts; table-window entries hold (block % blocks_per_chunk) << 2 | chunk, or NO_BLOCK
// for a missing or out-of-range id, so loads never divide by the chunk size.

override WG_SIZE: u32 = 128u;
override HEAD_DIM: u32;
override KV_F16: bool;
override HEADS_PER_WG: u32;
override ELEMS_PER_VEC: u32 = select(4u, 8u, KV_F16);
override VECS_PER_ROW: u32 = HEAD_DIM / ELEMS_PER_VEC;
override Q_VECS_PER_ROW: u32 = HEAD_DIM / 4u;

const TABLE_WINDOW: u32 = 128u;
const NEG_BIG: f32 = -1.0e30;
/** Table-window code of a missing or out-of-range block id. */
const NO_BLOCK: u32 = 0xffffffffu;
/** WorkItem.tail_block of an item whose blocks all come from the block table. */
const NO_TAIL: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> kv_chunk0: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> kv_chunk1: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> kv_chunk2: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> kv_chunk3: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> block_table: array<i32>;
@group(0) @binding(6) var<storage, read> queries: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> work_items: array<WorkItem>;
@group(0) @binding(8) var<storage, read_write> results: array<vec4<f32>>;

/** f32 at scalar index i of smem (vec4 i / 4, component i % 4). */
fn sm_get(i: u32) -> f32 {
  return bitcast<f32>(smem[i / 4u][i % 4u]);
}

fn sm_set(i: u32, v: f32) {
  smem[i / 4u][i % 4u] = bitcast<u32>(v);
}

fn load_kv(chunk: u32, i: u32) -> vec4<u32> {
  switch (chunk) {
    case 0u: { return kv_chunk0[i]; }
    case 1u: { return kv_chunk1[i]; }
    case 2u: { return kv_chunk2[i]; }
    default: { return kv_chunk3[i]; }
  }
}

/** The 8 (f16) or 4 (f32, `hi` unused) elements of one staged word as two vec4<f32>. */
fn unpack_lo(w: vec4<u32>) -> vec4<f32> {
  if (KV_F16) {
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
  }
  return bitcast<vec4<f32>>(w);
}

fn unpack_hi(w: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));
}

/** Logical block of token position `pos`. */
fn block_of(pos: u32) -> u32 {
  if (params.block_shift < 32u) {
    return pos >> params.block_shift;
  }
  return pos / params.block_size;
}

/**
 * Loads logical blocks [first_block, first_block + TABLE_WINDOW) of the item's sequence into the window,
 * the block of its last query position from the item when it carries it (tail_block), the others from
 * the block table.
 */
fn load_table_window(item: WorkItem, first_block: u32) {
  let tail = block_of(item.q_pos + item.num_q - 1u);
  for (var i = tid; i < TABLE_WINDOW; i += WG_SIZE) {
    let logical = first_block + i;
    var code = NO_BLOCK;
    if (logical < params.row_stride) {
      var id = block_table[item.seq_slot * params.row_stride + logical];
      if (logical == tail && item.tail_block != NO_TAIL) {
        id = bitcast<i32>(item.tail_block);
      }
      if (id >= 0 && u32(id) < params.num_blocks) {
        code = ((u32(id) % params.blocks_per_chunk) << 2u) | (u32(id) / params.blocks_per_chunk);
      }
    }
    smem[SMEM_TABLE + i / 4u][i % 4u] = code;
  }
}

/**
 * (table code, pool word of word 0 of the K row) of key `pos` of kv head `kv_head`, through the table
 * window starting at logical block `window_start` (which must hold the key's block); code NO_BLOCK for a
 * missing block. Word `col` of the row is in chunk code & 3 at word + col, its V word vecs_per_half further.
 */
fn key_row_word(kv_head: u32, pos: u32, window_start: u32) -> vec2<u32> {
  let logical = block_of(pos);
  let at = logical - window_start;
  let code = smem[SMEM_TABLE + at / 4u][at % 4u];
  let word = (code >> 2u) * params.vecs_per_block + kv_head * params.vecs_per_head_block +
    (pos - logical * params.block_size) * VECS_PER_ROW;
  return vec2<u32>(code, word);
}

/** K and V words `col` of key `pos` (key_row_word); zeros for a missing block. */
fn load_key_words(kv_head: u32, pos: u32, col: u32, window_start: u32) -> array<vec4<u32>, 2> {
  let row = key_row_word(kv_head, pos, window_start);
  if (row.x == NO_BLOCK) {
    return array<vec4<u32>, 2>(vec4<u32>(0u), vec4<u32>(0u));
  }
  let word = row.y + col;
  return array<vec4<u32>, 2>(load_kv(row.x & 3u, word), load_kv(row.x & 3u, word + params.vecs_per_half));
}

/** Word `col` of the K (half 0) or V (half 1) row of key `pos` (key_row_word); zeros for a missing block. */
fn load_half_word(kv_head: u32, pos: u32, col: u32, window_start: u32, half: u32) -> vec4<u32> {
  let row = key_row_word(kv_head, pos, window_start);
  if (row.x == NO_BLOCK) {
    return vec4<u32>(0u);
  }
  return load_kv(row.x & 3u, row.y + col + half * params.vecs_per_half);
}

/** (work item, kv head, head tile, in range) of this workgroup's flat index. */
fn workgroup_task(wid: vec3<u32>, nwg: vec3<u32>) -> vec4<u32> {
  let head_tiles = params.group_size / HEADS_PER_WG;
  let linear = wid.x + wid.y * nwg.x;
  let per_item = params.num_kv_heads * head_tiles;
  let rest = linear % per_item;
  return vec4<u32>(linear / per_item, rest / head_tiles, rest % head_tiles, u32(linear < params.num_items * per_item));
}
