// BindGroupCache without a GPU: groups are found again only for the same owner and the same buffer,
// offset and size at every binding; the caller's arrays and binding objects may change after add; the
// oldest group goes first when the cache is full.
import { describe, expect, it } from 'vitest';
import { BindGroupCache, type BindingEntry } from '../../src/kernels/bind-group-cache';

const buffer = (name: string): GPUBuffer => ({ label: name }) as unknown as GPUBuffer;
const group = (name: string): GPUBindGroup => ({ label: name }) as unknown as GPUBindGroup;

describe('BindGroupCache', () => {
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(buffer) as [GPUBuffer, GPUBuffer, GPUBuffer, GPUBuffer];
  const owner = {};

  it('finds a group only for the same owner and equal bindings', () => {
    const cache = new BindGroupCache(1);
    const g = group('g');
    cache.add(owner, [{ buffer: a, size: 16 }, { buffer: b }, undefined], g);
    expect(cache.find(owner, [{ buffer: a, size: 16 }, { buffer: b, offset: 0 }, undefined])).toBe(g);
    expect(cache.find({}, [{ buffer: a, size: 16 }, { buffer: b }, undefined])).toBeUndefined(); // another owner
    expect(cache.find(owner, [{ buffer: a }, { buffer: b }, undefined])).toBeUndefined(); // size differs
    expect(cache.find(owner, [{ buffer: a, size: 16 }, { buffer: b, offset: 256 }, undefined])).toBeUndefined();
    expect(cache.find(owner, [{ buffer: a, size: 16 }, { buffer: c }, undefined])).toBeUndefined(); // filed elsewhere
    expect(cache.find(owner, [{ buffer: c, size: 16 }, { buffer: b }, undefined])).toBeUndefined(); // same file, other buffer
    expect(cache.find(owner, [{ buffer: a, size: 16 }, { buffer: b }, { buffer: c }])).toBeUndefined();
    expect(cache.find(owner, [{ buffer: a, size: 16 }, { buffer: b }])).toBeUndefined(); // fewer bindings
    expect(cache.size).toBe(1);
  });

  it('keeps its own copy of the bindings: a caller reusing its scratch array does not change what is cached', () => {
    const cache = new BindGroupCache(0);
    const scratch: GPUBufferBinding[] = [{ buffer: a }, { buffer: b }];
    const first = group('first');
    cache.add(owner, scratch, first);
    scratch[1]!.buffer = c; // the next dispatch's buffers, written in place
    expect(cache.find(owner, scratch)).toBeUndefined();
    const second = group('second');
    cache.add(owner, scratch, second);
    expect(cache.find(owner, scratch)).toBe(second);
    scratch[1]!.buffer = b;
    expect(cache.find(owner, scratch)).toBe(first);
  });

  it('drops the oldest group when full, across owners and files', () => {
    const cache = new BindGroupCache(0, 3);
    const other = {};
    const entries = (x: GPUBuffer, y: GPUBuffer): BindingEntry[] => [{ buffer: x }, { buffer: y }];
    const groups = ['g0', 'g1', 'g2', 'g3'].map(group);
    cache.add(owner, entries(a, b), groups[0]!);
    cache.add(other, entries(c, b), groups[1]!);
    cache.add(owner, entries(a, c), groups[2]!);
    expect(cache.find(owner, entries(a, b))).toBe(groups[0]); // a lookup does not make it younger
    cache.add(owner, entries(d, d), groups[3]!);
    expect(cache.size).toBe(3);
    expect(cache.find(owner, entries(a, b))).toBeUndefined();
    expect(cache.find(other, entries(c, b))).toBe(groups[1]);
    expect(cache.find(owner, entries(a, c))).toBe(groups[2]);
    expect(cache.find(owner, entries(d, d))).toBe(groups[3]);
    cache.clear();
    expect(cache.size).toBe(0);
    expect(cache.find(owner, entries(d, d))).toBeUndefined();
  });
});
