#!/usr/bin/env bash
# The eval watcher beside a training run: evaluates each new complete checkpoint of RUN once.
#   slurm/submit.sh slurm/eval.sh configs/eval/uniform.yaml checkpoint=RUN watch=true [key=value ...]
# One GPU generates the continuations; it follows RUN/checkpoints and ends once training's last
# checkpoint (step = max_steps) is evaluated, or when `stop_after_s` passes without a new one.
# Results: RUN/eval/metrics.jsonl, RUN/tb (TensorBoard, beside training), RUN/eval/videos.
# Restarting (requeue, preemption) is safe: checkpoints already in metrics.jsonl are skipped.
#SBATCH --job-name=phyworld-eval
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
set -uo pipefail

# Slurm runs a copy of this script: find the checkout (see train_s.sh).
home=${PHYWORLD_HOME:-$(dirname "$(dirname "$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")")}
# shellcheck source=slurm/lib.sh
source "$home/slurm/lib.sh"
# Site settings (Python, storage, setup): slurm/site.sh, or the file PHYWORLD_SITE names.
# shellcheck source=slurm/site.sh
source "${PHYWORLD_SITE:-$home/slurm/site.sh}"
phyworld_job_start
exec "$PHYWORLD_PYTHON" -m eval "$@"
