// Full consistency check of a prefix index against its block table, run under the table lock. It
// recomputes everything from first principles and throws InvariantError on the first violation of:
//   - registered ⇔ frozen in the table; registered blocks are never FREE; a block is CACHED iff it is
//     registered and unreferenced (the index is the table's only cache policy);
//   - every registered block's parent is registered (or it is a namespace root of a live namespace),
//     parent chains end at a root, nodeHash = hash(parentKey, tokens), each registered block is in
//     exactly its bucket's chain (links agree), no two registered blocks have the same key;
//   - childCount and activeKids match a recount, child hints name registered children; EVICTABLE = registered blocks with no reference in
//     their subtree; the heap holds exactly the evictable leaves, with consistent positions and the heap
//     property; evictable + used + free = total (used: every other block);
//   - namespace entries: refs = owning slots + registered root blocks, live entries hashed and chained,
//     no two live entries equal, the free stack lists exactly the free entries;
//   - a live sequence that registers has registered blocks forming a chain from its namespace root.
// O(numBlocks × blockSize + maxSequences × maxBlocksPerSequence); allocates (not a hot path).
import type { BlockTableConfig } from '../table/config';
import { InvariantError } from '../table/errors';
import { BlockState, Ctrl, type TableViews } from '../table/layout';
import { IndexCtrl, NO_NAMESPACE, NOT_REGISTERED, REGISTRATION_CLOSED } from './layout';
import type { PrefixIndex } from './prefix-index';

function fail(message: string): never {
  throw new InvariantError(`prefix index: ${message}`);
}

export function checkIndexInvariants(index: PrefixIndex, t: TableViews, tc: BlockTableConfig): void {
  const n = tc.numBlocks;
  const registered = checkNodes(index, t, n);
  checkBuckets(index, registered, n);
  checkActivity(index, t, registered, n);
  const rootRefs = checkSlots(index, t, tc);
  checkNamespaces(index, registered, rootRefs);
}

function checkNodes(index: PrefixIndex, t: TableViews, n: number): Uint8Array {
  const v = index.views;
  const bs = index.config.blockSize;
  const registered = new Uint8Array(n);
  let count = 0;
  for (let b = 0; b < n; b++) {
    const pk = v.parentKey[b];
    const isReg = pk !== NOT_REGISTERED;
    if (isReg !== (t.frozen[b] === 1)) fail(`block ${b} is ${isReg ? '' : 'not '}registered but its frozen flag is ${t.frozen[b]}`);
    if ((t.state[b] === BlockState.CACHED) !== (isReg && t.state[b] !== BlockState.USED)) {
      fail(`block ${b} is in table state ${t.state[b]} but ${isReg ? 'registered' : 'not registered'}`);
    }
    if (!isReg) {
      if (v.heapPos[b] !== -1) fail(`unregistered block ${b} has heap position ${v.heapPos[b]}`);
      if (v.bucketNext[b] !== -1 || v.bucketPrev[b] !== -1) fail(`unregistered block ${b} is still linked in a bucket`);
      continue;
    }
    registered[b] = 1;
    count++;
    if (t.state[b] === BlockState.FREE) fail(`registered block ${b} is FREE`);
    if (pk >= 0) {
      if (pk >= n || pk === b) fail(`block ${b} has invalid parent ${pk}`);
      if (v.parentKey[pk] === NOT_REGISTERED) fail(`block ${b}'s parent ${pk} is not registered`);
    } else {
      const ns = -1 - pk;
      if (ns >= index.config.maxNamespaces || v.nsLength[ns] < 0) fail(`root block ${b} is in namespace ${ns}, which is not live`);
    }
    const h = index.trie.hashOf(pk, t.tokens, b * bs);
    if (v.nodeHash[b] !== h) fail(`block ${b} has nodeHash ${v.nodeHash[b]}, expected ${h}`);
  }
  if (count !== v.control[IndexCtrl.REGISTERED]) fail(`${count} registered block(s) but the count is ${v.control[IndexCtrl.REGISTERED]}`);
  // Parent chains end at a root (no cycles): depth is at most the number of registered blocks.
  const depth = new Int32Array(n).fill(-1);
  for (let b = 0; b < n; b++) {
    if (!registered[b] || depth[b] >= 0) continue;
    const path: number[] = [];
    let x = b;
    while (x >= 0 && depth[x] < 0) {
      path.push(x);
      if (path.length > count) fail(`the parent chain of block ${b} has a cycle`);
      x = v.parentKey[x];
    }
    let d = x >= 0 ? depth[x] : 0;
    for (let i = path.length - 1; i >= 0; i--) depth[path[i]] = ++d;
  }
  // No two registered blocks share a key.
  const keys = new Map<string, number>();
  for (let b = 0; b < n; b++) {
    if (!registered[b]) continue;
    const key = `${v.parentKey[b]}:${Array.from(t.tokens.subarray(b * bs, (b + 1) * bs)).join(',')}`;
    const other = keys.get(key);
    if (other !== undefined) fail(`blocks ${other} and ${b} are both registered with the same parent and tokens`);
    keys.set(key, b);
  }
  return registered;
}

function checkBuckets(index: PrefixIndex, registered: Uint8Array, n: number): void {
  const v = index.views;
  const mask = v.buckets.length - 1;
  const seen = new Uint8Array(n);
  for (let bucket = 0; bucket < v.buckets.length; bucket++) {
    let prev = -1;
    for (let b = v.buckets[bucket]; b >= 0; b = v.bucketNext[b]) {
      if (b >= n) fail(`bucket ${bucket} links to invalid block ${b}`);
      if (seen[b]) fail(`block ${b} is reached twice in the bucket chains`);
      seen[b] = 1;
      if (!registered[b]) fail(`unregistered block ${b} is in bucket ${bucket}`);
      if ((v.nodeHash[b] & mask) !== bucket) fail(`block ${b} is in bucket ${bucket} but hashes to ${v.nodeHash[b] & mask}`);
      if (v.bucketPrev[b] !== prev) fail(`bucketPrev[${b}] = ${v.bucketPrev[b]}, expected ${prev}`);
      prev = b;
    }
  }
  for (let b = 0; b < n; b++) if (registered[b] && !seen[b]) fail(`registered block ${b} is in no bucket chain`);
}

function checkActivity(index: PrefixIndex, t: TableViews, registered: Uint8Array, n: number): void {
  const v = index.views;
  const children = new Int32Array(n);
  for (let b = 0; b < n; b++) if (registered[b] && v.parentKey[b] >= 0) children[v.parentKey[b]]++;
  // Active: referenced, or an ancestor of a referenced block.
  const active = new Uint8Array(n);
  for (let b = 0; b < n; b++) {
    if (!registered[b] || t.state[b] !== BlockState.USED) continue;
    for (let x = b; x >= 0 && !active[x]; x = v.parentKey[x]) active[x] = 1;
  }
  const activeKids = new Int32Array(n);
  for (let b = 0; b < n; b++) if (registered[b] && active[b] && v.parentKey[b] >= 0) activeKids[v.parentKey[b]]++;
  let evictable = 0;
  let leaves = 0;
  for (let b = 0; b < n; b++) {
    if (!registered[b]) continue;
    if (v.childCount[b] !== children[b]) fail(`block ${b} has childCount ${v.childCount[b]} but ${children[b]} registered child(ren)`);
    const hint = v.childHint[b];
    if (hint !== -1 && (hint < 0 || hint >= n || !registered[hint] || v.parentKey[hint] !== b)) {
      fail(`block ${b} has child hint ${hint}, which is not a registered child of it`);
    }
    if (v.activeKids[b] !== activeKids[b]) fail(`block ${b} has activeKids ${v.activeKids[b]}, expected ${activeKids[b]}`);
    const inHeap = v.heapPos[b] >= 0;
    const evictableLeaf = !active[b] && children[b] === 0;
    if (!active[b]) evictable++;
    if (evictableLeaf) leaves++;
    if (inHeap !== evictableLeaf) {
      fail(`block ${b} is ${inHeap ? '' : 'not '}in the heap but it is ${evictableLeaf ? '' : 'not '}an evictable leaf`);
    }
  }
  if (evictable !== v.control[IndexCtrl.EVICTABLE]) fail(`${evictable} evictable block(s) but the count is ${v.control[IndexCtrl.EVICTABLE]}`);
  const size = v.control[IndexCtrl.HEAP_SIZE];
  if (size !== leaves) fail(`the heap holds ${size} block(s) but there are ${leaves} evictable leaves`);
  for (let i = 0; i < size; i++) {
    const b = v.heap[i];
    if (v.heapPos[b] !== i) fail(`heap[${i}] = ${b} but heapPos[${b}] = ${v.heapPos[b]}`);
    if (i > 0 && v.lastUse[v.heap[(i - 1) >> 1]] > v.lastUse[b]) fail(`heap property violated at position ${i}`);
  }
  const free = t.control[Ctrl.FREE_COUNT];
  let used = 0;
  for (let b = 0; b < n; b++) if (t.state[b] !== BlockState.FREE && !(registered[b] && !active[b])) used++;
  if (evictable + used + free !== n) fail(`evictable ${evictable} + used ${used} + free ${free} ≠ total ${n}`);
}

/** Checks slot states; returns the namespace references held by owning slots. */
function checkSlots(index: PrefixIndex, t: TableViews, tc: BlockTableConfig): Int32Array {
  const v = index.views;
  const bs = tc.blockSize;
  const refs = new Int32Array(index.config.maxNamespaces);
  for (let slot = 0; slot < tc.maxSequences; slot++) {
    const owner = v.slotOwner[slot];
    if (owner < 0) continue;
    const ns = v.slotNamespace[slot];
    if (ns !== NO_NAMESPACE) {
      if (ns < 0 || ns >= index.config.maxNamespaces || v.nsLength[ns] < 0) fail(`slot ${slot} holds namespace ${ns}, which is not live`);
      refs[ns]++;
    }
    const live = t.seqLive[slot] === 1 && slot + tc.maxSequences * t.seqGeneration[slot] === owner;
    const r = v.slotRegistered[slot];
    if (!live || r === REGISTRATION_CLOSED) continue;
    if (ns === NO_NAMESPACE) fail(`sequence ${owner} registers blocks but has no namespace`);
    if (r < 0 || r * bs > t.seqLength[slot]) fail(`sequence ${owner} has ${r} registered block(s) for length ${t.seqLength[slot]}`);
    const row = slot * tc.maxBlocksPerSequence;
    for (let i = 0; i < r; i++) {
      const b = t.blockTable[row + i];
      const expected = i === 0 ? -1 - ns : t.blockTable[row + i - 1];
      if (v.parentKey[b] !== expected) {
        fail(`sequence ${owner}: registered block ${b} (column ${i}) has parent ${v.parentKey[b]}, expected ${expected}`);
      }
    }
  }
  return refs;
}

function checkNamespaces(index: PrefixIndex, registered: Uint8Array, slotRefs: Int32Array): void {
  const v = index.views;
  const m = index.config.maxNamespaces;
  const refs = slotRefs.slice();
  for (let b = 0; b < registered.length; b++) if (registered[b] && v.parentKey[b] < 0) refs[-1 - v.parentKey[b]]++;
  const names = new Map<string, number>();
  let live = 0;
  for (let e = 0; e < m; e++) {
    if (v.nsLength[e] < 0) {
      if (refs[e] !== 0) fail(`free namespace entry ${e} is referenced ${refs[e]} time(s)`);
      continue;
    }
    live++;
    if (e > 0 && v.nsRefs[e] !== refs[e]) fail(`namespace entry ${e} has ${v.nsRefs[e]} reference(s), expected ${refs[e]}`);
    if (e > 0 && refs[e] === 0) fail(`namespace entry ${e} is live with no reference`);
    const name = index.namespaces.nameOf(e);
    if (e > 0 && v.nsHash[e] !== index.namespaces.hashOf(e)) fail(`namespace entry ${e} has a stale hash`);
    const other = names.get(name);
    if (other !== undefined) fail(`namespace entries ${other} and ${e} hold the same string`);
    names.set(name, e);
    if (e > 0 && index.namespaces.find(name) !== e) fail(`namespace entry ${e} is not found through its bucket`);
  }
  if (live !== v.control[IndexCtrl.NS_LIVE]) fail(`${live} live namespace entries but the count is ${v.control[IndexCtrl.NS_LIVE]}`);
  let free = 0;
  for (let e = v.control[IndexCtrl.NS_FREE_HEAD]; e >= 0; e = v.nsNext[e]) {
    if (e >= m || v.nsLength[e] >= 0) fail(`the namespace free stack holds entry ${e}, which is not free`);
    if (++free > m) fail('the namespace free stack has a cycle');
  }
  if (free !== m - live) fail(`the namespace free stack holds ${free} entries, expected ${m - live}`);
}
