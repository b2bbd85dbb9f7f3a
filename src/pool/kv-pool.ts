// The physical KV memory on the GPU: for every layer, `layout.numChunks` storage buffers holding the
// K and V halves of every block (see kv-layout.ts). Invariants: the total size never exceeds the memory
// budget it was sized from; creation either returns a pool whose every buffer exists or throws a typed
// error (GpuOutOfMemoryError, GpuValidationError) after destroying whatever it had created, so a failed
// creation leaks nothing; after destroy() no buffer of the pool is used again.
import type { DeviceGuard } from '../gpu/device-guard';
import { ConfigError } from '../errors';
import { bytesPerBlock, computeKvLayout, type KvDtype, type KvLayout } from './kv-layout';

export interface PoolSizing {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
  kvDtype: KvDtype;
  /** Exactly this many blocks … */
  numBlocks?: number;
  /** … or as many as fit in this many bytes (all layers, K and V). */
  memoryBudgetBytes?: number;
}

/** Largest chunk the device can bind as one storage buffer (a multiple of 16 bytes). */
export function maxChunkBytes(limits: { maxStorageBufferBindingSize: number; maxBufferSize: number }, override?: number): number {
  const cap = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize, override ?? Infinity);
  return Math.floor(cap / 16) * 16;
}

/** Resolves numBlocks from either numBlocks or memoryBudgetBytes and returns the layout. */
export function planPool(sizing: PoolSizing, chunkLimit: number): KvLayout {
  const hasBlocks = sizing.numBlocks !== undefined;
  const hasBudget = sizing.memoryBudgetBytes !== undefined;
  if (hasBlocks === hasBudget) {
    throw new ConfigError('give exactly one of numBlocks or memoryBudgetBytes');
  }
  let numBlocks = sizing.numBlocks!;
  if (hasBudget) {
    const budget = sizing.memoryBudgetBytes!;
    if (!Number.isFinite(budget) || budget <= 0) throw new ConfigError(`memoryBudgetBytes must be a positive number (got ${budget})`);
    const perBlockAllLayers = bytesPerBlock(sizing) * sizing.numLayers;
    numBlocks = Math.floor(budget / perBlockAllLayers);
    if (numBlocks < 1) {
      throw new ConfigError(`memoryBudgetBytes ${budget} is smaller than one block over all layers (${perBlockAllLayers} bytes)`);
    }
  }
  const layout = computeKvLayout({ ...sizing, numBlocks }, chunkLimit);
  if (hasBudget && layout.totalBytes > sizing.memoryBudgetBytes!) {
    throw new ConfigError(`internal sizing error: ${layout.totalBytes} bytes exceed the budget ${sizing.memoryBudgetBytes}`);
  }
  return layout;
}

export class KvPool {
  readonly layout: KvLayout;
  /** chunks[layer][chunk] */
  readonly chunks: GPUBuffer[][];
  private destroyed = false;

  private constructor(layout: KvLayout, chunks: GPUBuffer[][]) {
    this.layout = layout;
    this.chunks = chunks;
  }

  static async create(guard: DeviceGuard, layout: KvLayout): Promise<KvPool> {
    const device = guard.device;
    const created: GPUBuffer[] = [];
    const chunks: GPUBuffer[][] = [];
    try {
      await guard.scoped(
        'the KV block pool',
        () => {
          for (let layer = 0; layer < layout.numLayers; layer++) {
            const row: GPUBuffer[] = [];
            for (let c = 0; c < layout.numChunks; c++) {
              const buffer = device.createBuffer({
                label: `kv-layer${layer}-chunk${c}`,
                size: layout.chunkBytes[c]!,
                usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
              });
              created.push(buffer);
              row.push(buffer);
            }
            chunks.push(row);
          }
        },
        layout.totalBytes,
      );
    } catch (error) {
      for (const b of created) b.destroy();
      throw error;
    }
    return new KvPool(layout, chunks);
  }

  get bytes(): number {
    return this.layout.totalBytes;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const row of this.chunks) for (const b of row) b.destroy();
  }
}
