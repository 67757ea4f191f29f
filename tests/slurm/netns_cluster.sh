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
export SLURM_CONF=$DIR/etc/slurm.conf
# shellcheck source=tests/slurm/cluster_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

log() { echo "[netns_cluster.sh $(date +%T)] $*" >&2; }

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
  stop_daemons
  # 3. the network: whatever still runs in a namespace of ours (a job step left behind), the
  #    veths (deleting the host end deletes the pair at once), the namespaces, the bridge
  if [ -f "$DIR/net.env" ]; then
    local K N ns p
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
  fresh_dir
  trap 'trap - ERR; log "start failed"; tail -n 20 "$DIR"/log/*.log >&2 || true; stop' ERR
  start_munge

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
  # every daemon has an address of its own: the default ports
  write_slurm_conf tests/slurm/netns_cluster.sh phyworld-netns "ctl($PREFIX.$k.2)" <<EOF
SlurmctldPort=6817
SlurmdPort=6818
${nodes}$(partitions ALL)
EOF

  in_host "pw$k-ctl" ctl slurmctld -f "$SLURM_CONF" -i
  for i in $(seq "$NNODES"); do in_host "pw$k-node$i" "node$i" slurmd -f "$SLURM_CONF" -N "node$i"; done
  trap - ERR

  wait_idle "$NNODES" "$TIMEOUT"
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
