// Decode (one query per sequence) with split-K over the context (flash-decoding).
// Invariants: one workgroup per (work item = entry × split, kv head, head tile); all HEADS_PER_WG query
// heads of the kv head share the workgroup, so each K/V byte of the split is read once per head tile.
// With WRITE_PARTIALS the workgroup stores, per query head, the unnormalised accumulator at partial
// slot aux + head and (running max, sum) at stats_base + slot, for paged-attention-merge; otherwise
// (one split per entry) it writes the normalised output row directly.

@compute @workgroup_size(WG_SIZE)
fn decode_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let task = workgroup_task(wid, nwg);
  if (task.w == 0u) {
    return;
  }
  let width = lanes_init(lid);
  attend(task.x, task.y, task.z, width);
}
