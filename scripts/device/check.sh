#!/usr/bin/env bash
# The real-GPU check (issue 10, item 5), run on the device machine in the repository
# root after scripts/device/prepare.sh, with .devbin and .gl carried:
#   1. the GPU's name and driver (nvidia-smi) and the Vulkan adapter the engine picks;
#   2. the GPU tests with P2PMARKET_REQUIRE_GPU=1: tests/integration/engine_equivalence (the
#      harness: f64 and f32 kernels against the CPU reference) and the library's
#      engine::gpu tests (kernel variants, run summaries, kernel faults);
#   3. `p2pmarket bench` with --summaries, every backend, 1e4 to 1e7 runs;
#   4. the attack study sweep (issue 9) on the GPU in f64;
#   5. a 200 000-run runs-only sweep reduced and hashed on the GPU, against the full
#      sweep on the GPU and the runs-only sweep on the CPU (f64), then both GPU sweeps
#      in f32;
#   6. a workgroup-size sweep of the GPU at 1e6 runs.
# The steps run in this order of importance: a call cut short still returns the logs of
# the steps that finished.
# Seven files go to $OUT (the device tool brings back at most eight): summary.txt (the
# machine, the commit, each step's exit code) and one log per step. A step's failure is recorded
# and the next step still runs; the exit code is the first failure's. Not yet timed on
# an H100/H200 (a few minutes expected): use timeout_s 480, which leaves time to rerun.
# CHECK_QUICK=1 runs the same steps at small sizes (a dry run on lavapipe).
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-$(mktemp -d)}"
status=0
step() {
  local name="$1" limit="$2"
  shift 2
  echo "== $name: $*" | tee -a "$out/summary.txt" >>"$out/$name.log"
  timeout "$limit" "$@" >>"$out/$name.log" 2>&1
  local rc=$?
  echo "   rc $rc" | tee -a "$out/summary.txt"
  tail -n 30 "$out/$name.log"
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
}

# The Vulkan loader, where the image has none (the device tool's README).
if ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then export VK_DRIVER_FILES="$icd"; fi

bin=/tmp/p2pmarket-devbin
mkdir -p "$bin"
for f in .devbin/*.gz; do
  gzip -dc "$f" >"$bin/$(basename "$f" .gz)"
  chmod +x "$bin/$(basename "$f" .gz)"
done
{
  echo "commit: $(tr '\n' ' ' <.devbin/commit)"
  echo "cpus: $(nproc)"
  nvidia-smi 2>&1 || echo "nvidia-smi: not found"
} >>"$out/summary.txt"
head -n 14 "$out/summary.txt"

export P2PMARKET_REQUIRE_GPU=1
step equivalence 240 "$bin/integration" engine_equivalence::
step gpu_unit 240 "$bin/lib-tests" engine::gpu
sizes=10000,100000,1000000,10000000 wg_size=1000000
if [ "${CHECK_QUICK:-0}" = 1 ]; then sizes=1000,10000 wg_size=2000; fi
step bench 300 "$bin/p2pmarket" bench --backend auto --summaries \
  --sizes "$sizes" --max-seconds 40
# Issue 9's real-GPU figure: the 114 688-run attack study (its ledger oracle replays 1 000
# defended runs on the CPU); the sweep prints its runs, time and adapter.
attack=experiments/sweeps/attack_study.toml scratch="$(mktemp -d)"
if [ "${CHECK_QUICK:-0}" = 1 ]; then
  # The 256-run attack map, capped at 400 iterations: lavapipe cuts an undefended
  # attacked hour's loop at about 500.
  attack="$scratch/attack_quick.toml"
  sed '/^\[base.rci\]/a max_iterations = 400' experiments/sweeps/attack_map.toml >"$attack"
fi
step attack_sweep 150 "$bin/p2pmarket" sweep --backend gpu --precision f64 \
  --config "$attack" --out "$scratch/attack"
# Issue 10, item 3: 200 000 runs of load_renewable_mc.toml without run_hours, reduced and
# hashed on the GPU (f64), against the full sweep (records read back, heads hashed on the
# host) and the CPU; each prints its time, the first its parts reduced on the device.
mc="$scratch/mc.toml" samples=50000
if [ "${CHECK_QUICK:-0}" = 1 ]; then samples=500; fi
sed "s/^samples = .*/samples = $samples/; s/^runs_per_part = .*/runs_per_part = $samples/" \
  experiments/sweeps/load_renewable_mc.toml >"$mc"
{ echo "run_hours = false"; cat "$mc"; } >"$scratch/mc_ro.toml"
step sweep_runs_only 90 "$bin/p2pmarket" sweep --backend gpu --precision f64 \
  --config "$scratch/mc_ro.toml" --out "$scratch/mc_ro"
step sweep_runs_only 90 "$bin/p2pmarket" sweep --backend gpu --precision f64 \
  --config "$mc" --out "$scratch/mc_full"
step sweep_runs_only 90 "$bin/p2pmarket" sweep --backend cpu --config "$scratch/mc_ro.toml" \
  --out "$scratch/mc_cpu"
# The same two GPU sweeps in f32, with the stop tolerances f32 can meet.
f32_rci='[base.rci]\nprice_tol = 1e-3\ndual_tol = 1e-3\npower_tol = 1e-2\nbalance_tol = 1e-2\n'
printf "%s\n$f32_rci" "$(cat "$mc")" >"$scratch/mc32.toml"
printf "%s\n$f32_rci" "$(cat "$scratch/mc_ro.toml")" >"$scratch/mc32_ro.toml"
step sweep_runs_only 90 "$bin/p2pmarket" sweep --backend gpu --precision f32 \
  --config "$scratch/mc32_ro.toml" --out "$scratch/mc32_ro"
step sweep_runs_only 90 "$bin/p2pmarket" sweep --backend gpu --precision f32 \
  --config "$scratch/mc32.toml" --out "$scratch/mc32_full"
for wg in 32 64 128 256; do
  step bench_wg 120 "$bin/p2pmarket" bench --backend gpu --summaries \
    --sizes "$wg_size" --max-seconds 40 --workgroup-size "$wg"
done
cat "$out/summary.txt"
exit "$status"
