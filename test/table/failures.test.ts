// Every bad input raises its typed error and changes nothing: all state arrays and stats() are compared
// before and after each failing call.
import { describe, expect, it } from 'vitest';
import { ConfigError, InvalidArgumentError, PagedAttentionError } from '../../src/errors';
import { BlockTable } from '../../src/table/block-table';
import {
  InvalidBlockError,
  InvalidTokenError,
  InvariantError,
  OutOfBlocksError,
  SequenceTooLongError,
  TooManySequencesError,
  UnknownSequenceError,
} from '../../src/table/errors';
import { expectFailsWithoutChange, viewsOf } from './helpers';

const config = { numBlocks: 8, blockSize: 4, maxSequences: 3, maxBlocksPerSequence: 5 };

const BAD_TOKENS: unknown[] = [-1, 1.5, NaN, Infinity, -Infinity, 2 ** 32, 2 ** 53, '5', null, undefined, 5n, {}];

describe('config validation', () => {
  const valid = { numBlocks: 8, blockSize: 4, maxSequences: 2, maxBlocksPerSequence: 4 };
  it.each([
    ['not an object', null],
    ['numBlocks 0', { ...valid, numBlocks: 0 }],
    ['numBlocks negative', { ...valid, numBlocks: -3 }],
    ['blockSize fractional', { ...valid, blockSize: 1.5 }],
    ['maxSequences NaN', { ...valid, maxSequences: NaN }],
    ['maxBlocksPerSequence Infinity', { ...valid, maxBlocksPerSequence: Infinity }],
    ['blockSize as string', { ...valid, blockSize: '4' }],
    ['missing field', { numBlocks: 8, blockSize: 4, maxSequences: 2 }],
    ['maxSequences too large for exact ids', { ...valid, maxSequences: 2 ** 23 }],
    ['table not indexable', { ...valid, maxSequences: 2 ** 16, maxBlocksPerSequence: 2 ** 16 }],
    ['sequence length beyond Int32', { ...valid, blockSize: 2 ** 16, maxBlocksPerSequence: 2 ** 16 }],
  ])('%s → ConfigError', (_, bad) => {
    const error = (() => {
      try {
        BlockTable.create(bad as never);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toBeInstanceOf(PagedAttentionError);
    expect((error as ConfigError).code).toBe('CONFIG');
  });

  it('attach refuses a foreign buffer or a mismatched config', () => {
    const table = BlockTable.create(valid);
    expect(() => BlockTable.attach({ buffer: new SharedArrayBuffer(table.handle.buffer.byteLength), config: valid })).toThrow(ConfigError);
    expect(() => BlockTable.attach({ buffer: table.handle.buffer, config: { ...valid, numBlocks: 9 } })).toThrow(ConfigError);
    expect(() => BlockTable.attach({ buffer: new ArrayBuffer(8) as never, config: valid })).toThrow(ConfigError);
    expect(() => BlockTable.attach(null as never)).toThrow(ConfigError);
  });

  it('rejects bad lock options', () => {
    expect(() => BlockTable.create(valid, { timeoutMs: -1 })).toThrow(ConfigError);
    expect(() => BlockTable.create(valid, { timeoutMs: Infinity })).toThrow(ConfigError);
    expect(() => BlockTable.create(valid, { holdSampleInterval: 3 })).toThrow(ConfigError);
    expect(() => BlockTable.create(valid, { waitStrategy: 'sleep' as never })).toThrow(ConfigError);
    expect(() => BlockTable.create(valid, { evictor: {} as never })).toThrow(ConfigError);
    expect(() => BlockTable.create(valid, { onRelease: true as never })).toThrow(ConfigError);
  });
});

describe('failed calls change nothing', () => {
  function populated(): { table: BlockTable; parent: number; child: number } {
    const table = BlockTable.create(config);
    const parent = table.createSequence([1, 2, 3, 4, 5, 6]).id; // blocks 0 (full), 1 (partial)
    const child = table.fork(parent);
    table.retainBlocks([0]);
    return { table, parent, child };
  }

  it.each(BAD_TOKENS.map((t) => [String(t), t]))('token %s → InvalidTokenError', (_, bad) => {
    const { table, parent } = populated();
    const e1 = expectFailsWithoutChange(table, () => table.createSequence([1, 2, bad as number]), InvalidTokenError, 'INVALID_TOKEN');
    expect(e1.index).toBe(2);
    // a bad token in the middle of an append that would also copy-on-write and allocate
    const e2 = expectFailsWithoutChange(table, () => table.appendTokens(parent, [7, 8, 9, bad as number, 10]), InvalidTokenError);
    expect(e2.index).toBe(3);
  });

  it('a malformed token container → InvalidTokenError', () => {
    const { table, parent } = populated();
    for (const bad of [null, undefined, 5, 'abc', { length: -1 }, { length: 1.5 }]) {
      const e = expectFailsWithoutChange(table, () => table.appendTokens(parent, bad as never), InvalidTokenError);
      expect(e.index).toBe(-1);
    }
  });

  it('unknown, malformed and stale ids → UnknownSequenceError', () => {
    const { table, parent, child } = populated();
    const stale = table.createSequence([42]).id;
    table.free(stale);
    for (const bad of [stale, 2, 3 + 2 * config.maxSequences, -1, 0.5, NaN, '0', 2 ** 53]) {
      const id = bad as number;
      expectFailsWithoutChange(table, () => table.appendTokens(id, [1]), UnknownSequenceError, 'UNKNOWN_SEQUENCE');
      expectFailsWithoutChange(table, () => table.fork(id), UnknownSequenceError);
      expectFailsWithoutChange(table, () => table.free(id), UnknownSequenceError);
      expectFailsWithoutChange(table, () => table.makeExclusive(id, 0, 0), UnknownSequenceError);
      expectFailsWithoutChange(table, () => table.length(id), UnknownSequenceError);
      expectFailsWithoutChange(table, () => table.blocksOf(id), UnknownSequenceError);
      expectFailsWithoutChange(table, () => table.tokensOf(id), UnknownSequenceError);
      expect(table.has(id)).toBe(false);
    }
    const e = expectFailsWithoutChange(table, () => table.free(stale), UnknownSequenceError);
    expect(e.message).toMatch(/freed \(stale id\)/);
    expect(e.sequenceId).toBe(stale);
    // a double free of a live sequence's id is a stale id the second time
    table.free(child);
    expectFailsWithoutChange(table, () => table.free(child), UnknownSequenceError);
    expect(table.has(parent)).toBe(true);
  });

  it('too long → SequenceTooLongError', () => {
    const { table, parent } = populated();
    const max = config.blockSize * config.maxBlocksPerSequence; // 20
    const e = expectFailsWithoutChange(table, () => table.createSequence(new Uint32Array(max + 1)), SequenceTooLongError, 'SEQUENCE_TOO_LONG');
    expect(e.maxLength).toBe(20);
    expect(e.requestedLength).toBe(21);
    expectFailsWithoutChange(table, () => table.appendTokens(parent, new Uint32Array(max - 6 + 1)), SequenceTooLongError);
  });

  it('no free slot → TooManySequencesError', () => {
    const { table, parent } = populated();
    table.createSequence([]);
    expectFailsWithoutChange(table, () => table.createSequence([1]), TooManySequencesError, 'TOO_MANY_SEQUENCES');
    expectFailsWithoutChange(table, () => table.fork(parent), TooManySequencesError);
  });

  it('pool exhausted → OutOfBlocksError with requested/available, counting copy-on-write', () => {
    const table = BlockTable.create({ numBlocks: 8, blockSize: 4, maxSequences: 4, maxBlocksPerSequence: 8 });
    const parent = table.createSequence([1, 2, 3, 4, 5, 6]).id; // blocks 0 (full), 1 (2 tokens)
    const child = table.fork(parent);
    table.retainBlocks([0]); // 2 used, 6 free
    const e = expectFailsWithoutChange(table, () => table.createSequence(new Uint32Array(7 * 4)), OutOfBlocksError, 'OUT_OF_BLOCKS');
    expect([e.requested, e.available]).toEqual([7, 6]);
    expect(e.message).toMatch(/free/i);
    expect(e.message).toMatch(/numBlocks/);
    // parent's partial last block is shared: 23 more tokens = 1 copy + 6 new blocks = 7 > 6
    const cow = expectFailsWithoutChange(table, () => table.appendTokens(parent, new Uint32Array(23)), OutOfBlocksError);
    expect([cow.requested, cow.available]).toEqual([7, 6]);
    // leave one free block: an append needing a copy and a new block fails
    const filler = table.createSequence(new Uint32Array(5 * 4)).id;
    expect(table.stats().blocksFree).toBe(1);
    const e2 = expectFailsWithoutChange(table, () => table.appendTokens(child, [9, 9, 9]), OutOfBlocksError);
    expect([e2.requested, e2.available]).toEqual([2, 1]);
    // makeExclusive over two shared blocks needs 2 blocks
    const e3 = expectFailsWithoutChange(table, () => table.makeExclusive(child, 0, 6), OutOfBlocksError);
    expect([e3.requested, e3.available]).toEqual([2, 1]);
    // both succeed once blocks are freed
    table.free(filler);
    expect(table.appendTokens(child, [9, 9, 9]).copies).toHaveLength(1);
    expect(table.appendTokens(parent, new Uint32Array(22 - 4)).copies).toHaveLength(0);
    table.checkInvariants();
  });

  it('bad makeExclusive ranges → InvalidArgumentError', () => {
    const { table, parent } = populated();
    for (const [from, to] of [[-1, 2], [3, 2], [0, 7], [0.5, 2], [0, NaN], [0, Infinity]]) {
      expectFailsWithoutChange(table, () => table.makeExclusive(parent, from, to), InvalidArgumentError, 'INVALID_ARGUMENT');
    }
  });

  it('retaining a bad or free block → InvalidBlockError', () => {
    const { table } = populated();
    for (const bad of [[8], [-1], [0.5], [NaN], ['1'], [0, 5]]) {
      expectFailsWithoutChange(table, () => table.retainBlocks(bad as number[]), InvalidBlockError, 'INVALID_BLOCK');
    }
    expectFailsWithoutChange(table, () => table.releaseBlocks([0, 99]), InvalidBlockError);
    expectFailsWithoutChange(table, () => table.retainBlocks(null as never), InvalidArgumentError);
    // Int32Array lists (GPU pins) are checked in one pass that counts as it goes: a bad id late in
    // the list still leaves every earlier count as it was
    for (const bad of [[8], [-1], [0, 5], [0, 1, 0, 8], [1, 0, 5, 0]]) {
      expectFailsWithoutChange(table, () => table.retainBlocks(Int32Array.from(bad)), InvalidBlockError, 'INVALID_BLOCK');
    }
    expectFailsWithoutChange(table, () => table.releaseBlocks(Int32Array.of(0, 99)), InvalidBlockError);
  });

  it('releasing more than retained (double release) → InvariantError', () => {
    const { table } = populated(); // block 0 retained once
    expectFailsWithoutChange(table, () => table.releaseBlocks([1]), InvariantError, 'INVARIANT');
    expectFailsWithoutChange(table, () => table.releaseBlocks([0, 0]), InvariantError);
    expectFailsWithoutChange(table, () => table.releaseBlocks([0, 1]), InvariantError);
    for (const bad of [[1], [0, 0], [0, 1], [0, 2, 0]]) {
      expectFailsWithoutChange(table, () => table.releaseBlocks(Int32Array.from(bad)), InvariantError, 'INVARIANT');
    }
    expect(table.releaseBlocks([0])).toEqual([]);
    expectFailsWithoutChange(table, () => table.releaseBlocks([0]), InvariantError);
    expectFailsWithoutChange(table, () => table.releaseBlocks(Int32Array.of(0)), InvariantError);
  });

  it('freeing a sequence whose block already has refCount 0 → InvariantError, nothing released', () => {
    const { table, parent } = populated();
    const v = viewsOf(table);
    const own = table.createSequence([1]).id;
    const block = table.blocksOf(own)[0];
    v.refCount[block] = 0; // corrupt: a referenced block with no references
    expectFailsWithoutChange(table, () => table.free(own), InvariantError, 'INVARIANT', { checkInvariants: false });
    expect(table.has(own)).toBe(true);
    expect(() => table.checkInvariants()).toThrow(/refCount\[\d+\] = 0 but it has 1 table reference/);
    v.refCount[block] = 1;
    table.checkInvariants();
    expect(table.has(parent)).toBe(true);
  });
});
