// Draws the KV block pool on a canvas: one cell per block, in block-id order, left to right.
// Invariants: a free block is a dark empty cell; an evictable (cached, unreferenced) block is grey and
// hatched; a used block takes its owning sequence's colour; a block referenced by several sequences
// (refCount > 1: a shared prefix or a forked tail) also gets a gold outline and, when cells are large
// enough, its reference count. The canvas is sized for the device pixel ratio on each draw.
import type { BlockMapPayload } from './protocol';
import { COLORS, ownerColor } from './colors';

const GAP = 2;
/** Largest cell edge in CSS pixels, so small pools stay compact. */
const MAX_CELL = 26;

export class BlockMapView {
  private readonly canvas: HTMLCanvasElement;
  private last: BlockMapPayload | undefined;

  constructor(canvas: HTMLCanvasElement) {
    this.canvas = canvas;
    new ResizeObserver(() => this.last && this.draw(this.last)).observe(canvas);
  }

  draw(map: BlockMapPayload): void {
    this.last = map;
    const n = map.state.length;
    const ratio = globalThis.devicePixelRatio || 1;
    const width = this.canvas.clientWidth || 600;
    const cols = Math.max(1, Math.ceil(Math.sqrt(n * 2.2)), Math.floor((width - GAP) / (MAX_CELL + GAP)));
    const cell = Math.min(MAX_CELL, Math.max(4, Math.floor((width - GAP) / cols) - GAP));
    const rows = Math.ceil(n / cols);
    const height = Math.max(rows * (cell + GAP) + GAP, 2 * (MAX_CELL + GAP));
    this.canvas.style.height = `${height}px`;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = COLORS.background;
    ctx.fillRect(0, 0, width, height);
    ctx.font = `${Math.max(8, Math.floor(cell * 0.45))}px system-ui, sans-serif`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    for (let b = 0; b < n; b++) {
      const x = GAP + (b % cols) * (cell + GAP);
      const y = GAP + Math.floor(b / cols) * (cell + GAP);
      this.drawCell(ctx, x, y, cell, map.state[b]!, map.refCount[b]!, map.owner[b]!);
    }
  }

  private drawCell(ctx: CanvasRenderingContext2D, x: number, y: number, s: number, state: number, refCount: number, owner: number): void {
    if (state === 0) {
      ctx.fillStyle = COLORS.free;
      ctx.fillRect(x, y, s, s);
      ctx.strokeStyle = COLORS.freeEdge;
      ctx.lineWidth = 1;
      ctx.strokeRect(x + 0.5, y + 0.5, s - 1, s - 1);
      return;
    }
    if (state === 2) {
      ctx.fillStyle = COLORS.evictable;
      ctx.fillRect(x, y, s, s);
      ctx.save();
      ctx.beginPath();
      ctx.rect(x, y, s, s);
      ctx.clip();
      ctx.strokeStyle = COLORS.evictableHatch;
      ctx.lineWidth = 1;
      for (let d = -s; d < s; d += 5) {
        ctx.beginPath();
        ctx.moveTo(x + d, y + s);
        ctx.lineTo(x + d + s, y);
        ctx.stroke();
      }
      ctx.restore();
      return;
    }
    ctx.fillStyle = owner >= 0 ? ownerColor(owner) : COLORS.muted;
    ctx.fillRect(x, y, s, s);
    if (refCount > 1) {
      ctx.strokeStyle = COLORS.shared;
      ctx.lineWidth = Math.max(2, Math.floor(s / 7));
      const inset = ctx.lineWidth / 2;
      ctx.strokeRect(x + inset, y + inset, s - 2 * inset, s - 2 * inset);
      if (s >= 16) {
        ctx.fillStyle = '#111';
        ctx.fillText(String(refCount), x + s / 2, y + s / 2 + 1);
      }
    }
  }
}
