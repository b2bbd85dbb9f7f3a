// Turns WebGPU's asynchronous error reporting into typed errors.
// Invariants: error scopes are pushed and popped in matching pairs around one operation (so scopes
// never leak onto later work); after `device.lost` resolves, every guarded promise — pending or new —
// rejects with the same DeviceLostError, and `lost` stays set for the lifetime of the guard; a guarded
// promise that has settled leaves nothing behind (no reaction on the never-settling loss promise).
import {
  DeviceLostError,
  GpuInternalError,
  GpuOutOfMemoryError,
  GpuValidationError,
  type PagedAttentionError,
} from '../errors';

export class DeviceGuard {
  readonly device: GPUDevice;
  private lostError: DeviceLostError | undefined;
  private readonly lostPromise: Promise<never>;
  private readonly onLostCallbacks = new Set<(error: DeviceLostError) => void>();

  constructor(device: GPUDevice) {
    this.device = device;
    this.lostPromise = device.lost.then((info) => {
      this.lostError = new DeviceLostError(info.reason ?? 'unknown', info.message || 'no message');
      for (const cb of this.onLostCallbacks) cb(this.lostError);
      throw this.lostError;
    });
    // Never an unhandled rejection: callers observe loss through guard()/lost.
    this.lostPromise.catch(() => undefined);
  }

  /** The DeviceLostError once the device is lost, else undefined. */
  get lost(): DeviceLostError | undefined {
    return this.lostError;
  }

  onLost(callback: (error: DeviceLostError) => void): () => void {
    this.onLostCallbacks.add(callback);
    return () => this.onLostCallbacks.delete(callback);
  }

  /** Throws the DeviceLostError if the device is lost. */
  throwIfLost(): void {
    if (this.lostError) throw this.lostError;
  }

  /** Resolves like `promise`, or rejects with DeviceLostError as soon as the device is lost. */
  guard<T>(promise: Promise<T>): Promise<T> {
    if (this.lostError) {
      promise.catch(() => undefined);
      return Promise.reject(this.lostError);
    }
    // Not Promise.race with lostPromise: every race would leave a reaction on that never-settling
    // promise for the life of the device (a leak of about a kilobyte per call). The callback registered
    // here is removed as soon as `promise` settles.
    return new Promise<T>((resolve, reject) => {
      const onLost = (error: DeviceLostError): void => reject(error);
      this.onLostCallbacks.add(onLost);
      promise.then(
        (value) => {
          this.onLostCallbacks.delete(onLost);
          resolve(value);
        },
        (error: unknown) => {
          this.onLostCallbacks.delete(onLost);
          reject(error);
        },
      );
    });
  }

  /**
   * Runs `fn` inside out-of-memory, validation and internal error scopes and throws the first error
   * (as a typed error) after it. `what` and `bytes` describe an allocation for the OOM message.
   */
  async scoped<T>(what: string, fn: () => T, bytes = 0): Promise<T> {
    this.throwIfLost();
    const d = this.device;
    d.pushErrorScope('out-of-memory');
    d.pushErrorScope('validation');
    d.pushErrorScope('internal');
    let result: T;
    let thrown: unknown;
    try {
      result = fn();
    } catch (e) {
      thrown = e;
    }
    const [internal, validation, oom] = await this.guard(
      Promise.all([d.popErrorScope(), d.popErrorScope(), d.popErrorScope()]),
    );
    if (thrown !== undefined) throw thrown;
    const typed = toTypedError(what, bytes, oom, validation, internal);
    if (typed) throw typed;
    return result!;
  }
}

function toTypedError(
  what: string,
  bytes: number,
  oom: GPUError | null,
  validation: GPUError | null,
  internal: GPUError | null,
): PagedAttentionError | undefined {
  if (oom) return new GpuOutOfMemoryError(bytes, what);
  if (validation) return new GpuValidationError(`${what}: ${validation.message}`);
  if (internal) return new GpuInternalError(`${what}: ${internal.message}`);
  return undefined;
}
