// Read-bandwidth baseline: every thread streams vec4<u32> words of `src` with a grid-stride loop and
// folds them into a sum. Invariants: each word is read exactly once per dispatch; the sum is stored
// only when it equals an impossible-to-predict value from the uniform block, so the loads cannot be
// removed as dead code, yet (practically) nothing is ever written.

override WG_SIZE: u32 = 256u;

struct Params {
  vec4_count: u32,
  sentinel: u32,
  pad0: u32,
  pad1: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn read_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * WG_SIZE;
  var acc = vec4<u32>(0u);
  for (var i = gid.x; i < params.vec4_count; i += stride) {
    acc += src[i];
  }
  let folded = acc.x ^ acc.y ^ acc.z ^ acc.w;
  if (folded == params.sentinel) {
    sink[0] = folded;
  }
}
