// A random workload against a BlockTable, used by the async-task test, the worker threads and the main
// thread of the multi-thread test. It keeps a model of the tokens of every sequence it owns and checks
// the table against it; typed errors that a correct table may raise under contention (pool or slots
// exhausted, another agent's sequence freed first) are counted, any other error is rethrown.
import type { BlockTable } from '../../src/table/block-table';
import { rng } from './rng';

export interface RandomOperatorOptions {
  readonly seed: number;
  /** Sequences created up front by the test; forked (never freed) by operators. */
  readonly baseSequences: ReadonlyArray<{ readonly id: number; readonly tokens: readonly number[] }>;
  /** Shared board where operators publish their sequence ids (id + 1; 0 = empty) for others to fork. */
  readonly board: Int32Array;
  /** This operator's region of the board. */
  readonly boardOffset: number;
  readonly boardSlots: number;
  /** Above this many own sequences the operator prefers freeing. */
  readonly maxOwn: number;
}

const EXPECTED_CODES = new Set(['OUT_OF_BLOCKS', 'TOO_MANY_SEQUENCES', 'SEQUENCE_TOO_LONG']);

export class RandomOperator {
  readonly own = new Map<number, number[]>();
  readonly retained: number[] = [];
  readonly counts: Record<string, number> = {};
  private readonly random: () => number;
  private readonly boardEntry = new Map<number, number>();

  constructor(
    private readonly table: BlockTable,
    private readonly options: RandomOperatorOptions,
  ) {
    this.random = rng(options.seed);
  }

  /** One random operation. */
  step(): void {
    const r = this.random();
    const ownCount = this.own.size;
    try {
      if (ownCount === 0 || (r < 0.16 && ownCount < this.options.maxOwn)) this.create();
      else if (r < 0.4) this.append();
      else if (r < 0.48) this.forkOwn();
      else if (r < 0.53) this.forkBase();
      else if (r < 0.6) this.forkPublished();
      else if (r < 0.67) this.makeExclusive();
      else if (r < 0.8 || ownCount > this.options.maxOwn) this.freeOne();
      else if (r < 0.88) this.retain();
      else if (r < 0.95) this.release();
      else this.verifyOne();
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === undefined || !EXPECTED_CODES.has(code)) throw error;
      this.count(code);
    }
  }

  /** Checks every owned sequence's tokens and length against the model. */
  verifyAll(): void {
    for (const id of this.own.keys()) this.verify(id);
  }

  freeAll(): void {
    for (const id of [...this.own.keys()]) this.freeId(id);
  }

  releaseAll(): void {
    if (this.retained.length > 0) this.table.releaseBlocks(this.retained.splice(0));
  }

  private create(): void {
    const tokens = this.tokens(Math.floor(this.random() * 3 * this.table.config.blockSize));
    const { id, length } = this.table.createSequence(tokens);
    if (length !== tokens.length) throw new Error(`createSequence returned length ${length}, expected ${tokens.length}`);
    this.adopt(id, tokens);
    this.count('create');
  }

  private append(): void {
    const id = this.pickOwn();
    const model = this.own.get(id) as number[];
    const room = this.table.maxSequenceLength - model.length;
    const tokens = this.tokens(Math.min(room, 1 + Math.floor(this.random() * 2 * this.table.config.blockSize)));
    const result = this.table.appendTokens(id, tokens);
    if (result.firstPosition !== model.length) throw new Error(`append at ${result.firstPosition}, expected ${model.length}`);
    model.push(...tokens);
    this.count(result.copies.length > 0 ? 'appendCow' : 'append');
  }

  private forkOwn(): void {
    const id = this.pickOwn();
    this.adopt(this.table.fork(id), [...(this.own.get(id) as number[])]);
    this.count('fork');
  }

  private forkBase(): void {
    const base = this.options.baseSequences;
    if (base.length === 0) return;
    const source = base[Math.floor(this.random() * base.length)];
    this.adopt(this.table.fork(source.id), [...source.tokens]);
    this.count('forkBase');
  }

  /** Forks a sequence another operator published; it may have been freed meanwhile. */
  private forkPublished(): void {
    const board = this.options.board;
    const entry = Atomics.load(board, Math.floor(this.random() * board.length));
    if (entry === 0) return;
    const source = entry - 1;
    let child: number;
    try {
      child = this.table.fork(source);
    } catch (error) {
      if ((error as { code?: string }).code !== 'UNKNOWN_SEQUENCE') throw error;
      this.count('forkStale');
      return;
    }
    // Once forked, only this operator writes to `child`, so its tokens now are its model.
    this.adopt(child, Array.from(this.table.tokensOf(child)));
    this.count('forkPublished');
  }

  private makeExclusive(): void {
    const id = this.pickOwn();
    const length = (this.own.get(id) as number[]).length;
    const from = Math.floor(this.random() * (length + 1));
    const to = from + Math.floor(this.random() * (length - from + 1));
    const copies = this.table.makeExclusive(id, from, to);
    const blocks = this.table.blocksOf(id);
    for (const { dst } of copies) if (!blocks.includes(dst)) throw new Error(`copy target ${dst} not in sequence ${id}`);
    this.verify(id);
    this.count('makeExclusive');
  }

  private freeOne(): void {
    this.freeId(this.pickOwn());
    this.count('free');
  }

  private retain(): void {
    const blocks = this.table.blocksOf(this.pickOwn());
    if (blocks.length === 0) return;
    if (this.random() < 0.5) {
      // a whole row as an Int32Array, as GPU pins pass it (the one-pass path)
      this.table.retainBlocks(blocks);
      for (const b of blocks) this.retained.push(b);
    } else {
      const block = blocks[Math.floor(this.random() * blocks.length)];
      this.table.retainBlocks([block]);
      this.retained.push(block);
    }
    this.count('retain');
  }

  private release(): void {
    if (this.retained.length === 0) return;
    const i = Math.floor(this.random() * this.retained.length);
    if (this.random() < 0.5) {
      const some = this.retained.splice(i, 1 + Math.floor(this.random() * 8));
      this.table.releaseBlocks(Int32Array.from(some));
    } else {
      const [block] = this.retained.splice(i, 1);
      this.table.releaseBlocks([block]);
    }
    this.count('release');
  }

  private verifyOne(): void {
    this.verify(this.pickOwn());
    this.count('verify');
  }

  private verify(id: number): void {
    const model = this.own.get(id) as number[];
    const actual = this.table.tokensOf(id);
    if (this.table.length(id) !== model.length || actual.length !== model.length) {
      throw new Error(`sequence ${id}: length ${actual.length}, model ${model.length}`);
    }
    for (let i = 0; i < model.length; i++) {
      if (actual[i] !== model[i]) throw new Error(`sequence ${id}: token ${i} is ${actual[i]}, model ${model[i]}`);
    }
  }

  private adopt(id: number, tokens: number[]): void {
    if (this.own.has(id)) throw new Error(`sequence id ${id} issued twice`);
    this.own.set(id, tokens);
    const { board, boardOffset, boardSlots } = this.options;
    if (id + 1 > 0x7fffffff) return;
    for (let k = 0; k < boardSlots; k++) {
      if (Atomics.load(board, boardOffset + k) === 0) {
        Atomics.store(board, boardOffset + k, id + 1);
        this.boardEntry.set(id, boardOffset + k);
        return;
      }
    }
  }

  private freeId(id: number): void {
    const entry = this.boardEntry.get(id);
    if (entry !== undefined) {
      Atomics.store(this.options.board, entry, 0);
      this.boardEntry.delete(id);
    }
    this.own.delete(id);
    this.table.free(id);
  }

  private pickOwn(): number {
    const k = Math.floor(this.random() * this.own.size);
    let i = 0;
    for (const id of this.own.keys()) if (i++ === k) return id;
    throw new Error('no own sequence');
  }

  private tokens(n: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(Math.floor(this.random() * 0x100000000));
    return out;
  }

  private count(key: string): void {
    this.counts[key] = (this.counts[key] ?? 0) + 1;
  }
}
