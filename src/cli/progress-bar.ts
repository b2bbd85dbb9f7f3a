// A progress line on stderr while the simulation runs, in plain ANSI. Invariants: on a terminal it
// redraws one line in place (at most every `minIntervalMs`) and clear() erases it; elsewhere (pipes,
// CI logs) it prints a plain line each time another 10% of requests completes, so logs stay short.
import type { StepProgress } from '../sim/simulate';
import { formatCount } from '../sim/format';

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const BAR_WIDTH = 20;

export class ProgressBar {
  private readonly stream: ProgressStream;
  private readonly minIntervalMs: number;
  private lastDraw = 0;
  private lastDecile = -1;
  private drawn = false;

  constructor(stream: ProgressStream, minIntervalMs = 80) {
    this.stream = stream;
    this.minIntervalMs = minIntervalMs;
  }

  update(p: StepProgress): void {
    const fraction = p.totalRequests > 0 ? p.completedRequests / p.totalRequests : 1;
    if (!this.stream.isTTY) {
      const decile = Math.floor(fraction * 10);
      if (decile > this.lastDecile) {
        this.lastDecile = decile;
        this.stream.write(`${this.describe(p, fraction)}\n`);
      }
      return;
    }
    const now = Date.now();
    if (now - this.lastDraw < this.minIntervalMs && fraction < 1) return;
    this.lastDraw = now;
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = `\x1b[32m${'█'.repeat(filled)}\x1b[2m${'░'.repeat(BAR_WIDTH - filled)}\x1b[0m`;
    this.draw(`${bar} ${this.describe(p, fraction)}`);
  }

  /** Shows a status line (e.g. what happens before the first step). */
  message(text: string): void {
    if (this.stream.isTTY) this.draw(`\x1b[2m${text}\x1b[0m`);
    else this.stream.write(`${text}\n`);
  }

  private draw(line: string): void {
    const columns = Math.max(40, this.stream.columns || 120);
    const excess = visibleLength(line) - (columns - 1);
    this.stream.write(`\r\x1b[2K${excess > 0 ? `${line.slice(0, line.length - excess - 1)}…\x1b[0m` : line}`);
    this.drawn = true;
  }

  clear(): void {
    if (this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }

  private describe(p: StepProgress, fraction: number): string {
    const stats = p.cacheStats;
    return (
      `${(fraction * 100).toFixed(0).padStart(3)}% ${p.completedRequests}/${p.totalRequests} req · step ${p.step} · ` +
      `${formatCount(p.point.tokensPerSec)} tok/s · run ${p.running} wait ${p.waiting} · ` +
      `blocks ${stats.blocksUsed} used ${stats.blocksEvictable} cached · ${p.verification.checked} verified`
    );
  }
}

function visibleLength(text: string): number {
  return text.replace(/\x1b\[[0-9;]*m/g, '').length;
}
