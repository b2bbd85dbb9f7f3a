// The streaming decode's K/V write (decode-stream-source.ts, `writesKv`): one dispatch attends over
// the new token's K/V of every entry and stages it for the pool, instead of a write-kv dispatch before
// the decode. The pool stays a read-only binding; flush-staged-kv (flush-staged-kv.ts) later stores the
// staged rows into their slots, for several layers per dispatch.
// Invariants:
//   - Inputs and slots are those of write-kv (write-kv.wgsl): f32 rows [q row][kv head][HEAD_DIM] in
//     new_k / new_v (the q row of an entry is its K/V row), write_slots[q row] = block · block_size +
//     offset with a global block id; a padding slot (0xffffffff) or a block ≥ num_blocks is not written.
//   - A work item "owns its key" when its key range ends at its query's own position (the last split of
//     a decode entry) and that position is written. Such a workgroup reads the key from new_k / new_v,
//     converted exactly as write-kv stores it (f16Bits, or the f32 bits), and never from the pool: the
//     slot is written only by the flush after this dispatch.
//   - Of the workgroups that own a key (one per head tile), head tile 0 stages it: the K row and the V
//     row of its kv head, in the pool's word format, at staged_kv[((q_row · num_kv_heads + kv_head) · 2
//     + (0: K, 1: V)) · VECS_PER_ROW + vec]. A row whose slot is padding or out of range is not staged
//     (nor flushed: the flush checks the same slot).
//   - Loads of new_k / new_v and write_slots use uniform indices (item, kv head), so own_key is
//     workgroup-uniform.

@group(0) @binding(9) var<storage, read> write_slots: array<u32>;
@group(0) @binding(10) var<storage, read> new_k: array<vec4<u32>>;
@group(0) @binding(11) var<storage, read> new_v: array<vec4<u32>>;
@group(0) @binding(12) var<storage, read_write> staged_kv: array<vec4<u32>>;

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
