// Argument checks for the public cache API. Invariants: each check either returns the validated value or
// throws InvalidArgumentError naming the argument, the value received and what would be accepted; none
// of them touches cache state, so they run before anything is changed.
import { InvalidArgumentError } from '../errors';
import { bufferFacts } from '../gpu/buffer-facts';

export function checkLayer(layer: unknown, numLayers: number): number {
  if (typeof layer !== 'number' || !Number.isInteger(layer) || layer < 0 || layer >= numLayers) {
    throw new InvalidArgumentError(`layer must be an integer in 0..${numLayers - 1} (got ${String(layer)})`);
  }
  return layer;
}

export function checkPosition(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new InvalidArgumentError(`${name} must be a non-negative integer (got ${String(value)})`);
  }
  return value;
}

/** Number of rows in a Float32Array laid out [rows][rowElements]; rows ≥ minRows. */
export function rowsOf(name: string, array: unknown, rowElements: number, shape: string, minRows = 0): number {
  if (!(array instanceof Float32Array)) {
    throw new InvalidArgumentError(`${name} must be a Float32Array laid out ${shape} (got ${describe(array)})`);
  }
  if (array.length % rowElements !== 0 || array.length / rowElements < minRows) {
    throw new InvalidArgumentError(
      `${name} has ${array.length} elements, which is not a whole number${minRows ? ` (≥ ${minRows})` : ''} of rows of ${shape} ` +
        `(${rowElements} elements per row)`,
    );
  }
  return array.length / rowElements;
}

/** Checks a caller-provided GPUBuffer: usage flags and size. */
export function checkGpuBuffer(name: string, buffer: unknown, minBytes: number, usage: number, usageName: string): GPUBuffer {
  const b = bufferFacts(buffer);
  if (b === undefined) throw new InvalidArgumentError(`${name} must be a GPUBuffer (got ${describe(buffer)})`);
  if ((b.usage & usage) !== usage) {
    throw new InvalidArgumentError(`${name} needs GPUBufferUsage ${usageName} (its usage is 0x${b.usage.toString(16)})`);
  }
  if (b.size < minBytes) {
    throw new InvalidArgumentError(`${name} has ${b.size} bytes but ${minBytes} are needed`);
  }
  return buffer as GPUBuffer;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  return (value as object).constructor?.name ?? 'object';
}

/**
 * An optional compute pass to record into: undefined, or an object with the pass-encoder methods. (That
 * it is an open pass of the given encoder cannot be checked here; WebGPU reports a misuse at submission.)
 */
export function checkComputePass(pass: unknown): GPUComputePassEncoder | undefined {
  if (pass === undefined) return undefined;
  if (typeof pass !== 'object' || pass === null || typeof (pass as GPUComputePassEncoder).dispatchWorkgroups !== 'function') {
    throw new InvalidArgumentError(`pass must be an open GPUComputePassEncoder of the encoder, or left out (got ${String(pass)})`);
  }
  return pass as GPUComputePassEncoder;
}
