// Layout of the paged KV memory, shared by host code, WGSL kernels (as override constants) and CPU
// references. Invariants:
//   - Every layer owns `numChunks` GPU buffers ("chunks"); chunk c holds global blocks
//     [c*blocksPerChunk, min((c+1)*blocksPerChunk, numBlocks)). Block ids are global and the same for
//     every layer, so one block table serves all layers.
//   - One block stores K then V: [K | V], each [numKvHeads][blockSize][headDim]. So one block of one head
//     (blockSize × headDim elements) is contiguous, for K and for V.
//   - Elements are f32 (one u32 word each) or f16 packed two per u32 word (low half = even element),
//     read with unpack2x16float; headDim is a multiple of 8 so a token row is whole vec4<u32> words.
//   - A chunk never exceeds maxStorageBufferBindingSize nor maxBufferSize, and numChunks ≤ MAX_KV_CHUNKS.
import { ConfigError } from '../errors';

export type KvDtype = 'f16' | 'f32';

/** Kernels bind this many chunk buffers per layer (unused slots get small spare buffers). */
export const MAX_KV_CHUNKS = 4;
export const MAX_HEAD_DIM = 256;

export interface KvShape {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
  numBlocks: number;
  kvDtype: KvDtype;
}

export interface KvLayout extends KvShape {
  /** Bytes per element as stored (2 for f16, 4 for f32). */
  elementBytes: number;
  /** u32 words per token row of one head (headDim elements). */
  wordsPerRow: number;
  /** u32 words for one head's rows in one block (blockSize rows): the contiguous unit. */
  wordsPerHeadBlock: number;
  /** u32 words of the K half (or V half) of one block. */
  wordsPerHalf: number;
  /** u32 words of one whole block (K and V, all heads). */
  wordsPerBlock: number;
  bytesPerBlock: number;
  blocksPerChunk: number;
  numChunks: number;
  /** Bytes of each chunk buffer of one layer (the last may hold fewer blocks but is sized the same). */
  chunkBytes: number[];
  /** Total bytes over all layers. */
  totalBytes: number;
}

export function bytesPerBlock(shape: Omit<KvShape, 'numBlocks' | 'numLayers'>): number {
  const elementBytes = shape.kvDtype === 'f16' ? 2 : 4;
  return 2 * shape.numKvHeads * shape.blockSize * shape.headDim * elementBytes;
}

function requirePositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`${name} must be a positive integer (got ${v})`);
}

export function computeKvLayout(shape: KvShape, maxChunkBytes: number): KvLayout {
  requirePositiveInt('numLayers', shape.numLayers);
  requirePositiveInt('numKvHeads', shape.numKvHeads);
  requirePositiveInt('headDim', shape.headDim);
  requirePositiveInt('blockSize', shape.blockSize);
  requirePositiveInt('numBlocks', shape.numBlocks);
  if (shape.kvDtype !== 'f16' && shape.kvDtype !== 'f32') {
    throw new ConfigError(`kvDtype must be 'f16' or 'f32' (got ${String(shape.kvDtype)})`);
  }
  if (shape.headDim % 8 !== 0 || shape.headDim > MAX_HEAD_DIM) {
    throw new ConfigError(`headDim must be a multiple of 8 between 8 and ${MAX_HEAD_DIM} (got ${shape.headDim})`);
  }
  const elementBytes = shape.kvDtype === 'f16' ? 2 : 4;
  const wordsPerRow = (shape.headDim * elementBytes) / 4;
  const wordsPerHeadBlock = wordsPerRow * shape.blockSize;
  const wordsPerHalf = wordsPerHeadBlock * shape.numKvHeads;
  const wordsPerBlock = 2 * wordsPerHalf;
  const blockBytes = wordsPerBlock * 4;
  if (blockBytes > maxChunkBytes) {
    throw new ConfigError(
      `one KV block needs ${blockBytes} bytes but the device binds at most ${maxChunkBytes} bytes per buffer; lower blockSize`,
    );
  }
  const blocksPerChunk = Math.min(shape.numBlocks, Math.floor(maxChunkBytes / blockBytes));
  const numChunks = Math.ceil(shape.numBlocks / blocksPerChunk);
  if (numChunks > MAX_KV_CHUNKS) {
    throw new ConfigError(
      `one layer of ${shape.numBlocks} blocks needs ${numChunks} GPU buffers of at most ${maxChunkBytes} bytes; ` +
        `at most ${MAX_KV_CHUNKS} are supported: lower numBlocks (≤ ${blocksPerChunk * MAX_KV_CHUNKS}) or the memory budget`,
    );
  }
  const chunkBytes: number[] = [];
  for (let c = 0; c < numChunks; c++) {
    const blocks = Math.min(blocksPerChunk, shape.numBlocks - c * blocksPerChunk);
    chunkBytes.push(blocks * blockBytes);
  }
  const totalBytes = chunkBytes.reduce((a, b) => a + b, 0) * shape.numLayers;
  return {
    ...shape,
    elementBytes,
    wordsPerRow,
    wordsPerHeadBlock,
    wordsPerHalf,
    wordsPerBlock,
    bytesPerBlock: blockBytes,
    blocksPerChunk,
    numChunks,
    chunkBytes,
    totalBytes,
  };
}

/** Chunk index and block index within the chunk of global block `block`. */
export function chunkOf(layout: KvLayout, block: number): { chunk: number; local: number } {
  return { chunk: Math.floor(block / layout.blocksPerChunk), local: block % layout.blocksPerChunk };
}

/**
 * Word offset, inside its chunk, of element 0 (or pair 0 for f16) of token row `slotInBlock` of head
 * `head` in the K (kv = 0) or V (kv = 1) half of global block `block`.
 */
export function rowWordOffset(layout: KvLayout, block: number, kv: 0 | 1, head: number, slotInBlock: number): number {
  const local = block % layout.blocksPerChunk;
  return local * layout.wordsPerBlock + kv * layout.wordsPerHalf + head * layout.wordsPerHeadBlock + slotInBlock * layout.wordsPerRow;
}
