#!/bin/bash
# Submits a sharded sweep (or, with --uncertainty, an uncertainty study) as a Slurm job
# array of SHARDS tasks (one GPU each) and its finalize job, which runs only if every task
# succeeded (afterok). Prints both job ids.
#   deploy/slurm/submit.sh SWEEP.toml OUT_DIR SHARDS [extra sbatch options...]
#   METHODS=ut,mc SAMPLES=1000000 deploy/slurm/submit.sh --uncertainty SCENARIO.toml OUT_DIR SHARDS [...]
# (SCENARIO.toml may be `default`: the embedded scenario.) P2PMARKET (the binary, default:
# p2pmarket on PATH), METHODS and SAMPLES are passed on to the jobs.
set -euo pipefail
script=sweep_array.sbatch
if [ "${1:-}" = --uncertainty ]; then
  script=uncertainty_array.sbatch
  shift
fi
if [ $# -lt 3 ]; then
  echo "usage: $0 [--uncertainty] FILE.toml OUT_DIR SHARDS [sbatch options]" >&2
  exit 2
fi
file="$1"; out="$(realpath -m "$2")"; shards="$3"; shift 3
here="$(cd "$(dirname "$0")" && pwd)"
bin="${P2PMARKET:-$(command -v p2pmarket || true)}"
if [ -z "$bin" ]; then
  echo "p2pmarket is not on PATH; set P2PMARKET to the binary" >&2
  exit 2
fi
env="ALL,OUT=$out,SHARDS=$shards,P2PMARKET=$(realpath "$bin")"
if [ "$script" = sweep_array.sbatch ]; then
  env="$env,SWEEP=$(realpath "$file")"
else
  [ "$file" = default ] || env="$env,SCENARIO=$(realpath "$file")"
  # Through the environment (--export=ALL), not the list: a method list has commas.
  export METHODS="${METHODS:-all}" SAMPLES="${SAMPLES:-100000}"
fi
array=$(sbatch --parsable --array=0-$((shards - 1)) --export="$env" "$@" "$here/$script")
array="${array%%;*}"
final=$(sbatch --parsable --dependency=afterok:"$array" --kill-on-invalid-dep=yes \
  --export="$env" "$@" "$here/finalize.sbatch")
echo "array $array finalize ${final%%;*}"
