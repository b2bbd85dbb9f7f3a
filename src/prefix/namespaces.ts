// Namespace strings interned in shared memory, so every agent maps a namespace to the same entry and
// compares it exactly (length and every UTF-16 unit; the hash only picks a bucket). Invariants (under the
// table lock): entry 0 is the default namespace '' and is never freed; a live entry has nsLength ≥ 0,
// sits in exactly one hash chain and is referenced by nsRefs = live sequences in it + its registered root
// blocks; an entry whose references drop to 0 is unlinked and pushed on the free stack (nsLength -1), so
// its index may later name another string — no stale holder exists, since every holder counted.
import { InvalidArgumentError } from '../errors';
import { IndexCtrl, NO_NAMESPACE, namespaceBuckets, type IndexViews } from './layout';
import type { PrefixIndexConfig } from './config';

export class Namespaces {
  private readonly v: IndexViews;
  private readonly maxLength: number;
  private readonly mask: number;

  constructor(v: IndexViews, config: PrefixIndexConfig) {
    this.v = v;
    this.maxLength = config.maxNamespaceLength;
    this.mask = namespaceBuckets(config) - 1;
  }

  /** Validates a namespace argument (before taking the lock); undefined means the default ''. */
  check(namespace: unknown): string {
    if (namespace === undefined) return '';
    if (typeof namespace !== 'string') {
      throw new InvalidArgumentError(`namespace must be a string (got ${typeof namespace})`);
    }
    if (namespace.length > this.maxLength) {
      throw new InvalidArgumentError(
        `namespace is ${namespace.length} UTF-16 units long; at most ${this.maxLength} are supported. ` +
          'Use a shorter id (e.g. a tenant or adapter id) or raise the prefix cache option maxNamespaceLength.',
      );
    }
    return namespace;
  }

  /** The entry of `name`, or NO_NAMESPACE when it is not interned. */
  find(name: string): number {
    if (name.length === 0) return 0;
    const h = hashString(name);
    const v = this.v;
    for (let e = v.nsBuckets[h & this.mask]; e >= 0; e = v.nsNext[e]) {
      if (v.nsHash[e] === h && this.holds(e, name)) return e;
    }
    return NO_NAMESPACE;
  }

  /** The entry of `name`, interning it if needed; NO_NAMESPACE when every entry is in use. */
  intern(name: string): number {
    const found = this.find(name);
    if (found !== NO_NAMESPACE) return found;
    const v = this.v;
    const e = v.control[IndexCtrl.NS_FREE_HEAD];
    if (e < 0) return NO_NAMESPACE;
    v.control[IndexCtrl.NS_FREE_HEAD] = v.nsNext[e];
    const h = hashString(name);
    const base = e * this.maxLength;
    for (let i = 0; i < name.length; i++) v.nsChars[base + i] = name.charCodeAt(i);
    v.nsLength[e] = name.length;
    v.nsHash[e] = h;
    v.nsRefs[e] = 0;
    const bucket = h & this.mask;
    v.nsNext[e] = v.nsBuckets[bucket];
    v.nsBuckets[bucket] = e;
    v.control[IndexCtrl.NS_LIVE]++;
    return e;
  }

  addRef(e: number): void {
    this.v.nsRefs[e]++;
  }

  /** Drops a reference; frees the entry (never entry 0) when it was the last. */
  release(e: number): void {
    const v = this.v;
    if (--v.nsRefs[e] > 0 || e === 0) return;
    this.free(e);
  }

  /** Frees `e` if nothing references it (an entry interned for an operation that then failed). */
  releaseIfUnused(e: number): void {
    if (e > 0 && this.v.nsRefs[e] === 0) this.free(e);
  }

  /** The string of a live entry. */
  nameOf(e: number): string {
    const v = this.v;
    const base = e * this.maxLength;
    return String.fromCharCode(...v.nsChars.subarray(base, base + v.nsLength[e]));
  }

  /** Recomputed hash of a live entry's string (for invariant checks). */
  hashOf(e: number): number {
    return hashString(this.nameOf(e));
  }

  bucketOf(e: number): number {
    return this.v.nsHash[e] & this.mask;
  }

  private free(e: number): void {
    const v = this.v;
    const bucket = v.nsHash[e] & this.mask;
    if (v.nsBuckets[bucket] === e) {
      v.nsBuckets[bucket] = v.nsNext[e];
    } else {
      let p = v.nsBuckets[bucket];
      while (v.nsNext[p] !== e) p = v.nsNext[p];
      v.nsNext[p] = v.nsNext[e];
    }
    v.nsLength[e] = -1;
    v.nsNext[e] = v.control[IndexCtrl.NS_FREE_HEAD];
    v.control[IndexCtrl.NS_FREE_HEAD] = e;
    v.control[IndexCtrl.NS_LIVE]--;
  }

  private holds(e: number, name: string): boolean {
    const v = this.v;
    if (v.nsLength[e] !== name.length) return false;
    const base = e * this.maxLength;
    for (let i = 0; i < name.length; i++) if (v.nsChars[base + i] !== name.charCodeAt(i)) return false;
    return true;
  }
}

/** FNV-1a over UTF-16 code units, as an Int32. */
export function hashString(s: string): number {
  let h = 0x811c9dc5 | 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h;
}
