// The streaming decode's K/V write (decode-stream-source.ts, `writesKv`): one dispatch stores the new
// token's K/V of every entry and attends over it, instead of a write-kv dispatch before the decode.
// Invariants:
//   - Inputs and slots are those of write-kv (write-kv.wgsl): f32 rows [q row][kv head][HEAD_DIM] in
//     new_k / new_v (the q row of an entry is its K/V row), write_slots[q row] = block · block_size +
//     offset with a global block id; a padding slot (0xffffffff) or a block ≥ num_blocks is not written.
//   - A work item "owns its key" when its key range ends at its query's own position (the last split of
//     a decode entry) and that position is written. Such a workgroup reads the key from new_k / new_v,
//     converted exactly as write-kv stores it (f16Bits, or the f32 bits), and never from the pool: in
//     this dispatch the slot is being written. Every other key a decode reads lies before some entry's
//     own position or in another sequence's blocks, and a write batch holds each sequence once with its
//     written blocks private (the cache makes them so), so no workgroup reads a slot another one writes.
//   - Of the workgroups that own a key (one per head tile), head tile 0 stores it, one cache row of K
//     and one of V for its kv head; the pool bindings are read_write in this module (and only here).
//   - Loads of new_k / new_v and write_slots use uniform indices (item, kv head), so own_key is
//     workgroup-uniform.

@group(0) @binding(9) var<storage, read> write_slots: array<u32>;
@group(0) @binding(10) var<storage, read> new_k: array<vec4<u32>>;
@group(0) @binding(11) var<storage, read> new_v: array<vec4<u32>>;

const PADDING_SLOT: u32 = 0xffffffffu;

/** Whether `item` ends at its query's own position and this dispatch writes that position's K/V. */
fn owns_key(item: WorkItem) -> bool {
  if (item.num_q != 1u || item.key_end != item.q_pos + 1u) {
    return false;
  }
  let slot = write_slots[item.q_row];
  return slot != PADDING_SLOT && slot / params.block_size < params.num_blocks;
}

fn new_input(is_v: bool, i: u32) -> vec4<u32> {
  if (is_v) {
    return new_v[i];
  }
  return new_k[i];
}

/** Pool vec `vec` (0 .. VECS_PER_ROW) of the new K (or V) row of `kv_head` at q row `q_row`, as stored. */
fn new_kv_vec(is_v: bool, q_row: u32, kv_head: u32, vec: u32) -> vec4<u32> {
  let at = ((q_row * params.num_kv_heads + kv_head) * HEAD_DIM + vec * ELEMS_PER_VEC) / 4u;
  let a = new_input(is_v, at);
  if (!KV_F16) {
    return a;
  }
  let b = new_input(is_v, at + 1u);
  return vec4<u32>(
    f16Bits(a.x) | (f16Bits(a.y) << 16u),
    f16Bits(a.z) | (f16Bits(a.w) << 16u),
    f16Bits(b.x) | (f16Bits(b.y) << 16u),
    f16Bits(b.z) | (f16Bits(b.w) << 16u),
  );
}
