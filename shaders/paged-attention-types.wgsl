// Types shared by every paged-attention shader (tile engine and merge): the per-dispatch parameter block
// and the work item. Invariants: the layouts match attention-resources.ts (PARAMS_WORDS words per
// parameter block) and attention-plan.ts (WORK_ITEM_WORDS words per item) word for word.

// Per-dispatch values and the pool/table geometry (uniform rather than override so that one pipeline
// serves every block size, pool size, chunking, row stride and head count with the same tile shape).
struct Params {
  item_base: u32,
  num_items: u32,
  stats_base: u32,
  scale: f32,
  write_partials: u32,
  block_size: u32,
  num_blocks: u32,
  blocks_per_chunk: u32,
  row_stride: u32,
  num_kv_heads: u32,
  group_size: u32,
  num_query_heads: u32,
  vecs_per_head_block: u32,
  vecs_per_half: u32,
  vecs_per_block: u32,
  /** log2(block_size) when it is a power of two, else 32 (divide instead). */
  block_shift: u32,
}

// Work item: keys [key_start, key_end) of sequence seq_slot for num_q queries at positions q_pos..
// stored at rows q_row..; aux = first partial slot (decode writing partials); tail_block = the global id
// of the block holding position q_pos + num_q - 1, which the block table's GPU copy may not hold yet,
// or 0xffffffff to read that block from the table like the others.
struct WorkItem {
  seq_slot: u32,
  q_row: u32,
  num_q: u32,
  q_pos: u32,
  key_start: u32,
  key_end: u32,
  aux: u32,
  tail_block: u32,
}
