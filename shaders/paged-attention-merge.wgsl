// Merges split-K partials of decode into output rows.
// Invariants: one workgroup per (merge item, query head); merge item = (aux = first partial slot of the
// entry's first split, num_q = number of splits, q_row); split s of head h lives at slot
// aux + s × num_query_heads + h with accumulator vec4s at slot × HEAD_DIM/4 and (max, sum) at
// stats_base + slot. out = Σ acc_s e^(m_s − M) / Σ l_s e^(m_s − M) with M = max m_s; every split
// has at least one key, so the denominator is ≥ 1.

override WG_SIZE: u32 = 64u;
override HEAD_DIM: u32;
override Q_VECS_PER_ROW: u32 = HEAD_DIM / 4u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partials: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> work_items: array<WorkItem>;
@group(0) @binding(3) var<storage, read_write> results: array<vec4<f32>>;

@compute @workgroup_size(WG_SIZE)
fn merge_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let linear = wid.x + wid.y * nwg.x;
  if (linear >= params.num_items * params.num_query_heads) {
    return;
  }
  let item = work_items[params.item_base + linear / params.num_query_heads];
  let first = item.aux + linear % params.num_query_heads;
  var m = -1.0e30;
  for (var s = 0u; s < item.num_q; s++) {
    m = max(m, partials[params.stats_base + first + s * params.num_query_heads].x);
  }
  var l = 0.0;
  for (var s = 0u; s < item.num_q; s++) {
    let stats = partials[params.stats_base + first + s * params.num_query_heads];
    l += stats.y * exp(stats.x - m);
  }
  let inv = 1.0 / l;
  let out_base = (item.q_row * params.num_query_heads + linear % params.num_query_heads) * Q_VECS_PER_ROW;
  for (var c = lid; c < Q_VECS_PER_ROW; c += WG_SIZE) {
    var acc = vec4<f32>(0.0);
    for (var s = 0u; s < item.num_q; s++) {
      let slot = first + s * params.num_query_heads;
      acc += partials[slot * Q_VECS_PER_ROW + c] * exp(partials[params.stats_base + slot].x - m);
    }
    results[out_base + c] = acc * inv;
  }
}
