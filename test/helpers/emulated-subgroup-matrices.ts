// Subgroup matrices emulated in plain WGSL, so the subgroup-matrix kernels' indexing, masking and lane
// logic run at matrix sizes and subgroup sizes no device at hand offers (e.g. 16 × 16 matrices in
// subgroups of 32, as on NVIDIA GPUs, on a CPU driver whose subgroup size is set to 32). Test-only.
// Invariants of the emulation:
//   - Every `subgroup_matrix_{left,right,result}<T, C, R>` value becomes `array<f32, C·R>` held whole
//     by every lane: element (row i, column j) at i·C + j. f16 inputs widen to f32 exactly, so a
//     product of two f16 values is exact, as in the hardware's f16 × f16 → f32 operation.
//   - subgroupMatrixLoad<T, row_major|col_major>(&a, offset, stride) reads element (i, j) at
//     offset + i·stride + j (row major) or offset + j·stride + i (column major) of the module-scope
//     array `a`, in every lane; subgroupMatrixStore<row_major|col_major>(&a, offset, m, stride) writes
//     it from one lane of the subgroup (subgroupElect): the value is the same in every lane.
//   - subgroupMatrixMultiplyAccumulate(l, r, acc) is acc + l·r in f32, summed in k order.
//   - The device seen by the kernel reports 'chromium-experimental-subgroup-matrix'; the shader module it
//     gets has the extension, and its uniformity diagnostics, removed (the emulation has no collective
//     operation but subgroupElect, which the kernel reaches in subgroup-uniform control flow).
// What it cannot show: driver behaviour and the hardware's accumulation order.

const MATRIX_TYPE = /subgroup_matrix_(left|right|result)<\s*(f16|f32)\s*,\s*(\d+)\s*,\s*(\d+)\s*>/;

/** A device whose shader modules get emulated subgroup matrices, and which reports the feature. */
export function withEmulatedSubgroupMatrices(device: GPUDevice): GPUDevice {
  const features = new Set<string>([...device.features, 'chromium-experimental-subgroup-matrix']);
  return new Proxy(device, {
    get(target, property) {
      if (property === 'features') return features;
      if (property === 'createShaderModule') {
        return (descriptor: GPUShaderModuleDescriptor) => target.createShaderModule({ ...descriptor, code: emulateSubgroupMatrices(descriptor.code) });
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** The adapter facts the kernels read, for a device said to offer n × n × n f16 → f32 matrices at one subgroup size. */
export function emulatedAdapterInfo(subgroupSize: number, n: number) {
  return {
    subgroupMinSize: subgroupSize,
    subgroupMaxSize: subgroupSize,
    subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', M: n, N: n, K: n }],
  };
}

/** WGSL using subgroup matrices → WGSL without them and without comments (unchanged if it uses none). */
export function emulateSubgroupMatrices(code: string): string {
  if (!code.includes('chromium_experimental_subgroup_matrix')) return code;
  let out = code
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '')
    .replace(/enable chromium_experimental_subgroup_matrix;\n?/, '')
    .replace(/diagnostic\(off, chromium\.subgroup_matrix_uniformity\);\n?/, '');
  const helpers = new Map<string, string>();
  let size: [number, number] | undefined;
  const elementCount = (type: string): number => {
    const m = MATRIX_TYPE.exec(type);
    if (!m) throw new Error(`not a subgroup matrix type: ${type}`);
    const shape: [number, number] = [Number(m[3]), Number(m[4])];
    if (shape[0] !== shape[1]) throw new Error(`the emulation handles square matrices only (${type})`);
    if (size && size[0] !== shape[0]) throw new Error('the emulation handles one matrix size per module');
    size = shape;
    return shape[0] * shape[1];
  };

  out = rewriteCalls(out, 'subgroupMatrixLoad', (templateArgs, args) => {
    const [type, layout] = splitTopLevel(templateArgs ?? '');
    const [pointer, offset, stride] = splitTopLevel(args);
    elementCount(type!);
    const array = arrayName(pointer!);
    const name = `emu_load_${array}_${layout}`;
    const index = layout === 'col_major' ? 'offset + j * stride + i' : 'offset + i * stride + j';
    helpers.set(name, [
      `fn ${name}(offset: u32, stride: u32) -> array<f32, EMU_NN> {`,
      `  var m: array<f32, EMU_NN>;`,
      `  for (var i = 0u; i < EMU_N; i++) {`,
      `    for (var j = 0u; j < EMU_N; j++) {`,
      `      m[i * EMU_N + j] = f32(${array}[${index}]);`,
      `    }`,
      `  }`,
      `  return m;`,
      `}`,
    ].join('\n'));
    return `${name}(${offset}, ${stride})`;
  });
  out = rewriteCalls(out, 'subgroupMatrixStore', (templateArgs, args) => {
    const [layout] = splitTopLevel(templateArgs ?? '');
    const [pointer, offset, value, stride] = splitTopLevel(args);
    const array = arrayName(pointer!);
    const name = `emu_store_${array}_${layout}`;
    const index = layout === 'col_major' ? 'offset + j * stride + i' : 'offset + i * stride + j';
    helpers.set(name, [
      `fn ${name}(offset: u32, m: array<f32, EMU_NN>, stride: u32) {`,
      `  if (subgroupElect()) {`,
      `    for (var i = 0u; i < EMU_N; i++) {`,
      `      for (var j = 0u; j < EMU_N; j++) {`,
      `        ${array}[${index}] = m[i * EMU_N + j];`,
      `      }`,
      `    }`,
      `  }`,
      `}`,
    ].join('\n'));
    return `${name}(${offset}, ${value}, ${stride})`;
  });
  out = rewriteCalls(out, 'subgroupMatrixMultiplyAccumulate', (templateArgs, args) => {
    if (templateArgs !== undefined) throw new Error('subgroupMatrixMultiplyAccumulate with template arguments');
    helpers.set('emu_mma', [
      `fn emu_mma(l: array<f32, EMU_NN>, r: array<f32, EMU_NN>, acc: array<f32, EMU_NN>) -> array<f32, EMU_NN> {`,
      `  var m = acc;`,
      `  for (var i = 0u; i < EMU_N; i++) {`,
      `    for (var j = 0u; j < EMU_N; j++) {`,
      `      var s = m[i * EMU_N + j];`,
      `      for (var k = 0u; k < EMU_N; k++) {`,
      `        s += l[i * EMU_N + k] * r[k * EMU_N + j];`,
      `      }`,
      `      m[i * EMU_N + j] = s;`,
      `    }`,
      `  }`,
      `  return m;`,
      `}`,
    ].join('\n'));
    return `emu_mma(${args})`;
  });
  // Matrix types left: declarations and zero constructors (`subgroup_matrix_result<f32, n, n>()`).
  for (let m = MATRIX_TYPE.exec(out); m; m = MATRIX_TYPE.exec(out)) {
    out = out.slice(0, m.index) + `array<f32, ${elementCount(m[0])}>` + out.slice(m.index + m[0].length);
  }
  if (!size) return out;
  const [n] = size;
  return (
    `diagnostic(off, subgroup_uniformity);\n${out}\n\n` +
    `const EMU_N = ${n}u;\n` +
    [...helpers.values()].join('\n\n').replaceAll('EMU_NN', String(n * n)) +
    '\n'
  );
}

/** `&name` or `&(name)` → name (the kernels pass module-scope arrays). */
function arrayName(pointer: string): string {
  const m = /^&\s*\(?\s*([A-Za-z_]\w*)\s*\)?$/.exec(pointer.trim());
  if (!m) throw new Error(`the emulation takes a pointer to a module-scope array, not ${pointer}`);
  return m[1]!;
}

/**
 * Replaces every call `fn<template>(args)` or `fn(args)` in `code` by what `replace` returns for its
 * template arguments (undefined if none) and its argument text; arguments are rewritten first.
 */
function rewriteCalls(code: string, fn: string, replace: (templateArgs: string | undefined, args: string) => string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const start = findCall(code, fn, at);
    if (start < 0) return out + code.slice(at);
    let i = start + fn.length;
    let templateArgs: string | undefined;
    if (code[i] === '<') {
      const close = matching(code, i, '<', '>');
      templateArgs = code.slice(i + 1, close);
      i = close + 1;
    }
    while (code[i] === ' ') i++;
    if (code[i] !== '(') throw new Error(`${fn} without an argument list at ${start}`);
    const close = matching(code, i, '(', ')');
    const args = rewriteCalls(code.slice(i + 1, close), fn, replace);
    out += code.slice(at, start) + replace(templateArgs, args);
    at = close + 1;
  }
}

/** Index of the next `fn` call at or after `from` that is not part of a longer identifier, or −1. */
function findCall(code: string, fn: string, from: number): number {
  for (let i = code.indexOf(fn, from); i >= 0; i = code.indexOf(fn, i + 1)) {
    const before = i === 0 ? '' : code[i - 1]!;
    const after = code[i + fn.length] ?? '';
    if (!/\w/.test(before) && !/\w/.test(after)) return i;
  }
  return -1;
}

/** Index of the bracket closing the one at `open`. */
function matching(code: string, open: number, left: string, right: string): number {
  let depth = 0;
  for (let i = open; i < code.length; i++) {
    if (code[i] === left) depth++;
    else if (code[i] === right && --depth === 0) return i;
  }
  throw new Error(`unbalanced ${left}${right} at ${open}`);
}

/** Splits at commas outside brackets. */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '(' || c === '<' || c === '[') depth++;
    else if (c === ')' || c === '>' || c === ']') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(text.slice(start).trim());
  return parts;
}
