// Entry point of the tile engine (paged-attention-common.wgsl), for both of its kinds; the kind lives in
// the override constants and the work items (attention-config.ts, attention-plan.ts).
// Invariants:
//   - Decode (QUERIES_PER_WG = 1, one query per item) with split-K over the context (flash-decoding):
//     one workgroup per (work item = entry × split, kv head, head tile); all HEADS_PER_WG query heads of
//     the kv head share the workgroup, so each K/V byte of the split is read once per head tile. With
//     write_partials the workgroup stores, per query head, the unnormalised accumulator at partial slot
//     aux + head and (running max, sum) at stats_base + slot, for paged-attention-merge; otherwise (one
//     split per entry) it writes the normalised output row directly.
//   - Prefill / chunked prefill: causal attention of QUERIES_PER_WG consecutive queries of one entry;
//     one workgroup per (query tile, kv head, head tile); its ROWS = QUERIES_PER_WG × HEADS_PER_WG rows
//     share every staged K/V tile; keys run from 0 to the last query's position (key_end = q_pos +
//     num_q), each row masked at its own position, so queryStart > 0 attends the cached prefix. Output
//     rows are normalised and written directly; tail rows past num_q are not written.

@compute @workgroup_size(WG_SIZE)
fn tile_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let task = workgroup_task(wid, nwg);
  if (task.w == 0u) {
    return;
  }
  let width = lanes_init(lid);
  attend(task.x, task.y, task.z, width);
}
