// Shapes, layouts and deterministic randomness shared by the KV kernel tests (write-kv, gather-kv,
// copy-blocks). Invariants: layoutOf(s) is the layout the cache would build for one layer of shape s,
// split into chunks of `blocksPerChunk` blocks when given; rng(seed) repeats for the same seed.
import { computeKvLayout, type KvDtype, type KvLayout } from '../../src/pool/kv-layout';

/** A small linear congruential generator in [0, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export interface Shape {
  kvDtype: KvDtype;
  headDim: number;
  blockSize: number;
  numKvHeads: number;
  numBlocks: number;
  blocksPerChunk?: number;
}

export function layoutOf(s: Shape): KvLayout {
  const blockBytes = 2 * s.numKvHeads * s.blockSize * s.headDim * (s.kvDtype === 'f16' ? 2 : 4);
  return computeKvLayout({ numLayers: 1, ...s }, blockBytes * (s.blocksPerChunk ?? s.numBlocks));
}
