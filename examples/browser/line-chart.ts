// A small canvas line chart (no library): shared x axis (seconds), y from 0 to the largest value,
// a few gridlines with labels, and a legend. Invariants: draws whatever series it is given, including
// empty ones; never throws on NaN/Infinity (such points are skipped); sized for the device pixel ratio.

export interface Series {
  label: string;
  color: string;
  points: ReadonlyArray<readonly [number, number]>;
  dashed?: boolean;
}

const PAD = { left: 58, right: 10, top: 22, bottom: 20 };

export class LineChart {
  private readonly canvas: HTMLCanvasElement;
  private readonly formatY: (v: number) => string;
  private readonly roundUp: (v: number) => number;

  /** `roundUp` picks the axis maximum from the data maximum (default: 1, 2 or 5 × a power of ten). */
  constructor(canvas: HTMLCanvasElement, formatY: (v: number) => string, roundUp: (v: number) => number = niceCeil) {
    this.canvas = canvas;
    this.formatY = formatY;
    this.roundUp = roundUp;
  }

  draw(series: readonly Series[]): void {
    const ratio = globalThis.devicePixelRatio || 1;
    const width = this.canvas.clientWidth || 400;
    const height = this.canvas.clientHeight || 160;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const finite = series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
    const xMax = Math.max(1e-9, ...finite.map(([x]) => x));
    const yMax = this.roundUp(Math.max(1e-9, ...finite.map(([, y]) => y)));
    const plotW = width - PAD.left - PAD.right;
    const plotH = height - PAD.top - PAD.bottom;
    const sx = (x: number): number => PAD.left + (x / xMax) * plotW;
    const sy = (y: number): number => PAD.top + plotH - (y / yMax) * plotH;
    ctx.font = '11px system-ui, sans-serif';
    ctx.strokeStyle = '#222a36';
    ctx.fillStyle = '#8792a6';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const y = (yMax * i) / 4;
      ctx.beginPath();
      ctx.moveTo(PAD.left, Math.round(sy(y)) + 0.5);
      ctx.lineTo(width - PAD.right, Math.round(sy(y)) + 0.5);
      ctx.stroke();
      ctx.fillText(this.formatY(y), PAD.left - 6, sy(y));
    }
    ctx.textAlign = 'left';
    ctx.textBaseline = 'alphabetic';
    ctx.fillText('0 s', PAD.left, height - 5);
    ctx.textAlign = 'right';
    ctx.fillText(`${xMax.toFixed(1)} s`, width - PAD.right, height - 5);
    for (const s of series) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.8;
      ctx.setLineDash(s.dashed ? [5, 4] : []);
      ctx.beginPath();
      let started = false;
      for (const [x, y] of s.points) {
        if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
        if (started) ctx.lineTo(sx(x), sy(y));
        else ctx.moveTo(sx(x), sy(y));
        started = true;
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
    let lx = PAD.left;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    for (const s of series) {
      ctx.fillStyle = s.color;
      ctx.fillRect(lx, 8, 12, 3);
      ctx.fillStyle = '#d7dde8';
      ctx.fillText(s.label, lx + 16, 10);
      lx += 24 + ctx.measureText(s.label).width;
    }
  }
}

/** 1, 2, 4 or 8 × a power of 1024 (whole KiB, MiB, …), at least v: byte axes with round labels. */
export function niceCeilBytes(v: number): number {
  const unit = 1024 ** Math.max(0, Math.floor(Math.log(v) / Math.log(1024)));
  for (const m of [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]) if (m * unit >= v) return m * unit;
  return 1024 * unit;
}

/** 1, 2 or 5 × a power of ten, at least v. */
export function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
