// Parallelism probe: how many workgroups of WG_SIZE invocations the device runs at once. In each
// workgroup the first subgroup-sized set of threads (PROBE_THREADS) walks a dependent chain of
// workgroup-memory loads, `iterations` long, while the other threads wait at the barrier, so a
// workgroup takes the chain's latency, occupies WG_SIZE invocations of the device for all of it, and
// asks almost nothing of the issue slots or memory pipes. Workgroups that fit on the device at once
// therefore take the time of one; one more starts a second wave. Invariants: the chain cannot be
// shortened by the compiler (every step's address is the previous load; the start depends on the
// thread); the result is stored only when it equals a value from the uniform block that the chain
// never produces, so nothing is written, yet the loads are not dead code. The ring array holds
// RING_WORDS words (every one written at the start, so the whole array is live), of which the chain
// walks the first RING: a larger RING_WORDS makes each workgroup hold that much workgroup memory, which
// is how the probe measures what workgroup memory does to residency.

override WG_SIZE: u32 = 256u;
override RING_WORDS: u32 = 64u;
const RING: u32 = 64u;
const PROBE_THREADS: u32 = 32u;
const LOADS_PER_STEP: u32 = 8u;

struct Params {
  steps: u32,
  never: u32,
  pad0: u32,
  pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;

var<workgroup> ring: array<u32, RING_WORDS>;

@compute @workgroup_size(WG_SIZE)
fn probe_main(@builtin(local_invocation_index) tid: u32) {
  for (var i = tid; i < RING_WORDS; i += WG_SIZE) {
    ring[i] = (i * 37u + 11u) % RING; // the first RING words: a permutation of 0..RING-1 (37 is odd)
  }
  workgroupBarrier();
  let steps = select(0u, params.steps, tid < PROBE_THREADS);
  var at = tid % RING;
  for (var i = 0u; i < steps; i++) {
    for (var j = 0u; j < LOADS_PER_STEP; j++) {
      at = ring[at];
    }
  }
  workgroupBarrier();
  if (at == params.never) {
    sink[0] = at;
  }
}
