// Geometry of the paged KV pool shared by the KV kernels (write-kv, gather-kv, copy-blocks), prepended
// to each of them by kv-kernel-core.ts. Invariants: the values come from layoutConstants(layout) (see
// kv-bindings.ts); chunk c holds blocks [c·BLOCKS_PER_CHUNK, (c+1)·BLOCKS_PER_CHUNK); a block is
// [K | V], each [NUM_KV_HEADS][BLOCK_SIZE][WORDS_PER_ROW] u32 words (f16 caches pack two elements per
// word, f32 caches one).

override BLOCK_SIZE: u32;
override NUM_KV_HEADS: u32;
override WORDS_PER_ROW: u32;
override BLOCKS_PER_CHUNK: u32;
override NUM_BLOCKS: u32;
override F16: bool;

override WORDS_PER_HEAD_BLOCK: u32 = WORDS_PER_ROW * BLOCK_SIZE;
override WORDS_PER_HALF: u32 = WORDS_PER_HEAD_BLOCK * NUM_KV_HEADS;
override WORDS_PER_BLOCK: u32 = 2u * WORDS_PER_HALF;
override HEAD_DIM: u32 = select(WORDS_PER_ROW, 2u * WORDS_PER_ROW, F16);
