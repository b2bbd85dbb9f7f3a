// The machinery every KV kernel (write-kv, gather-kv, copy-blocks) shares: one pipeline per device and
// layout (pipeline cache), an explicit bind-group layout, a ParamRing of per-dispatch parameters and a
// bind-group cache; the pool geometry (shaders/kv-layout.wgsl) is prepended to every kernel's WGSL.
// Invariants: after the first dispatch with given buffers, `dispatch` creates no GPU
// object (one small uniform write per call); each call records exactly one dispatch, in `target` if it
// is a pass, else in a pass of its own.
import layoutCode from '../../shaders/kv-layout.wgsl?raw';
import type { KvLayout } from '../pool/kv-layout';
import {
  BindGroupCache,
  ParamRing,
  bindEntries,
  dispatchGrid,
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
  private readonly bindGroups = new BindGroupCache();
  /** The device limit, read once (a native call per read on Dawn's Node binding). */
  private readonly maxWorkgroupsPerDimension: number;

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
  }

  /**
   * Records one dispatch of `threads` invocations (workgroups of `workgroupSize`, wrapped into a 2D
   * grid when needed) binding the parameter block [a, b, c, d] then `buffers` in binding order.
   */
  dispatch(
    target: GPUComputePassEncoder | GPUCommandEncoder,
    buffers: readonly GPUBuffer[],
    params: [number, number?, number?, number?],
    threads: number,
    workgroupSize: number,
  ): void {
    const [x, y] = dispatchGrid(this.maxWorkgroupsPerDimension, threads, workgroupSize, this.options);
    const all = [this.params.buffer, ...buffers];
    const group = this.bindGroups.get(all, () =>
      this.device.createBindGroup({ label: this.name, layout: this.groupLayout, entries: bindEntries(all, this.params) }),
    );
    const paramOffset = this.params.push(...params);
    withComputePass(target, (pass) => {
      pass.setPipeline(this.pipeline);
      pass.setBindGroup(0, group, [paramOffset]);
      pass.dispatchWorkgroups(x, y);
    });
  }

  destroy(): void {
    this.params.destroy();
  }
}
