#!/usr/bin/env bash
# Encode a dataset to latents once, so training runs no VAE encoder (docs/training.md, "Latents"):
# `python -m training.encode` as a job array of one-GPU workers, task k of n writing part k.
#   sbatch --array=0-15 slurm/encode.sh data=$DATA/uniform_3m output=$DATA/uniform_3m_latents \
#       vae.kind=ours vae.path=$RUNS/vae_kinematics_128 resolution=128 frames=32
# The worker that finds every part done writes the index and the manifest; a requeued or
# resubmitted array skips the parts already done.
#SBATCH --job-name=phyworld-encode
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%A_%a.out
set -uo pipefail

# Slurm runs a copy of this script: find the checkout (see train_s.sh).
script=$(scontrol show job "${SLURM_JOB_ID:-none}" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')
home=${PHYWORLD_HOME:-$(dirname "$(dirname "${script:-$0}")")}
# shellcheck source=slurm/lib.sh
source "$home/slurm/lib.sh"
phyworld_job_start
exec "$PHYWORLD_PYTHON" -m training.encode "$@" "num_parts=${SLURM_ARRAY_TASK_COUNT:-1}"
