// Typed errors a caller can act on. Every error thrown by this package extends PagedAttentionError and
// carries a stable `code`; messages say what went wrong and what to do about it. A call that throws one
// of these has changed nothing unless its documentation says otherwise (DeviceLostError marks the cache
// unusable).

export class PagedAttentionError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The configuration cannot work on this device or is self-contradictory. */
export class ConfigError extends PagedAttentionError {
  constructor(message: string) {
    super('CONFIG', message);
  }
}

/** An argument is malformed (wrong length, wrong type, out of range). Nothing was changed. */
export class InvalidArgumentError extends PagedAttentionError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

/** No WebGPU adapter could be found; the message lists what to install. */
export class NoAdapterError extends PagedAttentionError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NO_ADAPTER', message, options);
  }
}

/** The GPU device was lost (driver reset, device.destroy(), out of memory at the driver level). */
export class DeviceLostError extends PagedAttentionError {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super('DEVICE_LOST', `GPU device lost (${reason}): ${message}. Create a new GPU device and a new cache; this one is unusable.`);
    this.reason = reason;
  }
}

/** GPU memory could not be allocated. Nothing was leaked. */
export class GpuOutOfMemoryError extends PagedAttentionError {
  readonly requestedBytes: number;
  constructor(requestedBytes: number, what: string) {
    super('GPU_OUT_OF_MEMORY', `GPU out of memory while allocating ${requestedBytes} bytes for ${what}. Lower numBlocks or memoryBudgetBytes, or free other GPU memory.`);
    this.requestedBytes = requestedBytes;
  }
}

/** A WebGPU validation error surfaced by an error scope: a bug or a bad GPUBuffer argument. */
export class GpuValidationError extends PagedAttentionError {
  constructor(message: string) {
    super('GPU_VALIDATION', `WebGPU validation error: ${message}`);
  }
}

/** An internal GPU error (e.g. shader compilation failure in the driver). */
export class GpuInternalError extends PagedAttentionError {
  constructor(message: string) {
    super('GPU_INTERNAL', `WebGPU internal error: ${message}`);
  }
}

/** The cache was destroyed (or its device lost) and can no longer be used. */
export class CacheDestroyedError extends PagedAttentionError {
  constructor(what = 'this cache') {
    super('DESTROYED', `${what} has been destroyed; create a new PagedKVCache.`);
  }
}

/** A wait (for free blocks, for a prefix being computed by another request) ran out of time. */
export class TimeoutError extends PagedAttentionError {
  constructor(message: string) {
    super('TIMEOUT', message);
  }
}

/** A wait was cancelled through its AbortSignal. */
export class AbortError extends PagedAttentionError {
  constructor(message = 'the operation was aborted') {
    super('ABORTED', message);
  }
}

/**
 * A kernel's output disagreed with the CPU reference on this device (the autotuner checks every
 * candidate; this one is thrown when the default kernels themselves disagree). Report it with the
 * output of `webgpu-paged-attention info --json`; pass `attentionTuning: { streamDecode: false,
 * prefillMatrix: false, prefillBlocked: false }` to run on the simplest kernels meanwhile.
 */
export class KernelMismatchError extends PagedAttentionError {
  constructor(message: string) {
    super('KERNEL_MISMATCH', message);
  }
}
