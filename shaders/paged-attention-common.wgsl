// Tile engine shared by the decode and prefill kernels: one workgroup attends ROWS query rows
// (QUERIES_PER_WG queries × HEADS_PER_WG heads of one kv head) over the keys [key_start, key_end) of one
// work item, KEY_TILE keys at a time.
// Invariants:
//   - K/V are read only through the block table (row seq_slot), staged per tile into workgroup memory
//     with coalesced vec4<u32> loads of contiguous block rows; positions ≥ key_end and invalid block ids
//     stage zeros. The table slice is prefetched into a TABLE_WINDOW-entry window, reloaded only when
//     a tile leaves it; each window entry holds (block % blocks_per_chunk) << 2 | chunk (or NO_BLOCK),
//     so staging does no division by the chunk size.
//   - Row r = query (r / HEADS_PER_WG) × head (r % HEADS_PER_WG); query qi sees keys ≤ q_pos + qi.
//   - Online softmax per row: state (max after even tiles, max after odd tiles, sum, alpha); tile k
//     reads the max in component k & 1 and its row leader writes the new max into the other one, so
//     no thread reads a value being written. Masked keys get p = 0 exactly.
//   - Score threads are laid out (row, key group, dot part) with the dot part fastest, so reductions
//     over a row are over aligned segments of consecutive tids (see the lanes files).
//   - All workgroup memory is one array `smem` of vec4<u32> carved into regions at override offsets
//     (SMEM_*), values stored as bit patterns; attention-config.ts mirrors the region sizes to keep
//     the total within the device limit.
//   - Barriers are in workgroup-uniform control flow: loop bounds come from the uniform buffer and from
//     work items read at a workgroup-uniform index.
//   - KEYS_PER_THREAD ≤ MAX_KEYS_PER_THREAD, PV_SLOTS ≤ MAX_PV_SLOTS, ROWS × (KEY_TILE /
//     KEYS_PER_THREAD) × DOT_SPLIT ≤ WG_SIZE, ROWS × VECS_PER_ROW × PV_LANES ≤ PV_SLOTS × WG_SIZE, and
//     PV_LANES > 1 only when PV_SLOTS = 1 (the host chooses them; see attention-config.ts).

override QUERIES_PER_WG: u32;
override KEY_TILE: u32;
override KEYS_PER_THREAD: u32;
override DOT_SPLIT: u32;
override PV_LANES: u32;
override PV_SLOTS: u32;

override ROWS: u32 = QUERIES_PER_WG * HEADS_PER_WG;
override TILE_STRIDE: u32 = VECS_PER_ROW + 1u;
override Q_STRIDE: u32 = Q_VECS_PER_ROW + 1u;

const MAX_KEYS_PER_THREAD: u32 = 16u;
const MAX_PV_SLOTS: u32 = 8u;

// Regions of smem, in vec4 units: staged q (f32 bits) and K and V tiles (packed words), their rows
// padded by one vec4 so that threads reading different rows hit different banks, p (f32 scalars), table window (i32 scalars), row state (one vec4 per
// row), reduction scratch (WG_SIZE scalars), PV-lane reduction (2 vec4 per thread, when PV_LANES > 1).
override SMEM_Q: u32 = 0u;
override SMEM_K: u32 = SMEM_Q + ROWS * Q_STRIDE;
override SMEM_V: u32 = SMEM_K + KEY_TILE * TILE_STRIDE;
override SMEM_P: u32 = SMEM_V + KEY_TILE * TILE_STRIDE;
override SMEM_TABLE: u32 = SMEM_P + (ROWS * KEY_TILE + 3u) / 4u;
override SMEM_ROWS: u32 = SMEM_TABLE + TABLE_WINDOW / 4u;
override SMEM_RED: u32 = SMEM_ROWS + ROWS;
override SMEM_RED_O: u32 = SMEM_RED + WG_SIZE / 4u;
override SMEM_LEN: u32 = SMEM_RED_O + select(0u, 2u * WG_SIZE, PV_LANES > 1u);

var<workgroup> smem: array<vec4<u32>, SMEM_LEN>;

/** Scalar index of component `field` of row `r`'s state (0/1 max by tile parity, 2 sum, 3 alpha). */
fn row_field(r: u32, field: u32) -> u32 {
  return (SMEM_ROWS + r) * 4u + field;
}

fn stage_queries(item: WorkItem, first_head: u32) {
  for (var i = tid; i < ROWS * Q_VECS_PER_ROW; i += WG_SIZE) {
    let row = i / Q_VECS_PER_ROW;
    let qi = row / HEADS_PER_WG;
    var v = vec4<f32>(0.0);
    if (qi < item.num_q) {
      let head = first_head + row % HEADS_PER_WG;
      v = queries[((item.q_row + qi) * params.num_query_heads + head) * Q_VECS_PER_ROW + i % Q_VECS_PER_ROW] * params.scale;
    }
    smem[SMEM_Q + row * Q_STRIDE + i % Q_VECS_PER_ROW] = bitcast<vec4<u32>>(v);
  }
  if (tid < ROWS) {
    smem[SMEM_ROWS + tid] = bitcast<vec4<u32>>(vec4<f32>(NEG_BIG, NEG_BIG, 0.0, 1.0));
  }
}

// K and V words of keys [t0, tile_end) → the K and V tiles (zeros past tile_end or for missing blocks).
// Consecutive threads load consecutive words of a block's contiguous rows.
fn stage_kv(kv_head: u32, t0: u32, tile_end: u32, window_start: u32) {
  for (var i = tid; i < KEY_TILE * VECS_PER_ROW; i += WG_SIZE) {
    let key = i / VECS_PER_ROW;
    let col = i % VECS_PER_ROW;
    let pos = t0 + key;
    var kv = array<vec4<u32>, 2>(vec4<u32>(0u), vec4<u32>(0u));
    if (pos < tile_end) {
      kv = load_key_words(kv_head, pos, col, window_start);
    }
    smem[SMEM_K + key * TILE_STRIDE + col] = kv[0];
    smem[SMEM_V + key * TILE_STRIDE + col] = kv[1];
  }
}

// Scores of tile number `tile` (first key t0) → p, and the row state. Ends with a barrier.
fn score_tile(item: WorkItem, t0: u32, tile: u32, width: u32) {
  let key_groups = KEY_TILE / KEYS_PER_THREAD;
  let part = tid % DOT_SPLIT;
  let group = (tid / DOT_SPLIT) % key_groups;
  let row = tid / (DOT_SPLIT * key_groups);
  let row_in_tile = row < ROWS;
  let r = min(row, ROWS - 1u);
  let first_key = group * KEYS_PER_THREAD;
  var s: array<f32, MAX_KEYS_PER_THREAD>;
  if (row_in_tile) {
    let q_base = SMEM_Q + r * Q_STRIDE;
    let k_base = SMEM_K + first_key * TILE_STRIDE;
    let q_step = ELEMS_PER_VEC / 4u;
    for (var c = part; c < VECS_PER_ROW; c += DOT_SPLIT) {
      let qa = bitcast<vec4<f32>>(smem[q_base + q_step * c]);
      let qb = bitcast<vec4<f32>>(smem[q_base + q_step * c + q_step - 1u]);
      for (var j = 0u; j < KEYS_PER_THREAD; j++) {
        let w = smem[k_base + j * TILE_STRIDE + c];
        var d = dot(qa, unpack_lo(w));
        if (KV_F16) {
          d += dot(qb, unpack_hi(w));
        }
        s[j] += d;
      }
    }
  }
  if (DOT_SPLIT > 1u) {
    for (var j = 0u; j < KEYS_PER_THREAD; j++) {
      s[j] = seg_sum(s[j], DOT_SPLIT, width);
    }
  }
  let qi = r / HEADS_PER_WG;
  let last_visible = min(item.key_end, item.q_pos + qi + 1u);
  let row_live = row_in_tile && qi < item.num_q;
  var local_max = NEG_BIG;
  for (var j = 0u; j < KEYS_PER_THREAD; j++) {
    let visible = row_live && t0 + first_key + j < last_visible;
    s[j] = select(NEG_BIG, s[j], visible);
    local_max = max(local_max, s[j]);
  }
  let segment = DOT_SPLIT * key_groups;
  let parity = tile & 1u;
  let m_old = sm_get(row_field(r, parity));
  let m_new = max(m_old, seg_max(local_max, segment, width));
  var local_sum = 0.0;
  for (var j = 0u; j < KEYS_PER_THREAD; j++) {
    let visible = row_live && t0 + first_key + j < last_visible;
    let p = select(0.0, exp(s[j] - m_new), visible);
    local_sum += p;
    if (row_in_tile && part == 0u) {
      sm_set(SMEM_P * 4u + r * KEY_TILE + first_key + j, p);
    }
  }
  let tile_sum = seg_sum(select(0.0, local_sum, part == 0u), segment, width);
  if (row_in_tile && part == 0u && group == 0u) {
    let alpha = exp(m_old - m_new);
    sm_set(row_field(r, 1u - parity), m_new);
    sm_set(row_field(r, 2u), sm_get(row_field(r, 2u)) * alpha + tile_sum);
    sm_set(row_field(r, 3u), alpha);
  }
  workgroupBarrier();
}

// o = o · alpha + P · V for this thread's (row, column, key lane) cells.
fn accumulate_tile(o_lo: ptr<function, array<vec4<f32>, MAX_PV_SLOTS>>,
                   o_hi: ptr<function, array<vec4<f32>, MAX_PV_SLOTS>>, tile_len: u32) {
  let cells = ROWS * VECS_PER_ROW;
  for (var slot = 0u; slot < PV_SLOTS; slot++) {
    let i = tid + slot * WG_SIZE;
    let lane = i / cells;
    if (lane < PV_LANES) {
      let row = (i % cells) / VECS_PER_ROW;
      let col = i % VECS_PER_ROW;
      let alpha = sm_get(row_field(row, 3u));
      var lo = (*o_lo)[slot] * alpha;
      var hi = (*o_hi)[slot] * alpha;
      for (var t = lane; t < tile_len; t += PV_LANES) {
        let p = sm_get(SMEM_P * 4u + row * KEY_TILE + t);
        // A masked key (p == 0) contributes nothing, not 0 · V: V may hold NaN or ∞.
        if (p != 0.0) {
          let w = smem[SMEM_V + t * TILE_STRIDE + col];
          lo += p * unpack_lo(w);
          if (KV_F16) {
            hi += p * unpack_hi(w);
          }
        }
      }
      (*o_lo)[slot] = lo;
      (*o_hi)[slot] = hi;
    }
  }
}

// Writes normalised rows, or (write_partials) unnormalised accumulators + (max, sum) per head.
fn write_results(item: WorkItem, first_head: u32, tiles: u32, o_lo: ptr<function, array<vec4<f32>, MAX_PV_SLOTS>>,
                 o_hi: ptr<function, array<vec4<f32>, MAX_PV_SLOTS>>) {
  let cells = ROWS * VECS_PER_ROW;
  if (PV_LANES > 1u) {
    smem[SMEM_RED_O + 2u * tid] = bitcast<vec4<u32>>((*o_lo)[0]);
    smem[SMEM_RED_O + 2u * tid + 1u] = bitcast<vec4<u32>>((*o_hi)[0]);
    workgroupBarrier();
    if (tid < cells) {
      for (var lane = 1u; lane < PV_LANES; lane++) {
        let j = tid + lane * cells;
        (*o_lo)[0] += bitcast<vec4<f32>>(smem[SMEM_RED_O + 2u * j]);
        (*o_hi)[0] += bitcast<vec4<f32>>(smem[SMEM_RED_O + 2u * j + 1u]);
      }
    }
  }
  let vecs_per_col = ELEMS_PER_VEC / 4u;
  for (var slot = 0u; slot < PV_SLOTS; slot++) {
    let i = tid + slot * WG_SIZE;
    if (i < cells) {
      let row = i / VECS_PER_ROW;
      let col = i % VECS_PER_ROW;
      let qi = row / HEADS_PER_WG;
      let head = first_head + row % HEADS_PER_WG;
      if (qi < item.num_q) {
        var lo = (*o_lo)[slot];
        var hi = (*o_hi)[slot];
        let row_sum = sm_get(row_field(row, 2u));
        var base: u32;
        if (params.write_partials != 0u) {
          let partial_slot = item.aux + head;
          base = partial_slot * Q_VECS_PER_ROW + col * vecs_per_col;
          if (col == 0u) {
            results[params.stats_base + partial_slot] = vec4<f32>(sm_get(row_field(row, tiles & 1u)), row_sum, 0.0, 0.0);
          }
        } else {
          lo /= row_sum;
          hi /= row_sum;
          base = ((item.q_row + qi) * params.num_query_heads + head) * Q_VECS_PER_ROW + col * vecs_per_col;
        }
        results[base] = lo;
        if (KV_F16) {
          results[base + 1u] = hi;
        }
      }
    }
  }
}

/** Attends work item `item_index` for HEADS_PER_WG heads (tile `head_tile`) of kv head `kv_head`. */
fn attend(item_index: u32, kv_head: u32, head_tile: u32, width: u32) {
  let item = work_items[params.item_base + item_index];
  let first_head = kv_head * params.group_size + head_tile * HEADS_PER_WG;
  stage_queries(item, first_head);
  var o_lo: array<vec4<f32>, MAX_PV_SLOTS>;
  var o_hi: array<vec4<f32>, MAX_PV_SLOTS>;
  var window_start = 0u;
  var window_loaded = false;
  var tile = 0u;
  for (var t0 = item.key_start; t0 < item.key_end; t0 += KEY_TILE) {
    let tile_end = min(t0 + KEY_TILE, item.key_end);
    if (!window_loaded || block_of(tile_end - 1u) >= window_start + TABLE_WINDOW) {
      window_start = block_of(t0);
      window_loaded = true;
      load_table_window(item, window_start);
      workgroupBarrier();
    }
    stage_kv(kv_head, t0, tile_end, window_start);
    workgroupBarrier();
    score_tile(item, t0, tile, width);
    accumulate_tile(&o_lo, &o_hi, tile_end - t0);
    workgroupBarrier();
    tile += 1u;
  }
  write_results(item, first_head, tile, &o_lo, &o_hi);
}
