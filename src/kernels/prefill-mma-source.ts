// Generates the entry point of the subgroup-matrix prefill kernel (shaders/paged-attention-prefill-
// mma.wgsl) for one head dim, subgroup size, subgroup count and key tile. Invariants: subgroup sg of a
// workgroup is invocations [sg · SG_SIZE, (sg + 1) · SG_SIZE) and owns rows [16 sg, 16 sg + 16) and its
// own 16 · keyTile-element regions of s_tile and p_tile (per-subgroup matrix offsets: the shader turns Tint's
// workgroup-scoped subgroup-matrix uniformity diagnostic off when there are several); the matrix operands live
// in workgroup arrays declared here with literal sizes (matrix loads and stores need constant-sized
// arrays); every 16-wide head-dim chunk c has its own Q (left) and O (result) matrix variable; a lane's
// COLS_PER_LANE score columns are their own scalars; the step loop and every branch containing a
// barrier or a matrix operation are workgroup-uniform.
import { entryPreamble, range } from './generated-entry';

export function prefillMmaEntry(headDim: number, subgroupSize: number, subgroups = 1, keyTile = 16): string {
  const chunks = range(headDim / 16);
  /** The step's 16-key blocks: S and P are 16 × keyTile, one matrix per block. */
  const blocks = range(keyTile / 16);
  const lanesPerRow = subgroupSize / 16;
  const colsPerLane = keyTile / lanesPerRow;
  const sTile = 16 * keyTile; // a subgroup's S (f32) and P (f16) elements
  const cols16 = 16 / lanesPerRow; // a lane's columns of a 16-wide O chunk
  const cols = range(colsPerLane);
  const left = 'subgroup_matrix_left<f16, 16, 16>';
  const right = 'subgroup_matrix_right<f16, 16, 16>';
  const result = 'subgroup_matrix_result<f32, 16, 16>';
  const L: string[] = [];
  const add = (...l: string[]) => L.push(...l);
  const reduce = (v: string, op: 'max' | 'sum') => {
    for (let m = 1; m < lanesPerRow; m *= 2) {
      add(op === 'max' ? `    ${v} = max(${v}, subgroupShuffleXor(${v}, ${m}u));` : `    ${v} += subgroupShuffleXor(${v}, ${m}u);`);
    }
  };
  add(
    `var<workgroup> tiles: array<f16, ${Math.max(16 * subgroups * headDim, 2 * keyTile * headDim)}>;`,
    `var<workgroup> s_tile: array<f32, ${sTile * subgroups}>;`,
    `var<workgroup> p_tile: array<f16, ${sTile * subgroups}>;`,
    ``,
    ...entryPreamble('prefill_mma_main'),
    subgroups > 1 ? `  let sg = tid / SG_SIZE;` : `  let sg = 0u;`,
    `  let lane = tid % SG_SIZE;`,
    `  let r = lane / LANES_PER_ROW;`,
    `  let col0 = (lane % LANES_PER_ROW) * ${colsPerLane}u;`,
    `  let wg_row = sg * 16u + r;`,
    `  let qi = wg_row / HEADS_PER_WG;`,
    `  let row_live = qi < item.num_q;`,
    `  let q_pos = item.q_pos + qi;`,
    `  let s_at = sg * ${sTile}u + r * ${keyTile}u + col0;`,
    // Where this lane's share of a 16 × 16 O chunk (row r, columns o_col0 …) sits in the subgroup's s_tile.
    `  let o_col0 = (lane % LANES_PER_ROW) * ${cols16}u;`,
    `  let o_at = sg * ${sTile}u + r * 16u + o_col0;`,
    `  stage_queries(item, first_head);`,
    `  var window_start = 0u;`,
    `  load_table_window(item.seq_slot, 0u);`,
    `  workgroupBarrier();`,
  );
  for (const c of chunks) add(`  let q_${c} = subgroupMatrixLoad<${left}, row_major>(&tiles, sg * 16u * HEAD_DIM + ${16 * c}u, HEAD_DIM);`);
  for (const c of chunks) add(`  var o_${c} = ${result}();`);
  add(
    `  var m_ref = NEG_BIG;`,
    `  var l_row = 0.0;`,
    `  workgroupBarrier();`,
    `  for (var t0 = 0u; t0 < item.key_end; t0 += KEY_TILE) {`,
    `    if (block_of(min(t0 + KEY_TILE, item.key_end) - 1u) >= window_start + TABLE_WINDOW) {`,
    `      window_start = block_of(t0);`,
    `      load_table_window(item.seq_slot, window_start);`,
    `      workgroupBarrier();`,
    `    }`,
    `    if (tid == 0u) {`,
    `      rescale_flag = 0u;`,
    `    }`,
    `    stage_kv(kv_head, t0, item.key_end, window_start);`,
    `    workgroupBarrier();`,
  );
  for (const b of blocks) {
    add(`    var sm_${b} = ${result}();`);
    for (const c of chunks) {
      add(`    sm_${b} = subgroupMatrixMultiplyAccumulate(q_${c}, subgroupMatrixLoad<${right}, col_major>(&tiles, ${16 * b}u * HEAD_DIM + ${16 * c}u, HEAD_DIM), sm_${b});`);
    }
    add(`    subgroupMatrixStore<row_major>(&s_tile, sg * ${sTile}u + ${16 * b}u, sm_${b}, ${keyTile}u);`);
  }
  add(`    workgroupBarrier();`);
  for (const j of cols) {
    add(
      `    let key_${j} = t0 + col0 + ${j}u;`,
      `    let vis_${j} = row_live && key_${j} <= q_pos && key_${j} < item.key_end;`,
      `    let s_${j} = s_tile[s_at + ${j}u];`,
    );
  }
  add(`    var t_max = ${cols.map((j) => `select(NEG_BIG, s_${j}, vis_${j})`).reduce((a, b) => `max(${a}, ${b})`)};`);
  reduce('t_max', 'max');
  add(
    `    var alpha = 1.0;`,
    `    let m_prev = m_ref;`,
    `    if (t_max > m_ref + TAU) {`,
    `      alpha = exp(m_ref - t_max);`,
    `      m_ref = t_max;`,
    `    }`,
  );
  for (const j of cols) add(`    let p_${j} = select(0.0, exp(s_${j} - m_ref), vis_${j});`);
  add(`    var p_sum = ${cols.map((j) => `p_${j}`).join(' + ')};`);
  reduce('p_sum', 'sum');
  add(`    l_row = l_row * alpha + p_sum;`);
  for (const j of cols) add(`    p_tile[s_at + ${j}u] = f16(p_${j});`);
  add(
    `    if (col0 == 0u) {`,
    `      alpha_row[wg_row] = alpha;`,
    `    }`,
    `    if (alpha != 1.0 && m_prev > NEG_BIG) {`,
    `      rescale_flag = 1u;`,
    `    }`,
    `    if (workgroupUniformLoad(&rescale_flag) != 0u) {`,
  );
  // O chunks are 16 × 16: lane (r, col0) scales columns o_col0 … of row r (the first cols16 of its columns).
  for (const c of chunks) {
    add(
      `      subgroupMatrixStore<row_major>(&s_tile, sg * ${sTile}u, o_${c}, 16u);`,
      `      workgroupBarrier();`,
      ...range(cols16).map((j) => `      s_tile[o_at + ${j}u] *= alpha_row[wg_row];`),
      `      workgroupBarrier();`,
      `      o_${c} = subgroupMatrixLoad<${result}, row_major>(&s_tile, sg * ${sTile}u, 16u);`,
      `      workgroupBarrier();`,
    );
  }
  add(`    }`);
  for (const b of blocks) add(`    let pm_${b} = subgroupMatrixLoad<${left}, row_major>(&p_tile, sg * ${sTile}u + ${16 * b}u, ${keyTile}u);`);
  for (const c of chunks) {
    for (const b of blocks) {
      add(`    o_${c} = subgroupMatrixMultiplyAccumulate(pm_${b}, subgroupMatrixLoad<${right}, row_major>(&tiles, (KEY_TILE + ${16 * b}u) * HEAD_DIM + ${16 * c}u, HEAD_DIM), o_${c});`);
    }
  }
  add(`    workgroupBarrier();`, `  }`);
  // Normalise and write: chunk by chunk through the subgroup's scratch.
  add(`  let out_row = ((item.q_row + qi) * params.num_query_heads + first_head + wg_row % HEADS_PER_WG) * Q_VECS_PER_ROW;`);
  for (const c of chunks) {
    add(`  subgroupMatrixStore<row_major>(&s_tile, sg * ${sTile}u, o_${c}, 16u);`, `  workgroupBarrier();`, `  if (row_live) {`);
    for (let j = 0; j < cols16; j += 4) {
      add(
        `    results[out_row + (${16 * c}u + o_col0 + ${j}u) / 4u] = vec4<f32>(s_tile[o_at + ${j}u], s_tile[o_at + ${j + 1}u], ` +
          `s_tile[o_at + ${j + 2}u], s_tile[o_at + ${j + 3}u]) / l_row;`,
      );
    }
    add(`  }`, `  workgroupBarrier();`);
  }
  add(`}`);
  return L.join('\n');
}
