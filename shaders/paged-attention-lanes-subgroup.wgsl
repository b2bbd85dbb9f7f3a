// Thread numbering and segmented reductions built on subgroup operations.
// Invariants: `tid` is a permutation of 0..WG_SIZE-1 in which every subgroup owns an aligned run of
// `width` consecutive ids in lane order, so an aligned segment of ≤ width ids lies in one subgroup and
// subgroupShuffleXor(x, m) with m < segment stays inside it. This needs full subgroups of one size that
// divides WG_SIZE, which holds for every power-of-two subgroup size up to 128 and WG_SIZE = 128. Every
// function is called in workgroup-uniform control flow with uniform `seg` and `width` (seg a power of two).

var<private> tid: u32;
var<workgroup> lanes_next_base: atomic<u32>;

/** Sets `tid`; returns the subgroup size as a workgroup-uniform value. */
fn lanes_init(lid: u32) -> u32 {
  let lane = subgroupExclusiveAdd(1u);
  let width = subgroupAdd(1u);
  var base = 0u;
  if (subgroupElect()) {
    base = atomicAdd(&lanes_next_base, width);
    smem[SMEM_RED].x = width;
  }
  tid = subgroupBroadcastFirst(base) + lane;
  return workgroupUniformLoad(&smem[SMEM_RED]).x;
}

/** Combines one value per subgroup over a segment spanning seg / width subgroups. */
fn lanes_combine(r: f32, seg: u32, width: u32, is_max: bool) -> f32 {
  let base = SMEM_RED * 4u;
  if (tid % width == 0u) {
    sm_set(base + tid / width, r);
  }
  workgroupBarrier();
  let per = seg / width;
  let first = base + (tid / seg) * per;
  var acc = sm_get(first);
  for (var i = 1u; i < per; i++) {
    let x = sm_get(first + i);
    acc = select(acc + x, max(acc, x), is_max);
  }
  workgroupBarrier();
  return acc;
}

/** Max of `v` over the aligned segment of `seg` consecutive tids containing this thread. */
fn seg_max(v: f32, seg: u32, width: u32) -> f32 {
  var r = v;
  if (seg <= width) {
    for (var m = 1u; m < seg; m = m << 1u) {
      r = max(r, subgroupShuffleXor(r, m));
    }
    return r;
  }
  return lanes_combine(subgroupMax(r), seg, width, true);
}

/** Sum of `v` over the aligned segment of `seg` consecutive tids containing this thread. */
fn seg_sum(v: f32, seg: u32, width: u32) -> f32 {
  var r = v;
  if (seg <= width) {
    for (var m = 1u; m < seg; m = m << 1u) {
      r = r + subgroupShuffleXor(r, m);
    }
    return r;
  }
  return lanes_combine(subgroupAdd(r), seg, width, false);
}
