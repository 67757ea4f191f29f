#!/usr/bin/env bash
# cluster.sh start|stop -- a throw-away Slurm cluster on 127.0.0.1 for the Slurm tests.
#
# Starts munged, slurmctld and one slurmd (node `cpu1`, which runs the jobs on this machine) from
# Debian's packages, without systemd or cgroups; everything lives under one directory. Beside the
# real node it declares PHYWORLD_CI_GPU_NODES fake GPU nodes (gpu[1-K], 8 GPUs each, the paper's
# A100 nodes) in partition `gpu`, served by extra slurmd daemons that report the configured
# hardware: jobs there are only ever checked with `sbatch --test-only`, never run.
#
# Partitions: `debug` (default; preemptable by `high`, requeue on preemption, 15 s grace: Slurm's
# defaults, the tasks get SIGTERM when preemption starts and the job is requeued when the grace
# time ends), `high` (preempts `debug`), `gpu` (the fake GPU nodes).
#
# Env:  PHYWORLD_CI_DIR        conf/state/logs/pids            [/tmp/phyworld-slurm]
#                              (short: munge's socket path must be < 108 bytes)
#       PHYWORLD_CI_PORT       slurmctld port; slurmds use the next ones  [6817]
#       PHYWORLD_CI_GPU_NODES  fake 8-GPU nodes                [8]
#       PHYWORLD_CI_CPUS       CPUs node cpu1 declares         [8]
#       PHYWORLD_CI_TIMEOUT    seconds to wait for idle nodes  [60]
# `start` prints `export SLURM_CONF=...` (all a client needs) and writes $DIR/env.sh.
# `stop` cancels every job, then stops the daemons by their pid files.
set -euo pipefail

DIR=${PHYWORLD_CI_DIR:-/tmp/phyworld-slurm}
PORT=${PHYWORLD_CI_PORT:-6817}
NGPU_NODES=${PHYWORLD_CI_GPU_NODES:-8}
TIMEOUT=${PHYWORLD_CI_TIMEOUT:-60}
export SLURM_CONF=$DIR/etc/slurm.conf
# shellcheck source=tests/slurm/cluster_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

log() { echo "[cluster.sh $(date +%T)] $*" >&2; }

stop() {
  stop_daemons
  log "stopped"
}

start() {
  local b
  for b in slurmctld slurmd sbatch srun munged mungekey; do
    command -v "$b" >/dev/null && continue
    log "missing $b: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
    exit 2
  done
  if alive "$(pid_of "$DIR/run/slurmctld.pid")"; then
    log "a cluster already runs from $DIR: run '$0 stop' first"
    exit 3
  fi
  fresh_dir
  trap 'log "start failed"; tail -n 20 "$DIR"/log/*.log >&2 || true; stop' ERR
  start_munge

  local cpus mem_mb gpu_nodes="" gpu_partition=""
  # More CPUs than the host has (config_overrides): a training job, its eval watcher and a
  # reference run fit side by side, as they would on a real cluster.
  cpus=${PHYWORLD_CI_CPUS:-8}
  # RealMemory above what slurmd detects drains the node; leave room for the fake nodes' claim
  mem_mb=$(($(awk '/^MemTotal:/{print $2}' /proc/meminfo) / 1024 / 2))
  if [ "$NGPU_NODES" -gt 0 ]; then
    # The paper's nodes: 8 A100 each. `config_overrides` makes slurmd report this configured
    # hardware instead of probing the host, so the nodes become idle without GPUs.
    gpu_nodes="NodeName=gpu[1-$NGPU_NODES] NodeHostname=localhost NodeAddr=127.0.0.1 Port=[$((PORT + 2))-$((PORT + 1 + NGPU_NODES))] CPUs=96 RealMemory=1000000 Gres=gpu:8 State=UNKNOWN"
    gpu_partition="PartitionName=gpu Nodes=gpu[1-$NGPU_NODES] Default=NO MaxTime=INFINITE State=UP"
  fi
  # slurmd counts one GPU per device file: empty files stand in for /dev/nvidia0..7
  mkdir -p "$DIR/dev"
  touch "$DIR"/dev/gpu{0..7}
  echo "NodeName=gpu[1-$((NGPU_NODES > 0 ? NGPU_NODES : 1))] Name=gpu File=$DIR/dev/gpu[0-7]" >"$DIR/etc/gres.conf"
  # slurmctld on PORT, the slurmds on the next ones (several clusters share 127.0.0.1)
  write_slurm_conf tests/slurm/cluster.sh phyworld-ci "localhost(127.0.0.1)" <<EOF
SlurmctldPort=$PORT
GresTypes=gpu
NodeName=cpu1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((PORT + 1)) CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
$gpu_nodes
$(partitions cpu1)
$gpu_partition
EOF

  slurmctld -f "$SLURM_CONF" -i
  local names n
  names="cpu1 $(if [ "$NGPU_NODES" -gt 0 ]; then seq -f 'gpu%g' 1 "$NGPU_NODES"; fi)"
  for n in $names; do slurmd -f "$SLURM_CONF" -N "$n"; done
  trap - ERR

  local want
  want=$(echo "$names" | wc -w)
  wait_idle "$want" "$TIMEOUT"
  log "cluster up: $want nodes idle (dir $DIR, user $ME)"
  echo "export SLURM_CONF=$SLURM_CONF"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
