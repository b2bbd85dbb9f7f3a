// fast-check commands driving the real BlockTable + PrefixCache through CpuKvSim against the same
// CacheModel the GPU fuzz uses, plus pins (retainBlocks/releaseBlocks) and GPU reads (beginRead /
// endRead, ended in any order). After every command verifySim checks, from the raw shared arrays and the
// public API:
//   - the table's and the index's invariants, and an independent recount of every block's references
//     (sequence rows + retains + deferred drops), the free list, and free + used + cached = total;
//   - every open read still finds what it read: each block the rows held when it began is in use and
//     holds, in every layer, the content its written positions had then (no reuse, no rewrite in place);
//   - every live sequence's tokens and written lengths equal the model, and every written position of
//     every layer holds exactly the content the model says (isolation: no stale or foreign K/V);
//   - OutOfBlocks happens only when free + evictable blocks cannot cover the call, and changes nothing.
import type fc from 'fast-check';
import { InvalidArgumentError } from '../../../src/errors';
import { BlockState, Ctrl, createViews } from '../../../src/table/layout';
import { OutOfBlocksError, SequenceTooLongError, TooManySequencesError, UnknownSequenceError } from '../../../src/table/errors';
import { assert, assertEqual, expectErrorOf } from './assert';
import type { CacheModel } from './cache-model';
import type { CpuKvSim } from './cpu-kv-sim';
import { namespaceOf, promptTokens, uniqueTokens, type PromptSpec } from './prompts';
import { SequenceModel } from './sequence-model';

export interface SimModel {
  cache: CacheModel;
  pins: number[];
  /** Open GPU reads: their epoch, the slots they name, and what they read (layer, memory index, content id) when they began. */
  reads: Array<{ epoch: number; slots: number[]; blocks: number[]; content: Array<[number, number, number]> }>;
}

export interface RealSim {
  sim: CpuKvSim;
  tally: Record<string, number>;
}

export type SimCommand = fc.Command<SimModel, RealSim>;
type ErrorClass = abstract new (...args: never[]) => Error;

const count = (r: RealSim, key: string, n = 1): void => {
  r.tally[key] = (r.tally[key] ?? 0) + n;
};

function reclaimable(sim: CpuKvSim): number {
  return sim.table.stats().blocksFree + sim.prefix.stats().evictable;
}

/**
 * Everything a failed call must leave untouched: the bytes of the table's and the index's shared
 * buffers, with the lock words and lock statistics (which every call changes) blanked out.
 */
function stateFingerprint(sim: CpuKvSim): Uint8Array[] {
  // The buffer through a view, not `handle`: reading the handle would make the table shared (locking).
  const buffer = sim.table.blockTableView.buffer as SharedArrayBuffer;
  const tableBytes = new Uint8Array(buffer).slice();
  const v = createViews(buffer, sim.table.config);
  for (const view of [v.lockWords, v.lockStats]) tableBytes.fill(0, view.byteOffset, view.byteOffset + view.byteLength);
  return [tableBytes, new Uint8Array(sim.prefix.index.views.buffer).slice()];
}

function sameBytes(a: Uint8Array[], b: Uint8Array[]): boolean {
  return a.every((bytes, i) => bytes.length === b[i]!.length && bytes.every((x, j) => x === b[i]![j]));
}

function runChecked<T>(r: RealSim, action: () => T, allowed: readonly ErrorClass[], what: string): { ok: true; value: T } | { ok: false } {
  const before = stateFingerprint(r.sim);
  try {
    return { ok: true, value: action() };
  } catch (error) {
    expectErrorOf(error, allowed, what);
    assert(sameBytes(stateFingerprint(r.sim), before), `${what} failed but changed the shared state`);
    return { ok: false };
  }
}

function mustFail(r: RealSim, action: () => unknown, allowed: readonly ErrorClass[], what: string): void {
  const outcome = runChecked(r, action, allowed, what);
  assert(!outcome.ok, `${what}: expected ${allowed.map((c) => c.name).join(' or ')}, but it succeeded`);
}

export function verifySim(m: SimModel, r: RealSim): void {
  const { sim } = r;
  const { table } = sim;
  sim.prefix.checkInvariants();
  // Independent recount from the raw arrays.
  const v = createViews(table.handle.buffer, table.config);
  const { numBlocks, maxSequences, maxBlocksPerSequence } = table.config;
  const references = new Int32Array(numBlocks);
  for (let slot = 0; slot < maxSequences; slot++) {
    if (v.seqLive[slot] !== 1) continue;
    for (let i = 0; i < v.seqNumBlocks[slot]!; i++) references[v.blockTable[slot * maxBlocksPerSequence + i]!]!++;
  }
  const pinsPerBlock = new Int32Array(numBlocks);
  for (const b of m.pins) pinsPerBlock[b]!++;
  let free = 0;
  let used = 0;
  let cached = 0;
  for (let b = 0; b < numBlocks; b++) {
    assertEqual(v.refCount[b], references[b]! + pinsPerBlock[b]! + v.deferredRefs[b]!, `refCount of block ${b}`);
    assertEqual(v.retainCount[b], pinsPerBlock[b], `retains of block ${b}`);
    if (v.state[b] === BlockState.FREE) {
      free++;
      assertEqual(references[b]! + pinsPerBlock[b]! + v.deferredRefs[b]!, 0, `references to free block ${b}`);
    } else if (v.state[b] === BlockState.USED) {
      used++;
      assert(v.refCount[b]! > 0, `used block ${b} has no reference`);
    } else {
      cached++;
      assertEqual(v.refCount[b], 0, `refCount of cached block ${b}`);
    }
  }
  assertEqual(v.control[Ctrl.FREE_COUNT], free, 'free count');
  assertEqual(v.control[Ctrl.READS_OPEN], m.reads.length, 'open GPU reads');
  for (const read of m.reads) {
    for (const b of read.blocks) assertEqual(v.state[b], BlockState.USED, `state of block ${b}, read by open read ${read.epoch}`);
    for (const [layer, at, content] of read.content) {
      assert(sim.memory[layer]![at] === content, () => `read ${read.epoch}: layer ${layer} slot ${at} holds ${sim.memory[layer]![at]}, ${content} when the read began`);
    }
  }
  const s = table.stats();
  assertEqual([s.blocksFree, s.blocksUsed, s.blocksCached], [free, used, cached], 'table stats [free, used, cached]');
  assertEqual(free + used + cached, numBlocks, 'free + used + cached');
  const p = sim.prefix.stats();
  assert(p.evictable <= cached && p.registered >= cached, () => `evictable ${p.evictable}, cached ${cached}, registered ${p.registered}`);
  // Every live sequence: tokens, written lengths and the content of every written position.
  assertEqual(new Set(table.sequenceIds()), new Set(m.cache.seqs.keys()), 'live sequence ids');
  for (const [id, seq] of m.cache.seqs) {
    assertEqual(Array.from(table.tokensOf(id)), seq.tokens, `tokens of sequence ${id}`);
    for (let l = 0; l < sim.numLayers; l++) {
      assertEqual(sim.writtenLength(id, l), seq.written[l], `written length of sequence ${id} layer ${l}`);
      const content = sim.read(l, id, 0, seq.written[l]!);
      for (let pos = 0; pos < content.length; pos++) {
        assert(content[pos] === seq.content[l]![pos], () => `sequence ${id} layer ${l} position ${pos} holds ${content[pos]}, model ${seq.content[l]![pos]}`);
      }
    }
  }
  count(r, 'commands');
}

export class SimCreate implements SimCommand {
  constructor(readonly spec: PromptSpec, readonly oversize: boolean) {}
  check = (): boolean => true;
  run(m: SimModel, r: RealSim): void {
    const shape = m.cache.shape;
    const namespace = namespaceOf(this.spec);
    const tokens = this.oversize ? uniqueTokens(shape.maxSequenceLength + 1, this.spec.seed) : promptTokens(this.spec).slice(0, shape.maxSequenceLength);
    if (this.oversize) {
      mustFail(r, () => r.sim.createSequence(tokens, namespace), [SequenceTooLongError], 'oversized createSequence');
    } else if (m.cache.size >= shape.maxSequences) {
      mustFail(r, () => r.sim.createSequence(tokens, namespace), [TooManySequencesError], 'createSequence with every slot used');
    } else {
      const mustSucceed = reclaimable(r.sim) >= Math.ceil(tokens.length / shape.blockSize);
      const outcome = runChecked(r, () => r.sim.createSequence(tokens, namespace), mustSucceed ? [] : [OutOfBlocksError], 'createSequence');
      if (outcome.ok) {
        const { id, cachedTokens } = outcome.value;
        const maxCached = tokens.length > 0 ? Math.floor((tokens.length - 1) / shape.blockSize) * shape.blockSize : 0;
        assert(cachedTokens % shape.blockSize === 0 && cachedTokens <= maxCached, `cachedTokens ${cachedTokens} for ${tokens.length} tokens`);
        m.cache.add(id, new SequenceModel(shape, namespace, tokens, cachedTokens));
        count(r, cachedTokens > 0 ? 'prefixHits' : 'creates');
      } else {
        count(r, 'outOfBlocks');
      }
    }
    verifySim(m, r);
  }
  toString = (): string => `create(${JSON.stringify(this.spec)}${this.oversize ? ', oversize' : ''})`;
}

export class SimAppend implements SimCommand {
  constructor(readonly pick: number, readonly n: number, readonly seed: number) {}
  check = (m: Readonly<SimModel>): boolean => m.cache.size > 0;
  run(m: SimModel, r: RealSim): void {
    const [id, seq] = m.cache.pick(this.pick);
    const shape = m.cache.shape;
    const tokens = promptTokens({ family: 0, shared: 0, tail: this.n, seed: this.seed, namespace: 0 });
    if (seq.length + tokens.length > shape.maxSequenceLength) {
      mustFail(r, () => r.sim.appendTokens(id, tokens), [SequenceTooLongError], 'append past the maximum length');
    } else {
      const room = m.cache.blocksOf(seq) * shape.blockSize - seq.length;
      const added = tokens.length > room ? Math.ceil((tokens.length - room) / shape.blockSize) : 0;
      const outcome = runChecked(r, () => r.sim.appendTokens(id, tokens), reclaimable(r.sim) >= added + 1 ? [] : [OutOfBlocksError], 'appendTokens');
      if (outcome.ok) {
        assertEqual(outcome.value, seq.length, 'first appended position');
        seq.append(tokens);
        count(r, 'appends');
      } else {
        count(r, 'outOfBlocks');
      }
    }
    verifySim(m, r);
  }
  toString = (): string => `append(#${this.pick}, ${this.n}, seed ${this.seed})`;
}

export class SimFork implements SimCommand {
  constructor(readonly pick: number) {}
  check = (m: Readonly<SimModel>): boolean => m.cache.size > 0;
  run(m: SimModel, r: RealSim): void {
    const [id, seq] = m.cache.pick(this.pick);
    if (m.cache.size >= m.cache.shape.maxSequences) {
      mustFail(r, () => r.sim.fork(id), [TooManySequencesError], 'fork with every slot used');
    } else {
      m.cache.add(r.sim.fork(id), seq.clone());
      count(r, 'forks');
    }
    verifySim(m, r);
  }
  toString = (): string => `fork(#${this.pick})`;
}

export class SimWrite implements SimCommand {
  constructor(readonly pick: number, readonly layer: number, readonly extend: boolean, readonly start: number, readonly n: number, readonly salt: number, readonly thenFree: boolean) {}
  check = (m: Readonly<SimModel>): boolean => m.cache.size > 0;
  run(m: SimModel, r: RealSim): void {
    const [id, seq] = m.cache.pick(this.pick);
    const layers = this.layer < 0 ? [...seq.written.keys()] : [this.layer % seq.written.length];
    for (const layer of layers) {
      if (seq.length === 0) break;
      const whole = this.layer < 0;
      const start = whole || (this.extend && seq.written[layer]! < seq.length) ? Math.min(seq.written[layer]!, seq.length - 1) : this.start % seq.length;
      const n = whole ? seq.length - start : Math.min(this.n, seq.length - start);
      const salt = r.sim.prefix.registeredBlocks(id) >= 0 ? 0 : this.salt;
      const ids = seq.contentFor(start, n, salt);
      const bs = m.cache.shape.blockSize;
      const blocks = Math.floor((start + n - 1) / bs) - Math.floor(start / bs) + 1;
      const outcome = runChecked(r, () => r.sim.write(layer, id, start, ids), reclaimable(r.sim) >= blocks ? [] : [OutOfBlocksError], 'write');
      if (outcome.ok) {
        seq.write(layer, start, ids);
        count(r, salt > 0 ? 'saltedWrites' : 'writes');
      } else {
        count(r, 'outOfBlocks');
      }
    }
    if (this.thenFree) {
      r.sim.free(id);
      m.cache.remove(id);
    }
    verifySim(m, r);
  }
  toString = (): string => `write(#${this.pick}, layer ${this.layer < 0 ? 'all' : this.layer}, ${this.extend ? 'extend' : `at ${this.start}`}, n ${this.n}, salt ${this.salt}${this.thenFree ? ', then free' : ''})`;
}

export class SimRefusedRead implements SimCommand {
  constructor(readonly pick: number, readonly layer: number) {}
  check = (m: Readonly<SimModel>): boolean => m.cache.size > 0;
  run(m: SimModel, r: RealSim): void {
    const [id, seq] = m.cache.pick(this.pick);
    const layer = this.layer % seq.written.length;
    mustFail(r, () => r.sim.read(layer, id, 0, seq.written[layer]! + 1), [InvalidArgumentError], 'read of an unwritten position');
    verifySim(m, r);
  }
  toString = (): string => `refusedRead(#${this.pick}, layer ${this.layer})`;
}

export class SimFree implements SimCommand {
  constructor(readonly pick: number) {}
  check = (m: Readonly<SimModel>): boolean => m.cache.size > 0;
  run(m: SimModel, r: RealSim): void {
    const [id] = m.cache.pick(this.pick);
    r.sim.free(id);
    m.cache.remove(id);
    count(r, 'frees');
    verifySim(m, r);
  }
  toString = (): string => `free(#${this.pick})`;
}

export class SimStale implements SimCommand {
  constructor(readonly pick: number, readonly op: number) {}
  check = (m: Readonly<SimModel>): boolean => m.cache.freed.length > 0;
  run(m: SimModel, r: RealSim): void {
    const id = m.cache.freed[this.pick % m.cache.freed.length]!;
    const ops = [() => r.sim.appendTokens(id, [1]), () => r.sim.fork(id), () => r.sim.free(id), () => r.sim.write(0, id, 0, [1]), () => r.sim.read(0, id, 0, 0)];
    mustFail(r, ops[this.op % ops.length]!, [UnknownSequenceError], 'call with a freed id');
    count(r, 'staleIds');
    verifySim(m, r);
  }
  toString = (): string => `stale(#${this.pick}, op ${this.op})`;
}

/** Pins a block of a live sequence (an in-flight GPU read): it must survive the sequence being freed. */
export class SimPin implements SimCommand {
  constructor(readonly pick: number, readonly index: number) {}
  check = (m: Readonly<SimModel>): boolean => m.cache.size > 0;
  run(m: SimModel, r: RealSim): void {
    const [id] = m.cache.pick(this.pick);
    const blocks = r.sim.table.blocksOf(id);
    if (blocks.length > 0) {
      const b = blocks[this.index % blocks.length]!;
      r.sim.table.retainBlocks([b]);
      m.pins.push(b);
      count(r, 'pins');
    }
    verifySim(m, r);
  }
  toString = (): string => `pin(#${this.pick}, block ${this.index})`;
}

export class SimUnpin implements SimCommand {
  constructor(readonly index: number) {}
  check = (m: Readonly<SimModel>): boolean => m.pins.length > 0;
  run(m: SimModel, r: RealSim): void {
    const [b] = m.pins.splice(this.index % m.pins.length, 1);
    r.sim.table.releaseBlocks([b!]);
    verifySim(m, r);
  }
  toString = (): string => `unpin(${this.index})`;
}

/** Begins a GPU read of some live sequences' written positions (what a recorded decode step reads). */
export class SimBeginRead implements SimCommand {
  /** Bit i of `pick` set: the read names the i-th live sequence. */
  constructor(readonly pick: number) {}
  check = (): boolean => true;
  run(m: SimModel, r: RealSim): void {
    const { sim } = r;
    const bs = sim.blockSize;
    const blocks = new Set<number>();
    const slots: number[] = [];
    const content: Array<[number, number, number]> = [];
    for (const [i, [id, seq]] of [...m.cache.seqs].entries()) {
      if (((this.pick >>> (i % 31)) & 1) === 0) continue;
      slots.push(sim.table.rowOf(id));
      const row = sim.table.blocksOf(id);
      for (const b of row) blocks.add(b);
      for (let l = 0; l < sim.numLayers; l++) {
        for (let p = 0; p < seq.written[l]!; p++) {
          const at = row[Math.floor(p / bs)]! * bs + (p % bs);
          content.push([l, at, sim.memory[l]![at]!]);
        }
      }
    }
    m.reads.push({ epoch: sim.table.beginRead(slots), slots, blocks: [...blocks], content });
    count(r, 'reads');
    verifySim(m, r);
  }
  toString = (): string => `beginRead(${this.pick.toString(2)})`;
}

/** Ends one open read (any of them, as submissions complete out of recording order). */
export class SimEndRead implements SimCommand {
  constructor(readonly index: number) {}
  check = (m: Readonly<SimModel>): boolean => m.reads.length > 0;
  run(m: SimModel, r: RealSim): void {
    endRead(m, r, this.index % m.reads.length);
    verifySim(m, r);
  }
  toString = (): string => `endRead(${this.index})`;
}

/** Ends open read `i`, telling the table the oldest epoch still open (minus one). */
function endRead(m: SimModel, r: RealSim, i: number): void {
  const [ended] = m.reads.splice(i, 1);
  const deferredBefore = r.sim.table.stats().blocksDeferred;
  const safe = m.reads.length > 0 ? Math.min(...m.reads.map((x) => x.epoch)) - 1 : ended!.epoch;
  r.sim.table.endRead(safe, ended!.slots);
  if (m.reads.length === 0) assertEqual(r.sim.table.stats().blocksDeferred, 0, 'blocks deferred after the last read ended');
  if (r.sim.table.stats().blocksDeferred < deferredBefore) count(r, 'deferredReleases');
}

export class SimPressure implements SimCommand {
  constructor(readonly overflow: boolean, readonly seed: number) {}
  check = (m: Readonly<SimModel>): boolean => m.cache.size < m.cache.shape.maxSequences;
  run(m: SimModel, r: RealSim): void {
    const bs = m.cache.shape.blockSize;
    const longest = Math.floor(m.cache.shape.maxSequenceLength / bs);
    const available = reclaimable(r.sim);
    const freeBefore = r.sim.table.stats().blocksFree;
    const evictionsBefore = r.sim.table.stats().evictions;
    if (this.overflow && available + 1 <= longest) {
      mustFail(r, () => r.sim.createSequence(uniqueTokens((available + 1) * bs, this.seed), 'pressure'), [OutOfBlocksError], 'allocation beyond the pool');
    } else if (!this.overflow && available > 0) {
      const need = Math.min(available, longest);
      const { id } = r.sim.createSequence(uniqueTokens(need * bs, this.seed), 'pressure');
      const evictions = r.sim.table.stats().evictions - evictionsBefore;
      assertEqual(evictions, Math.max(0, need - freeBefore), 'evictions made for the allocation');
      count(r, 'evictions', evictions);
      const slot = r.sim.table.rowOf(id);
      r.sim.free(id);
      // While an open GPU read names the slot the freed blocks wait for it (deferred), otherwise they are back at once.
      const read = m.reads.some((x) => x.slots.includes(slot));
      assertEqual(reclaimable(r.sim), read ? available - need : available, 'free + evictable after releasing the pressure sequence');
    }
    verifySim(m, r);
  }
  toString = (): string => `pressure(${this.overflow ? 'overflow, ' : ''}seed ${this.seed})`;
}

export class SimClear implements SimCommand {
  check = (): boolean => true;
  run(m: SimModel, r: RealSim): void {
    const evictable = r.sim.prefix.stats().evictable;
    const freed = r.sim.prefix.clear();
    assert(freed >= evictable, `clear freed ${freed} < ${evictable} evictable`);
    assertEqual([r.sim.prefix.stats().registered, r.sim.table.stats().blocksCached], [0, 0], 'registered and cached blocks after clear');
    count(r, 'clears');
    verifySim(m, r);
  }
  toString = (): string => 'clear()';
}

/** Frees everything (sequences and pins) and clears the cache: every block must be free again. */
export function releaseSim(m: SimModel, r: RealSim): void {
  for (const id of [...m.cache.seqs.keys()]) {
    r.sim.free(id);
    m.cache.remove(id);
  }
  while (m.reads.length > 0) endRead(m, r, m.reads.length - 1);
  if (m.pins.length > 0) r.sim.table.releaseBlocks(m.pins.splice(0));
  verifySim(m, r);
  assertEqual(r.sim.prefix.stats().protected, 0, 'protected blocks with nothing live');
  r.sim.prefix.clear();
  verifySim(m, r);
  assertEqual(r.sim.table.stats().blocksFree, r.sim.table.config.numBlocks, 'free blocks after releasing everything');
}
