// Generates the entry point of the subgroup-matrix kernel (shaders/paged-attention-prefill-mma.wgsl: causal
// prefill, and decode where tuning.decodeMatrix asks) for one head dim, matrix size n (16 or 8), subgroup
// size, subgroup count, row tiles per subgroup, key tile and K/V source (staged, or from the pool on
// whole-matrix steps).
// Invariants: subgroup sg of a workgroup is invocations [sg · SG_SIZE, (sg + 1) · SG_SIZE) and owns R
// row tiles (R = rowTiles): tile u = sg · R + t (t < R) is rows [n u, n u + n) with its own
// n · keyTile-element regions of s_tile and p_tile, and a lane holds one row of each of its subgroup's
// tiles; each K or V matrix a subgroup loads feeds its R tiles' operations; the Q rows reach their left
// matrices through `tiles` (the K/V area: 2 · keyTile rows, keyTile with reuseKForV) in rounds where the workgroup has more rows,
// each subgroup loading its tiles' Q in the round that holds them (so a workgroup's memory grows with its
// subgroups only by their S and P tiles); the matrix operands live
// in workgroup arrays declared here with literal sizes (matrix loads and stores need constant-sized
// arrays), or in the pool's f16 view; every n-wide head-dim chunk c has its own Q (left) and O (result)
// matrix variable; a lane's COLS_PER_LANE score columns are their own scalars; the step loop and every
// branch containing a barrier are workgroup-uniform. Matrix operations are reached by whole subgroups:
// per-subgroup offsets (several subgroups) and the pool-load branches (every lane computes `direct` from
// the same table window; they hold no barrier) are not workgroup-uniform to Tint's analysis, so the
// shader turns its subgroup-matrix uniformity diagnostic off for those shapes.
// With earlyV (K/V from the pool only), a pool-read step loads its V matrices into v_b_c right after its
// scores, so they are in flight during the softmax; staged steps still load V at P·V. With nextK, right
// after a step's scores the next step's K matrices are loaded into k_b_c (declared outside the step
// loop) when that step will read from the pool without a table-window reload — the same `direct` it
// will compute, from the same window — and k_valid says so; a pool-read step loads its own K only
// where k_valid is false.
// With reuseKForV, `tiles` holds keyTile rows: a staged step stages its K before the scores and its V into
// K's place right after the barrier that follows them (every subgroup's scores have read K by then), so
// the V loads overlap the softmax; the step's flags load (a barrier) orders them before P·V.
import type { MmaPrefillConfig } from './attention-config';
import { entryPreamble, range } from './generated-entry';

export function prefillMmaEntry(
  headDim: number,
  shape: Pick<MmaPrefillConfig, 'matrixSize' | 'subgroupSize' | 'subgroups' | 'rowTiles' | 'keyTile' | 'directKv'> & { earlyV?: boolean; nextK?: boolean; reuseKForV?: boolean },
): string {
  const { matrixSize: n, subgroupSize, subgroups, rowTiles, keyTile } = shape;
  /** A pool-read step's V matrices are loaded right after its scores, into v_b_c held through the softmax. */
  const earlyV = shape.directKv && shape.earlyV === true;
  /** The next pool-read step's K matrices are loaded right after this step's scores, into k_b_c held across steps. */
  const nextK = shape.directKv && shape.nextK === true;
  /** A staged step's V goes into K's place after the scores: `tiles` holds keyTile rows, not 2 · keyTile. */
  const reuseKForV = shape.reuseKForV === true;
  const kvRows = reuseKForV ? keyTile : 2 * keyTile;
  /** The first row of a staged step's V in `tiles`. */
  const vRow0 = reuseKForV ? '0u' : 'KEY_TILE';
  const chunks = range(headDim / n);
  /** The subgroup's row tiles: variables of tile t end in _t. */
  const T = range(rowTiles);
  /** The step's n-key blocks: S and P are n × keyTile, one matrix per block. */
  const blocks = range(keyTile / n);
  const lanesPerRow = subgroupSize / n;
  const colsPerLane = keyTile / lanesPerRow;
  const sTile = n * keyTile; // a subgroup's S (f32) and P (f16) elements
  const colsO = n / lanesPerRow; // a lane's columns of an n-wide O chunk
  const cols = range(colsPerLane);
  // The n / 4 vec4s of an output row, shared out among its lanes: lane k writes vec4s k · vecsPerLane ….
  const vecsPerLane = Math.max(1, n / 4 / lanesPerRow);
  const left = `subgroup_matrix_left<f16, ${n}, ${n}>`;
  const right = `subgroup_matrix_right<f16, ${n}, ${n}>`;
  const result = `subgroup_matrix_result<f32, ${n}, ${n}>`;
  const L: string[] = [];
  const add = (...l: string[]) => L.push(...l);
  const reduce = (v: string, op: 'max' | 'sum') => {
    for (let m = 1; m < lanesPerRow; m *= 2) {
      add(op === 'max' ? `    ${v} = max(${v}, subgroupShuffleXor(${v}, ${m}u));` : `    ${v} += subgroupShuffleXor(${v}, ${m}u);`);
    }
  };
  const rowTileCount = subgroups * rowTiles; // row tiles in the workgroup
  add(
    `var<workgroup> tiles: array<f16, ${kvRows * headDim}>;`,
    `var<workgroup> s_tile: array<f32, ${sTile * rowTileCount}>;`,
    `var<workgroup> p_tile: array<f16, ${sTile * rowTileCount}>;`,
    ``,
    ...entryPreamble('prefill_mma_main'),
    subgroups > 1 ? `  let sg = tid / SG_SIZE;` : `  let sg = 0u;`,
    `  let lane = tid % SG_SIZE;`,
    `  let r = lane / LANES_PER_ROW;`,
    `  let col0 = (lane % LANES_PER_ROW) * ${colsPerLane}u;`,
    // Where this lane's share of an n × n O chunk (row r, columns o_col0 …) sits in a tile's s_tile region.
    `  let o_col0 = (lane % LANES_PER_ROW) * ${colsO}u;`,
    `  let out_vec0 = (lane % LANES_PER_ROW) * ${vecsPerLane}u;`,
  );
  for (const t of T) {
    add(
      `  let tile_${t} = ${rowTiles > 1 ? `sg * ${rowTiles}u + ${t}u` : 'sg'};`,
      `  let wg_row_${t} = tile_${t} * ${n}u + r;`,
      `  let qi_${t} = wg_row_${t} / HEADS_PER_WG;`,
      `  let row_live_${t} = qi_${t} < item.num_q;`,
      `  let q_pos_${t} = item.q_pos + qi_${t};`,
      `  let s_at_${t} = tile_${t} * ${sTile}u + r * ${keyTile}u + col0;`,
      `  let o_at_${t} = tile_${t} * ${sTile}u + r * ${n}u + o_col0;`,
    );
  }
  // The Q rows go through `tiles` (the K/V area: kvRows rows) in rounds where the workgroup has more
  // rows; a subgroup loads its tiles' Q matrices in the round that holds them.
  const qRows = n * rowTileCount;
  const roundRows = Math.min(qRows, kvRows);
  const rounds = Math.ceil(qRows / roundRows);
  add(`  var window_start = block_of(item.key_start);`, `  load_table_window(item, window_start);`);
  const qLoad = (t: number, c: number, row0: string) =>
    `subgroupMatrixLoad<${left}, row_major>(&tiles, (tile_${t} * ${n}u - ${row0}) * HEAD_DIM + ${n * c}u, HEAD_DIM)`;
  if (rounds === 1) {
    add(`  stage_queries(item, first_head, 0u, ${qRows}u);`, `  workgroupBarrier();`);
    for (const t of T) for (const c of chunks) add(`  let q_${t}_${c} = ${qLoad(t, c, '0u')};`);
  } else {
    for (const t of T) for (const c of chunks) add(`  var q_${t}_${c}: ${left};`);
    add(`  for (var round = 0u; round < ${rounds}u; round++) {`, `    stage_queries(item, first_head, round * ${roundRows}u, ${roundRows}u);`, `    workgroupBarrier();`);
    for (const t of T) {
      add(`    if (tile_${t} / ${roundRows / n}u == round) {`);
      for (const c of chunks) add(`      q_${t}_${c} = ${qLoad(t, c, `round * ${roundRows}u`)};`);
      add(`    }`);
    }
    add(`    workgroupBarrier();`, `  }`);
  }
  for (const t of T) for (const c of chunks) add(`  var o_${t}_${c} = ${result}();`);
  for (const t of T) add(`  var m_ref_${t} = NEG_BIG;`, `  var l_row_${t} = 0.0;`);
  if (nextK) {
    for (const b of blocks) for (const c of chunks) add(`  var k_${b}_${c} = ${right}();`);
    add(`  var k_valid = false;`);
  }
  /** Whether the step starting at key `t` masks some keys for some rows of the tile. */
  const masksFrom = (t: string) => `${t} + KEY_TILE > min(item.q_pos + 1u, item.key_end)`;
  /**
   * Whether the step starting at key `t` reads its K/V from the pool: it masks nothing (`masks`), starts on a
   * matrix boundary and every n-key block has a pool row (`at(b)`, from pool_row_at in the current window).
   * The step itself and, with nextK, the step before it (prefetching its K) decide with this same test.
   */
  const readsPool = (t: string, masks: string, at: (b: number) => string) =>
    `!${masks} && ${t} % ${n}u == 0u && ${blocks.map((b) => `${at(b)} != NO_BLOCK`).join(' && ')}`;
  /** Pool row of the n-key block b of the step starting at key `t`, named `name`. */
  const poolRow = (name: string, t: string, b: number) => `let ${name} = pool_row_at(kv_head, ${t} + ${n * b}u, window_start);`;
  add(
    `  workgroupBarrier();`,
    `  for (var t0 = item.key_start; t0 < item.key_end; t0 += KEY_TILE) {`,
    `    if (block_of(min(t0 + KEY_TILE, item.key_end) - 1u) >= window_start + TABLE_WINDOW) {`,
    `      window_start = block_of(t0);`,
    `      load_table_window(item, window_start);`,
    `      workgroupBarrier();`,
    `    }`,
    // A step holding keys past the tile's first query position (or past the item's keys: a decode split)
    // masks some keys for some rows.
    `    let masks_keys = ${masksFrom('t0')};`,
  );
  /** S of block b (every row tile) from the K matrices at `kAt(c)` of `source`: one load per matrix, used by each tile. */
  const scores = (b: number, indent: string, source: string, kAt: (c: number) => string) =>
    chunks.flatMap((c) => [
      `${indent}let k_${b}_${c} = subgroupMatrixLoad<${right}, col_major>(&${source}, ${kAt(c)}, HEAD_DIM);`,
      ...T.map((t) => `${indent}sm_${t}_${b} = subgroupMatrixMultiplyAccumulate(q_${t}_${c}, k_${b}_${c}, sm_${t}_${b});`),
    ]);
  const stagedScores = (b: number, indent: string) => scores(b, indent, 'tiles', (c) => `${n * b}u * HEAD_DIM + ${n * c}u`);
  for (const t of T) for (const b of blocks) add(`    var sm_${t}_${b} = ${result}();`);
  /** Pool f16-view offset of head-dim chunk c of the K matrix whose pool row starts at `at`. */
  const poolKAt = (at: string, c: number) => `${at} + ${n * c}u`;
  /** Pool f16-view offset of head-dim chunk c of block b's V matrix in a pool-read step. */
  const poolVAt = (b: number, c: number) => `kv_at_${b} + params.vecs_per_half * 8u + ${n * c}u`;
  /** K matrix (head-dim chunk c) of the n keys whose pool row starts at `at`, from the pool's f16 view. */
  const poolK = (at: string, c: number) => `subgroupMatrixLoad<${right}, col_major>(&kv_half, ${poolKAt(at, c)}, HEAD_DIM)`;
  /** V matrix (block b, head-dim chunk c) of a pool-read step, from the pool's f16 view. */
  const poolV = (b: number, c: number) => `subgroupMatrixLoad<${right}, row_major>(&kv_half, ${poolVAt(b, c)}, HEAD_DIM)`;
  if (earlyV) for (const c of chunks) for (const b of blocks) add(`    var v_${b}_${c} = ${right}();`);
  /** A staged step's K (and V, without reuseKForV) into `tiles`. */
  const stageK = reuseKForV ? `stage_half(kv_head, t0, item.key_end, window_start, 0u, false);` : `stage_kv(kv_head, t0, item.key_end, window_start, masks_keys);`;
  if (shape.directKv) {
    // A step every row attends whole, over blocks that all exist, reads its K and V matrices from the
    // pool (each n-key block of the step lies in one pool block); every lane computes the same `direct`
    // from the table window, so the branches below (which hold no barrier) are taken by whole subgroups.
    for (const b of blocks) add(`    ${poolRow(`kv_at_${b}`, 't0', b)}`);
    add(
      // (t0 % n: a split forced to an arbitrary length can start mid-matrix; planned splits are whole steps.)
      `    let direct = ${readsPool('t0', 'masks_keys', (b) => `kv_at_${b}`)};`,
      `    if (!direct) {`,
      `      ${stageK}`,
      `    }`,
      `    workgroupBarrier();`,
      `    if (direct) {`,
    );
    if (nextK) {
      // K of this step: loaded at the end of the previous step's scores where k_valid, else here.
      add(`      if (!k_valid) {`);
      for (const b of blocks) for (const c of chunks) add(`        k_${b}_${c} = ${poolK(`kv_at_${b}`, c)};`);
      add(`      }`);
      for (const b of blocks) for (const c of chunks) for (const t of T) add(`      sm_${t}_${b} = subgroupMatrixMultiplyAccumulate(q_${t}_${c}, k_${b}_${c}, sm_${t}_${b});`);
    } else {
      for (const b of blocks) add(...scores(b, '      ', 'kv_half', (c) => poolKAt(`kv_at_${b}`, c)));
    }
    if (earlyV) for (const c of chunks) for (const b of blocks) add(`      v_${b}_${c} = ${poolV(b, c)};`);
    add(`    } else {`, ...blocks.flatMap((b) => stagedScores(b, '      ')), `    }`);
    if (nextK) {
      // The next step, where it reads from the pool in this window (no reload at its top): its K now.
      add(
        `    k_valid = false;`,
        `    let t_next = t0 + KEY_TILE;`,
        `    if (t_next < item.key_end && block_of(min(t_next + KEY_TILE, item.key_end) - 1u) < window_start + TABLE_WINDOW) {`,
        `      let masks_next = ${masksFrom('t_next')};`,
      );
      for (const b of blocks) add(`      ${poolRow(`next_at_${b}`, 't_next', b)}`);
      add(`      if (${readsPool('t_next', 'masks_next', (b) => `next_at_${b}`)}) {`);
      for (const b of blocks) for (const c of chunks) add(`        k_${b}_${c} = ${poolK(`next_at_${b}`, c)};`);
      add(`        k_valid = true;`, `      }`, `    }`);
    }
  } else {
    add(`    ${stageK}`, `    workgroupBarrier();`, ...blocks.flatMap((b) => stagedScores(b, '    ')));
  }
  for (const t of T) for (const b of blocks) add(`    subgroupMatrixStore<row_major>(&s_tile, tile_${t} * ${sTile}u + ${n * b}u, sm_${t}_${b}, ${keyTile}u);`);
  add(`    workgroupBarrier();`);
  if (reuseKForV) {
    // Every subgroup's scores have read K: its V goes into K's place while the softmax runs.
    const stageV = `stage_half(kv_head, t0, item.key_end, window_start, 1u, masks_keys);`;
    add(...(shape.directKv ? [`    if (!direct) {`, `      ${stageV}`, `    }`] : [`    ${stageV}`]));
  }
  for (const j of cols) add(`    let key_${j} = t0 + col0 + ${j}u;`);
  for (const t of T) {
    for (const j of cols) {
      add(
        `    let vis_${t}_${j} = row_live_${t} && key_${j} <= q_pos_${t} && key_${j} < item.key_end;`,
        `    let s_${t}_${j} = s_tile[s_at_${t} + ${j}u];`,
      );
    }
    add(`    var t_max_${t} = ${cols.map((j) => `select(NEG_BIG, s_${t}_${j}, vis_${t}_${j})`).reduce((a, b) => `max(${a}, ${b})`)};`);
    reduce(`t_max_${t}`, 'max');
    add(
      `    var alpha_${t} = 1.0;`,
      `    let m_prev_${t} = m_ref_${t};`,
      `    if (t_max_${t} > m_ref_${t} + TAU) {`,
      `      alpha_${t} = exp(m_ref_${t} - t_max_${t});`,
      `      m_ref_${t} = t_max_${t};`,
      `    }`,
    );
    for (const j of cols) add(`    let p_${t}_${j} = select(0.0, exp(s_${t}_${j} - m_ref_${t}), vis_${t}_${j});`);
    add(`    var p_sum_${t} = ${cols.map((j) => `p_${t}_${j}`).join(' + ')};`);
    reduce(`p_sum_${t}`, 'sum');
    add(`    l_row_${t} = l_row_${t} * alpha_${t} + p_sum_${t};`);
    for (const j of cols) add(`    p_tile[s_at_${t} + ${j}u] = f16(p_${t}_${j});`);
    add(
      `    if (col0 == 0u) {`,
      `      alpha_row[wg_row_${t}] = alpha_${t};`,
      `    }`,
      `    if (alpha_${t} != 1.0 && m_prev_${t} > NEG_BIG) {`,
      `      step_flags[STEP_RESCALE] = 1u;`,
      `    }`,
    );
  }
  add(
    `    let flags = workgroupUniformLoad(&step_flags);`,
    `    if (flags[STEP_RESCALE] != 0u) {`,
  );
  // O chunks are n × n: lane (r, col0) scales columns o_col0 … of row r (colsO of them).
  for (const t of T) {
    for (const c of chunks) {
      add(
        `      subgroupMatrixStore<row_major>(&s_tile, tile_${t} * ${sTile}u, o_${t}_${c}, ${n}u);`,
        `      workgroupBarrier();`,
        ...range(colsO).map((j) => `      s_tile[o_at_${t} + ${j}u] *= alpha_row[wg_row_${t}];`),
        `      workgroupBarrier();`,
        `      o_${t}_${c} = subgroupMatrixLoad<${result}, row_major>(&s_tile, tile_${t} * ${sTile}u, ${n}u);`,
        `      workgroupBarrier();`,
      );
    }
  }
  add(`    }`);
  // P·V. A masked key has p = 0, and 0 · NaN = NaN: where a step masks keys for some rows and its staged V
  // holds a NaN or ±∞ (STEP_V_NONFINITE, set while staging), each lane adds its row's visible keys alone,
  // in scalar code through the scratch (rare: only a poisoned V near the diagonal).
  add(`    if (flags[STEP_V_NONFINITE] != 0u) {`);
  for (const t of T) {
    for (const c of chunks) {
      add(
        `      subgroupMatrixStore<row_major>(&s_tile, tile_${t} * ${sTile}u, o_${t}_${c}, ${n}u);`,
        `      workgroupBarrier();`,
        `      for (var k = 0u; k < KEY_TILE; k++) {`,
        `        if (t0 + k <= q_pos_${t} && t0 + k < item.key_end) {`,
        `          let p = f32(p_tile[tile_${t} * ${sTile}u + r * KEY_TILE + k]);`,
        `          let v_at = (${vRow0} + k) * HEAD_DIM + ${n * c}u + o_col0;`,
        ...range(colsO).map((j) => `          s_tile[o_at_${t} + ${j}u] += p * f32(tiles[v_at + ${j}u]);`),
        `        }`,
        `      }`,
        `      workgroupBarrier();`,
        `      o_${t}_${c} = subgroupMatrixLoad<${result}, row_major>(&s_tile, tile_${t} * ${sTile}u, ${n}u);`,
        `      workgroupBarrier();`,
      );
    }
  }
  add(`    } else {`);
  for (const t of T) for (const b of blocks) add(`      let pm_${t}_${b} = subgroupMatrixLoad<${left}, row_major>(&p_tile, tile_${t} * ${sTile}u + ${n * b}u, ${keyTile}u);`);
  /** O += P · V from the V matrices at `vAt(b, c)` of `source`: one load per matrix, used by each tile. */
  const outputs = (indent: string, source: string, vAt: (b: number, c: number) => string) =>
    chunks.flatMap((c) =>
      blocks.flatMap((b) => [
        `${indent}let v_${b}_${c} = subgroupMatrixLoad<${right}, row_major>(&${source}, ${vAt(b, c)}, HEAD_DIM);`,
        ...T.map((t) => `${indent}o_${t}_${c} = subgroupMatrixMultiplyAccumulate(pm_${t}_${b}, v_${b}_${c}, o_${t}_${c});`),
      ]),
    );
  const stagedOutputs = (indent: string) => outputs(indent, 'tiles', (b, c) => `(${vRow0} + ${n * b}u) * HEAD_DIM + ${n * c}u`);
  if (shape.directKv) {
    const direct = earlyV
      ? chunks.flatMap((c) => blocks.flatMap((b) => T.map((t) => `        o_${t}_${c} = subgroupMatrixMultiplyAccumulate(pm_${t}_${b}, v_${b}_${c}, o_${t}_${c});`)))
      : outputs('        ', 'kv_half', poolVAt);
    add(`      if (direct) {`, ...direct);
    add(`      } else {`, ...stagedOutputs('        '), `      }`);
  } else {
    add(...stagedOutputs('      '));
  }
  add(
    `    }`,
    // Every lane has read the flags (workgroupUniformLoad above): clear them for the next step.
    `    if (tid == 0u) {`,
    `      step_flags = array<u32, 2>(0u, 0u);`,
    `    }`,
    `    workgroupBarrier();`,
    `  }`,
  );
  // Write chunk by chunk through the subgroup's scratch: normalised rows, or (a decode split, for
  // paged-attention-merge) the unnormalised row at its partial slot and (m_ref, l) in the stats.
  add(`  let partial = params.write_partials != 0u;`);
  for (const t of T) {
    add(
      `  let head_${t} = first_head + wg_row_${t} % HEADS_PER_WG;`,
      `  let out_row_${t} = select((item.q_row + qi_${t}) * params.num_query_heads + head_${t}, item.aux + head_${t}, partial) * Q_VECS_PER_ROW;`,
      `  let out_scale_${t} = select(1.0 / l_row_${t}, 1.0, partial);`,
      `  if (partial && row_live_${t} && o_col0 == 0u) {`,
      `    results[params.stats_base + item.aux + head_${t}] = vec4<f32>(m_ref_${t}, l_row_${t}, 0.0, 0.0);`,
      `  }`,
    );
  }
  // Row r's n values of chunk c sit at s_tile[tile · sTile + r · n …]; its lanes write them as vec4s
  // (where a row has fewer vec4s than lanes, the last lanes write none).
  for (const t of T) {
    const rowAt = `tile_${t} * ${sTile}u + r * ${n}u`;
    for (const c of chunks) {
      add(`  subgroupMatrixStore<row_major>(&s_tile, tile_${t} * ${sTile}u, o_${t}_${c}, ${n}u);`, `  workgroupBarrier();`);
      for (const v of range(vecsPerLane)) {
        const vec = `out_vec0 + ${v}u`;
        const guard = vecsPerLane * lanesPerRow > n / 4 ? ` && ${vec} < ${n / 4}u` : '';
        add(
          `  if (row_live_${t}${guard}) {`,
          `    let at = ${rowAt} + (${vec}) * 4u;`,
          `    results[out_row_${t} + ${(n / 4) * c}u + ${vec}] = vec4<f32>(s_tile[at], s_tile[at + 1u], s_tile[at + 2u], s_tile[at + 3u]) * out_scale_${t};`,
          `  }`,
        );
      }
      add(`  workgroupBarrier();`);
    }
  }
  add(`}`);
  return L.join('\n');
}
