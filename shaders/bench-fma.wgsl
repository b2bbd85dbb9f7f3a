// Peak f32 fused multiply-add rate microkernel (benchmark only). Each invocation runs ITERATIONS steps
// of 8 independent vec4<f32> FMA chains (enough independent work to hide FMA latency) and stores one
// value so the compiler cannot remove the work. FLOPs per invocation = ITERATIONS * 8 chains * 4 lanes * 2.
override ITERATIONS: u32 = 1024u;

@group(0) @binding(0) var<storage, read_write> sink: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let index = gid.x + gid.y * groups.x * 256u;
  let seed = f32(index & 1023u) * 1e-7;
  var a0 = vec4<f32>(seed, seed + 0.1, seed + 0.2, seed + 0.3);
  var a1 = a0 + 0.01; var a2 = a0 + 0.02; var a3 = a0 + 0.03;
  var a4 = a0 + 0.04; var a5 = a0 + 0.05; var a6 = a0 + 0.06; var a7 = a0 + 0.07;
  let m = vec4<f32>(0.999999);
  let c = vec4<f32>(1e-6);
  for (var i = 0u; i < ITERATIONS; i++) {
    a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
    a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
  }
  let total = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
  if (total.x == 12345.678) { sink[index] = total; }
  if (index == 0u) { sink[0] = total; }
}
