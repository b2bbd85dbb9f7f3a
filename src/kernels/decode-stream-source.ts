// Generates the entry point of the streaming decode kernel for one shape (heads per workgroup, words
// per lane, unroll, prefetch, f16/f32). Invariants:
//   - Every per-(key u, head h, word w) value is its own WGSL variable: the loops over u, h, w are
//     unrolled here, so no array is indexed by a loop variable and nothing depends on the GPU compiler
//     promoting arrays to registers (NVIDIA's did not, at half the speed).
//   - K/V loads name the chunk buffer directly: one chunk switch per key (none for a one-chunk layer),
//     never one per load, which multiplies branches and made SwiftShader's shader compiler explode.
//   - The generated text depends only on the shape (it names the pipeline in the cache); the sizes
//     it shares with the fixed parts (LANES, UNROLL, KEY_GROUPS, …) stay override constants.
//   - Semantics are those stated in shaders/paged-attention-decode-stream.wgsl: keys past key_end load
//     as zeros and get p = 0; a missing block loads as zeros; a step's loads come before its use and,
//     with prefetch, before the previous step is folded.
//   - With config.rescaleThreshold, a head's running max m only moves when a step's largest score
//     passes m + threshold (then l and the accumulators are scaled by e^(m_old − m_new)); otherwise the
//     step's p = e^(s − m) ≤ e^threshold adds in unscaled. Every (m, l, acc) stays a valid state for
//     the merge, which never assumes m is the exact maximum.
//   - With the shared reduction every fold has one barrier, so folds happen only in workgroup-uniform
//     control flow (the key loop's bounds come from the work item); writesKv needs the subgroup one.
//   - With config.halfScores (f16 K/V, shader-f16), a lane's queries are vec4<f16> registers and each
//     16-byte K word is reinterpreted as two vec4<f16> (a bitcast, no conversion); the two dot products
//     of a word are added in f16 and the words' sums in f32, so no f16 sum has more than 8 terms.
//   - With writesKv (shaders/paged-attention-decode-write.wgsl) a work item that owns its query's key
//     stops the pool loop one key short (key_end = item.key_end − 1) and folds that key from the new
//     K/V in a one-key fold (key u = 0 only, live in group 0 alone: a quarter of a step at unroll 4);
//     head tile 0 then stages the key's K and V rows (the pool is never written here: flush-staged-kv
//     stores them after the dispatch).
import type { StreamDecodeConfig } from './attention-config';
import { entryPreamble, range } from './generated-entry';

const wgslFloat = (x: number): string => (Number.isInteger(x) ? `${x}.0` : `${x}`);

export function decodeStreamEntry(config: StreamDecodeConfig, f16: boolean, numChunks: number, writesKv = false): string {
  if (writesKv && config.reduction !== 'subgroup') throw new Error('the decode that stores K/V needs the subgroup reduction');
  const H = range(config.headsPerWorkgroup);
  const W = range(config.words);
  const U = range(config.unroll);
  const halves = f16 ? (['lo', 'hi'] as const) : (['lo'] as const);
  const halfScores = config.halfScores;
  if (halfScores && (!f16 || config.queryInSmem)) throw new Error('f16 scores need f16 K/V and queries in registers');
  /** The lazy-rescale threshold as a WGSL float literal, or undefined (rescale at every step). */
  const lazyThreshold = config.rescaleThreshold === undefined ? undefined : wgslFloat(config.rescaleThreshold);
  const lines: string[] = [];
  const add = (...l: string[]) => lines.push(...l);

  /** Loads the K/V words of the step starting at `base` into k{p}_u_w / v{p}_u_w. */
  const load = (base: string, prefix: string) => {
    for (const u of U) {
      add(
        `    let pos${prefix}${u} = ${base} + ${u}u * KEY_GROUPS + group;`,
        `    var code${prefix}${u} = NO_BLOCK;`,
        `    var logical${prefix}${u} = 0u;`,
        `    if (pos${prefix}${u} < key_end) {`,
        `      logical${prefix}${u} = block_of(pos${prefix}${u});`,
        `      let at = logical${prefix}${u} - window_start;`,
        `      code${prefix}${u} = smem[SMEM_TABLE + at / 4u][at % 4u];`,
        `    }`,
        `    let row${prefix}${u} = (code${prefix}${u} >> 2u) * params.vecs_per_block + head_offset + ` +
          `(pos${prefix}${u} - logical${prefix}${u} * params.block_size) * VECS_PER_ROW + lane;`,
        `    if (code${prefix}${u} != NO_BLOCK) {`,
      );
      // One chunk switch per key (not per word): a switch per load made SwiftShader's compiler explode.
      const loadsFrom = (chunk: number, indent: string) => {
        for (const w of W) {
          add(
            `${indent}${prefix}k_${u}_${w} = kv_chunk${chunk}[row${prefix}${u} + ${w}u * LANES];`,
            `${indent}${prefix}v_${u}_${w} = kv_chunk${chunk}[row${prefix}${u} + ${w}u * LANES + params.vecs_per_half];`,
          );
        }
      };
      if (numChunks === 1) {
        loadsFrom(0, '      ');
      } else {
        add(`      switch (code${prefix}${u} & 3u) {`);
        for (let c = 0; c < numChunks; c++) {
          add(`        ${c === numChunks - 1 ? 'default' : `case ${c}u`}: {`);
          loadsFrom(c, '          ');
          add(`        }`);
        }
        add(`      }`);
      }
      add(`    } else {`);
      for (const w of W) add(`      ${prefix}k_${u}_${w} = vec4<u32>(0u);`, `      ${prefix}v_${u}_${w} = vec4<u32>(0u);`);
      add(`    }`);
    }
  };
  const declareKv = (prefix: string) => {
    for (const u of U) for (const w of W) add(`  var ${prefix}k_${u}_${w}: vec4<u32>;`, `  var ${prefix}v_${u}_${w}: vec4<u32>;`);
  };
  const reloadWindowFor = (next: string) =>
    add(
      `      if (block_of(min(${next} + KEYS_PER_STEP, key_end) - 1u) >= window_start + TABLE_WINDOW) {`,
      `        workgroupBarrier();`,
      `        window_start = block_of(${next});`,
      `        load_table_window(item, window_start);`,
      `        workgroupBarrier();`,
      `      }`,
    );

  /**
   * Folds the keys base + u·KEY_GROUPS + group (u in `keys`: every u < UNROLL, or fewer) below `limit` held
   * in k_u_w / v_u_w: scores, online softmax, accumulators.
   */
  const fold = (base: string, limit: string, keys: readonly number[] = U) => {
    add(`    {`);
    if (config.queryInSmem) declareQuery('    ');
    for (const u of keys) {
      add(`    let live_${u} = ${base} + ${u}u * KEY_GROUPS + group < ${limit};`);
      for (const w of W) {
        add(`    let kl_${u}_${w} = ${halfScores ? 'half_lo' : 'unpack_lo'}(k_${u}_${w});`);
        if (f16) add(`    let kh_${u}_${w} = ${halfScores ? 'half_hi' : 'unpack_hi'}(k_${u}_${w});`);
      }
      for (const h of H) {
        const terms = halfScores
          ? W.map((w) => `f32(dot(q_${h}_${w}_lo, kl_${u}_${w}) + dot(q_${h}_${w}_hi, kh_${u}_${w}))`)
          : W.flatMap((w) => [`dot(q_${h}_${w}_lo, kl_${u}_${w})`, ...(f16 ? [`dot(q_${h}_${w}_hi, kh_${u}_${w})`] : [])]);
        add(`    var s_${u}_${h} = ${terms.join(' + ')};`);
      }
    }
    if (config.reduction === 'subgroup') {
      add(`    for (var mask = 1u; mask < LANES; mask = mask << 1u) {`);
      for (const u of keys) for (const h of H) add(`      s_${u}_${h} += subgroupShuffleXor(s_${u}_${h}, mask);`);
      add(`    }`);
    } else {
      // Through workgroup memory: slot (u, h) of this group holds LANES partials = LANES / 4 vec4.
      const perSlot = config.lanes / 4;
      add(`    let scores_at = SMEM_SCORES + score_parity * SCORE_VECS + group * ${config.unroll * config.headsPerWorkgroup * perSlot}u;`);
      for (const u of keys) {
        for (const h of H) add(`    smem[scores_at + ${(u * config.headsPerWorkgroup + h) * perSlot}u + lane / 4u][lane % 4u] = bitcast<u32>(s_${u}_${h});`);
      }
      add(`    workgroupBarrier();`);
      for (const u of keys) {
        for (const h of H) {
          const parts = range(perSlot).map((k) => `sum4(smem[scores_at + ${(u * config.headsPerWorkgroup + h) * perSlot + k}u])`);
          add(`    s_${u}_${h} = ${parts.join(' + ')};`);
        }
      }
      add(`    score_parity = 1u - score_parity;`);
    }
    for (const u of keys) {
      for (const w of W) {
        add(`    let vl_${u}_${w} = unpack_lo(v_${u}_${w});`);
        if (f16) add(`    let vh_${u}_${w} = unpack_hi(v_${u}_${w});`);
      }
    }
    const accumulators = (h: number) => W.flatMap((w) => halves.map((half) => ({ a: `a_${h}_${w}_${half}`, v: half === 'lo' ? 'vl' : 'vh', w })));
    for (const h of H) {
      const maxTerms = keys.map((u) => `select(NEG_BIG, s_${u}_${h}, live_${u})`).reduce((a, b) => `max(${a}, ${b})`);
      const pSum = keys.map((u) => `p_${u}_${h}`).join(' + ');
      const pv = (v: string, w: number) => keys.map((u) => `p_${u}_${h} * ${v}_${u}_${w}`).join(' + ');
      if (lazyThreshold === undefined) {
        add(`    let mn_${h} = max(m_${h}, ${maxTerms});`, `    let alpha_${h} = exp(m_${h} - mn_${h});`);
        for (const u of keys) add(`    let p_${u}_${h} = select(0.0, exp(s_${u}_${h} - mn_${h}), live_${u});`);
        add(`    l_${h} = l_${h} * alpha_${h} + ${pSum};`, `    m_${h} = mn_${h};`);
        for (const { a, v, w } of accumulators(h)) add(`    ${a} = ${a} * alpha_${h} + ${pv(v, w)};`);
      } else {
        // Raise the running max (and rescale) only when this step's scores pass it by more than the threshold.
        add(`    let sm_${h} = ${maxTerms};`, `    if (sm_${h} > m_${h} + ${lazyThreshold}) {`, `      let alpha = exp(m_${h} - sm_${h});`, `      l_${h} = l_${h} * alpha;`);
        for (const { a } of accumulators(h)) add(`      ${a} = ${a} * alpha;`);
        add(`      m_${h} = sm_${h};`, `    }`);
        for (const u of keys) add(`    let p_${u}_${h} = select(0.0, exp(s_${u}_${h} - m_${h}), live_${u});`);
        add(`    l_${h} = l_${h} + ${pSum};`);
        for (const { a, v, w } of accumulators(h)) add(`    ${a} = ${a} + ${pv(v, w)};`);
      }
    }
    add(`    }`);
  };
  /** Head tile 0 of a workgroup owning its key stages the new K and V rows of its kv head (staged_kv). */
  const storeNewKv = () => {
    add(
      `  if (own_key && task.z == 0u) {`,
      `    let staged_k = (item.q_row * params.num_kv_heads + kv_head) * 2u * VECS_PER_ROW;`,
      `    for (var i = tid; i < VECS_PER_ROW; i += WG_SIZE) {`,
      `      staged_kv[staged_k + i] = new_kv_vec(false, item.q_row, kv_head, i);`,
      `      staged_kv[staged_k + VECS_PER_ROW + i] = new_kv_vec(true, item.q_row, kv_head, i);`,
      `    }`,
      `  }`,
    );
  };
  if (halfScores) {
    // A packed K word as f16 halves (elements 0–3, 4–7), in the order unpack_lo / unpack_hi give them.
    add(
      `fn half_lo(w: vec4<u32>) -> vec4<f16> {`,
      `  return vec4<f16>(bitcast<vec2<f16>>(w.x), bitcast<vec2<f16>>(w.y));`,
      `}`,
      `fn half_hi(w: vec4<u32>) -> vec4<f16> {`,
      `  return vec4<f16>(bitcast<vec2<f16>>(w.z), bitcast<vec2<f16>>(w.w));`,
      `}`,
    );
  }
  add(
    ...entryPreamble('decode_stream_main'),
    `  let lane = tid % LANES;`,
    `  let group = tid / LANES;`,
    `  let head_offset = kv_head * params.vecs_per_head_block;`,
    // With writesKv, a work item that owns its query's key reads it from the new K/V after the loop.
    ...(writesKv
      ? [`  let own_key = owns_key(item);`, `  let key_end = item.key_end - select(0u, 1u, own_key);`]
      : [`  let key_end = item.key_end;`]),
  );
  // Query elements (pre-scaled) and per-head state.
  if (config.queryInSmem) {
    add(
      `  for (var i = tid; i < CELLS; i += WG_SIZE) {`,
      `    let q_at = (item.q_row * params.num_query_heads + first_head + i / Q_VECS_PER_ROW) * Q_VECS_PER_ROW + i % Q_VECS_PER_ROW;`,
      `    smem[SMEM_Q + i] = bitcast<vec4<u32>>(queries[q_at] * params.scale);`,
      `  }`,
    );
  }
  /** Declares q_h_w_lo / _hi (from the staged copy or straight from the query buffer). */
  const declareQuery = (indent: string) => {
    for (const h of H) {
      if (!config.queryInSmem) add(`${indent}let q_row_${h} = (item.q_row * params.num_query_heads + first_head + ${h}u) * Q_VECS_PER_ROW;`);
      for (const w of W) {
        for (const half of halves) {
          const offset = half === 'hi' ? ' + 1u' : '';
          add(
            config.queryInSmem
              ? `${indent}let q_${h}_${w}_${half} = bitcast<vec4<f32>>(smem[SMEM_Q + ${h}u * Q_VECS_PER_ROW + q_vec_of(lane, ${w}u)${offset}]);`
              : halfScores
                ? `${indent}let q_${h}_${w}_${half} = vec4<f16>(queries[q_row_${h} + q_vec_of(lane, ${w}u)${offset}] * params.scale);`
                : `${indent}let q_${h}_${w}_${half} = queries[q_row_${h} + q_vec_of(lane, ${w}u)${offset}] * params.scale;`,
          );
        }
      }
    }
  };
  if (!config.queryInSmem) declareQuery('  ');
  for (const h of H) {
    add(`  var m_${h} = NEG_BIG;`, `  var l_${h} = 0.0;`);
    for (const w of W) for (const half of halves) add(`  var a_${h}_${w}_${half} = vec4<f32>(0.0);`);
  }
  if (config.reduction === 'shared') add(`  var score_parity = 0u;`);
  add(
    `  var window_start = 0u;`,
    `  if (item.key_start < key_end) {`,
    `    window_start = block_of(item.key_start);`,
    `    load_table_window(item, window_start);`,
    `  }`,
    `  workgroupBarrier();`,
  );
  declareKv('');
  add(`  {`);
  load('item.key_start', '');
  add(`  }`);
  add(`  for (var base = item.key_start; base < key_end; base += KEYS_PER_STEP) {`, `    let next = base + KEYS_PER_STEP;`);
  if (config.prefetch) {
    declareKv('n');
    add(`    if (next < key_end) {`);
    reloadWindowFor('next');
    load('next', 'n');
    add(`    }`);
  }
  fold('base', 'key_end');
  if (config.prefetch) {
    for (const u of U) for (const w of W) add(`    k_${u}_${w} = nk_${u}_${w};`, `    v_${u}_${w} = nv_${u}_${w};`);
  } else {
    add(`    if (next < key_end) {`);
    reloadWindowFor('next');
    load('next', '');
    add(`    }`);
  }
  add(`  }`);
  if (writesKv) {
    // The query's own key, from the new K/V (shaders/paged-attention-decode-write.wgsl), in a fold of key
    // u = 0 alone: group 0 holds it; every group runs the fold (the score reduction's shuffles need the
    // whole subgroup), and the others' key is past the limit and adds nothing. A fold of all UNROLL keys
    // would cost a whole step.
    add(`  if (own_key) {`);
    for (const w of W) add(`    k_0_${w} = vec4<u32>(0u);`, `    v_0_${w} = vec4<u32>(0u);`);
    add(`    if (group == 0u) {`);
    for (const w of W) {
      add(
        `      k_0_${w} = new_kv_vec(false, item.q_row, kv_head, lane + ${w}u * LANES);`,
        `      v_0_${w} = new_kv_vec(true, item.q_row, kv_head, lane + ${w}u * LANES);`,
      );
    }
    add(`    }`);
    fold('key_end', 'key_end + 1u', [0]);
    add(`  }`);
    storeNewKv();
  }
  // Merge the key groups' states through workgroup memory, ROUND_GROUPS groups at a time.
  add(
    `  merge_init();`,
    `  for (var g0 = 0u; g0 < KEY_GROUPS; g0 += ROUND_GROUPS) {`,
    `    workgroupBarrier();`,
    `    if (group >= g0 && group < g0 + ROUND_GROUPS) {`,
    `      let rg = group - g0;`,
  );
  for (const h of H) {
    add(
      `      if (lane == 0u) {`,
      `        smem[SMEM_STATS + rg * HEADS_PER_WG + ${h}u] = bitcast<vec4<u32>>(vec4<f32>(m_${h}, l_${h}, 0.0, 0.0));`,
      `      }`,
    );
    for (const w of W) {
      add(`      smem[SMEM_ACC + rg * CELLS + ${h}u * Q_VECS_PER_ROW + q_vec_of(lane, ${w}u)] = bitcast<vec4<u32>>(a_${h}_${w}_lo);`);
      if (f16) add(`      smem[SMEM_ACC + rg * CELLS + ${h}u * Q_VECS_PER_ROW + q_vec_of(lane, ${w}u) + 1u] = bitcast<vec4<u32>>(a_${h}_${w}_hi);`);
    }
  }
  add(`    }`, `    workgroupBarrier();`, `    merge_round(g0);`, `  }`, `  merge_write(item, first_head);`, `}`);
  return lines.join('\n');
}
