// The machinery every KV kernel (write-kv, gather-kv, copy-blocks) shares: one pipeline per device and
// layout (pipeline cache), an explicit bind-group layout, a ParamRing of per-dispatch parameters and a
// bind-group cache; the pool geometry (shaders/kv-layout.wgsl) is prepended to every kernel's WGSL.
// Invariants: after the first dispatch with given buffers, `dispatch` creates no GPU object and builds
// no cache key (one small uniform write per call; the bindings are rewritten and compared in place,
// filed by the layer's first chunk, which every KV kernel binds after its own buffers); each call
// records exactly one dispatch, in `target` if it is a pass, else in a pass of its own (a call into
// the caller's pass, as every layer of a decode step makes, allocates no closure and no offsets array).
import layoutCode from '../../shaders/kv-layout.wgsl?raw';
import { MAX_KV_CHUNKS, type KvLayout } from '../pool/kv-layout';
import { BindGroupCache, groupEntries } from './bind-group-cache';
import {
  ParamRing,
  dispatchGrid,
  isComputePass,
  kernelLayout,
  layoutConstants,
  withComputePass,
  type BindingKind,
  type KvKernelOptions,
} from './kv-bindings';
import { getPipeline } from './pipeline-cache';

export class KvKernelCore {
  private readonly pipeline: GPUComputePipeline;
  private readonly groupLayout: GPUBindGroupLayout;
  private readonly params: ParamRing;
  private readonly bindGroups: BindGroupCache;
  /** The bindings of the next dispatch, rewritten in place by each call: params, then the call's buffers. */
  private readonly bindings: GPUBufferBinding[];
  /** The device limit, read once (a native call per read on Dawn's Node binding). */
  private readonly maxWorkgroupsPerDimension: number;
  /** The dynamic offset of the next dispatch's parameters, rewritten in place by each call. */
  private readonly dynamicOffsets = [0];

  constructor(
    private readonly device: GPUDevice,
    layout: KvLayout,
    private readonly name: string,
    code: string,
    bindings: readonly BindingKind[],
    private readonly options: KvKernelOptions,
  ) {
    const layouts = kernelLayout(device, name, bindings);
    this.groupLayout = layouts.group;
    this.pipeline = getPipeline(device, {
      name,
      code: `${layoutCode}\n${code}`,
      entryPoint: 'main',
      constants: layoutConstants(layout),
      layout: layouts.pipeline,
      layoutKey: name,
    });
    this.params = new ParamRing(device, `${name}-params`, options.paramSlots ?? 256);
    this.maxWorkgroupsPerDimension = device.limits.maxComputeWorkgroupsPerDimension;
    this.bindings = bindings.map(() => ({ buffer: this.params.buffer }));
    this.bindings[0]!.size = ParamRing.BYTES;
    this.bindGroups = new BindGroupCache(bindings.length - MAX_KV_CHUNKS);
  }

  /**
   * Records one dispatch of `threads` invocations (workgroups of `workgroupSize`, wrapped into a 2D
   * grid when needed) binding the parameter block [a, b, c, d] then `buffers` in binding order (a whole
   * buffer, or a range of one).
   */
  dispatch(
    target: GPUComputePassEncoder | GPUCommandEncoder,
    buffers: readonly (GPUBuffer | Required<GPUBufferBinding>)[],
    params: [number, number?, number?, number?],
    threads: number,
    workgroupSize: number,
  ): void {
    const [x, y] = dispatchGrid(this.maxWorkgroupsPerDimension, threads, workgroupSize, this.options);
    const bindings = this.bindings;
    if (buffers.length !== bindings.length - 1) {
      throw new Error(`${this.name} binds ${bindings.length - 1} buffers after its parameters, got ${buffers.length}`);
    }
    for (let i = 0; i < buffers.length; i++) {
      const b = buffers[i]!;
      const binding = bindings[i + 1]!;
      if ('offset' in b) {
        binding.buffer = b.buffer;
        binding.offset = b.offset;
        binding.size = b.size;
      } else {
        binding.buffer = b;
        if (binding.size !== undefined) binding.offset = binding.size = undefined;
      }
    }
    let group = this.bindGroups.find(this, bindings);
    if (group === undefined) {
      group = this.device.createBindGroup({ label: this.name, layout: this.groupLayout, entries: groupEntries(bindings) });
      this.bindGroups.add(this, bindings, group);
    }
    this.dynamicOffsets[0] = this.params.push(params[0], params[1], params[2], params[3]);
    if (isComputePass(target)) {
      this.record(target, group, x, y);
      return;
    }
    withComputePass(target, (pass) => this.record(pass, group, x, y));
  }

  private record(pass: GPUComputePassEncoder, group: GPUBindGroup, x: number, y: number): void {
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, group, this.dynamicOffsets);
    pass.dispatchWorkgroups(x, y);
  }

  destroy(): void {
    this.params.destroy();
  }
}
