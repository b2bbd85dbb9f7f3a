// Thread numbering and segmented reductions in workgroup memory (portable: no subgroup feature).
// Invariants: `tid` = local_invocation_index; a reduction over an aligned segment of `seg` (a power of
// two) consecutive tids is a tree over the SMEM_RED region taking log2(seg) + 2 barriers, so every
// function is called in workgroup-uniform control flow with a uniform `seg`. `width` is unused.

var<private> tid: u32;

fn lanes_init(lid: u32) -> u32 {
  tid = lid;
  return 0u;
}

fn lanes_tree(v: f32, seg: u32, is_max: bool) -> f32 {
  if (seg <= 1u) {
    return v;
  }
  let base = SMEM_RED * 4u;
  sm_set(base + tid, v);
  workgroupBarrier();
  for (var stride = seg >> 1u; stride > 0u; stride = stride >> 1u) {
    if ((tid & (seg - 1u)) < stride) {
      let a = sm_get(base + tid);
      let b = sm_get(base + tid + stride);
      sm_set(base + tid, select(a + b, max(a, b), is_max));
    }
    workgroupBarrier();
  }
  let r = sm_get(base + (tid & ~(seg - 1u)));
  workgroupBarrier();
  return r;
}

fn seg_max(v: f32, seg: u32, width: u32) -> f32 {
  return lanes_tree(v, seg, true);
}

fn seg_sum(v: f32, seg: u32, width: u32) -> f32 {
  return lanes_tree(v, seg, false);
}
