// Peak subgroup-matrix rate microkernel (benchmark only): the f16 × f16 → f32 multiply-accumulate rate
// that WGSL's subgroup matrices reach on the device, the ceiling of the subgroup-matrix prefill.
// MATRIX_N (the square matrix size) is replaced by a number before the module is created; SG_SIZE is
// the device's one subgroup size and a workgroup holds SUBGROUPS subgroups. Each subgroup loads one
// left and one right matrix from workgroup memory, then runs ITERATIONS steps of 4 independent
// accumulations (enough to keep the matrix units busy), so it reads no memory in the loop. FLOPs per
// subgroup = ITERATIONS × 4 × 2 × MATRIX_N³. The results are stored only when params.store is 1 (the
// correctness check), a value the compiler cannot know, so the work is never dead code.
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
// The store offsets differ per subgroup (not workgroup-uniform to Tint's analysis); each subgroup
// reaches the stores whole, behind a condition from the uniform block.
diagnostic(off, chromium.subgroup_matrix_uniformity);

override ITERATIONS: u32 = 256u;
override SG_SIZE: u32 = 32u;
override SUBGROUPS: u32 = 4u;

struct Params {
  store: u32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
/** With store = 1: 4 result matrices per subgroup, row major, MATRIX_N² elements each. */
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;

var<workgroup> left_tile: array<f16, MATRIX_N * MATRIX_N>;
var<workgroup> right_tile: array<f16, MATRIX_N * MATRIX_N>;

@compute @workgroup_size(SG_SIZE * SUBGROUPS)
fn main(
  @builtin(local_invocation_index) tid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  // Small multiples of 1/8 and 1/16: every product and every sum the check makes is exact in f32.
  for (var i = tid; i < MATRIX_N * MATRIX_N; i += SG_SIZE * SUBGROUPS) {
    left_tile[i] = f16(f32(i % 7u) * 0.125);
    right_tile[i] = f16(f32(i % 5u) * 0.0625);
  }
  workgroupBarrier();
  let a = subgroupMatrixLoad<subgroup_matrix_left<f16, MATRIX_N, MATRIX_N>, row_major>(&left_tile, 0u, MATRIX_N);
  let b = subgroupMatrixLoad<subgroup_matrix_right<f16, MATRIX_N, MATRIX_N>, row_major>(&right_tile, 0u, MATRIX_N);
  var c0 = subgroup_matrix_result<f32, MATRIX_N, MATRIX_N>();
  var c1 = subgroup_matrix_result<f32, MATRIX_N, MATRIX_N>();
  var c2 = subgroup_matrix_result<f32, MATRIX_N, MATRIX_N>();
  var c3 = subgroup_matrix_result<f32, MATRIX_N, MATRIX_N>();
  for (var i = 0u; i < ITERATIONS; i++) {
    c0 = subgroupMatrixMultiplyAccumulate(a, b, c0);
    c1 = subgroupMatrixMultiplyAccumulate(a, b, c1);
    c2 = subgroupMatrixMultiplyAccumulate(a, b, c2);
    c3 = subgroupMatrixMultiplyAccumulate(a, b, c3);
  }
  if (params.store == 1u) {
    let subgroup = (wid.x + wid.y * groups.x) * SUBGROUPS + tid / SG_SIZE;
    let base = subgroup * 4u * MATRIX_N * MATRIX_N;
    subgroupMatrixStore<row_major>(&sink, base, c0, MATRIX_N);
    subgroupMatrixStore<row_major>(&sink, base + MATRIX_N * MATRIX_N, c1, MATRIX_N);
    subgroupMatrixStore<row_major>(&sink, base + 2u * MATRIX_N * MATRIX_N, c2, MATRIX_N);
    subgroupMatrixStore<row_major>(&sink, base + 3u * MATRIX_N * MATRIX_N, c3, MATRIX_N);
  }
}
