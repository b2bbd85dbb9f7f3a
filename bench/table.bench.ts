// Single-thread throughput of the block table: every public call counts as one op (the step-pin line
// counts each block retained or released, as GPU pins do for every block of a batch whose rows changed
// since it was prepared; the row-pin line counts one table read begun and ended, what pins a decode step). Calls
// run on a table no other agent can reach (no lock needed), and the append/free figures again once it
// is shared (the uncontended atomic lock on every call); each figure is the best and the median rate
// of several short windows (the machine may be shared).
// Run alone: npx tsx bench/table.bench.ts — or through the bench suite (runTableBench).
import { BlockTable } from '../src/table/block-table';
import { SpinLock } from '../src/table/spin-lock';

export interface RateResult {
  name: string;
  bestMops: number;
  medianMops: number;
}

const BLOCK_SIZE = 16;
const SEQUENCES = 64;
const BLOCKS_PER_SEQUENCE = 64;

export function runTableBench(options: { windows?: number; windowMs?: number; print?: boolean } = {}): RateResult[] {
  const WINDOWS = options.windows ?? 7;
  const WINDOW_MS = options.windowMs ?? 250;
  const results: RateResult[] = [];
  const makeTable = (): BlockTable =>
    BlockTable.create({
      numBlocks: SEQUENCES * BLOCKS_PER_SEQUENCE,
      blockSize: BLOCK_SIZE,
      maxSequences: 2 * SEQUENCES,
      maxBlocksPerSequence: BLOCKS_PER_SEQUENCE,
    });
  const table = makeTable();
  const oneBlock = new Uint32Array(BLOCK_SIZE).map((_, i) => 1000 + i);
  const oneToken = [42];

  /** Records (and optionally prints) the best and the median rate over the windows. */
  function report(name: string, rates: number[]): void {
    const sorted = [...rates].sort((a, b) => b - a);
    const best = sorted[0]! / 1e6;
    const median = sorted[Math.floor(sorted.length / 2)]! / 1e6;
    results.push({ name, bestMops: best, medianMops: median });
    if (options.print) console.log(`${name.padEnd(64)} best ${best.toFixed(2).padStart(6)}  median ${median.toFixed(2).padStart(6)}  M ops/s`);
  }

  /**
   * Runs `cycle` (returning the ops it did) in WINDOWS windows of WINDOW_MS after a warm-up; `batch`
   * cycles run between two clock reads (fewer for long cycles).
   */
  function measure(name: string, cycle: () => number, batch = 1000): void {
    for (let i = 0; i < 100 * batch; i++) cycle();
    const rates: number[] = [];
    for (let w = 0; w < WINDOWS; w++) {
      let ops = 0;
      const start = performance.now();
      let elapsed = 0;
      while (elapsed < WINDOW_MS) {
        for (let i = 0; i < batch; i++) ops += cycle();
        elapsed = performance.now() - start;
      }
      rates.push((ops / elapsed) * 1000);
    }
    report(name, rates);
  }

  /**
   * Appends one block per call until the pool is full, then frees every sequence (each frees 64
   * blocks); the two phases are timed separately. Both walk single blocks through the allocator.
   */
  function appendAndFree(table: BlockTable, label: string): void {
    const ids = new Array<number>(SEQUENCES);
    const appendRates: number[] = [];
    const releaseRates: number[] = [];
    const freeCallRates: number[] = [];
    let appendOps = 0, appendMs = 0, freeCalls = 0, blocksFreed = 0, freeMs = 0;
    const round = (): void => {
      for (let s = 0; s < SEQUENCES; s++) ids[s] = table.createSequence([]).id;
      let t = performance.now();
      for (let b = 0; b < BLOCKS_PER_SEQUENCE; b++) {
        for (let s = 0; s < SEQUENCES; s++) table.appendTokens(ids[s], oneBlock);
      }
      appendMs += performance.now() - t;
      appendOps += SEQUENCES * BLOCKS_PER_SEQUENCE;
      t = performance.now();
      for (let s = 0; s < SEQUENCES; s++) blocksFreed += table.free(ids[s]).length;
      freeMs += performance.now() - t;
      freeCalls += SEQUENCES;
    };
    for (let i = 0; i < 50; i++) round();
    for (let w = 0; w < WINDOWS; w++) {
      appendOps = appendMs = freeCalls = blocksFreed = freeMs = 0;
      const start = performance.now();
      while (performance.now() - start < WINDOW_MS) round();
      appendRates.push((appendOps / appendMs) * 1000);
      releaseRates.push((blocksFreed / freeMs) * 1000);
      freeCallRates.push((freeCalls / freeMs) * 1000);
    }
    report(`appendTokens, 16 tokens = one new block per call${label}`, appendRates);
    report(`free of 64-block sequences: blocks released per second${label}`, releaseRates);
    report(`free of 64-block sequences: calls per second${label}`, freeCallRates);
  }

  // A table shared from the start (its handle read, as for a worker) takes the atomic lock on every
  // call; one whose handle was never read has no other agent and skips it (BlockTable header).
  const shared = makeTable();
  void shared.handle;
  appendAndFree(shared, ' (shared)');
  appendAndFree(table, '');

  {
    let id = table.createSequence([]).id;
    measure('cycle: appendTokens (one new block) + free + createSequence([])', () => {
      table.appendTokens(id, oneBlock);
      table.free(id);
      id = table.createSequence([]).id;
      return 3;
    });
    table.free(id);
  }

  measure('cycle: createSequence (one block) + free', () => {
    table.free(table.createSequence(oneBlock).id);
    return 2;
  });

  {
    const base = table.createSequence(new Uint32Array(4 * BLOCK_SIZE + 3)).id;
    measure('cycle: createSequence (one block) + fork + free + free', () => {
      const parent = table.createSequence(oneBlock).id;
      const child = table.fork(parent);
      table.free(child);
      table.free(parent);
      return 4;
    });
    measure('cycle: fork (5 shared blocks) + free', () => {
      table.free(table.fork(base));
      return 2;
    });
    measure('cycle: fork + appendTokens 1 token (copy-on-write) + free', () => {
      const child = table.fork(base);
      table.appendTokens(child, oneToken);
      table.free(child);
      return 3;
    });
    const pinned = table.blocksOf(base).subarray(0, 1);
    measure('cycle: retainBlocks([b]) + releaseBlocks([b])', () => {
      table.retainBlocks(pinned);
      table.releaseBlocks(pinned);
      return 2;
    });
    measure('length(id)', () => (table.length(base), 1));
    table.free(base);
  }

  {
    // GPU pins of a decode step: every block the batch reads, one Int32Array, retained then released
    const ids = Array.from({ length: SEQUENCES / 2 }, () => table.createSequence(new Uint32Array(BLOCKS_PER_SEQUENCE * BLOCK_SIZE - 5)).id);
    const stepBlocks = new Int32Array(ids.length * BLOCKS_PER_SEQUENCE);
    ids.forEach((id, i) => stepBlocks.set(table.blocksOf(id), i * BLOCKS_PER_SEQUENCE));
    measure(`pin a step: retain + release ${stepBlocks.length} blocks (per block)`, () => {
      table.retainBlocks(stepBlocks);
      table.releaseBlocks(stepBlocks);
      return 2 * stepBlocks.length;
    }, 4);
    // The same step pinned through its rows (a batch unchanged since prepare): one table read of its
    // sequences' slots, however many blocks they hold.
    const slots = ids.map((id) => table.rowOf(id));
    measure(`pin a step through its rows: beginRead + endRead of ${slots.length} slots (per step)`, () => {
      table.endRead(table.beginRead(slots), slots);
      return 1;
    });
    for (const id of ids) table.free(id);
  }

  {
    const sab = new SharedArrayBuffer(256);
    const lock = new SpinLock(new Int32Array(sab, 0, 16), new Float64Array(sab, 64, 8));
    measure('raw SpinLock lock() + unlock() pairs', () => {
      lock.lock();
      lock.unlock();
      return 1;
    });
  }

  for (const t of [table, shared]) {
    t.checkInvariants();
    const s = t.stats();
    if (s.blocksFree !== s.blocksTotal || s.sequences !== 0) throw new Error('bench leaked blocks or sequences');
  }
  const l = shared.lockStats();
  if (options.print) console.log(
    `shared table's lock: ${l.acquisitions.toExponential(2)} acquisitions, ${l.contended} contended, ` +
      `sampled hold time mean ${(l.holdMeanMs * 1e6).toFixed(0)} ns (max ${(l.holdMaxMs * 1e3).toFixed(1)} µs)`,
  );
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) runTableBench({ print: true });
