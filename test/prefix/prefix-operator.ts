// A random workload against a PrefixCache, used by the single-thread random test and by worker threads.
// Prompts come from a few families sharing long prefixes, in a few namespaces. It models K/V content:
// `content[b]` (shared memory, changed only under the table lock) holds a hash of the namespace and the
// token prefix a block's K/V were written for; every reused block must hold exactly the hash of the new
// sequence's own prefix — the property that makes sharing safe. Typed errors a correct cache may raise
// under pressure are counted; anything else is rethrown.
import type { PrefixCache } from '../../src/prefix/prefix-cache';
import { hashString } from '../../src/prefix/namespaces';
import { rng } from '../table/rng';

const EXPECTED_CODES = new Set(['OUT_OF_BLOCKS', 'TOO_MANY_SEQUENCES', 'SEQUENCE_TOO_LONG']);
const NAMESPACES = [undefined, 'tenant-x', 'tenant-y'];

interface Owned {
  tokens: number[];
  namespace: string | undefined;
  /** Leading positions whose K/V are written. */
  written: number;
}

export interface PrefixOperatorOptions {
  readonly seed: number;
  /** Per block: content hash (see above); shared between threads. */
  readonly content: Float64Array;
  readonly maxOwn: number;
  /** Probability that a step clears the whole prefix cache. */
  readonly clearRate?: number;
}

export class PrefixOperator {
  readonly own = new Map<number, Owned>();
  readonly pins: number[] = [];
  readonly counts: Record<string, number> = {};
  private readonly random: () => number;
  private readonly families: number[][];

  constructor(
    private readonly cache: PrefixCache,
    private readonly options: PrefixOperatorOptions,
  ) {
    this.random = rng(options.seed);
    // Families are the same on every thread (fixed seed), so threads share prefixes.
    const r = rng(12345);
    this.families = [0, 1, 2, 3].map((f) => Array.from({ length: 40 }, () => Math.floor(r() * 6) + 10 * f));
  }

  step(): void {
    const r = this.random();
    try {
      if (r < (this.options.clearRate ?? 0)) this.clear();
      else if (this.own.size === 0 || (r < 0.3 && this.own.size < this.options.maxOwn)) this.create();
      else if (r < 0.55) this.write();
      else if (r < 0.63) this.append();
      else if (r < 0.7) this.fork();
      else if (r < 0.75) this.pin();
      else if (r < 0.8) this.unpin();
      else this.freeOne();
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === undefined || !EXPECTED_CODES.has(code)) throw error;
      this.count(code);
    }
  }

  freeAll(): void {
    for (const id of [...this.own.keys()]) this.freeId(id);
    if (this.pins.length > 0) this.cache.table.releaseBlocks(this.pins.splice(0));
  }

  /** Checks every owned sequence's tokens against the model. */
  verifyAll(): void {
    for (const [id, o] of this.own) {
      const tokens = Array.from(this.cache.table.tokensOf(id));
      if (tokens.join() !== o.tokens.join()) throw new Error(`sequence ${id} holds other tokens than it was given`);
    }
  }

  private create(): void {
    const family = this.families[Math.floor(this.random() * this.families.length)];
    const shared = Math.floor(this.random() * (family.length + 1));
    const length = shared + Math.floor(this.random() * 12);
    const tokens = family.slice(0, shared);
    while (tokens.length < length) tokens.push(100 + Math.floor(this.random() * 4));
    const namespace = NAMESPACES[Math.floor(this.random() * NAMESPACES.length)];
    const created = this.cache.table.batch(() => {
      const s = this.cache.createSequence(tokens, namespace);
      this.checkContent(s.id, namespace, tokens, s.cachedTokens);
      return s;
    });
    if (created.cachedTokens % this.cache.blockSize !== 0 || (tokens.length > 0 && created.cachedTokens >= tokens.length)) {
      throw new Error(`cachedTokens ${created.cachedTokens} for a ${tokens.length}-token prompt`);
    }
    this.own.set(created.id, { tokens, namespace, written: created.cachedTokens });
    this.count(created.cachedTokens > 0 ? 'hit' : 'miss');
  }

  /** Writes K/V of new positions (sometimes rewrites old ones), then registers what is complete. */
  private write(): void {
    const [id, o] = this.pick();
    const length = o.tokens.length;
    let from = o.written;
    if (this.random() < 0.05 && o.written > 0) from = Math.floor(this.random() * o.written);
    const to = Math.min(length, Math.max(from, o.written) + 1 + Math.floor(this.random() * 10));
    if (from >= to) return;
    const rewrite = from < o.written;
    this.cache.table.batch(() => {
      this.cache.noteWrite(id, from);
      for (const { src, dst } of this.cache.table.makeExclusive(id, from, to)) this.options.content[dst] = this.options.content[src];
      const bs = this.cache.blockSize;
      const blocks = this.cache.table.blocksOf(id);
      for (let i = Math.floor(from / bs); i < Math.ceil(to / bs); i++) {
        this.options.content[blocks[i]] = contentHash(o.namespace, o.tokens, Math.min((i + 1) * bs, length));
      }
      o.written = Math.max(o.written, to);
      const registered = this.cache.registerWritten(id, o.written);
      if (registered > Math.floor(o.written / bs)) throw new Error(`registered ${registered} blocks of ${o.written} written positions`);
    });
    this.count(rewrite ? 'rewrite' : 'write');
  }

  private append(): void {
    const [id, o] = this.pick();
    const extra = Array.from({ length: 1 + Math.floor(this.random() * 6) }, () => 100 + Math.floor(this.random() * 4));
    this.cache.table.batch(() => {
      const result = this.cache.table.appendTokens(id, extra);
      for (const { src, dst } of result.copies) this.options.content[dst] = this.options.content[src];
    });
    o.tokens.push(...extra);
    this.count('append');
  }

  private fork(): void {
    const [id, o] = this.pick();
    const child = this.cache.fork(id);
    this.own.set(child, { tokens: [...o.tokens], namespace: o.namespace, written: o.written });
    this.count('fork');
  }

  private pin(): void {
    const [id] = this.pick();
    const blocks = this.cache.table.blocksOf(id);
    if (blocks.length === 0) return;
    const b = blocks[Math.floor(this.random() * blocks.length)];
    this.cache.table.retainBlocks([b]);
    this.pins.push(b);
    this.count('pin');
  }

  private unpin(): void {
    if (this.pins.length === 0) return;
    const i = Math.floor(this.random() * this.pins.length);
    this.cache.table.releaseBlocks(this.pins.splice(i, 1));
    this.count('unpin');
  }

  private freeOne(): void {
    const [id] = this.pick();
    this.freeId(id);
  }

  private freeId(id: number): void {
    this.cache.free(id);
    this.own.delete(id);
    this.count('free');
  }

  private clear(): void {
    this.cache.clear();
    this.count('clear');
  }

  private checkContent(id: number, namespace: string | undefined, tokens: number[], cachedTokens: number): void {
    const bs = this.cache.blockSize;
    const blocks = this.cache.table.blocksOf(id);
    for (let i = 0; i < cachedTokens / bs; i++) {
      const expected = contentHash(namespace, tokens, (i + 1) * bs);
      if (this.options.content[blocks[i]] !== expected) {
        throw new Error(`reused block ${blocks[i]} (column ${i}) holds K/V of another prefix`);
      }
    }
  }

  private pick(): [number, Owned] {
    const entries = [...this.own.entries()];
    return entries[Math.floor(this.random() * entries.length)];
  }

  private count(kind: string): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
  }
}

/** Hash of the namespace and the first `end` tokens (what K/V up to `end` depend on). */
export function contentHash(namespace: string | undefined, tokens: readonly number[], end: number): number {
  return hashString(`${namespace ?? ''}|${tokens.slice(0, end).join(',')}`) + end * 2 ** 32;
}
