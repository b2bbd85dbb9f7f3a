#!/bin/bash
# Everything a GPU machine should measure, in one command that fits one 10-minute device call:
# adapter and parallelism probe, the bench suite (with the autotuner's trials and its tuned decode
# table), the decode and prefill variant sweeps, and the kernel tests at GPU scale. Each step has its
# own time limit so a slow one cannot eat the others'; results go to $OUT (or ./gpu-out). Needs a
# built dist/ and, for the sweep and tests, node_modules (tsx, vitest). On the Node-less H100 machine:
# build here, then run there with the kit of ../shared/gpu (carry .gpu and dist):
#   bash .gpu/remote.sh bash bench/gpu-session.sh
#   Variables:
#   - STEPS="info bench sweep prefill tests" (the default). Further steps:
#     occupancy: decode workgroups resident per SM (bench/decode-occupancy.ts; OCCUPANCY="…" variants);
#     residency: workgroups resident per SM by workgroup memory, next to the decode variants' own
#       (bench/workgroup-residency.ts);
#     host: the host cost of a decode step on that machine's host: first how a layer's part splits
#       between this library and Dawn's recording calls (bench/host-cost-split.ts), then the two step
#       forms taking turns in one process (--forms), then with the whole heap, the young generation or
#       nothing collected before each step, steps encoded only and submitted
#       (bench/host-cost-collections.ts); both the two-dispatch step and decodeWritesKv;
#     serve: the serving simulation at the gpu preset on subgroup matrices, verified against the CPU.
#       It needs more than 110 s (it printed nothing when cut there on the H100), so it is not in the
#       default 10 minutes.
#   - SWEEP / PREFILL_SWEEP="…": variants (default: each sweep's own); SWEEP_ROWS=target: the decode
#     sweep times only the rows the decode target reads.
#   - LIMITS="bench=540 …": seconds per step, for a call that runs fewer steps. Defaults: info=20
#     bench=250 sweep=90 prefill=60 tests=150, which fit one 10-minute call together with the machine's
#     start (the bench took 177 s on the H100 before it also timed the decode without bounds checks and
#     four more prefill rows; a step cut short keeps what it printed).
#   - DAWN="…": one extra Dawn flag for both sweeps, e.g.
#     disable-dawn-features=use_vulkan_zero_initialize_workgroup_memory_extension.
set -u
out="${OUT:-gpu-out}"
mkdir -p "$out"
steps="${STEPS:-info bench sweep prefill tests}"
run() { # run <name> <seconds> <command...>: output to $out/<name>.txt, status on stdout (LIMITS overrides seconds)
  local name=$1 limit=$2
  shift 2
  for pair in ${LIMITS:-}; do
    [ "${pair%%=*}" = "$name" ] && limit=${pair#*=}
  done
  local start=$SECONDS
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  echo "$name: exit $? after $((SECONDS - start)) s"
}
for step in $steps; do
  case $step in
    info) run info 20 node dist/cli.js info --json ;;
    # Text, not --json: the suite prints each section as it finishes, so a step cut short keeps its figures.
    bench) run bench 250 node dist/cli.js bench ;;
    sweep) run sweep 90 tsx bench/decode-sweep.ts ${SWEEP:+--variants "$SWEEP"} ${SWEEP_ROWS:+--rows "$SWEEP_ROWS"} ${DAWN:+--dawn "$DAWN"} --json "$out/sweep.json" ;;
    prefill) run prefill 60 tsx bench/prefill-sweep.ts ${PREFILL_SWEEP:+--variants "$PREFILL_SWEEP"} ${DAWN:+--dawn "$DAWN"} --json "$out/prefill.json" ;;
    # Without the emulated-matrix file: it runs the matrix kernels rewritten into plain WGSL, for devices
    # that lack matrices (the H100 runs the real ones in attention-mma); on the H100 it and attention-shapes
    # (whose long-context matrix is now attention-long-d*.test.ts, one file per head dim, so they run side
    # by side) had not finished when a 230 s step ended.
    tests) run tests 150 vitest run test/kernels test/gpu --exclude test/kernels/attention-mma-emulated.test.ts ;;
    residency) run residency 60 tsx bench/workgroup-residency.ts --json "$out/residency.json" ;;
    occupancy) run occupancy 120 tsx bench/decode-occupancy.ts ${OCCUPANCY:+--variants "$OCCUPANCY"} --json "$out/occupancy.json" ;;
    host) run host 200 bash -c 'for a in "" --writes-kv; do tsx bench/host-cost-split.ts --rounds 4 $a; done; for a in --forms "" --writes-kv "--submit" "--submit --writes-kv"; do tsx bench/host-cost-collections.ts --rounds 4 $a; done' ;;
    serve) run serve 120 node dist/cli.js serve --preset gpu --subgroup-matrix --no-progress ;;
    *) echo "unknown step $step (info, bench, sweep, prefill, tests, residency, occupancy, host, serve)" >&2; exit 2 ;;
  esac
done
