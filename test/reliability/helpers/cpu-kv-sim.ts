// A CPU stand-in for the GPU side of PagedKVCache, driving the real BlockTable and PrefixCache exactly
// the way the facade does (same calls, same critical sections), with "physical memory" that stores a
// content id per (layer, block, row). Lets the table and the prefix index be fuzzed at CPU speed with
// the same model as the GPU fuzz.
// Invariants: memory changes only through the copies the table returns (whole blocks, every layer,
// before the write that needed them) and through writes at the slots of the table's current block
// list; a sequence's written length follows the facade's rule (contiguous growth, per layer, reset by
// prefix reuse to cachedTokens); reading past the written length throws, like readKV.
import { InvalidArgumentError } from '../../../src/errors';
import { PrefixCache, type PrefixSequence } from '../../../src/prefix/prefix-cache';
import type { BlockCopy, BlockTable } from '../../../src/table/block-table';
import type { BlockTableConfig } from '../../../src/table/config';

/** Content id of a row never written since the pool was created. */
export const NEVER_WRITTEN = -1;

export class CpuKvSim {
  readonly prefix: PrefixCache;
  readonly table: BlockTable;
  readonly blockSize: number;
  /** memory[layer][block * blockSize + row] = content id. */
  readonly memory: Float64Array[];
  private readonly written = new Map<number, number[]>();

  constructor(config: BlockTableConfig, readonly numLayers: number, lockTimeoutMs = 5000) {
    this.prefix = PrefixCache.create(config, { timeoutMs: lockTimeoutMs });
    this.table = this.prefix.table;
    this.blockSize = config.blockSize;
    this.memory = Array.from({ length: numLayers }, () => new Float64Array(config.numBlocks * config.blockSize).fill(NEVER_WRITTEN));
  }

  createSequence(tokens: readonly number[], namespace: string): PrefixSequence {
    return this.table.batch(() => {
      const created = this.prefix.createSequence(tokens, namespace);
      this.written.set(created.id, new Array<number>(this.numLayers).fill(created.cachedTokens));
      return created;
    });
  }

  appendTokens(id: number, tokens: readonly number[]): number {
    const result = this.table.appendTokens(id, tokens);
    this.copy(result.copies);
    return result.firstPosition;
  }

  fork(id: number): number {
    return this.table.batch(() => {
      const child = this.prefix.fork(id);
      this.written.set(child, [...this.written.get(id)!]);
      return child;
    });
  }

  /** Writes content ids at positions [start, start + ids.length) of `layer` (writeKV's critical section). */
  write(layer: number, id: number, start: number, ids: readonly number[]): void {
    const end = start + ids.length;
    this.table.batch(() => {
      if (end > this.table.length(id)) throw new InvalidArgumentError(`write past the length of sequence ${id}`);
      const copies = this.table.makeExclusive(id, start, end);
      this.prefix.noteWrite(id, start);
      this.copy(copies);
      const blocks = this.table.blocksOf(id);
      const bs = this.blockSize;
      ids.forEach((content, i) => {
        const p = start + i;
        this.memory[layer]![blocks[Math.floor(p / bs)]! * bs + (p % bs)] = content;
      });
      const written = this.written.get(id)!;
      if (start <= written[layer]! && end > written[layer]!) written[layer] = end;
      this.prefix.registerWritten(id, Math.min(...written));
    });
  }

  /** Content ids of positions [start, end) of `layer`; refuses positions never written (like readKV). */
  read(layer: number, id: number, start: number, end: number): number[] {
    return this.table.batch(() => {
      const w = this.writtenLength(id, layer);
      if (end > w) throw new InvalidArgumentError(`positions ${w}..${end - 1} of sequence ${id} have no K/V written`);
      const blocks = this.table.blocksOf(id);
      const bs = this.blockSize;
      const out: number[] = [];
      for (let p = start; p < end; p++) out.push(this.memory[layer]![blocks[Math.floor(p / bs)]! * bs + (p % bs)]!);
      return out;
    });
  }

  writtenLength(id: number, layer: number): number {
    this.table.length(id); // throws UnknownSequenceError for a stale id
    return this.written.get(id)![layer]!;
  }

  free(id: number): void {
    this.table.batch(() => {
      this.prefix.free(id);
      this.written.delete(id);
    });
  }

  /** Applies copy-on-write copies to every layer (whole blocks, as copy-blocks does). */
  private copy(copies: readonly BlockCopy[]): void {
    const bs = this.blockSize;
    for (const { src, dst } of copies) {
      for (const layer of this.memory) layer.copyWithin(dst * bs, src * bs, (src + 1) * bs);
    }
  }
}
