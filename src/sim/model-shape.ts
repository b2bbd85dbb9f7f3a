// Shape of the simulated transformer's attention. Invariants: numQueryHeads is a multiple of numKvHeads
// (query head h reads kv head floor(h / groupSize)); headDim is even (Q/K/V rows are sin/cos pairs).
export type KvDtype = 'f16' | 'f32';

export interface ModelShape {
  numLayers: number;
  numQueryHeads: number;
  numKvHeads: number;
  headDim: number;
  kvDtype: KvDtype;
}

export function bytesPerKvElement(shape: Pick<ModelShape, 'kvDtype'>): number {
  return shape.kvDtype === 'f16' ? 2 : 4;
}

/** Bytes of K and V for one token in one layer. */
export function kvBytesPerTokenPerLayer(shape: ModelShape): number {
  return 2 * shape.numKvHeads * shape.headDim * bytesPerKvElement(shape);
}

/** Bytes of K and V for one token over all layers. */
export function kvBytesPerToken(shape: ModelShape): number {
  return shape.numLayers * kvBytesPerTokenPerLayer(shape);
}

/** The kv head a query head reads (grouped-query attention). */
export function kvHeadOf(queryHead: number, shape: Pick<ModelShape, 'numQueryHeads' | 'numKvHeads'>): number {
  return Math.floor(queryHead / (shape.numQueryHeads / shape.numKvHeads));
}

/** The softmax scale the simulation uses: 1/sqrt(headDim). */
export function attentionScale(shape: Pick<ModelShape, 'headDim'>): number {
  return 1 / Math.sqrt(shape.headDim);
}
