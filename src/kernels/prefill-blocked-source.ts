// Generates the entry point of the register-blocked prefill kernel (shaders/paged-attention-prefill-
// blocked.wgsl) for one tile shape. Invariants:
//   - The workgroup arrays are declared here with literal sizes: q_tile (ROWS × (HEAD_DIM / 4 + 1)
//     vec4<f32>), kv_tile (KEY_TILE × (WORDS + 1) packed words, or with stagedF32 KEY_TILE ×
//     (2·WORDS + 1) vec4<f32>: each f16 word widened once, as it is staged; K, then V in the same place), sp
//     (KEY_TILE × ROWS f32, S then P, key-major so softmax threads walk their row's column), row_scale
//     and red (one f32 per thread).
//   - Softmax thread (row, part) = (tid % ROWS, tid / ROWS) owns keys [part·KPP, (part + 1)·KPP) of
//     the tile (KPP = KEY_TILE / PARTS, PARTS = min(WG_SIZE / ROWS, KEY_TILE): threads of a later part
//     own no keys and contribute nothing); the row's max is combined through red each tile, the
//     running max is the same in all of a row's threads, each keeps its share of the sum (added up at the end).
//     Row strides are padded by one vec4 so threads reading different rows hit different banks.
//   - Score thread (tr, tc) = (tid / TC, tid % TC), for tid < scoreThreads, computes rows tr·SR + i and
//     keys tc + j·TC; output thread (pg, pc) = (tid / WORDS, tid % WORDS), for tid < outThreads, accumulates rows pg·OR + i over
//     head-dim word pc (the other threads stage, score and softmax only).
//     Each of those values is its own WGSL variable (the loops over i and j are unrolled here).
//   - A key masked for some row (the causal diagonal) can only lie in a tile reaching past the item's
//     first query position; only there does P·V skip p = 0 explicitly (so a masked V that is NaN or ∞
//     contributes nothing, as in the reference); elsewhere every staged key is visible to every live row.
//   - The generated text depends only on the config (it names the pipeline in the cache).
import type { BlockedPrefillConfig } from './attention-config';
import { entryPreamble, range } from './generated-entry';

export function prefillBlockedEntry(config: BlockedPrefillConfig, headDim: number): string {
  const { rows, keyTile, scoreRows, scoreKeys, scoreThreads, outRows, outThreads, wordsPerRow: words, elemsPerWord, stagedF32, workgroupSize } = config;
  const idle = outThreads < workgroupSize; // threads past outThreads own no output (head dims whose word count is not a power of two)
  const idleScoring = scoreThreads < workgroupSize; // the 8 × 8 tile: threads past scoreThreads compute no scores
  const parts = Math.min(workgroupSize / rows, keyTile); // softmax threads per row (the rest own no keys)
  const keysPerPart = keyTile / parts; // keys of the tile each softmax thread owns
  const f16 = elemsPerWord === 8;
  const qStride = headDim / 4 + 1;
  /** vec4 slots per staged K/V row: one packed word each, or two f32 vec4 per f16 word; + 1 of padding. */
  const kvStride = (stagedF32 ? 2 * words : words) + 1;
  const tc = keyTile / scoreKeys;
  const SR = range(scoreRows);
  const SK = range(scoreKeys);
  const OR = range(outRows);
  const halves = f16 ? ['lo', 'hi'] : ['lo'];
  const L: string[] = [];
  const add = (...l: string[]) => L.push(...l);
  const unpack = (w: string, half: string) =>
    f16 ? (half === 'lo' ? `vec4<f32>(unpack2x16float(${w}.x), unpack2x16float(${w}.y))` : `vec4<f32>(unpack2x16float(${w}.z), unpack2x16float(${w}.w))`) : `bitcast<vec4<f32>>(${w})`;

  /** Stages half 0 (K) or 1 (V) of keys [t0, tile_end) into kv_tile (widened to f32 with stagedF32). */
  const stage = (half: number) =>
    add(
      `    for (var i = tid; i < ${keyTile * words}u; i += WG_SIZE) {`,
      `      let key = i / ${words}u;`,
      `      let col = i % ${words}u;`,
      `      var w = vec4<u32>(0u);`,
      `      if (t0 + key < tile_end) {`,
      `        w = load_half_word(kv_head, t0 + key, col, window_start, ${half}u);`,
      `      }`,
      ...(stagedF32
        ? [`      kv_tile[key * ${kvStride}u + 2u * col] = ${unpack('w', 'lo')};`, `      kv_tile[key * ${kvStride}u + 2u * col + 1u] = ${unpack('w', 'hi')};`]
        : [`      kv_tile[key * ${kvStride}u + col] = w;`]),
      `    }`,
    );
  /** The K or V elements of packed word `col` of staged key `key` as let-bound vec4<f32>s named `${name}_lo` / `_hi`. */
  const tileElements = (name: string, key: string, col: string) => {
    if (stagedF32) {
      add(`        let ${name}_lo = kv_tile[${key} * ${kvStride}u + 2u * ${col}];`, `        let ${name}_hi = kv_tile[${key} * ${kvStride}u + 2u * ${col} + 1u];`);
      return;
    }
    add(`        let ${name} = kv_tile[${key} * ${kvStride}u + ${col}];`);
    for (const h of halves) add(`        let ${name}_${h} = ${unpack(name, h)};`);
  };

  /** The P·V loop over the tile's keys; `guarded` skips p = 0 (a masked V contributes nothing). */
  const accumulate = (guarded: boolean) => {
    add(`      for (var j = 0u; j < n; j++) {`);
    tileElements('v', 'j', 'pc');
    for (const i of OR) {
      add(`        let p${i} = sp[j * ${rows}u + out_row0 + ${i}u];`);
      for (const h of halves) {
        add(guarded ? `        o${i}_${h} += select(vec4<f32>(0.0), p${i} * v_${h}, p${i} != 0.0);` : `        o${i}_${h} += p${i} * v_${h};`);
      }
    }
    add(`      }`);
  };

  add(
    `var<workgroup> q_tile: array<vec4<f32>, ${rows * qStride}>;`,
    `var<workgroup> kv_tile: array<vec4<${stagedF32 ? 'f32' : 'u32'}>, ${keyTile * kvStride}>;`,
    `var<workgroup> sp: array<f32, ${keyTile * rows}>;`,
    `var<workgroup> row_scale: array<f32, ${rows}>;`,
    `var<workgroup> red: array<f32, ${workgroupSize}>;`,
    ``,
    ...entryPreamble('prefill_blocked_main'),
    // Queries, pre-scaled (rows past num_q are zeros).
    `  for (var i = tid; i < ${rows * (headDim / 4)}u; i += WG_SIZE) {`,
    `    let row = i / ${headDim / 4}u;`,
    `    let col = i % ${headDim / 4}u;`,
    `    let qi = row / HEADS_PER_WG;`,
    `    var v = vec4<f32>(0.0);`,
    `    if (qi < item.num_q) {`,
    `      v = queries[((item.q_row + qi) * params.num_query_heads + first_head + row % HEADS_PER_WG) * Q_VECS_PER_ROW + col] * params.scale;`,
    `    }`,
    `    q_tile[row * ${qStride}u + col] = v;`,
    `  }`,
    `  var window_start = block_of(item.key_start);`,
    `  load_table_window(item, window_start);`,
    // Softmax thread (row sm_row, part sm_part): the row's last visible key + 1, its running max and share of the sum.
    `  let sm_row = tid % ${rows}u;`,
    `  let sm_part = tid / ${rows}u;`,
    `  let owns_row = sm_row / HEADS_PER_WG < item.num_q;`,
    `  let row_limit = item.q_pos + sm_row / HEADS_PER_WG + 1u;`,
    `  var m = NEG_BIG;`,
    `  var l = 0.0;`,
    `  let score_row0 = (tid / ${tc}u) * ${scoreRows}u;`,
    `  let score_key0 = tid % ${tc}u;`,
    `  let out_row0 = (tid / ${words}u) * ${outRows}u;`,
    `  let pc = tid % ${words}u;`,
    `  let owns_output = tid < ${outThreads}u;`,
  );
  for (const i of OR) for (const h of halves) add(`  var o${i}_${h} = vec4<f32>(0.0);`);
  add(
    `  workgroupBarrier();`,
    `  for (var t0 = item.key_start; t0 < item.key_end; t0 += ${keyTile}u) {`,
    `    let tile_end = min(t0 + ${keyTile}u, item.key_end);`,
    `    let n = tile_end - t0;`,
    `    if (block_of(tile_end - 1u) >= window_start + TABLE_WINDOW) {`,
    `      window_start = block_of(t0);`,
    `      load_table_window(item, window_start);`,
    `      workgroupBarrier();`,
    `    }`,
  );
  stage(0);
  add(`    workgroupBarrier();`);
  // Scores: this thread's scoreRows × scoreKeys block, dot products over the packed words.
  if (idleScoring) add(`    if (tid < ${scoreThreads}u) {`);
  for (const i of SR) for (const j of SK) add(`    var s${i}_${j} = 0.0;`);
  add(`    for (var c = 0u; c < ${words}u; c++) {`);
  for (const j of SK) tileElements(`k${j}`, `(score_key0 + ${j * tc}u)`, 'c');
  for (const i of SR) {
    const at = `(score_row0 + ${i}u) * ${qStride}u + ${f16 ? '2u * c' : 'c'}`;
    add(`      let q${i}_lo = q_tile[${at}];`);
    if (f16) add(`      let q${i}_hi = q_tile[${at} + 1u];`);
    for (const j of SK) add(`      s${i}_${j} += ${halves.map((h) => `dot(q${i}_${h}, k${j}_${h})`).join(' + ')};`);
  }
  add(`    }`);
  for (const i of SR) for (const j of SK) add(`    sp[(score_key0 + ${j * tc}u) * ${rows}u + score_row0 + ${i}u] = s${i}_${j};`);
  if (idleScoring) add(`    }`);
  add(
    `    workgroupBarrier();`,
    // Softmax: the `parts` threads of a row split its column of S (a contiguous run of keys each); the
    // tile's row max goes through red, and each thread keeps its own share of the row sum.
    `    var visible = 0u;`,
    `    if (owns_row && row_limit > t0) {`,
    `      visible = min(n, row_limit - t0);`,
    `    }`,
    `    let part_start = sm_part * ${keysPerPart}u;`,
    `    let part_visible = min(visible, part_start + ${keysPerPart}u);`,
    `    var part_max = NEG_BIG;`,
    `    for (var j = part_start; j < part_visible; j++) {`,
    `      part_max = max(part_max, sp[j * ${rows}u + sm_row]);`,
    `    }`,
    `    red[tid] = part_max;`,
  );
  stage(1);
  add(
    `    workgroupBarrier();`,
    `    var tile_max = red[sm_row];`,
    ...range(parts - 1).map((k) => `    tile_max = max(tile_max, red[${(k + 1) * rows}u + sm_row]);`),
    `    let m_new = max(m, tile_max);`,
    `    let alpha = exp(m - m_new);`,
    `    var sum = 0.0;`,
    `    for (var j = part_start; j < min(n, part_start + ${keysPerPart}u); j++) {`,
    `      var p = 0.0;`,
    `      if (j < part_visible) {`,
    `        p = exp(sp[j * ${rows}u + sm_row] - m_new);`,
    `      }`,
    `      sp[j * ${rows}u + sm_row] = p;`,
    `      sum += p;`,
    `    }`,
    `    l = l * alpha + sum;`,
    `    m = m_new;`,
    `    if (sm_part == 0u) {`,
    `      row_scale[sm_row] = alpha;`,
    `    }`,
  );
  add(`    workgroupBarrier();`);
  if (idle) add(`    if (owns_output) {`);
  for (const i of OR) {
    add(`    let a${i} = row_scale[out_row0 + ${i}u];`);
    for (const h of halves) add(`    o${i}_${h} *= a${i};`);
  }
  add(`    if (tile_end > item.q_pos + 1u) {`);
  accumulate(true);
  add(`    } else {`);
  accumulate(false);
  add(`    }`);
  if (idle) add(`    }`);
  add(`    workgroupBarrier();`, `  }`);
  // Normalise and write the live rows.
  add(
    `  red[tid] = l;`,
    `  workgroupBarrier();`,
    `  if (sm_part == 0u) {`,
    `    var row_sum = l;`,
    ...range(parts - 1).map((k) => `    row_sum += red[${(k + 1) * rows}u + sm_row];`),
    `    row_scale[sm_row] = select(0.0, 1.0 / row_sum, row_sum > 0.0);`,
    `  }`,
    `  workgroupBarrier();`,
  );
  for (const i of OR) {
    add(
      `  {`,
      `    let row = min(out_row0 + ${i}u, ${rows - 1}u);`,
      `    let qi = row / HEADS_PER_WG;`,
      `    if (owns_output && qi < item.num_q) {`,
      `      let base = ((item.q_row + qi) * params.num_query_heads + first_head + row % HEADS_PER_WG) * Q_VECS_PER_ROW + pc * ${elemsPerWord / 4}u;`,
      `      let inv = row_scale[row];`,
    );
    halves.forEach((h, k) => add(`      results[base${k ? ` + ${k}u` : ''}] = o${i}_${h} * inv;`));
    add(`    }`, `  }`);
  }
  add(`}`);
  return L.join('\n');
}
