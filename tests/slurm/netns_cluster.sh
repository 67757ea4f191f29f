#!/usr/bin/env bash
# netns_cluster.sh start|stop -- a throw-away multi-node Slurm cluster on one machine, for tests.
#
# Each node is a slurmd in its own network and UTS namespace: its own hostname, address, ports,
# /etc/hosts and /dev/shm, as on a separate machine. slurmctld runs in a namespace of its own.
# The namespaces hang off a bridge in a private subnet 10.213.K.0/24 that nothing on this machine
# uses (K is picked under a lock, so several clusters coexist). The bridge holds the host's address
# 10.213.K.1, so Slurm clients on the host (sbatch, srun, scontrol) reach the controller; no route
# leads out of the subnet, so jobs reach only the cluster's own addresses. munged runs on the host:
# its socket is a file, which every namespace reaches. The filesystem is shared, like a cluster's
# shared filesystem. Needs root (namespaces, mounts).
#
#   ctl     10.213.K.2       slurmctld, port 6817
#   nodeI   10.213.K.(10+I)  slurmd, port 6818      (I = 1..N)
#
# Partitions: `debug` (default; preemptable by `high`, requeue on preemption, 15 s grace) and
# `high` (preempts `debug`), both over every node.
#
# Env:  PHYWORLD_NETNS_DIR      conf/state/logs/pids (required; short: munge's socket path
#                               must be < 108 bytes)
#       PHYWORLD_NETNS_NODES    number of nodes                 [2]
#       PHYWORLD_NETNS_CPUS     CPUs each node declares         [2]
#       PHYWORLD_NETNS_TIMEOUT  seconds to wait for idle nodes  [60]
# `start` prints `export SLURM_CONF=...` (all a client needs) and writes $DIR/env.sh.
# `stop` cancels every job, stops the daemons, and deletes the namespaces, veths and bridge it
# created (also after a failed start; it reads what to delete from $DIR/net.env).
set -Eeuo pipefail # -E: the ERR trap (stop after a failed start) also fires in functions

DIR=${PHYWORLD_NETNS_DIR:?set PHYWORLD_NETNS_DIR to the cluster directory}
NNODES=${PHYWORLD_NETNS_NODES:-2}
CPUS=${PHYWORLD_NETNS_CPUS:-2}
TIMEOUT=${PHYWORLD_NETNS_TIMEOUT:-60}
PREFIX=10.213 # the private /16 the clusters' subnets come from
ME=$(id -un)
export SLURM_CONF=$DIR/etc/slurm.conf

log() { echo "[netns_cluster.sh $(date +%T)] $*" >&2; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { if [ -f "$1" ]; then cat "$1" 2>/dev/null || true; fi; }

# Names of what cluster K creates: bridge pwK-br; namespace pwK-ctl and pwK-nodeI, each reached
# through a veth whose host end is pwK-c or pwK-I (interface names: at most 15 characters).
namespaces() { echo "pw$1-ctl"; for i in $(seq "$2"); do echo "pw$1-node$i"; done; }
host_veth() { case $2 in pw$1-ctl) echo "pw$1-c" ;; *) echo "pw$1-${2#pw"$1"-node}" ;; esac; }
addr_of() { case $2 in pw$1-ctl) echo "$PREFIX.$1.2" ;; *) echo "$PREFIX.$1.$((10 + ${2#pw"$1"-node}))" ;; esac; }

ip2int() {
  local IFS=.
  # shellcheck disable=SC2086
  set -- $1
  echo $((($1 << 24) | ($2 << 16) | ($3 << 8) | $4))
}

# True if 10.213.K.0/24 overlaps an address or route of this machine (any table, any link), or
# the names of cluster K exist already (a cluster that was not stopped).
subnet_in_use() {
  local k=$1 cand cidr base len mask
  cand=$(ip2int "$PREFIX.$k.0")
  for cidr in $(
    ip -4 -o addr show | awk '{print $4}'
    ip -4 route show table all | awk '{d=$1; if (d ~ /^[a-z]/) d=$2; if (d ~ /^[0-9]/) print d}'
  ); do
    base=${cidr%/*} len=32
    [[ $cidr == */* ]] && len=${cidr#*/}
    [ "$len" -eq 0 ] && continue # a default route: not a subnet in use
    if [ "$len" -gt 24 ]; then len=24; fi # compare at the shorter of the two prefixes
    mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
    [ $(($(ip2int "$base") & mask)) -eq $((cand & mask)) ] && return 0
  done
  ip -o link show | grep -q " pw$k-" && return 0
  ip netns list | grep -q "^pw$k-" && return 0
  return 1
}

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
  # 3. the network: whatever still runs in a namespace of ours (a job step left behind), the
  #    veths (deleting the host end deletes the pair at once), the namespaces, the bridge
  if [ -f "$DIR/net.env" ]; then
    local K N ns
    # shellcheck source=/dev/null
    source "$DIR/net.env"
    for ns in $(namespaces "$K" "$N"); do
      ip netns list | grep -q "^$ns\b" || continue
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      ip link del "$(host_veth "$K" "$ns")" 2>/dev/null || true
      ip netns del "$ns"
    done
    ip link del "pw$K-br" 2>/dev/null || true
    rm -f "$DIR/net.env"
    log "deleted subnet $PREFIX.$K.0/24: bridge, veths and namespaces of $N nodes"
  fi
  log "stopped"
}

# The network of cluster K: a bridge with the host's address, a namespace per daemon.
make_network() {
  local k=$1 ns veth
  ip link add "pw$k-br" type bridge
  ip addr add "$PREFIX.$k.1/24" dev "pw$k-br"
  ip link set "pw$k-br" up
  for ns in $(namespaces "$k" "$NNODES"); do
    veth=$(host_veth "$k" "$ns")
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "pw$k-br" up
    ip -n "$ns" addr add "$(addr_of "$k" "$ns")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
}

# in_host NS HOSTNAME CMD...: run CMD (a daemon) in namespace NS as host HOSTNAME, with the
# cluster's /etc/hosts and a /dev/shm of its own (as on a machine of its own). Not `ip netns
# exec`: it mounts a fresh /sys without /sys/fs/cgroup, and slurmd 22.05 refuses to start then.
in_host() {
  local ns=$1 name=$2
  shift 2
  # shellcheck disable=SC2016
  nsenter --net="/run/netns/$ns" unshare --mount --propagation slave --uts -- sh -c \
    'hostname "$1" && mount --bind "$2" /etc/hosts && mount -t tmpfs tmpfs /dev/shm && shift 2 &&
     exec "$@"' sh "$name" "$DIR/etc/hosts" "$@"
}

start() {
  local b
  for b in slurmctld slurmd sbatch srun munged mungekey ip nsenter unshare flock; do
    command -v "$b" >/dev/null && continue
    log "missing $b: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge iproute2 util-linux"
    exit 2
  done
  if [ "$(id -u)" != 0 ]; then
    log "needs root: network namespaces, bridges and mounts"
    exit 2
  fi
  if ! [[ $NNODES =~ ^[1-9][0-9]*$ ]] || [ "$NNODES" -gt 200 ]; then
    log "PHYWORLD_NETNS_NODES must be 1..200, got '$NNODES'"
    exit 2
  fi
  if alive "$(pid_of "$DIR/run/slurmctld.pid")" || [ -f "$DIR/net.env" ]; then
    log "a cluster already runs from $DIR: run '$0 stop' first"
    exit 3
  fi
  rm -rf "$DIR/state" "$DIR/log" "$DIR/run" "$DIR/munge"
  mkdir -p "$DIR/etc" "$DIR/state/ctld" "$DIR/state/d" "$DIR/log" "$DIR/run"
  chmod 755 "$DIR" # munged needs every directory above its socket traversable
  trap 'trap - ERR; log "start failed"; tail -n 20 "$DIR"/log/*.log >&2 || true; stop' ERR

  # munge: own key, socket and pid file under $DIR
  local m=$DIR/munge
  mkdir -p "$m/log" "$m/lib"
  chmod 755 "$m" # munged refuses a socket directory that others cannot traverse
  chmod 700 "$m/log" "$m/lib"
  mungekey --create --force --keyfile="$m/munge.key"
  chmod 600 "$m/munge.key"
  munged --key-file="$m/munge.key" --socket="$m/munge.socket" --pid-file="$m/munged.pid" \
    --log-file="$m/log/munged.log" --seed-file="$m/lib/munged.seed"
  munge -n -S "$m/munge.socket" | unmunge -S "$m/munge.socket" >/dev/null

  # A free subnet, taken under a machine-wide lock: once the bridge holds its address, the next
  # cluster sees the subnet in use.
  local k="" lock=/run/lock/phyworld-netns-cluster.lock
  mkdir -p /run/lock
  exec {lockfd}>"$lock"
  flock -w 60 "$lockfd"
  for k in $(seq 1 254) none; do
    [ "$k" = none ] && break
    subnet_in_use "$k" || break
  done
  if [ "$k" = none ]; then
    log "no free subnet $PREFIX.K.0/24 on this machine"
    false
  fi
  echo "K=$k N=$NNODES" >"$DIR/net.env"
  make_network "$k"
  flock -u "$lockfd"
  exec {lockfd}>&-

  local i nodes="" mem_mb
  {
    echo "127.0.0.1 localhost"
    echo "$PREFIX.$k.2 ctl"
    for i in $(seq "$NNODES"); do echo "$PREFIX.$k.$((10 + i)) node$i"; done
  } >"$DIR/etc/hosts"
  # RealMemory above what slurmd detects drains a node (config_overrides skips that check, but
  # keep the claim honest): the nodes share this machine's memory.
  mem_mb=$(($(awk '/^MemTotal:/{print $2}' /proc/meminfo) / 1024 / 2 / NNODES))
  for i in $(seq "$NNODES"); do
    nodes="${nodes}NodeName=node$i NodeAddr=$PREFIX.$k.$((10 + i)) CPUs=$CPUS RealMemory=$mem_mb State=UNKNOWN"$'\n'
  done
  cat >"$SLURM_CONF" <<EOF
# generated by tests/slurm/netns_cluster.sh: a throw-away cluster in network namespaces
ClusterName=phyworld-netns
SlurmctldHost=ctl($PREFIX.$k.2)
SlurmUser=$ME
SlurmdUser=$ME
SlurmctldPort=6817
SlurmdPort=6818
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
# the nodes declare CPUs=$CPUS whatever this machine has
SlurmdParameters=config_overrides
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
${nodes}PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=15
PartitionName=high Nodes=ALL Default=NO MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
  echo "export SLURM_CONF=$SLURM_CONF" >"$DIR/env.sh"

  in_host "pw$k-ctl" ctl slurmctld -f "$SLURM_CONF" -i
  for i in $(seq "$NNODES"); do in_host "pw$k-node$i" "node$i" slurmd -f "$SLURM_CONF" -N "node$i"; done
  trap - ERR

  local deadline idle
  deadline=$(($(date +%s) + TIMEOUT))
  while :; do
    idle=$(sinfo -h -N -o '%N %T' 2>/dev/null | sort -u | grep -c ' idle$' || true)
    [ "$idle" = "$NNODES" ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "only $idle/$NNODES nodes idle after ${TIMEOUT}s"
      sinfo -N >&2 || true
      tail -n 20 "$DIR"/log/*.log >&2 || true
      stop
      exit 1
    fi
    sleep 0.2
  done
  log "cluster up: $NNODES nodes idle on $PREFIX.$k.0/24 (dir $DIR, user $ME)"
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
