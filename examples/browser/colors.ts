// The demo's palette. Invariants: a sequence id always maps to the same colour; the fixed colours for
// free, evictable and shared blocks are never produced for an owner (owner hues keep saturation and
// lightness away from the greys, and the shared marker is a gold outline on top of the owner colour).
import { mix32 } from '../../src/sim/hash';

export const COLORS = {
  background: '#0f1218',
  free: '#1c222c',
  freeEdge: '#262e3a',
  evictable: '#3d4452',
  evictableHatch: '#6b7486',
  shared: '#ffd54a',
  text: '#d7dde8',
  muted: '#8792a6',
  grid: '#222a36',
  throughput: '#4fc3f7',
  paged: '#81c784',
  contiguous: '#e57373',
  cached: '#9aa3b5',
} as const;

export function ownerColor(owner: number): string {
  // Sequence ids may exceed 32 bits: hash both halves, then spread the hash over the hue circle.
  const low = owner >>> 0;
  const high = Math.floor(owner / 4294967296) >>> 0;
  const hue = Math.round((mix32(low ^ mix32(high + 0x9e3779b9)) / 4294967296) * 360);
  return `hsl(${hue} 70% 58%)`;
}
