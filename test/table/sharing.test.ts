// A table no other agent can reach skips the atomic lock; reading its handle shares it for good. The
// tests check both sides of that switch: what attach() accepts, when the lock is really held, and that
// a section open at the moment of sharing takes the lock on the spot and releases it when it ends.
import { describe, expect, it } from 'vitest';
import { PrefixCache } from '../../src/prefix/prefix-cache';
import { BlockTable } from '../../src/table/block-table';
import { ReentrantLockError } from '../../src/table/errors';
import { ConfigError } from '../../src/errors';

const config = { numBlocks: 8, blockSize: 2, maxSequences: 4, maxBlocksPerSequence: 4 };

/** The table's buffer as a caller could take it from a view, bypassing `handle`. */
function bufferOf(table: BlockTable): SharedArrayBuffer {
  return table.blockTableView.buffer as SharedArrayBuffer;
}

describe('sharing a block table', () => {
  it('attach() refuses a buffer whose handle was never read, and accepts it once it was', () => {
    const table = BlockTable.create(config);
    const id = table.createSequence([1, 2, 3]).id;
    expect(() => BlockTable.attach({ buffer: bufferOf(table), config })).toThrow(ConfigError);
    expect(() => BlockTable.attach({ buffer: bufferOf(table), config })).toThrow(/never shared/);
    const other = BlockTable.attach(table.handle);
    expect(other.length(id)).toBe(3);
    // Once shared, the buffer is attachable however it was obtained.
    expect(() => BlockTable.attach({ buffer: bufferOf(table), config })).not.toThrow();
  });

  it('counts every section but holds the lock only once shared', () => {
    const table = BlockTable.create(config);
    const before = table.lockStats().acquisitions;
    const id = table.createSequence([1]).id;
    table.appendTokens(id, [2]);
    const heldInside = table.batch(() => table.lockStats().heldBy);
    expect(heldInside).toBe(0);
    expect(table.lockStats().acquisitions).toBe(before + 3);
    const handle = table.handle;
    expect(handle.buffer).toBe(bufferOf(table));
    const me = table.batch(() => table.lockStats().heldBy);
    expect(me).not.toBe(0);
    expect(table.lockStats().heldBy).toBe(0);
    expect(table.lockStats().acquisitions).toBe(before + 4);
  });

  it('reading the handle inside batch() takes the lock at once and the batch releases it', () => {
    const table = BlockTable.create(config);
    const id = table.createSequence([1, 2]).id;
    let other: BlockTable | undefined;
    table.batch(() => {
      table.appendTokens(id, [3]);
      other = BlockTable.attach(table.handle, { timeoutMs: 0 });
      // The lock is held by this agent now: another view of the table (same thread, same agent) must
      // not enter, as a worker would have to wait.
      expect(table.lockStats().heldBy).toBe(other.lockStats().heldBy);
      expect(table.lockStats().heldBy).not.toBe(0);
      expect(() => other!.length(id)).toThrow(ReentrantLockError);
      table.appendTokens(id, [4]);
    });
    expect(table.lockStats().heldBy).toBe(0);
    expect(other!.length(id)).toBe(4);
    table.checkInvariants();
  });

  it('reading the handle inside an operation (a hook) takes the lock until the operation ends', () => {
    let table: BlockTable | undefined;
    let heldInHook = -1;
    table = BlockTable.create(config, {
      onRelease: () => {
        void table!.handle;
        heldInHook = table!.lockStats().heldBy;
        return false;
      },
    });
    const id = table.createSequence([1, 2, 3]).id;
    table.free(id);
    expect(heldInHook).not.toBe(0);
    expect(heldInHook).not.toBe(-1);
    expect(table.lockStats().heldBy).toBe(0);
    expect(table.createSequence([5]).length).toBe(1); // the lock was released: the next call enters
    table.checkInvariants();
  });

  it('batchAsync on a table not shared runs at once, like a free lock', async () => {
    const table = BlockTable.create(config);
    let ran = false;
    const done = table.batchAsync(() => {
      ran = true;
      return table.createSequence([7, 8, 9]).id;
    });
    expect(ran).toBe(true);
    const id = await done;
    expect(table.length(id)).toBe(3);
  });

  it('a prefix cache does not share its table; its handle does', () => {
    const cache = PrefixCache.create(config);
    const id = cache.createSequence([1, 2, 3, 4, 5]).id;
    expect(() => BlockTable.attach({ buffer: bufferOf(cache.table), config })).toThrow(/never shared/);
    const attached = PrefixCache.attach(cache.handle);
    expect(attached.table.length(id)).toBe(5);
    expect(cache.table.batch(() => cache.table.lockStats().heldBy)).not.toBe(0);
  });
});
