// A GPUDevice wrapper (Proxy) for fault injection and accounting. Hand `instrumented.device` to the code
// under test; the real device does the work. It can:
//   - count every GPUBuffer created through it and which are still alive (not destroyed), with bytes;
//   - make chosen createBuffer calls fail as out-of-memory the way WebGPU does: the call returns an
//     invalid buffer and the innermost open 'out-of-memory' error scope reports a GPUOutOfMemoryError
//     (or, with no such scope open, the error is recorded as uncaptured — a caller that allocates
//     outside error scopes would never see it as a typed error);
//   - make the n-th call of a method (queue.submit, createCommandEncoder, createBindGroup) throw;
//   - wrap every promise the GPU returns (mapAsync, onSubmittedWorkDone, popErrorScope) — used by the
//     interleaving tests to reorder completions.
// Invariants: error scopes pushed through the proxy are popped in matching order on the real device
// (an injected error replaces only what the popped scope reports); injected-OOM buffers are real but
// invalid buffers, so later use of them fails exactly as with a real OOM.

export type ThrowingMethod = 'submit' | 'createCommandEncoder' | 'createBindGroup';

interface Scope {
  filter: GPUErrorFilter;
  injected: GPUError | undefined;
}

export interface BufferRecord {
  label: string;
  size: number;
  /** False for buffers whose creation was made to fail (out of memory). */
  valid: boolean;
}

export class InstrumentedDevice {
  readonly device: GPUDevice;
  /** Buffers created and not yet destroyed. */
  readonly live = new Map<GPUBuffer, BufferRecord>();
  created = 0;
  destroyed = 0;
  /** Labels of allocations that failed with no 'out-of-memory' scope open. */
  readonly uncapturedOoms: string[] = [];
  /** Allocations made to fail, by label. */
  readonly injectedOoms: string[] = [];
  /** Return true to make this allocation fail as out-of-memory. */
  failAllocation: ((descriptor: GPUBufferDescriptor, index: number) => boolean) | undefined;
  /** Wraps promises the GPU returns (identity by default). */
  wrapPromise: <T>(promise: Promise<T>, what: string) => Promise<T> = (p) => p;
  private readonly scopes: Scope[] = [];
  private readonly calls = new Map<ThrowingMethod, number>();
  private readonly throwAt = new Map<ThrowingMethod, number>();

  constructor(readonly real: GPUDevice) {
    const queue = this.wrapQueue(real.queue);
    const overrides: Partial<Record<keyof GPUDevice, unknown>> = {
      queue,
      createBuffer: (descriptor: GPUBufferDescriptor) => this.createBuffer(descriptor),
      pushErrorScope: (filter: GPUErrorFilter) => {
        this.scopes.push({ filter, injected: undefined });
        real.pushErrorScope(filter);
      },
      popErrorScope: () => {
        const scope = this.scopes.pop();
        const popped = real.popErrorScope();
        const result = scope?.injected ? popped.then(() => scope.injected!) : popped;
        return this.wrapPromise(result as Promise<GPUError | null>, 'popErrorScope');
      },
      createCommandEncoder: (descriptor?: GPUCommandEncoderDescriptor) => {
        this.maybeThrow('createCommandEncoder');
        return real.createCommandEncoder(descriptor);
      },
      createBindGroup: (descriptor: GPUBindGroupDescriptor) => {
        this.maybeThrow('createBindGroup');
        return real.createBindGroup(descriptor);
      },
    };
    this.device = new Proxy(real, {
      get(target, property, _receiver) {
        if (Object.prototype.hasOwnProperty.call(overrides, property)) return overrides[property as keyof GPUDevice];
        const value = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
      set(target, property, value) {
        return Reflect.set(target, property, value, target);
      },
    });
  }

  /** Makes the `nth` call (1-based, counted from now) of `method` throw. */
  throwOnCall(method: ThrowingMethod, nth: number): void {
    this.calls.set(method, 0);
    this.throwAt.set(method, nth);
  }

  /** Stops every injection (allocation failures, throwing calls) and resets the call counters. */
  reset(): void {
    this.failAllocation = undefined;
    this.throwAt.clear();
    this.calls.clear();
  }

  /** Live buffers that hold memory (valid ones), with their labels. */
  liveValid(): BufferRecord[] {
    return [...this.live.values()].filter((r) => r.valid);
  }

  get liveBytes(): number {
    let bytes = 0;
    for (const r of this.live.values()) if (r.valid) bytes += r.size;
    return bytes;
  }

  private createBuffer(descriptor: GPUBufferDescriptor): GPUBuffer {
    const index = ++this.created;
    const label = descriptor.label ?? '(unlabeled)';
    let buffer: GPUBuffer;
    let valid = true;
    if (this.failAllocation?.(descriptor, index)) {
      valid = false;
      this.injectedOoms.push(label);
      // An invalid buffer, as a real OOM returns: larger than any buffer may be, its error swallowed here.
      this.real.pushErrorScope('validation');
      this.real.pushErrorScope('out-of-memory');
      buffer = this.real.createBuffer({ ...descriptor, mappedAtCreation: false, size: this.real.limits.maxBufferSize + 1024 });
      void this.real.popErrorScope();
      void this.real.popErrorScope();
      const scope = [...this.scopes].reverse().find((s) => s.filter === 'out-of-memory');
      const error = new GPUOutOfMemoryError(`injected out-of-memory creating "${label}" (${descriptor.size} bytes)`);
      if (scope) scope.injected ??= error;
      else this.uncapturedOoms.push(label);
    } else {
      buffer = this.real.createBuffer(descriptor);
    }
    this.live.set(buffer, { label, size: descriptor.size, valid });
    const destroy = buffer.destroy.bind(buffer);
    const mapAsync = buffer.mapAsync.bind(buffer);
    Object.assign(buffer, {
      destroy: () => {
        if (this.live.delete(buffer)) this.destroyed++;
        destroy();
      },
      mapAsync: (mode: GPUMapModeFlags, offset?: number, size?: number) => this.wrapPromise(mapAsync(mode, offset, size), 'mapAsync'),
    });
    return buffer;
  }

  private wrapQueue(queue: GPUQueue): GPUQueue {
    const overrides: Partial<Record<keyof GPUQueue, unknown>> = {
      submit: (buffers: Iterable<GPUCommandBuffer>) => {
        this.maybeThrow('submit');
        queue.submit(buffers);
      },
      onSubmittedWorkDone: () => this.wrapPromise(queue.onSubmittedWorkDone(), 'onSubmittedWorkDone'),
    };
    return new Proxy(queue, {
      get(target, property) {
        if (Object.prototype.hasOwnProperty.call(overrides, property)) return overrides[property as keyof GPUQueue];
        const value = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  private maybeThrow(method: ThrowingMethod): void {
    const at = this.throwAt.get(method);
    if (at === undefined) return;
    const n = (this.calls.get(method) ?? 0) + 1;
    this.calls.set(method, n);
    if (n === at) {
      this.throwAt.delete(method);
      throw new Error(`injected failure in ${method} (call ${n})`);
    }
  }
}
