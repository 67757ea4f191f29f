# slurm/lib.sh -- plumbing shared by the sbatch scripts, sourced at the top of each job:
# site settings, per-job logs, the rendezvous address, NCCL settings, and a launcher that
# forwards Slurm's warning signal to the training processes.
#
# The preemption protocol (training/preemption.py does the Python half):
#   --signal=B:USR1@N  Slurm warns the batch shell N s before the time limit; the shell forwards
#                      USR1 to srun, which passes it to every task.
#   SIGTERM            preemption or `scontrol requeue`: Slurm sends it to every task itself; the
#                      batch shell only keeps waiting so the tasks can finish their checkpoint.
#   The tasks agree on the flag at the next step boundary, save, rank 0 runs
#   `scontrol requeue $SLURM_JOB_ID`, and they exit; the requeued job resumes from the checkpoint.

PHYWORLD_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PHYWORLD_HOME
# shellcheck source=slurm/site.sh
source "$PHYWORLD_HOME/slurm/site.sh"
export PHYWORLD_DATA_ROOT PHYWORLD_RUN_ROOT PHYWORLD_LOG_ROOT

phyworld_log() { echo "[phyworld $(date -u +%FT%TZ) job ${SLURM_JOB_ID:-none}] $*"; }

# Site setup, the job's log folder, and one line saying which attempt this is.
phyworld_job_start() {
  phyworld_site_setup
  cd "$PHYWORLD_HOME" || exit 1
  export PHYWORLD_JOB_LOG_DIR=$PHYWORLD_LOG_ROOT/${SLURM_JOB_NAME:-job}-${SLURM_JOB_ID:-0}
  mkdir -p "$PHYWORLD_JOB_LOG_DIR"
  phyworld_log "start: SLURM_RESTART_COUNT=${SLURM_RESTART_COUNT:-0} nodes=${SLURM_JOB_NODELIST:-?}" \
    "tasks=${SLURM_NTASKS:-?} host=$(hostname) home=$PHYWORLD_HOME"
}

# MASTER_ADDR/MASTER_PORT for torch.distributed: the first node of the allocation, by its address
# (node names need not resolve), on a port derived from the job id (the same after a requeue).
phyworld_rendezvous() {
  local first addr
  first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
  addr=$(scontrol show node "$first" -o 2>/dev/null | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p')
  export MASTER_ADDR=${MASTER_ADDR:-${addr:-$first}}
  export MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
}

# NCCL: warnings by default, one debug file per host and process per attempt, and errors (also
# timeouts) raised instead of hanging.
phyworld_nccl() {
  export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
  export NCCL_DEBUG_FILE=${NCCL_DEBUG_FILE:-$PHYWORLD_JOB_LOG_DIR/nccl-restart${SLURM_RESTART_COUNT:-0}-%h-%p.log}
  export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
  phyworld_site_nccl
}

# Run "$@" in the background and wait for it, forwarding USR1 (the time-limit warning, which only
# the batch shell receives) and outliving TERM (which the tasks receive themselves), so the
# training processes can checkpoint. Returns the command's exit status.
phyworld_forward_signals() {
  "$@" &
  local pid=$! rc
  # shellcheck disable=SC2064
  trap "phyworld_log 'USR1: forwarding to the tasks (checkpoint, requeue, exit)'; kill -USR1 $pid" USR1
  trap "phyworld_log 'TERM: the tasks got it too; waiting for their checkpoint'" TERM
  while :; do
    wait "$pid"
    rc=$?
    kill -0 "$pid" 2>/dev/null || break # a trapped signal interrupted `wait`: keep waiting
  done
  trap - USR1 TERM
  return "$rc"
}

# srun one task per GPU (the sbatch header's --ntasks-per-node), inside the site's container.
phyworld_srun() {
  local args=(--kill-on-bad-exit=1)
  if [ -n "$PHYWORLD_CONTAINER" ]; then
    args+=(--container-image="$PHYWORLD_CONTAINER" --container-workdir="$PHYWORLD_HOME")
    [ -n "$PHYWORLD_CONTAINER_MOUNTS" ] && args+=(--container-mounts="$PHYWORLD_CONTAINER_MOUNTS")
  fi
  phyworld_forward_signals srun "${args[@]}" "$@"
}

# The body of slurm/train_{s,b,l,xl}.sh: `python -m training CONFIG model.size=SIZE overrides`.
phyworld_train() {
  local size=$1
  shift
  if [ $# -lt 1 ]; then
    echo "usage: slurm/submit.sh slurm/train_${size,,}.sh CONFIG.yaml [key=value ...]" >&2
    exit 2
  fi
  phyworld_job_start
  phyworld_rendezvous
  phyworld_nccl
  phyworld_log "train DiT-$size on $SLURM_NTASKS tasks, rendezvous $MASTER_ADDR:$MASTER_PORT: $*"
  local rc=0
  phyworld_srun "$PHYWORLD_PYTHON" -m training "$1" "model.size=$size" "${@:2}" || rc=$?
  phyworld_log "training exited with status $rc"
  return "$rc"
}
