// Full consistency check of a table's shared state, run under the table lock. It recomputes everything
// from first principles and throws InvariantError describing the first violation of:
//   - the free list is well formed: in-range links, prev/next agree, no duplicates or cycles, every
//     member is FREE, its length equals the free count, and every FREE block is on it;
//   - non-free blocks are unlinked (next = prev = -1);
//   - refCount[b] = table references to b + retainCount[b] + deferredRefs[b]; FREE and CACHED blocks
//     have refCount 0, USED blocks refCount > 0 (so no block is both free and referenced);
//   - the deferred list holds each block with deferred references once, and nothing is deferred (and no
//     slot is read) while no GPU read is open;
//   - free + used + cached = total, and the cached count matches the CACHED blocks;
//   - frozen flags are 0 or 1, frozen blocks are never FREE and are full;
//   - per live sequence: seqNumBlocks = ceil(length / blockSize) ≤ maxBlocksPerSequence, the row holds
//     valid USED blocks then -1s, full blocks have filled = blockSize and the last holds the remainder;
//   - free slots are empty rows, the free-slot stack lists each of them once, the live count matches.
// O(numBlocks + maxSequences × maxBlocksPerSequence) time; allocates scratch arrays (not a hot path).
import type { BlockTableConfig } from './config';
import { InvariantError } from './errors';
import { BlockState, Ctrl, type TableViews } from './layout';

const STATE_NAMES = ['FREE', 'USED', 'CACHED'];

function fail(message: string): never {
  throw new InvariantError(message);
}

export function checkTableInvariants(v: TableViews, c: BlockTableConfig): void {
  const { numBlocks: n, blockSize: bs, maxSequences: s, maxBlocksPerSequence: m } = c;
  const freeCount = v.control[Ctrl.FREE_COUNT];
  const cachedCount = v.control[Ctrl.CACHED_COUNT];
  const sequenceCount = v.control[Ctrl.SEQUENCE_COUNT];
  if (freeCount < 0 || cachedCount < 0 || freeCount + cachedCount > n) {
    fail(`counts out of range: free ${freeCount}, cached ${cachedCount}, total ${n}`);
  }

  const onFreeList = checkFreeList(v, n, freeCount);
  const tableRefs = checkSequences(v, n, bs, s, m, sequenceCount);
  checkDeferred(v, n, s);

  let used = 0;
  let cached = 0;
  for (let b = 0; b < n; b++) {
    const st = v.state[b];
    const rc = v.refCount[b];
    const retains = v.retainCount[b];
    const deferred = v.deferredRefs[b];
    const filled = v.filled[b];
    if (retains < 0) fail(`block ${b} has retainCount ${retains} < 0`);
    if (rc !== tableRefs[b] + retains + deferred) {
      fail(`refCount[${b}] = ${rc} but it has ${tableRefs[b]} table reference(s), ${retains} retain(s) and ${deferred} deferred`);
    }
    if (filled < 0 || filled > bs) fail(`block ${b} has filled = ${filled}, outside 0..${bs}`);
    const frozen = v.frozen[b];
    if (frozen > 1) fail(`block ${b} has invalid frozen flag ${frozen}`);
    if (frozen === 1 && st === BlockState.FREE) fail(`block ${b} is frozen but FREE`);
    if (frozen === 1 && filled !== bs) fail(`frozen block ${b} holds ${filled} of ${bs} tokens`);
    if (st === BlockState.FREE) {
      if (!onFreeList[b]) fail(`block ${b} is FREE but not on the free list`);
      if (rc !== 0) fail(`block ${b} is both free and referenced (refCount ${rc})`);
      if (filled !== 0) fail(`free block ${b} has filled = ${filled}`);
    } else if (st === BlockState.USED) {
      if (rc <= 0) fail(`block ${b} is USED with refCount ${rc}`);
      used++;
    } else if (st === BlockState.CACHED) {
      if (rc !== 0) fail(`block ${b} is CACHED with refCount ${rc}`);
      cached++;
    } else {
      fail(`block ${b} has invalid state ${st}`);
    }
    if (st !== BlockState.FREE && (v.next[b] !== -1 || v.prev[b] !== -1)) {
      fail(`block ${b} is ${STATE_NAMES[st]} but still linked (next ${v.next[b]}, prev ${v.prev[b]})`);
    }
  }
  if (cached !== cachedCount) fail(`${cached} block(s) are CACHED but the cached count is ${cachedCount}`);
  if (freeCount + used + cached !== n) {
    fail(`free ${freeCount} + used ${used} + cached ${cached} ≠ total ${n}`);
  }
}

function checkDeferred(v: TableViews, n: number, s: number): void {
  const count = v.control[Ctrl.DEFERRED_COUNT];
  const open = v.control[Ctrl.READS_OPEN];
  if (open < 0) fail(`${open} GPU reads open`);
  for (let slot = 0; slot < s; slot++) {
    const reads = v.slotReads[slot];
    if (reads < 0 || (open === 0 && reads !== 0)) fail(`slot ${slot} is named by ${reads} GPU read(s) while ${open} are open`);
  }
  if (count < 0 || count > n) fail(`deferred list holds ${count} entries of ${n} blocks`);
  if (open === 0 && count > 0) fail(`${count} block(s) hold deferred references while no GPU read is open`);
  const listed = new Uint8Array(n);
  for (let i = 0; i < count; i++) {
    const b = v.deferredList[i];
    if (!(b >= 0 && b < n)) fail(`deferred list holds invalid block ${b}`);
    if (listed[b]) fail(`deferred list holds block ${b} twice`);
    listed[b] = 1;
  }
  for (let b = 0; b < n; b++) {
    const d = v.deferredRefs[b];
    if (d < 0) fail(`block ${b} has ${d} deferred references`);
    if ((d > 0) !== (listed[b] === 1)) fail(`block ${b} has ${d} deferred reference(s) but is${listed[b] ? '' : ' not'} on the deferred list`);
  }
}

function checkFreeList(v: TableViews, n: number, freeCount: number): Uint8Array {
  const onList = new Uint8Array(n);
  const { next, prev } = v;
  let before = n;
  let node = next[n];
  let length = 0;
  while (node !== n) {
    if (!Number.isInteger(node) || node < 0 || node > n) fail(`free list: link ${before} → ${node} is out of range`);
    if (onList[node]) fail(`free list: block ${node} is reached twice (duplicate or cycle)`);
    if (prev[node] !== before) fail(`free list: prev[${node}] = ${prev[node]}, expected ${before}`);
    const st = v.state[node];
    if (st !== BlockState.FREE) fail(`block ${node} is on the free list but is ${STATE_NAMES[st] ?? st}`);
    onList[node] = 1;
    length++;
    before = node;
    node = next[node];
  }
  if (prev[n] !== before) fail(`free list: tail (prev of sentinel) is ${prev[n]}, expected ${before}`);
  if (length !== freeCount) fail(`free list holds ${length} block(s) but the free count is ${freeCount}`);
  return onList;
}

/** Checks every slot; returns the number of table references per block. */
function checkSequences(v: TableViews, n: number, bs: number, s: number, m: number, sequenceCount: number): Int32Array {
  const refs = new Int32Array(n);
  let live = 0;
  for (let slot = 0; slot < s; slot++) {
    const row = slot * m;
    const length = v.seqLength[slot];
    const blocks = v.seqNumBlocks[slot];
    const id = slot + s * v.seqGeneration[slot];
    if (v.seqGeneration[slot] < 0) fail(`slot ${slot} has negative generation ${v.seqGeneration[slot]}`);
    if (v.seqLive[slot] === 0) {
      if (length !== 0 || blocks !== 0) fail(`free slot ${slot} has length ${length} and ${blocks} block(s)`);
      for (let i = 0; i < m; i++) {
        if (v.blockTable[row + i] !== -1) fail(`free slot ${slot} still lists block ${v.blockTable[row + i]} at column ${i}`);
      }
      continue;
    }
    if (v.seqLive[slot] !== 1) fail(`slot ${slot} has invalid live flag ${v.seqLive[slot]}`);
    live++;
    if (length < 0 || blocks !== Math.ceil(length / bs) || blocks > m) {
      fail(`sequence ${id}: length ${length} needs ${Math.ceil(length / bs)} block(s) but seqNumBlocks is ${blocks}`);
    }
    for (let i = 0; i < m; i++) {
      const b = v.blockTable[row + i];
      if (i >= blocks) {
        if (b !== -1) fail(`sequence ${id}: column ${i} beyond its ${blocks} block(s) holds ${b}, expected -1`);
        continue;
      }
      if (b < 0 || b >= n) fail(`sequence ${id}: column ${i} holds invalid block ${b}`);
      const st = v.state[b];
      if (st !== BlockState.USED) fail(`sequence ${id} references block ${b}, which is ${STATE_NAMES[st] ?? st}`);
      refs[b]++;
      const expectedFill = i < blocks - 1 ? bs : length - (blocks - 1) * bs;
      if (v.filled[b] !== expectedFill) {
        fail(`sequence ${id}: block ${b} (column ${i}) has filled = ${v.filled[b]}, expected ${expectedFill}`);
      }
    }
  }
  if (live !== sequenceCount) fail(`${live} live slot(s) but the sequence count is ${sequenceCount}`);

  const seen = new Uint8Array(s);
  let freeSlots = 0;
  for (let slot = v.control[Ctrl.FREE_SLOT_HEAD]; slot !== -1; slot = v.seqNextFreeSlot[slot]) {
    if (slot < 0 || slot >= s) fail(`free-slot stack holds invalid slot ${slot}`);
    if (seen[slot]) fail(`free-slot stack reaches slot ${slot} twice`);
    if (v.seqLive[slot] !== 0) fail(`free-slot stack holds live slot ${slot}`);
    seen[slot] = 1;
    freeSlots++;
  }
  if (freeSlots !== s - live) fail(`free-slot stack holds ${freeSlots} slot(s), expected ${s - live}`);
  return refs;
}
