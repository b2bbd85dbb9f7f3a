// Acquires a WebGPU adapter and device on Node (Dawn, npm `webgpu`) or in the browser (navigator.gpu).
// Invariants: the device is created with the adapter's real limits for everything this runtime uses
// (WebGPU defaults are far lower; `defaultLimits` asks for those instead), and with every optional
// feature the runtime can use that the adapter has. On Node without a hardware adapter it uses
// Chromium's SwiftShader Vulkan driver and says so through `isFallback` (on Linux with no Vulkan driver
// manifest where the loader looks, without asking Dawn for hardware first); with no adapter at all it
// throws NoAdapterError naming what to install. A software adapter always comes from a Dawn instance
// with SOFTWARE_ADAPTER_DISABLED_TOGGLES off, however it was found. Shaders keep WebGPU's bounds checks
// unless `boundsChecks: false` asks Dawn to drop them (Node only); `gpu.boundsChecks` says which.
import { ConfigError, NoAdapterError } from '../errors';
import { dawnFlags } from './dawn-flags';
import { vulkanDriverListed } from './vulkan-drivers';

export interface CreateGpuOptions {
  powerPreference?: GPUPowerPreference;
  /** Ask Dawn for subgroup matrices (tensor cores); needs Dawn's allow_unsafe_apis. Node only. */
  subgroupMatrix?: boolean;
  /** Skip hardware adapters and use the software (SwiftShader) one. */
  forceFallback?: boolean;
  /**
   * Extra flags for Dawn's Node binding, e.g. 'enable-dawn-features=...' (Node only). Toggles given here
   * join the runtime's own (see dawn-flags.ts) and win where they name the same toggle.
   */
  dawnOptions?: readonly string[];
  /**
   * Create the device with WebGPU's default limits (what a page that asks for none gets: e.g. 16 KiB of
   * workgroup memory) instead of the adapter's; for trying the kernels as such a device runs them.
   */
  defaultLimits?: boolean;
  /**
   * false: run shaders without the bounds checks WebGPU puts on every buffer and array access (Tint's
   * index clamps, and on Vulkan the driver's robust buffer access, which Dawn uses for buffers where it
   * can): Dawn's disable_robustness, with allow_unsafe_apis; Node only. The kernels keep their own checks
   * (a block id outside the pool reads as zeros, table reads stop at the row), so their results do not
   * change, and on NVIDIA's H100 the decode runs 8–22 % faster (bench/RESULTS.md); but a kernel bug
   * could then read or write outside its buffers instead of being clamped, so leave it on unless the
   * process trusts this package's shaders. On SwiftShader the decode ran slower without them.
   * Default true; a ConfigError in the browser, which always checks.
   */
  boundsChecks?: boolean;
}

export interface GpuFeatures {
  subgroups: boolean;
  shaderF16: boolean;
  timestampQuery: boolean;
  subgroupMatrix: boolean;
}

export interface GpuInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  backend: 'dawn-node' | 'browser';
  subgroupMinSize: number;
  subgroupMaxSize: number;
  limits: {
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxStorageBuffersPerShaderStage: number;
    maxComputeWorkgroupsPerDimension: number;
  };
}

export interface Gpu {
  device: GPUDevice;
  adapter: GPUAdapter;
  info: GpuInfo;
  features: GpuFeatures;
  /** True when running on a software adapter (SwiftShader): correct, but far slower than a GPU. */
  isFallback: boolean;
  /** The flags of the Dawn instance the adapter came from (Node; empty in the browser). */
  dawnFlags: readonly string[];
  /** Whether shaders run with WebGPU's bounds checks (CreateGpuOptions.boundsChecks). */
  boundsChecks: boolean;
}

/** Where Debian/Ubuntu's chromium package puts SwiftShader's Vulkan ICD manifest. */
export const SWIFTSHADER_ICD_CANDIDATES = [
  '/usr/lib/chromium/vk_swiftshader_icd.json',
  '/usr/lib/chromium-browser/vk_swiftshader_icd.json',
];

const INSTALL_HINT =
  'No WebGPU adapter found. On Linux install a Vulkan driver (a GPU driver, or the software one: ' +
  '`apt-get install -y libvulkan1 chromium`, whose SwiftShader this package finds by itself); ' +
  'in a browser, use a WebGPU-enabled browser (Chrome/Edge 113+, or start Chromium with --enable-unsafe-webgpu).';

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

interface DawnModule {
  create(options: string[]): GPU;
  globals: Record<string, unknown>;
}

let dawnModule: Promise<DawnModule> | undefined;
async function loadDawn(): Promise<DawnModule> {
  const name = 'webgpu';
  dawnModule ??= import(/* @vite-ignore */ name).then((m: DawnModule & { default?: DawnModule }) => {
    const mod = typeof m.create === 'function' ? m : (m.default as DawnModule);
    // Dawn's globals (GPUBufferUsage, GPUMapMode, …) are needed by code written for the browser.
    for (const [k, v] of Object.entries(mod.globals)) {
      if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    }
    return mod;
  });
  return dawnModule;
}

async function nodeFs(): Promise<typeof import('node:fs')> {
  const fsName = 'node:fs';
  return (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs');
}

async function findSwiftShaderIcd(): Promise<string | undefined> {
  const fs = await nodeFs();
  return SWIFTSHADER_ICD_CANDIDATES.find((p) => fs.existsSync(p));
}

/** False only on Linux with no Vulkan driver manifest where the loader looks: no hardware adapter to ask for. */
async function vulkanDriverMayExist(): Promise<boolean> {
  if (process.platform !== 'linux') return true;
  const fs = await nodeFs();
  return vulkanDriverListed(process.env, (dir) => {
    try {
      return fs.readdirSync(dir);
    } catch {
      return [];
    }
  });
}

/**
 * Dawn options for benchmarks (Node): turn off timestamp quantization, which otherwise rounds GPU
 * timestamps to about 0.1 ms. Nothing else about the device changes.
 */
export const PRECISE_TIMING_DAWN_OPTIONS: readonly string[] = ['disable-dawn-features=timestamp_quantization'];

// Dawn instances are kept alive for the life of the process: letting the garbage collector destroy an
// instance (e.g. the first one, created before SwiftShader was configured) can abort the process.
const liveInstances: GPU[] = [];
function dawnInstance(dawn: DawnModule, options: string[]): GPU {
  const instance = dawn.create(options);
  liveInstances.push(instance);
  return instance;
}

/**
 * Dawn toggles turned off on a software adapter. Where VK_KHR_zero_initialize_workgroup_memory is
 * supported, Dawn zero-fills workgroup memory through the variables' null initializers, and SwiftShader
 * compiles those into code that grows with the arrays' size: a register-blocked prefill with 29 KiB of
 * workgroup arrays took 5.8 s to build. Without the extension Dawn zero-fills them with a loop in the
 * shader (memory still zeroed before any use) and the same pipeline builds in 0.5 s.
 */
export const SOFTWARE_ADAPTER_DISABLED_TOGGLES: readonly string[] = ['use_vulkan_zero_initialize_workgroup_memory_extension'];

interface NodeAdapter {
  adapter: GPUAdapter;
  dawnFlags: string[];
}

async function requestNodeAdapter(options: CreateGpuOptions): Promise<NodeAdapter> {
  const dawn = await loadDawn();
  const enable = ['vulkan_enable_f16_on_nvidia', ...(options.subgroupMatrix || options.boundsChecks === false ? ['allow_unsafe_apis'] : [])];
  if (options.boundsChecks === false) enable.push(UNCHECKED_TOGGLE);
  const powerPreference: GPURequestAdapterOptions = { powerPreference: options.powerPreference ?? 'high-performance' };
  /** An adapter from a new Dawn instance, with the software adapters' toggles or without. */
  const request = async (software: boolean): Promise<NodeAdapter | undefined> => {
    const flags = dawnFlags({ enable, disable: software ? SOFTWARE_ADAPTER_DISABLED_TOGGLES : [] }, options.dawnOptions);
    const adapter = await dawnInstance(dawn, flags).requestAdapter(powerPreference);
    return adapter ? { adapter, dawnFlags: flags } : undefined;
  };
  // Without a driver manifest Dawn would only print the loader's "Found no drivers" warnings: skip to SwiftShader.
  if (!options.forceFallback && (await vulkanDriverMayExist())) {
    const found = await request(false);
    if (found && !isSoftwareAdapter(found.adapter.info)) return found;
    // The environment already names a software driver (VK_ICD_FILENAMES): ask again with its toggles.
    if (found) return (await request(true)) ?? found;
  }
  const icd = await findSwiftShaderIcd();
  if (icd && !process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES) {
    process.env.VK_ICD_FILENAMES = icd;
  }
  const fallback = await request(true);
  if (fallback) return fallback;
  throw new NoAdapterError(
    icd ? `${INSTALL_HINT} (SwiftShader at ${icd} was tried; is libvulkan1 installed?)` : INSTALL_HINT,
  );
}

async function requestBrowserAdapter(options: CreateGpuOptions): Promise<GPUAdapter> {
  const gpu = (globalThis as { navigator?: Navigator }).navigator?.gpu;
  if (!gpu) throw new NoAdapterError(INSTALL_HINT);
  const adapter = await gpu.requestAdapter({
    powerPreference: options.powerPreference ?? 'high-performance',
    forceFallbackAdapter: options.forceFallback ?? false,
  });
  if (!adapter) throw new NoAdapterError(INSTALL_HINT);
  return adapter;
}

const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupsPerDimension',
  'maxUniformBufferBindingSize',
  'maxBindGroups',
] as const;

/** The Dawn toggle behind CreateGpuOptions.boundsChecks = false. */
const UNCHECKED_TOGGLE = 'disable_robustness';

export async function createGpu(options: CreateGpuOptions = {}): Promise<Gpu> {
  const backend = isNode ? 'dawn-node' : 'browser';
  if (options.boundsChecks === false && backend === 'browser') {
    throw new ConfigError('boundsChecks: false needs Node (Dawn); a browser always checks bounds. Leave boundsChecks unset there.');
  }
  const { adapter, dawnFlags } =
    backend === 'dawn-node' ? await requestNodeAdapter(options) : { adapter: await requestBrowserAdapter(options), dawnFlags: [] };
  const wanted: GPUFeatureName[] = [];
  const want = (name: string): boolean => {
    if (!adapter.features.has(name)) return false;
    wanted.push(name as GPUFeatureName);
    return true;
  };
  const subgroups = want('subgroups');
  const shaderF16 = want('shader-f16');
  const timestampQuery = want('timestamp-query');
  const subgroupMatrix = !!options.subgroupMatrix && want('chromium-experimental-subgroup-matrix');
  const requiredLimits: Record<string, number> = {};
  for (const name of options.defaultLimits ? [] : WANTED_LIMITS) {
    const value = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof value === 'number') requiredLimits[name] = value;
  }
  const device = await adapter.requestDevice({ requiredFeatures: wanted, requiredLimits });
  const a = adapter.info;
  const info: GpuInfo = {
    vendor: a.vendor,
    architecture: a.architecture,
    device: a.device,
    description: a.description,
    backend,
    subgroupMinSize: (a as { subgroupMinSize?: number }).subgroupMinSize ?? 0,
    subgroupMaxSize: (a as { subgroupMaxSize?: number }).subgroupMaxSize ?? 0,
    limits: {
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxBufferSize: device.limits.maxBufferSize,
      maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
      maxStorageBuffersPerShaderStage: device.limits.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
    },
  };
  const isFallback = isSoftwareAdapter(a);
  const boundsChecks = !dawnFlags.some((flag) => flag.startsWith('enable-dawn-features=') && flag.split(/[=,]/).includes(UNCHECKED_TOGGLE));
  return { device, adapter, info, features: { subgroups, shaderF16, timestampQuery, subgroupMatrix }, isFallback, dawnFlags, boundsChecks };
}

/** One-line human description of the adapter. */
export function describeGpu(gpu: Gpu): string {
  const i = gpu.info;
  const name = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ');
  const feats = Object.entries(gpu.features).filter(([, v]) => v).map(([k]) => k).join(', ') || 'none';
  return `${name || 'unknown adapter'} [${i.backend}${gpu.isFallback ? ', software fallback' : ''}] features: ${feats}`;
}

/** Whether adapter info describes a software (fallback) adapter: SwiftShader, or one that says it is a fallback. */
export function isSoftwareAdapter(info: { vendor?: string; architecture?: string; description?: string; isFallbackAdapter?: boolean } | undefined): boolean {
  if (!info) return false;
  return !!info.isFallbackAdapter || /swiftshader/i.test(`${info.vendor ?? ''} ${info.architecture ?? ''} ${info.description ?? ''}`);
}

/** Whether `device` came from a software adapter (its adapterInfo, where the implementation exposes it). */
export function isSoftwareDevice(device: GPUDevice): boolean {
  return isSoftwareAdapter((device as { adapterInfo?: GPUAdapterInfo }).adapterInfo);
}
