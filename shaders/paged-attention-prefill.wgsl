// Prefill / chunked prefill: causal attention of QUERIES_PER_WG consecutive queries of one entry.
// Invariants: one workgroup per (query tile, kv head, head tile); its ROWS = QUERIES_PER_WG ×
// HEADS_PER_WG rows share every staged K/V tile; keys run from 0 to the last query's position
// (key_end = q_pos + num_q), each row masked at its own position, so queryStart > 0 attends the cached
// prefix. Output rows are normalised and written directly; tail rows past num_q are not written.

@compute @workgroup_size(WG_SIZE)
fn prefill_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let task = workgroup_task(wid, nwg);
  if (task.w == 0u) {
    return;
  }
  let width = lanes_init(lid);
  attend(task.x, task.y, task.z, width);
}
