// The opening lines shared by generated attention entry points, and the index helper their generators
// unroll with. Invariant: the opening lines bind the names the generated bodies rely on — task (work
// item, kv head, head tile) from workgroup_task, tid from lanes_init, item, kv_head and first_head —
// and return early, workgroup-uniformly, for padding workgroups past the last task.
export function entryPreamble(entryPoint: string): string[] {
  const pad = ' '.repeat(entryPoint.length + 4);
  return [
    `@compute @workgroup_size(WG_SIZE)`,
    `fn ${entryPoint}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,`,
    `${pad}@builtin(local_invocation_index) lid: u32) {`,
    `  let task = workgroup_task(wid, nwg);`,
    `  if (task.w == 0u) {`,
    `    return;`,
    `  }`,
    // The work item's load is issued before lanes_init's barrier, so its latency overlaps it.
    `  let item = work_items[params.item_base + task.x];`,
    `  lanes_init(lid);`,
    `  let kv_head = task.y;`,
    `  let first_head = kv_head * params.group_size + task.z * HEADS_PER_WG;`,
  ];
}

/** 0, 1, …, n − 1: the indices a generator unrolls over (one WGSL variable per index). */
export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
