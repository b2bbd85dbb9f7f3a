// Bind groups cached by the identity of what they bind, shared by the attention kernels and the KV
// kernels (write, gather, copy). Invariants:
//   - a group is found again only for the same owner (a pipeline or a kernel: what fixes the layout)
//     and the same buffer, offset and size at every binding; a lookup compares those and nothing else,
//     so it allocates nothing and builds no key;
//   - groups are filed by owner and by the buffer at one binding (`fileIndex`: one that differs between
//     the groups a loop keeps needing, such as a layer's first KV chunk), so a lookup scans only the few
//     groups sharing that buffer;
//   - at most `capacity` groups are kept; the oldest created is dropped first. A grown or replaced buffer
//     is a new identity, so groups holding the old one simply age out;
//   - the cache keeps its own copy of each group's bindings: callers may reuse their arrays and binding
//     objects between calls.

/** One binding of a group: a buffer range, or undefined for a binding the layout lacks. */
export type BindingEntry = GPUBufferBinding | undefined;

interface CachedGroup {
  readonly entries: readonly BindingEntry[];
  readonly group: GPUBindGroup;
  /** Creation order over the whole cache (the oldest is dropped first). */
  readonly serial: number;
}

/**
 * Groups a decode loop keeps needing: per layer, per rotating upload or staging slot and per pipeline
 * (32 × 8 × 2 for a 32-layer model). Smaller, every step would re-create them; a group costs a few
 * hundred bytes of host and descriptor memory.
 */
export const BIND_GROUP_CACHE_SIZE = 4096;

/** Whether two binding lists name the same buffers at the same offsets and sizes. */
function sameBindings(a: readonly BindingEntry[], b: readonly BindingEntry[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (x === y) continue;
    if (x === undefined || y === undefined) return false;
    if (x.buffer !== y.buffer || (x.offset ?? 0) !== (y.offset ?? 0) || x.size !== y.size) return false;
  }
  return true;
}

/** createBindGroup entries for `entries` (binding i = entries[i]; undefined ones are left out). */
export function groupEntries(entries: readonly BindingEntry[]): GPUBindGroupEntry[] {
  return entries.flatMap((e, binding) => (e ? [{ binding, resource: { buffer: e.buffer, offset: e.offset, size: e.size } }] : []));
}

export class BindGroupCache {
  private readonly filed = new Map<object, Map<GPUBuffer | undefined, CachedGroup[]>>();
  private total = 0;
  private serial = 0;

  constructor(
    private readonly fileIndex: number,
    private readonly capacity = BIND_GROUP_CACHE_SIZE,
  ) {}

  /** The group made earlier for `owner` from bindings equal to `entries`, if it is still cached. */
  find(owner: object, entries: readonly BindingEntry[]): GPUBindGroup | undefined {
    const list = this.filed.get(owner)?.get(entries[this.fileIndex]?.buffer);
    if (list === undefined) return undefined;
    for (let i = list.length - 1; i >= 0; i--) {
      if (sameBindings(list[i]!.entries, entries)) return list[i]!.group;
    }
    return undefined;
  }

  /** Files `group`, made for `owner` from `entries` (copied), dropping the oldest group when full. */
  add(owner: object, entries: readonly BindingEntry[], group: GPUBindGroup): void {
    if (this.total >= this.capacity) this.dropOldest();
    let byBuffer = this.filed.get(owner);
    if (byBuffer === undefined) this.filed.set(owner, (byBuffer = new Map()));
    const key = entries[this.fileIndex]?.buffer;
    let list = byBuffer.get(key);
    if (list === undefined) byBuffer.set(key, (list = []));
    const copy = entries.map((e) => (e ? { buffer: e.buffer, offset: e.offset, size: e.size } : undefined));
    list.push({ entries: copy, group, serial: this.serial++ });
    this.total++;
  }

  /** Number of cached groups. */
  get size(): number {
    return this.total;
  }

  clear(): void {
    this.filed.clear();
    this.total = 0;
  }

  /** Drops the oldest cached group (and its list, once empty). */
  private dropOldest(): void {
    let oldest: CachedGroup[] | undefined;
    let oldestIn: Map<GPUBuffer | undefined, CachedGroup[]> | undefined;
    let oldestKey: GPUBuffer | undefined;
    for (const byBuffer of this.filed.values()) {
      for (const [key, list] of byBuffer) {
        if (list.length > 0 && (oldest === undefined || list[0]!.serial < oldest[0]!.serial)) {
          oldest = list;
          oldestIn = byBuffer;
          oldestKey = key;
        }
      }
    }
    if (oldest === undefined) return;
    oldest.shift();
    if (oldest.length === 0) oldestIn!.delete(oldestKey);
    this.total--;
  }
}
