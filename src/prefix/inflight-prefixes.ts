// Prompt blocks that live sequences are still computing, so a request with the same block-aligned prefix
// can wait for them to be registered instead of computing a second copy. Owning-thread state: it lives
// in ordinary memory of the agent that owns the cache object, so coalescing is per cache object (two
// threads with their own cache objects each compute their own copy; the shared trie still dedupes them).
//
// Invariants: a producer is listed under a key for each depth d (a prefix of d full blocks) it has not
// registered yet — key = rolling hash of (namespace, the d blocks' tokens); find() never trusts a key:
// it returns a producer only after comparing the namespace and every token of the d blocks exactly;
// a waiter is settled exactly once — 'ready' when its producer has registered the blocks it needs,
// 'gone' when the producer is freed or stops registering, 'timeout', AbortError through its signal, or
// the error given to rejectAll — and is removed when settled.
import { AbortError } from '../errors';
import { multiplyXorBlockHash } from './block-hash';
import { hashString } from './namespaces';

export type InflightOutcome = 'ready' | 'gone' | 'timeout';

export interface InflightWaitOptions {
  /** Give up waiting (resolve 'timeout') after this many milliseconds; default: wait until ready or gone. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A sequence computing prompt blocks, and how far it got. */
export interface Producer {
  readonly id: number;
  readonly namespace: string;
  /** Its first fullBlocks × blockSize prompt tokens. */
  readonly tokens: Uint32Array;
  readonly fullBlocks: number;
  /** Leading blocks registered so far. */
  registered: number;
}

interface Waiter {
  readonly need: number;
  settle(outcome: InflightOutcome | Error): void;
}

interface Entry {
  readonly producer: Producer;
  /** Rolling hash per depth 1..fullBlocks (index d - 1). */
  readonly keys: Int32Array;
  readonly waiters: Set<Waiter>;
}

export class InflightPrefixes {
  private readonly blockSize: number;
  private readonly byId = new Map<number, Entry>();
  private readonly byKey = new Map<number, Entry[]>();

  constructor(blockSize: number) {
    this.blockSize = blockSize;
  }

  /** Producers tracked. */
  get size(): number {
    return this.byId.size;
  }

  /** Waiting requests. */
  get waiting(): number {
    let n = 0;
    for (const e of this.byId.values()) n += e.waiters.size;
    return n;
  }

  /** Whether `id` is tracked as a producer (its progress matters to waiters). */
  tracks(id: number): boolean {
    return this.byId.has(id);
  }

  /**
   * Tracks sequence `id`, which will compute and register the full blocks of `tokens` beyond its first
   * `registered` (those came from the cache).
   */
  add(id: number, namespace: string, tokens: ArrayLike<number>, registered: number): void {
    const bs = this.blockSize;
    const fullBlocks = Math.floor(tokens.length / bs);
    if (fullBlocks <= registered) return;
    this.remove(id);
    const copy = new Uint32Array(fullBlocks * bs);
    for (let i = 0; i < copy.length; i++) copy[i] = tokens[i];
    const producer: Producer = { id, namespace, tokens: copy, fullBlocks, registered };
    const entry: Entry = { producer, keys: this.keysOf(namespace, copy, fullBlocks), waiters: new Set() };
    this.byId.set(id, entry);
    for (let d = registered + 1; d <= fullBlocks; d++) this.list(entry.keys[d - 1], entry);
  }

  /** Sequence `id` has `registered` leading blocks registered (-1: it stopped registering). */
  progress(id: number, registered: number): void {
    const entry = this.byId.get(id);
    if (entry === undefined) return;
    if (registered < 0) return this.remove(id);
    const p = entry.producer;
    for (let d = p.registered + 1; d <= Math.min(registered, p.fullBlocks); d++) this.unlist(entry.keys[d - 1], entry);
    p.registered = Math.max(p.registered, registered);
    for (const w of [...entry.waiters]) if (w.need <= p.registered) w.settle('ready');
    if (p.registered >= p.fullBlocks) this.remove(id);
  }

  /** Stops tracking `id` (freed, failed or done); its waiters are told 'gone'. */
  remove(id: number): void {
    const entry = this.byId.get(id);
    if (entry === undefined) return;
    this.byId.delete(id);
    const p = entry.producer;
    for (let d = p.registered + 1; d <= p.fullBlocks; d++) this.unlist(entry.keys[d - 1], entry);
    for (const w of [...entry.waiters]) w.settle(w.need <= p.registered ? 'ready' : 'gone');
  }

  /**
   * The producer that will register the most blocks of `tokens` (in `namespace`) beyond the first
   * `cachedBlocks`, up to `maxBlocks`, and that depth; undefined when none is computing any of them.
   */
  find(namespace: string, tokens: ArrayLike<number>, cachedBlocks: number, maxBlocks: number): { producer: Producer; blocks: number } | undefined {
    if (maxBlocks <= cachedBlocks || this.byId.size === 0) return undefined;
    const keys = this.keysOf(namespace, tokens, maxBlocks);
    for (let d = maxBlocks; d > cachedBlocks; d--) {
      const entries = this.byKey.get(keys[d - 1]);
      if (entries === undefined) continue;
      for (const e of entries) {
        const p = e.producer;
        if (p.registered < d && p.fullBlocks >= d && p.namespace === namespace && this.samePrefix(p.tokens, tokens, d)) {
          return { producer: p, blocks: d };
        }
      }
    }
    return undefined;
  }

  /** Waits until `producer` has registered `blocks` blocks, is gone, or the timeout passes. */
  wait(producer: Producer, blocks: number, options: InflightWaitOptions = {}): Promise<InflightOutcome> {
    const entry = this.byId.get(producer.id);
    if (entry === undefined || entry.producer !== producer) return Promise.resolve(producer.registered >= blocks ? 'ready' : 'gone');
    if (producer.registered >= blocks) return Promise.resolve('ready');
    return new Promise<InflightOutcome>((resolve, reject) => {
      const { signal, timeoutMs } = options;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = (): void => waiter.settle(new AbortError('waiting for another request to compute the same prefix was aborted'));
      const waiter: Waiter = {
        need: blocks,
        settle: (outcome) => {
          if (!entry.waiters.delete(waiter)) return;
          if (timer !== undefined) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          if (outcome instanceof Error) reject(outcome);
          else resolve(outcome);
        },
      };
      entry.waiters.add(waiter);
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== undefined) timer = setTimeout(() => waiter.settle('timeout'), Math.max(0, timeoutMs));
    });
  }

  /** Forgets every producer; their waiters are told 'gone' (the prefix index was cleared). */
  clear(): void {
    for (const id of [...this.byId.keys()]) this.remove(id);
  }

  /** Rejects every waiter (the cache was destroyed or its device lost) and forgets every producer. */
  rejectAll(makeError: () => Error): void {
    const entries = [...this.byId.values()];
    this.byId.clear();
    this.byKey.clear();
    for (const e of entries) for (const w of [...e.waiters]) w.settle(makeError());
  }

  private keysOf(namespace: string, tokens: ArrayLike<number>, blocks: number): Int32Array {
    const keys = new Int32Array(blocks);
    let h = hashString(namespace);
    for (let d = 0; d < blocks; d++) {
      h = multiplyXorBlockHash(h, tokens, d * this.blockSize, this.blockSize);
      keys[d] = h;
    }
    return keys;
  }

  private samePrefix(a: Uint32Array, b: ArrayLike<number>, blocks: number): boolean {
    for (let i = 0, end = blocks * this.blockSize; i < end; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  private list(key: number, entry: Entry): void {
    const entries = this.byKey.get(key);
    if (entries === undefined) this.byKey.set(key, [entry]);
    else entries.push(entry);
  }

  private unlist(key: number, entry: Entry): void {
    const entries = this.byKey.get(key);
    if (entries === undefined) return;
    const i = entries.indexOf(entry);
    if (i >= 0) entries.splice(i, 1);
    if (entries.length === 0) this.byKey.delete(key);
  }
}
