// Messages between the demo page and the simulation worker. Invariants: every message is structured-
// cloneable; the worker sends exactly one of 'done' or 'error' per 'start', after any 'progress';
// block maps travel as copies (the page may keep them).
import type { TimelinePoint } from '../../src/sim/metrics';
import type { SimOptions } from '../../src/sim/options';
import type { SimResult } from '../../src/sim/result';

export interface StartMessage {
  type: 'start';
  options: Partial<SimOptions>;
}

export type PageToWorker = StartMessage;

export interface AdapterMessage {
  type: 'adapter';
  description: string;
  isFallback: boolean;
}

export interface BlockMapPayload {
  state: Uint8Array;
  refCount: Int32Array;
  owner: Float64Array | Int32Array;
}

export interface ProgressMessage {
  type: 'progress';
  point: TimelinePoint;
  completedRequests: number;
  totalRequests: number;
  running: number;
  waiting: number;
  verified: number;
  blocks: { used: number; evictable: number; free: number; total: number };
  /** Present when the page should redraw the pool (throttled). */
  blockMap?: BlockMapPayload;
}

export interface DoneMessage {
  type: 'done';
  result: SimResult;
}

export interface ErrorMessage {
  type: 'error';
  name: string;
  message: string;
  code?: string;
}

export type WorkerToPage = AdapterMessage | ProgressMessage | DoneMessage | ErrorMessage;
