// Test helper: counts the compute passes an encoder begins and the dispatches recorded in them, by
// wrapping that one encoder's beginComputePass (and each pass's dispatchWorkgroups) from now on.
export function countPasses(encoder: GPUCommandEncoder): { passes: () => number; dispatches: () => number } {
  let passes = 0;
  let dispatches = 0;
  const begin = encoder.beginComputePass.bind(encoder);
  encoder.beginComputePass = (descriptor?: GPUComputePassDescriptor) => {
    passes++;
    const pass = begin(descriptor);
    const dispatch = pass.dispatchWorkgroups.bind(pass);
    pass.dispatchWorkgroups = (x: number, y?: number, z?: number) => {
      dispatches++;
      dispatch(x, y, z);
    };
    return pass;
  };
  return { passes: () => passes, dispatches: () => dispatches };
}
