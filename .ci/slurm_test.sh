#!/usr/bin/env bash
# CI (issue 11): a real single-node Slurm cluster on localhost, from Debian's packages.
# Submits deploy/slurm's job array (4 tasks, one fake GPU each) over a small sweep with its
# chained finalize job, checks that the sealed dataset is byte-identical to a
# single-process run of the same sweep; then kills one task of a second submission midway,
# checks finalize refuses the incomplete sweep, reruns that task alone, and checks the
# result is unchanged. Usage: .ci/slurm_test.sh [path/to/p2pmarket]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-target/release/p2pmarket}")"
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
  || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq slurmctld slurmd munge slurm-client >/dev/null
fi

host="$(hostname -s)"
work="$(mktemp -d)"
conf=/etc/slurm
mkdir -p "$conf" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
# A node of 4 CPUs and 4 GPUs, whatever this machine has (config_overrides): the array's
# tasks each ask for one GPU, as on a real cluster; p2pmarket's `auto` then falls back to
# the CPU here.
cat > "$conf/slurm.conf" <<CONF
ClusterName=ci
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=4 RealMemory=2000 Gres=gpu:4 State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
# Stand-ins for device files: nothing binds them (task/none), the scheduler counts them.
touch /var/spool/slurmd/fakegpu{0,1,2,3}
echo "NodeName=$host Name=gpu File=/var/spool/slurmd/fakegpu[0-3]" > "$conf/gres.conf"

chown munge:munge /run/munge
[ -s /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || dd if=/dev/urandom of=/etc/munge/munge.key bs=1k count=1 2>/dev/null; }
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- munged
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)' && break
  scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 1
done
sinfo

# The sweep: 48 runs in 16 parts of 3, each run with its own drawn load scale (its own
# smart-grid curves: slow enough, ~0.1 s a run, for a task to be killed midway).
cat > "$work/sweep.toml" <<'TOML'
seed = 5
runs_per_part = 3
samples = 24

[parameters]
load_scale = { uniform = [0.95, 1.05] }
renewable_scale = { uniform = [0.5, 1.5] }
rci.chi = { values = [0.3, 0.7] }
TOML
"$bin" sweep --backend cpu --quiet --config "$work/sweep.toml" --out "$work/one"

# Waits until no job of the given ids is queued or running.
wait_jobs() {
  for _ in $(seq 600); do
    [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
    sleep 1
  done
  echo "jobs $1 did not finish" >&2
  squeue
  return 1
}
# The dataset (sweep.json and both tables) of two sweep directories must be identical.
same_dataset() {
  diff -r "$1/runs" "$2/runs" && diff -r "$1/run_hours" "$2/run_hours" \
    && cmp "$1/sweep.json" "$2/sweep.json"
  python3 - "$1/manifest.json" "$2/manifest.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
a.pop("shards", None); b.pop("shards", None)
assert a == b, "manifests differ beyond the shards record"
PY
}
opts=(--cpus-per-task=1 --chdir="$work")

# 1. The array and its chained finalize job.
read -r _ array _ final < <(P2PMARKET="$bin" deploy/slurm/submit.sh \
  "$work/sweep.toml" "$work/sharded" 4 "${opts[@]}")
wait_jobs "$array,$final"
cat "$work"/p2pmarket-finalize-"$final".out
ls "$work/sharded/shards"
[ "$(ls "$work/sharded/shards" | wc -l)" = 4 ]
same_dataset "$work/sharded" "$work/one"
"$bin" verify "$work/sharded"
python3 .ci/read_dataset.py "$work/sharded"
echo "slurm: 4-task array + finalize equals the single-process run"

# 2. One task killed midway, finalize refuses, the task alone reruns, the result is the same.
env="ALL,SWEEP=$work/sweep.toml,OUT=$work/killed,SHARDS=4,P2PMARKET=$bin"
array=$(sbatch --parsable --array=0-3 --export="$env" "${opts[@]}" deploy/slurm/sweep_array.sbatch)
victim="${array}_1"
for _ in $(seq 120); do
  [ "$(squeue -h -j "$victim" -o %T 2>/dev/null)" = RUNNING ] && break
  sleep 0.5
done
# Midway: once the first part of the job is on disk.
for _ in $(seq 600); do
  ls "$work"/killed/runs/*/part-*.parquet >/dev/null 2>&1 && break
  sleep 0.1
done
scancel "$victim"   # SIGTERM, then SIGKILL: the task dies where it is
echo "killed task 1 with $(ls "$work"/killed/runs/*/part-*.parquet | wc -l) of 16 parts of the job on disk"
wait_jobs "$array"
if [ -e "$work/killed/shards/shard-1-of-4.json" ]; then
  echo "task 1 finished before it was killed: make the sweep larger" >&2
  exit 1
fi
if "$bin" finalize "$work/killed" 2> "$work/refused.txt"; then
  echo "finalize sealed a sweep with a killed shard" >&2
  exit 1
fi
grep -q "shard 1/4" "$work/refused.txt"
[ ! -e "$work/killed/manifest.json" ]
rerun=$(sbatch --parsable --array=1 --export="$env" "${opts[@]}" deploy/slurm/sweep_array.sbatch)
final=$(sbatch --parsable --dependency=afterok:"$rerun" --export="$env" "${opts[@]}" \
  deploy/slurm/finalize.sbatch)
wait_jobs "$rerun,$final"
cat "$work"/p2pmarket-finalize-"$final".out
same_dataset "$work/killed" "$work/one"
echo "slurm: a killed task rerun alone gives the same dataset"

# 3. An uncertainty study (issue 11) as a 4-task array and its chained finalize: the same
# statistics, tails and histograms, byte for byte, as one process's study.
printf '[uncertainty.sg_load]\nstd_fraction = 0.0\nar1 = 0.9\n' > "$work/study.toml"
export METHODS=ut,mc SAMPLES=9000
"$bin" uncertainty --backend cpu --config "$work/study.toml" --method "$METHODS" \
  --samples "$SAMPLES" --out "$work/study-one" > /dev/null
read -r _ array _ final < <(P2PMARKET="$bin" deploy/slurm/submit.sh --uncertainty \
  "$work/study.toml" "$work/study-sharded" 4 "${opts[@]}")
wait_jobs "$array,$final"
cat "$work"/p2pmarket-finalize-"$final".out
[ "$(ls "$work/study-sharded/shards" | grep -c json)" = 4 ]
for f in statistics.parquet tails.parquet histograms.parquet; do
  cmp "$work/study-one/$f" "$work/study-sharded/$f"
done
echo "slurm: a 4-task uncertainty study + finalize equals the single-process study"
