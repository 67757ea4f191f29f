# slurm/lib.sh -- plumbing shared by the sbatch scripts, sourced at the top of each job:
# site settings, per-job logs, the rendezvous address, NCCL settings, CPUs per task, and a
# launcher that forwards Slurm's warning signal to the training processes.
#
# Stopping, the shell half (training/preemption.py does the Python half; docs/slurm.md has the
# table and what was seen of Slurm 22.05):
#   --signal=B:USR1@N  the time limit is near. Slurm warns the batch shell, which forwards USR1 to
#                      srun and so to every task. The tasks agree on it, checkpoint, ask for a
#                      requeue (PHYWORLD_REQUEUE_FILE) and exit; once srun has returned, this shell
#                      runs `scontrol requeue`, and the requeued job resumes from the checkpoint.
#   SIGTERM            `scancel`, a preemption or `scontrol requeue`: Slurm sends it to every task.
#                      The tasks checkpoint and exit without asking for a requeue: Slurm decides.
#                      A cancelled job ends CANCELLED. A preempted one is requeued by Slurm at the
#                      end of the partition's GraceTime, but only if the job is still running then
#                      (a job that ends by itself during the grace time is never requeued), so
#                      this shell waits for Slurm while the job is being preempted.

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
    "tasks=${SLURM_NTASKS:-?} partition=${SLURM_JOB_PARTITION:-?} host=$(hostname) home=$PHYWORLD_HOME"
  if [ -n "$PHYWORLD_PARTITION" ] && [ "${SLURM_JOB_PARTITION:-}" != "$PHYWORLD_PARTITION" ]; then
    phyworld_log "warning: slurm/site.sh names partition $PHYWORLD_PARTITION, this job runs in" \
      "${SLURM_JOB_PARTITION:-?}: plain sbatch reads only SBATCH_PARTITION; source slurm/site.sh" \
      "before sbatch, or submit with slurm/submit.sh (docs/slurm.md)"
  fi
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

# CPUs for each task of an srun step: the job's --cpus-per-task, else (whole nodes, --exclusive)
# the first node's CPUs shared evenly between its tasks. Since Slurm 22.05 srun no longer
# inherits --cpus-per-task from the job; without SRUN_CPUS_PER_TASK a rank and its data loader
# workers can end up bound to a single CPU.
phyworld_cpus_per_task() {
  local per_node=${SLURM_NTASKS_PER_NODE:-${SLURM_TASKS_PER_NODE:-1}}
  per_node=${per_node%%[(,]*}
  local share=$((${SLURM_CPUS_ON_NODE:-1} / per_node))
  echo "${SLURM_CPUS_PER_TASK:-$((share > 0 ? share : 1))}"
}

# srun one task per GPU (the sbatch header's --ntasks-per-node), inside the site's container.
phyworld_srun() {
  export SRUN_CPUS_PER_TASK=${SRUN_CPUS_PER_TASK:-$(phyworld_cpus_per_task)}
  local args=(--kill-on-bad-exit=1)
  if [ -n "$PHYWORLD_CONTAINER" ]; then
    args+=(--container-image="$PHYWORLD_CONTAINER" --container-workdir="$PHYWORLD_HOME")
    [ -n "$PHYWORLD_CONTAINER_MOUNTS" ] && args+=(--container-mounts="$PHYWORLD_CONTAINER_MOUNTS")
  fi
  phyworld_forward_signals srun "${args[@]}" "$@"
}

# After the training step: requeue if the tasks asked for it (the time-limit warning); while
# Slurm is preempting the job (PreemptTime set), wait for it to requeue or cancel the job at the
# end of the grace time instead of ending the job here (which would end it for good).
phyworld_after_training() {
  if [ -f "$PHYWORLD_REQUEUE_FILE" ]; then
    rm -f "$PHYWORLD_REQUEUE_FILE"
    phyworld_log "requeueing the job, as the training asked after the time-limit warning"
    scontrol requeue "$SLURM_JOB_ID" && return 0
    phyworld_log "scontrol requeue $SLURM_JOB_ID failed: is the partition requeue-enabled?" \
      "Resubmit the same command to resume."
    return 1
  fi
  local job
  job=$(scontrol show job -o "$SLURM_JOB_ID" 2>/dev/null)
  if [[ $job == *JobState=RUNNING* && $job =~ PreemptTime=[0-9] ]]; then
    phyworld_log "the job is being preempted: waiting for Slurm to requeue it (GraceTime)"
    while :; do sleep 5; done
  fi
}

# The body of slurm/train_{s,b,l,xl}.sh: `python -m training CONFIG model.size=SIZE overrides`,
# CONFIG being the script's default unless the first argument is a config file.
phyworld_train() {
  local size=$1 config=$2
  shift 2
  if [ -z "${SLURM_JOB_ID:-}" ]; then
    echo "usage: sbatch slurm/train_${size,,}.sh [CONFIG.yaml] [key=value ...]" \
      "(default CONFIG: $config)" >&2
    exit 2
  fi
  if [ $# -gt 0 ] && [[ $1 != *=* ]]; then
    # relative to the submission directory (where the job starts), else to the checkout
    config=$(realpath -e -- "$1" 2>/dev/null || realpath -e -- "$PHYWORLD_HOME/$1") || {
      echo "error: config file '$1' does not exist (in $(pwd) or $PHYWORLD_HOME)" >&2
      exit 2
    }
    shift
  fi
  phyworld_job_start
  phyworld_rendezvous
  phyworld_nccl
  export PHYWORLD_REQUEUE_FILE=$PHYWORLD_JOB_LOG_DIR/requeue-${SLURM_RESTART_COUNT:-0}
  rm -f "$PHYWORLD_REQUEUE_FILE"
  phyworld_log "train DiT-$size on $SLURM_NTASKS tasks (${SRUN_CPUS_PER_TASK:-$(phyworld_cpus_per_task)} CPUs each)," \
    "rendezvous $MASTER_ADDR:$MASTER_PORT: $config $*"
  local rc=0
  phyworld_srun "$PHYWORLD_PYTHON" -m training "$config" "model.size=$size" "$@" || rc=$?
  phyworld_log "training exited with status $rc"
  phyworld_after_training || rc=$?
  return "$rc"
}
