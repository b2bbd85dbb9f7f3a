// The owning-thread registry of in-flight prompt prefixes used to coalesce identical requests.
import { describe, expect, it } from 'vitest';
import { AbortError } from '../../src/errors';
import { InflightPrefixes } from '../../src/prefix/inflight-prefixes';
import { range } from './helpers';

const BS = 4;

describe('in-flight prefixes', () => {
  it('finds the producer computing the most blocks of a prompt, compared exactly', () => {
    const inflight = new InflightPrefixes(BS);
    inflight.add(1, '', range(9), 0); // will register 2 blocks
    inflight.add(2, '', range(17), 0); // 4 blocks
    inflight.add(3, 'other', range(17), 0);
    expect(inflight.find('', range(13), 0, 3)).toMatchObject({ producer: { id: 2 }, blocks: 3 });
    expect(inflight.find('', range(6), 0, 1)).toMatchObject({ blocks: 1 });
    expect(inflight.find('', [...range(7), 99, 1], 0, 2)).toMatchObject({ blocks: 1 }); // differs in block 1
    expect(inflight.find('', range(13), 3, 3)).toBeUndefined(); // already cached
    expect(inflight.find('x', range(13), 0, 3)).toBeUndefined();
    expect(inflight.find('other', range(13), 0, 3)).toMatchObject({ producer: { id: 3 } });
    inflight.add(4, '', range(3), 0); // no full block: nothing to wait for
    expect(inflight.size).toBe(3);
  });

  it('wakes a waiter when its blocks are registered, and says gone when the producer is removed', async () => {
    const inflight = new InflightPrefixes(BS);
    inflight.add(1, '', range(12), 0);
    const found = inflight.find('', range(12), 0, 2)!;
    const ready = inflight.wait(found.producer, 2);
    const gone = inflight.wait(found.producer, 3);
    expect(inflight.waiting).toBe(2);
    inflight.progress(1, 1);
    expect(inflight.waiting).toBe(2);
    inflight.progress(1, 2);
    await expect(ready).resolves.toBe('ready');
    expect(inflight.find('', range(12), 0, 2)).toBeUndefined(); // registered now: nothing in flight for it
    inflight.remove(1);
    await expect(gone).resolves.toBe('gone');
    expect(inflight.size).toBe(0);
  });

  it('a producer that stops registering (-1) releases its waiters as gone', async () => {
    const inflight = new InflightPrefixes(BS);
    inflight.add(1, '', range(8), 0);
    const waiting = inflight.wait(inflight.find('', range(9), 0, 2)!.producer, 2);
    inflight.progress(1, -1);
    await expect(waiting).resolves.toBe('gone');
  });

  it('times out, aborts, and rejects everyone on rejectAll', async () => {
    const inflight = new InflightPrefixes(BS);
    inflight.add(1, '', range(8), 0);
    const producer = inflight.find('', range(9), 0, 2)!.producer;
    const started = performance.now();
    await expect(inflight.wait(producer, 2, { timeoutMs: 30 })).resolves.toBe('timeout');
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    const controller = new AbortController();
    const aborted = inflight.wait(producer, 2, { signal: controller.signal });
    controller.abort();
    await expect(aborted).rejects.toBeInstanceOf(AbortError);
    const rejected = inflight.wait(producer, 2);
    inflight.rejectAll(() => new Error('destroyed'));
    await expect(rejected).rejects.toThrow('destroyed');
    expect(inflight.waiting).toBe(0);
  });
});
