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
ME=$(id -un)
export SLURM_CONF=$DIR/etc/slurm.conf

log() { echo "[cluster.sh $(date +%T)] $*" >&2; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { if [ -f "$1" ]; then cat "$1" 2>/dev/null || true; fi; }

stop() {
  # 1. cancel every job and wait until none is left, so slurmstepd kills the job processes
  #    itself (proctrack/linuxproc has no cgroup that would clean up after it)
  if alive "$(pid_of "$DIR/run/slurmctld.pid")"; then
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
    if [ -n "${jobs// /}" ]; then
      log "cancelling jobs: $jobs"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for _ in $(seq 300); do
        [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
        sleep 0.1
      done
    fi
  fi
  # 2. SIGTERM the daemons by pid, wait up to 10 s, then SIGKILL what is left
  local pids="" left="" f p
  for f in "$DIR"/run/slurmd-*.pid "$DIR/run/slurmctld.pid" "$DIR/munge/munged.pid"; do
    p=$(pid_of "$f")
    if alive "$p"; then kill -TERM "$p"; pids="$pids $p"; fi
    rm -f "$f"
  done
  for _ in $(seq 100); do
    left=""
    for p in $pids; do if alive "$p"; then left="$left $p"; fi; done
    [ -z "$left" ] && break
    sleep 0.1
  done
  for p in $left; do log "pid $p ignored SIGTERM: SIGKILL"; kill -KILL "$p" 2>/dev/null || true; done
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
  rm -rf "$DIR/state" "$DIR/log" "$DIR/run" "$DIR/munge"
  mkdir -p "$DIR/etc" "$DIR/state/ctld" "$DIR/state/d" "$DIR/log" "$DIR/run"
  chmod 755 "$DIR" # munged needs every directory above its socket traversable
  trap 'log "start failed"; tail -n 20 "$DIR"/log/*.log >&2 || true; stop' ERR

  # munge: own key, socket and pid file under $DIR
  local m=$DIR/munge
  mkdir -p "$m/log" "$m/lib"
  chmod 755 "$m"  # munged refuses a socket directory that others cannot traverse
  chmod 700 "$m/log" "$m/lib"
  mungekey --create --force --keyfile="$m/munge.key"
  chmod 600 "$m/munge.key"
  munged --key-file="$m/munge.key" --socket="$m/munge.socket" --pid-file="$m/munged.pid" \
    --log-file="$m/log/munged.log" --seed-file="$m/lib/munged.seed"
  munge -n -S "$m/munge.socket" | unmunge -S "$m/munge.socket" >/dev/null

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
  cat >"$SLURM_CONF" <<EOF
# generated by tests/slurm/cluster.sh: a throw-away test cluster on 127.0.0.1
ClusterName=phyworld-ci
# must be 'localhost' or \`hostname -s\`, else slurmctld: "not a valid controller"
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=$ME
SlurmdUser=$ME
SlurmctldPort=$PORT
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$m/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/d/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmdParameters=config_overrides
GresTypes=gpu
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=cpu1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((PORT + 1)) CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
$gpu_nodes
PartitionName=debug Nodes=cpu1 Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=15
PartitionName=high Nodes=cpu1 Default=NO MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
$gpu_partition
EOF
  echo "export SLURM_CONF=$SLURM_CONF" >"$DIR/env.sh"

  slurmctld -f "$SLURM_CONF" -i
  local names n
  names="cpu1 $(if [ "$NGPU_NODES" -gt 0 ]; then seq -f 'gpu%g' 1 "$NGPU_NODES"; fi)"
  for n in $names; do slurmd -f "$SLURM_CONF" -N "$n"; done
  trap - ERR

  local want deadline idle
  want=$(echo "$names" | wc -w)
  deadline=$(($(date +%s) + TIMEOUT))
  while :; do
    idle=$(sinfo -h -N -o '%N %T' 2>/dev/null | sort -u | grep -c ' idle$' || true)
    [ "$idle" = "$want" ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "only $idle/$want nodes idle after ${TIMEOUT}s"
      sinfo -N >&2 || true
      tail -n 20 "$DIR"/log/*.log >&2 || true
      stop
      exit 1
    fi
    sleep 0.2
  done
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
