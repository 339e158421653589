#!/bin/bash
# Submits a sharded sweep as a Slurm job array of SHARDS tasks (one GPU each) and its
# finalize job, which runs only if every task succeeded (afterok). Prints both job ids.
#   deploy/slurm/submit.sh SWEEP.toml OUT_DIR SHARDS [extra sbatch options...]
# P2PMARKET (the binary, default: p2pmarket on PATH) is passed on to the jobs.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 SWEEP.toml OUT_DIR SHARDS [sbatch options]" >&2
  exit 2
fi
sweep="$(realpath "$1")"; out="$(realpath -m "$2")"; shards="$3"; shift 3
here="$(cd "$(dirname "$0")" && pwd)"
bin="${P2PMARKET:-$(command -v p2pmarket || true)}"
if [ -z "$bin" ]; then
  echo "p2pmarket is not on PATH; set P2PMARKET to the binary" >&2
  exit 2
fi
env="ALL,SWEEP=$sweep,OUT=$out,SHARDS=$shards,P2PMARKET=$(realpath "$bin")"
array=$(sbatch --parsable --array=0-$((shards - 1)) --export="$env" "$@" "$here/sweep_array.sbatch")
array="${array%%;*}"
final=$(sbatch --parsable --dependency=afterok:"$array" --kill-on-invalid-dep=yes \
  --export="$env" "$@" "$here/finalize.sbatch")
echo "array $array finalize ${final%%;*}"
